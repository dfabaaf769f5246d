"""Gemm / MatMul with constant weights -> InnerProduct.

InnerProduct computes ``y = x W^T + b`` over the input flattened from ``axis``,
with ``W`` stored as ``(num_output, K)``:

* ``Gemm(A, B, C)`` = ``alpha * A @ op(B) + beta * C``: ``W = alpha * B`` when
  ``transB=1`` (PyTorch's Linear), ``alpha * B^T`` otherwise; ``b = beta * C``.
  ``transA=1`` and a non-constant ``B`` or ``C`` have no InnerProduct form.
* ``MatMul(x, B)`` with constant 2-D ``B`` of shape ``(K, N)``: ``W = B^T``,
  ``axis = rank(x) - 1`` so leading dimensions stay (a Linear on a sequence).

When the input is a flatten of a transposed tensor (``x.permute(...).view(n, -1)``
before a Linear), the permutation moves into the weights (see
``shape.convert_transpose``): with ``flatten(transpose(x))[j] = flatten(x)[index[j]]``,
``W' [:, index[j]] = W[:, j]`` gives ``W' flatten(x) = W flatten(transpose(x))``,
so the InnerProduct reads the untransposed blob and no Permute layer is needed.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ...graph.shapes import constant
from .net import CAFFE_LAYERS, CaffeNodeContext


def _gemm_weights(node: ir.Node) -> tuple[np.ndarray, np.ndarray | None] | str:
    if node.attributes.get_int("transA", 0):
        return "Gemm with transA=1 transposes the data input; InnerProduct cannot"
    b = constant(node.inputs[1])
    if b is None:
        return "the second Gemm input is not a constant, so there are no weights to store"
    alpha = node.attributes.get_float("alpha", 1.0)
    weight = b if node.attributes.get_int("transB", 0) else b.T
    weight = weight * np.float32(alpha) if alpha != 1.0 else weight
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return weight, None
    c = constant(node.inputs[2])
    if c is None:
        return "the Gemm bias C is not a constant"
    outputs = weight.shape[0]
    if c.size not in (1, outputs) or (c.ndim == 2 and c.shape[0] != 1):
        return f"the Gemm bias C of shape {c.shape} is not one value per output ({outputs})"
    bias = np.broadcast_to(c.reshape(-1), (outputs,)).astype(np.float32)
    beta = node.attributes.get_float("beta", 1.0)
    return weight, bias * np.float32(beta) if beta != 1.0 else bias


def inner_product_weights(node: ir.Node) -> tuple[np.ndarray, np.ndarray | None] | str:
    """``(W, b)`` of the InnerProduct equal to ``node``, or why there is none."""
    if node.op_type == "Gemm":
        return _gemm_weights(node)
    b = constant(node.inputs[1])
    if b is None or b.ndim != 2:
        return "the second MatMul input is not a constant 2-D matrix, so there are no weights to store"
    return b.T, None


@CAFFE_LAYERS.register("Gemm", "MatMul")
def convert_inner_product(ctx: CaffeNodeContext) -> None:
    """InnerProduct (constant weights; a transposed flatten moves into the weights)"""
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
    layer = ctx.add_layer(
        "InnerProduct",
        [bottom],
        weights=[weight] + ([bias] if bias is not None else []),
        weight_inputs=[1, 2],
        also=also,
    )
    param = layer.inner_product_param
    param.num_output = weight.shape[0]
    param.bias_term = bias is not None
    if axis != 1:
        param.axis = axis
