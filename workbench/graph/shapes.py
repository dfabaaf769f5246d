"""Shape inference on the graph, and helpers to read static shapes and constants."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from ..errors import WorkbenchError

SMALL_CONSTANT_BYTES = 1024  # kept for inference's data propagation (Reshape targets, Slice bounds)


def infer_shapes(model: ir.Model) -> ir.Model:
    """Annotate every value with its inferred type and shape (ONNX shape inference)."""
    try:
        return ShapeInferencePass(strict_mode=False)(model).model
    except Exception as error:  # onnx raises several unrelated types here
        raise WorkbenchError(
            "shape inference failed",
            found=str(error).splitlines()[0],
            remedy="give a fixed input shape (--input-shape) or simplify the model first",
        ) from error


def shape_inference_error(model: ir.Model) -> str | None:
    """ONNX's strict shape inference over the graph (weights reduced to their types and
    shapes): the error it reports, or None when every node's shapes agree.

    ``ShapeInferencePass`` only logs such an error and leaves the model as it was; here
    the error is the answer. The model is not changed: a structural clone shares the
    weights, and only the clone is stripped of them."""
    stripped = model.clone()
    graph = stripped.graph
    for value in list(graph.initializers.values()):
        tensor = value.const_value
        if tensor is None or tensor.nbytes <= SMALL_CONSTANT_BYTES:
            continue
        value.shape = value.shape or ir.Shape(tuple(int(d) for d in tensor.shape.numpy()))
        value.dtype = value.dtype or tensor.dtype
        if value not in graph.inputs:
            graph.inputs.append(value)
        graph.initializers.pop(value.name or "")
        value.const_value = None
    try:
        onnx.shape_inference.infer_shapes(ir.serde.serialize_model(stripped), strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as error:
        return str(error)
    return None


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape as ints, or None when unknown or symbolic."""
    if value is None or value.shape is None:
        return None
    dims = tuple(d for d in value.shape if isinstance(d, int))
    return dims if len(dims) == len(value.shape) else None


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's data if it is an initializer or a Constant node output (any of
    Constant's attribute forms: ``value``, ``value_floats``, ``value_int``...), else None."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()
