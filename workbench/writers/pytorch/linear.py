"""Fully connected layers: ``Gemm`` and ``MatMul`` with a constant weight as ``nn.Linear``.

``Gemm`` is ``Y = alpha * A' @ B' + beta * C`` (``A'``, ``B'`` optionally
transposed); ``nn.Linear`` is ``y = x @ W.T + b``. So ``W = alpha * B'.T``
(``B`` itself when ``transB = 1``, as exporters write it) and ``b = beta * C``
when ``C`` is one value per output feature. ``MatMul(x, B)`` is ``nn.Linear``
with ``W = B.T``; an ``Add`` of one value per output feature right after it
becomes the layer's bias. Anything else is written as ``torch.matmul``.
"""

from __future__ import annotations

import numpy as np

from ...graph.shapes import constant
from .codegen import call, flat, number
from .program import EMITTERS, TorchNodeContext, single_use


def _row_bias(bias: np.ndarray | None, features: int) -> np.ndarray | None:
    """``bias`` as one value per output feature, or None if it is shaped otherwise."""
    if bias is None:
        return None
    if bias.size == 1:
        return np.full(features, bias.reshape(()), dtype=bias.dtype)
    if bias.size == features and bias.shape[-1] == features:
        return bias.reshape(features)
    return None


def _linear(ctx: TorchNodeContext, weight: np.ndarray, bias: np.ndarray | None, source: str) -> None:
    out_features, in_features = weight.shape
    arguments = {} if bias is not None else {"bias": "False"}
    state = {"weight": np.ascontiguousarray(weight)}
    if bias is not None:
        state["bias"] = bias
    constructor = call("nn.Linear", str(in_features), str(out_features), **arguments)
    layer = ctx.module(constructor, state, shared=[1, 2])
    ctx.assign(call(layer, source))


@EMITTERS.register("Gemm")
def emit_gemm(ctx: TorchNodeContext) -> None:
    """nn.Linear for a constant B; torch.matmul otherwise"""
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    trans_a, trans_b = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    source = f"{ctx.x(0)}.t()" if trans_a else ctx.x(0)
    weight = ctx.const(1)
    has_bias = ctx.has_input(2)
    bias = ctx.const(2) if has_bias else None
    if weight is not None and weight.ndim == 2:
        weight = weight if trans_b else weight.T
        if alpha != 1.0:
            weight = weight * np.asarray(alpha, dtype=weight.dtype)
        scaled = bias * np.asarray(beta, dtype=bias.dtype) if bias is not None else None
        row = _row_bias(scaled, weight.shape[0])
        if not has_bias or row is not None:
            _linear(ctx, weight, row, source)
            return
    product = call("torch.matmul", source, f"{ctx.x(1)}.t()" if trans_b else ctx.x(1))
    expression = f"{number(alpha)} * {flat(product)}" if alpha != 1.0 else flat(product)
    if has_bias:
        term = ctx.operand(2, 0)
        expression += f" + {number(beta)} * {term}" if beta != 1.0 else f" + {term}"
    ctx.assign(expression)


@EMITTERS.register("MatMul")
def emit_matmul(ctx: TorchNodeContext) -> None:
    """nn.Linear for a constant 2-d right operand (with a following bias Add); torch.matmul otherwise"""
    weight = ctx.const(1)
    if weight is None or weight.ndim != 2 or ctx.const(0) is not None:
        ctx.assign(call("torch.matmul", ctx.x(0), ctx.x(1)))
        return
    features = weight.shape[1]
    bias = None
    add = single_use(ctx.node.outputs[0], "Add")
    if add is not None:
        other = [value for value in add.inputs if value is not ctx.node.outputs[0]]
        data = constant(other[0]) if len(other) == 1 else None
        # a bias of higher rank than the product would broadcast it to a new shape
        fits = data is not None and data.size == features and data.shape[-1] == features
        if data is not None and fits and data.ndim <= (ctx.rank(0) or 1):
            bias = data.reshape(features)
            ctx.absorb(add)
    _linear(ctx, weight.T, bias, ctx.x(0))
