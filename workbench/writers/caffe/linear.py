"""Gemm / MatMul with constant weights -> InnerProduct.

InnerProduct computes ``y = x W^T + b`` over the input flattened from ``axis``,
with ``W`` stored as ``(num_output, K)``:

* ``Gemm(A, B, C)`` = ``alpha * A @ op(B) + beta * C``: ``W = alpha * B`` when
  ``transB=1`` (PyTorch's Linear), ``alpha * B^T`` otherwise; ``b = beta * C`` when
  ``C`` holds one value per output. A ``C`` that also varies along the rows (an
  ``(M, N)`` matrix) is added after the InnerProduct by a Scale whose bias is
  ``beta * C``. ``transA=1`` and a non-constant ``B`` or ``C`` have no InnerProduct
  form.
* ``MatMul(x, B)`` with constant 2-D ``B`` of shape ``(K, N)``: ``W = B^T``,
  ``axis = rank(x) - 1`` so leading dimensions stay (a Linear on a sequence). A 1-D
  ``B`` is one output, the last axis then dropped by a Reshape. A ``B`` with batch
  axes ``(..., K, N)`` holds one matrix per batch item: ``x`` is reshaped to
  ``(batch, M, K)``, Sliced into its items, each item's InnerProduct uses its own
  ``B_i^T``, and a Concat and a Reshape restore ``(..., M, N)``.

When the input is a flatten of a transposed tensor (``x.permute(...).view(n, -1)``
before a Linear), the permutation moves into the weights (see
``shape.convert_transpose``): with ``flatten(transpose(x))[j] = flatten(x)[index[j]]``,
``W' [:, index[j]] = W[:, j]`` gives ``W' flatten(x) = W flatten(transpose(x))``,
so the InnerProduct reads the untransposed blob and no Permute layer is needed.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from ...graph.converter import constant_value
from ...graph.shapes import static_shape
from .net import CAFFE_LAYERS, CaffeNodeContext
from .views import reshape


def _gemm_bias(node: ir.Node, outputs: int) -> tuple[np.ndarray | None, np.ndarray | None] | str:
    """``(per-output bias, (M, N) bias)`` of a Gemm (at most one of them), or why there is none."""
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return None, None
    c = constant_value(node.inputs[2])
    if c is None:
        return "the Gemm bias C is not a constant"
    beta = np.float32(node.attributes.get_float("beta", 1.0))
    c = c.astype(np.float32) * beta if beta != 1.0 else c.astype(np.float32)
    if c.size in (1, outputs) and (c.ndim < 2 or c.shape[0] == 1):
        return np.broadcast_to(c.reshape(-1), (outputs,)).astype(np.float32), None
    output = static_shape(node.outputs[0])
    if output is None or len(output) != 2 or c.ndim > 2:
        return f"the Gemm bias C of shape {c.shape} does not broadcast to a known output"
    return None, np.ascontiguousarray(np.broadcast_to(c, output))


def _gemm_weights(node: ir.Node) -> tuple[np.ndarray, np.ndarray | None] | str:
    if node.attributes.get_int("transA", 0):
        return "Gemm with transA=1 transposes the data input; InnerProduct cannot"
    b = constant_value(node.inputs[1])
    if b is None:
        return "the second Gemm input is not a constant, so there are no weights to store"
    alpha = node.attributes.get_float("alpha", 1.0)
    weight = b if node.attributes.get_int("transB", 0) else b.T
    weight = weight * np.float32(alpha) if alpha != 1.0 else weight
    bias = _gemm_bias(node, weight.shape[0])
    return bias if isinstance(bias, str) else (weight, bias[0])


def inner_product_weights(node: ir.Node) -> tuple[np.ndarray, np.ndarray | None] | str:
    """``(W, b)`` of the one InnerProduct equal to ``node``, or why there is none."""
    if node.op_type == "Gemm":
        return _gemm_weights(node)
    b = constant_value(node.inputs[1])
    if b is None or b.ndim != 2:
        return "the second MatMul input is not a constant 2-D matrix, so there are no weights to store"
    return b.T, None


def _inner_product(
    ctx: CaffeNodeContext,
    bottom: str,
    weight: np.ndarray,
    bias: np.ndarray | None,
    axis: int,
    output: ir.Value | None,
    role: str | None = None,
    also: list[ir.Node] | None = None,
) -> str:
    layer = ctx.add_layer(
        "InnerProduct",
        [bottom],
        [output],
        role=role,
        weights=[weight] + ([bias] if bias is not None else []),
        weight_inputs=[1, 2],
        also=also or (),
    )
    param = layer.inner_product_param
    param.num_output = weight.shape[0]
    param.bias_term = bias is not None
    if axis != 1:
        param.axis = axis
    return str(layer.top[0])


@CAFFE_LAYERS.register("Gemm", "MatMul")
def convert_inner_product(ctx: CaffeNodeContext) -> None:
    """InnerProduct (constant weights; a transposed flatten moves into the weights; batched B: one per item)"""
    if ctx.node.op_type == "MatMul" and _other_matmul(ctx):
        return
    found = inner_product_weights(ctx.node)
    if isinstance(found, str):
        ctx.problem(
            "inner-product",
            found,
            "use nn.Linear (constant weights) in the source model, or run simplify to fold constant inputs",
        )
        return
    weight, bias = found
    data = ctx.node.inputs[0]
    also: list[ir.Node] = []
    axis = 1
    if data in ctx.net.flattened:
        flat = ctx.net.flattened[data]
        bottom, also = flat.blob, flat.nodes
        permuted = np.empty_like(weight)
        permuted[:, flat.index] = weight
        weight = permuted
    else:
        bottom = ctx.bottom(data)
        if ctx.node.op_type == "MatMul":
            rank = ctx.rank(0)
            if ctx.static_shape(0) is None or rank is None:
                ctx.problem("dynamic-shape", "the MatMul input has no known rank", "export with fixed shapes")
                return
            axis = rank - 1
    biases = _gemm_bias(ctx.node, weight.shape[0]) if ctx.node.op_type == "Gemm" else None
    matrix_bias = biases[1] if isinstance(biases, tuple) else None
    output = ctx.node.outputs[0]
    top = _inner_product(ctx, bottom, weight, bias, axis, None if matrix_bias is not None else output, also=also)
    if matrix_bias is not None:
        ctx.add_scale(top, None, matrix_bias, axis=0, outputs=[output], role="bias", weight_inputs=[2])


def _other_matmul(ctx: CaffeNodeContext) -> bool:
    """A MatMul by a constant 1-D vector or a batch of matrices (True: written or reported)."""
    b = ctx.const(1)
    shape, out = ctx.static_shape(0), ctx.output_shape(0)
    if b is None or b.ndim == 2:
        return False
    if shape is None or out is None or None in out or len(shape) < 2:
        ctx.problem("inner-product", f"MatMul of a {shape} tensor by a constant {b.shape}", "use 2-D weights")
        return True
    if b.ndim == 1:
        top = _inner_product(ctx, ctx.bottom(ctx.node.inputs[0]), b.reshape(1, -1), None, len(shape) - 1, None)
        reshape(ctx, top, tuple(int(d or 0) for d in out), "drop_axis", ctx.node.outputs[0])
        return True
    return _batched_matmul(ctx, b, shape, tuple(int(d or 0) for d in out))


def _batched_matmul(ctx: CaffeNodeContext, b: np.ndarray, shape: tuple[int, ...], out: tuple[int, ...]) -> bool:
    batch = out[:-2]
    items = math.prod(batch)
    if shape[:-2] not in (batch, (1,) * (len(shape) - 2)) or len(shape) > len(out):
        ctx.problem(
            "inner-product",
            f"MatMul of a {shape} tensor by constant matrices {b.shape}: the data's batch axes would broadcast",
            "give the data the output's batch axes",
        )
        return True
    matrices = np.broadcast_to(b, (*batch, *b.shape[-2:])).reshape(items, *b.shape[-2:])
    data = reshape(ctx, ctx.bottom(ctx.node.inputs[0]), (-1, shape[-2], shape[-1]), "items")
    pieces = [data] * items
    if shape[:-2] == batch and items > 1:
        cut = ctx.add_layer("Slice", [data], [None] * items, role="item")
        cut.slice_param.axis = 0
        cut.slice_param.slice_point.extend(range(1, items))
        pieces = [str(top) for top in cut.top]
    tops = [_inner_product(ctx, piece, matrices[i].T, None, 2, None, role=f"item{i}") for i, piece in enumerate(pieces)]
    joined = ctx.add_layer("Concat", tops, [None], role="join")
    joined.concat_param.axis = 0
    reshape(ctx, str(joined.top[0]), out, "restore", ctx.node.outputs[0])
    ctx.problem(
        "matmul-batched",
        f"MatMul by {items} constant matrices written as one InnerProduct per batch item (Slice, Concat; exact)",
        severity="warning",
    )
    return True
