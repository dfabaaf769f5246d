"""Inputs to run a model on when the caller gives none (``example_inputs``).

Data inputs get deterministic standard-normal noise. Some graphs (ONNX's own test
graphs, and exports that keep an op's parameters outside the weights) also take
an op's parameters as graph inputs, where noise is not a value the op accepts:
Dropout rejects a ratio outside [0, 1), Resize a negative scale, and a negative
BatchNormalization variance makes every output NaN. Such an input gets a value
valid for the op that reads it instead (the table ``_PARAMETERS``, keyed by op
and by the input's name in the op's schema). An initializer listed among the
graph inputs is a weight, not a run-time input, and gets nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from ..errors import InputError
from ..graph import Model
from ..graph import opset as opsets

# the factor a scales input, or a sizes input relative to the data, resizes each spatial axis by
_SPATIAL_FACTOR = 2.0

ParameterValue = Callable[[ir.Node, tuple[int, ...], np.random.Generator], np.ndarray]


def _resized_axes(node: ir.Node, count: int) -> list[int]:
    """The axes a Resize or Upsample parameter of ``count`` entries lists (its ``axes``, else all)."""
    axes = node.attributes.get_ints("axes", None)
    return [int(axis) for axis in axes] if axes is not None else list(range(count))


def _scales(node: ir.Node, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Spatial axes (from the third on) twice as large; batch and channels kept."""
    count = int(np.prod(shape))
    factors = [_SPATIAL_FACTOR if axis >= 2 else 1.0 for axis in _resized_axes(node, count)]
    return np.array(factors, dtype=np.float32).reshape(shape)


def _sizes(node: ir.Node, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """The data's size with the spatial axes doubled (the data's shape must be known)."""
    data = node.inputs[0].shape if node.inputs and node.inputs[0] is not None else None
    dims = [d for d in data if isinstance(d, int)] if data is not None else []
    if data is None or len(dims) != len(data):
        raise InputError(
            f"{node.op_type} {node.name or ''} takes its output sizes as a run-time input, "
            "and its data's shape is not known",
            remedy="give --input-shape, or pass the inputs to run on",
        )
    count = int(np.prod(shape))
    sizes = [int(dims[axis] * _SPATIAL_FACTOR) if axis >= 2 else int(dims[axis]) for axis in _resized_axes(node, count)]
    return np.array(sizes, dtype=np.int64).reshape(shape)


def _whole_roi(node: ir.Node, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """The region of interest covering the whole input: starts 0, ends 1."""
    half = int(np.prod(shape)) // 2
    return np.array([0.0] * half + [1.0] * half, dtype=np.float32).reshape(shape)


def _positive(node: ir.Node, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return (np.abs(rng.standard_normal(shape)) + 0.5).astype(np.float32)


def _ratio(node: ir.Node, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.full(shape, 0.5, dtype=np.float32)


def _inference(node: ir.Node, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.zeros(shape, dtype=np.bool_)


# (op, input name in the op's schema) -> the value a graph input feeding it gets
_PARAMETERS: dict[tuple[str, str], ParameterValue] = {
    ("Dropout", "ratio"): _ratio,
    ("Dropout", "training_mode"): _inference,
    ("BatchNormalization", "input_var"): _positive,
    ("Resize", "roi"): _whole_roi,
    ("Resize", "scales"): _scales,
    ("Resize", "sizes"): _sizes,
    ("Upsample", "scales"): _scales,
}


def _parameter(value: ir.Value, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray | None:
    """The value for a graph input that some op reads as a parameter, else None."""
    for node, index in value.uses():
        opset = opsets.node_opset(node)
        schema = opsets.schema(node.op_type, opset, node.domain) if opset is not None else None
        if schema is None or index >= len(schema.inputs):
            continue
        make = _PARAMETERS.get((node.op_type, schema.inputs[index].name))
        if make is not None:
            return make(node, shape, rng)
    return None


def example_inputs(model: Model, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs matching the model's run-time inputs: noise for data,
    valid values for op parameters (see the module docstring)."""
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    for value in model.graph.inputs:
        if value.is_initializer():
            continue
        shape = tuple(value.shape) if value.shape is not None else ()
        fixed = tuple(d for d in shape if isinstance(d, int))
        if len(fixed) != len(shape):
            raise InputError(
                f"input {value.name} has no fixed shape",
                found=str(shape),
                remedy="give --input-shape, e.g. 1,3,224,224",
            )
        parameter = _parameter(value, fixed, rng)
        inputs[value.name or ""] = parameter if parameter is not None else rng.standard_normal(fixed).astype(np.float32)
    return inputs
