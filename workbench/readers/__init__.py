"""Readers: every supported source format -> ``Model``.

``load`` recognises a source by its files (see the CLI contract):
``*.onnx``; ``*.prototxt`` + ``*.caffemodel``; ``*-symbol.json`` + ``*.params``;
``*.msnhnet`` + ``*.msnhbin``; ``package.module:factory`` for PyTorch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..graph import Model
from .onnx_reader import read_onnx
from .pytorch_reader import export, load_factory

FORMATS = {
    "onnx": ("*.onnx",),
    "caffe": ("*.prototxt", "*.caffemodel"),
    "mxnet": ("*-symbol.json", "*.params"),
    "msnhnet": ("*.msnhnet", "*.msnhbin"),
    "pytorch": ("package.module:factory",),
}


def detect_format(sources: Sequence[str]) -> str:
    """The source format named by these paths, or an InputError saying what fits."""
    names = [str(s) for s in sources]
    suffixes = sorted(Path(n).suffix for n in names)
    if len(names) == 1 and ":" in names[0] and not Path(names[0]).exists() and not names[0].endswith(".onnx"):
        return "pytorch"
    if suffixes == [".onnx"]:
        return "onnx"
    if suffixes == [".caffemodel", ".prototxt"]:
        return "caffe"
    if suffixes == [".json", ".params"] and any(n.endswith("-symbol.json") for n in names):
        return "mxnet"
    if suffixes == [".msnhbin", ".msnhnet"]:
        return "msnhnet"
    expected = "; ".join(" + ".join(patterns) for patterns in FORMATS.values())
    raise InputError(
        "cannot tell the source format from the files given",
        expected=expected,
        found=" ".join(names) or "nothing",
        remedy="pass the files that make up one model (e.g. deploy.prototxt net.caffemodel)",
    )


def _by_suffix(sources: Sequence[str], suffix: str) -> Path:
    return next(Path(s) for s in sources if str(s).endswith(suffix))


def example_inputs(model: Model, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random inputs matching the model's input shapes."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for value in model.graph.inputs:
        shape = tuple(value.shape) if value.shape is not None else ()
        if not all(isinstance(d, int) for d in shape):
            raise InputError(
                f"input {value.name} has no fixed shape",
                found=str(shape),
                remedy="give --input-shape, e.g. 1,3,224,224",
            )
        inputs[value.name] = rng.standard_normal(shape).astype(np.float32)
    return inputs


def load(
    *sources: str | Path,
    input_shape: Sequence[int] | None = None,
    weights: str | Path | None = None,
) -> Model:
    """Read any supported source into a ``Model``.

    A PyTorch source needs ``input_shape`` (or a factory attribute ``input_shape``)
    to be exported.
    """
    names = [str(s) for s in sources]
    kind = detect_format(names)
    for name in names:
        if kind != "pytorch" and not Path(name).is_file():
            raise InputError(f"no such file: {name}", remedy="check the path")
    if kind == "onnx":
        return read_onnx(names[0])
    if kind == "caffe":
        from .caffe_reader import read_caffe

        return read_caffe(_by_suffix(names, ".prototxt"), _by_suffix(names, ".caffemodel"))
    if kind == "mxnet":
        from .mxnet_reader import read_mxnet

        symbol = next(Path(n) for n in names if n.endswith("-symbol.json"))
        return read_mxnet(symbol, _by_suffix(names, ".params"), input_shapes=input_shape)
    if kind == "pytorch":
        module = load_factory(names[0], weights)
        shape = input_shape or getattr(_factory(names[0]), "input_shape", None)
        if not shape:
            raise InputError(
                f"{names[0]} needs an input shape to be exported",
                remedy="give --input-shape, e.g. 1,3,224,224",
            )
        example = np.zeros(tuple(int(d) for d in shape), dtype=np.float32)
        model = export(module, [example], name=names[0].rpartition(":")[2])
        # the spec (and weights) let a runner rebuild the module as the reference
        model.source = replace(model.source, paths=(names[0], *([str(weights)] if weights else [])))
        return model
    raise InputError(
        f"reading {kind} models is not available in this version",
        expected="onnx, caffe, mxnet or pytorch sources",
        found=" ".join(names),
        remedy="convert the model to ONNX first",
    )


def _factory(spec: str):
    import importlib

    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


__all__ = ["load", "export", "load_factory", "read_onnx", "detect_format", "example_inputs"]
