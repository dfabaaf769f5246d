"""PyTorch module -> graph, through ``torch.onnx.export(dynamo=True)``.

The exporter's own optimizer is turned off (``optimize=False``): it would fuse
BatchNorm into convolutions and lose where the weights came from. Folding is the
workbench's ``fold_bn`` step, which reports what it folded. Each node gets its
module path as provenance and its parameters' state-dict names.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, WorkbenchError
from ..graph import Model, SourceInfo, StepReport
from ..graph.report import timed
from .onnx_reader import annotate_provenance


@contextmanager
def _quiet_exporter_registry() -> Iterator[None]:
    """The exporter logs a warning for every torchvision op it cannot register
    when torchvision is absent (it is, here): noise for every export."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def export(
    module: Any,
    example_inputs: Sequence[np.ndarray] | np.ndarray,
    *,
    name: str | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> Model:
    """Export a PyTorch module, run on ``example_inputs``, to the graph."""
    import torch

    if isinstance(example_inputs, (np.ndarray, torch.Tensor)):
        example_inputs = [example_inputs]
    args = tuple(torch.as_tensor(np.asarray(x)) for x in example_inputs)
    module = module.eval()
    report = StepReport("export")
    with timed(report), warnings.catch_warnings(), _quiet_exporter_registry():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                optimize=False,
                verbose=False,
                input_names=list(input_names) if input_names else None,
                output_names=list(output_names) if output_names else None,
            )
        except Exception as error:  # the exporter raises many unrelated types
            raise WorkbenchError(
                f"torch.onnx.export failed for {type(module).__name__}",
                found=str(error).splitlines()[0] if str(error) else type(error).__name__,
                remedy="check that the module runs on the example inputs and uses exportable ops",
            ) from error
        if program is None:  # dynamo=True always returns a program; None would be an exporter bug
            raise WorkbenchError(f"torch.onnx.export returned nothing for {type(module).__name__}")
        model = program.model
        annotate_provenance(model)
    report.summary = f"exported {type(module).__name__} with torch {torch.__version__}"
    report.counts = {"nodes": len(model.graph), "initializers": len(model.graph.initializers)}
    source_name = name or type(module).__name__
    return Model(model, SourceInfo("pytorch", (), source_name), [report])


def read_factory(spec: str, weights: str | Path | None = None, input_shape: Sequence[int] | None = None) -> Model:
    """Build the module named by ``package.module:factory`` (with ``weights``) and export it
    on zeros of ``input_shape``, or of the factory's own ``input_shape`` attribute."""
    module = load_factory(spec, weights)
    shape = input_shape or declared_input_shape(spec)
    if not shape:
        raise InputError(
            f"{spec} needs an input shape to be exported",
            remedy="give --input-shape, e.g. 1,3,224,224",
        )
    example = np.zeros(tuple(int(d) for d in shape), dtype=np.float32)
    model = export(module, [example], name=spec.rpartition(":")[2])
    # the spec (and weights) let a runner rebuild the module as the reference
    model.source = replace(model.source, paths=(spec, *([str(weights)] if weights else [])))
    return model


def factory_of(spec: str) -> Callable[[], Any]:
    """The callable ``package.module:factory`` names (the current folder is importable)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InputError(
            f"cannot read PyTorch source {spec!r}",
            expected="package.module:factory (a callable that returns an nn.Module)",
            found=spec,
            remedy="e.g. workbench.samples:sample_net",
        )
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise InputError(
            f"cannot import {spec}",
            found=str(error),
            remedy="check the module path and that the factory is defined there",
        ) from error


def declared_input_shape(spec: str) -> tuple[int, ...] | None:
    """The factory's ``input_shape`` attribute, when it declares one."""
    shape = getattr(factory_of(spec), "input_shape", None)
    return tuple(int(d) for d in shape) if shape else None


def load_factory(spec: str, weights: str | Path | None = None) -> Any:
    """Build the module named by ``package.module:factory`` and load ``weights``.

    Weights are read with ``torch.load(weights_only=True)``: a pickle that needs
    code to run is refused, never executed.
    """
    import torch

    module = factory_of(spec)()
    if not isinstance(module, torch.nn.Module):
        raise InputError(
            f"{spec} did not return a torch.nn.Module",
            found=type(module).__name__,
            remedy="make the factory return the model instance",
        )
    if weights is not None:
        _load_weights(module, spec, Path(weights))
    return module.eval()


def _load_weights(module: Any, spec: str, weights: Path) -> None:
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise InputError(
            f"no such weights file: {weights}",
            expected="a state dict saved with torch.save",
            remedy="check the path",
        ) from error
    except Exception as error:  # unpickling refusals and corrupt files
        raise InputError(
            f"cannot read weights {weights}",
            expected="a state dict saved with torch.save (tensors only)",
            found=str(error).splitlines()[0],
            remedy="save with torch.save(model.state_dict(), path); pickled code is not executed",
        ) from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise InputError(
            f"weights {weights} do not fit {spec}",
            found=str(error).splitlines()[0],
            remedy="check that the weights were saved from this architecture",
        ) from error
