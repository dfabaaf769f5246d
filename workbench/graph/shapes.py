"""Shape inference on the graph, and helpers to read static shapes and constants."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from ..errors import WorkbenchError


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
