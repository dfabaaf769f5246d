"""Conversion workbench: move trained networks between frameworks, verified layer by layer.

The step functions, usable from a notebook, a script or the CLI::

    model = load("mypkg.nets:build", input_shape=(1, 3, 224, 224))   # or .onnx, Caffe, MXNet files
    simplified = simplify(model)            # constant folding, op census before/after
    folded = fold_bn(simplified)            # BatchNorm folded into the weights
    check(folded, "caffe")                  # every unsupported op and pitfall, at once
    written = write(folded, "out", "caffe") # NAME.prototxt + NAME.caffemodel
    compare(model, written)                 # source vs written files, output by output
    compare(folded, written, per_layer=True).first_divergence
    map_names(model, written)               # target name -> source layers and parameters

Each returns an object that renders in Jupyter and carries a report of what it did.
``convert`` runs the whole chain (load → simplify → fold_bn → check → write →
verify) and returns it (``Chain``: every step's artifact and report, runnable step by
step); ``identify`` tells what model a set of files is::

    chain = convert(["deploy.prototxt", "net.caffemodel"], "onnx", "out")  # or Chain(...).run("load"), ...
    chain.ok, chain.comparison, chain.to_report()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# the API by the module that defines it: importing ``workbench`` costs nothing until a
# name is used, so the command line starts without onnx, onnxruntime or torch
_API = {
    "Artifact": "artifacts",
    "identify": "artifacts",
    "Chain": "chain",
    "StepRun": "chain",
    "convert": "chain",
    "InputError": "errors",
    "Problem": "errors",
    "UnsupportedError": "errors",
    "WorkbenchError": "errors",
    "Model": "graph",
    "SourceInfo": "graph",
    "StepReport": "graph",
    "example_inputs": "readers",
    "export": "readers",
    "load": "readers",
    "check": "steps.check",
    "compare": "steps.compare",
    "fold_bn": "steps.fold_bn",
    "map_names": "steps.map_names",
    "simplify": "steps.simplify",
    "write": "writers",
}

if TYPE_CHECKING:
    from .artifacts import Artifact, identify
    from .chain import Chain, StepRun, convert
    from .errors import InputError, Problem, UnsupportedError, WorkbenchError
    from .graph import Model, SourceInfo, StepReport
    from .readers import example_inputs, export, load
    from .steps.check import check
    from .steps.compare import compare
    from .steps.fold_bn import fold_bn
    from .steps.map_names import map_names
    from .steps.simplify import simplify
    from .writers import write


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` on first use (PEP 562)."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = [
    "Artifact",
    "Chain",
    "InputError",
    "Model",
    "Problem",
    "SourceInfo",
    "StepReport",
    "StepRun",
    "UnsupportedError",
    "WorkbenchError",
    "check",
    "compare",
    "convert",
    "example_inputs",
    "export",
    "fold_bn",
    "identify",
    "load",
    "map_names",
    "simplify",
    "write",
]
