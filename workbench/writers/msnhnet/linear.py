"""Fully connected layers -> ``connect``.

A ``connect`` reads the previous layer's whole sample flattened (C·H·W, row-major)
and stores its weights as ``[output][input]``, PyTorch's ``Linear`` layout. A graph's
``Flatten``/``Reshape`` before a ``Gemm`` moves no data, so the connect reads the same
values in the same order; a ``Transpose`` before the flatten is written as a
``permute`` (``shape``), never folded into the weights silently.

``Gemm``: ``alpha * A @ B' + beta * C`` with ``B' = B`` or ``B.T`` (``transB``); alpha and
beta are multiplied into the weights and the bias. ``transA`` is reported.
``MatMul`` by a constant ``(F, out)`` matrix of a 2-D input is a ``connect`` without
bias (a following ``Add`` of a constant becomes its bias, see ``arithmetic``).
"""

from __future__ import annotations

import numpy as np

from .net import MSNHNET_LAYERS, MsnhNodeContext

_MATRIX_REMEDY = "flatten to (batch, features) before the Linear layer"


def _features(ctx: MsnhNodeContext) -> int | None:
    shape = ctx.static_shape(0)
    if shape is None or len(shape) != 2:
        ctx.problem(
            "rank",
            f"a matrix product of an input of shape {shape}; MsnhNet's connect takes (batch, features)",
            _MATRIX_REMEDY,
        )
        return None
    return shape[1]


def _connect(ctx: MsnhNodeContext, weight: np.ndarray, bias: np.ndarray | None, weight_inputs: list[int]) -> None:
    features = _features(ctx)
    if features is None:
        return
    if weight.shape[1] != features:
        ctx.problem("shape", f"weights {weight.shape} for {features} input features", _MATRIX_REMEDY)
        return
    if ctx.feed(0) is None:
        return
    outputs = weight.shape[0]
    params: dict = {"output": outputs}
    if bias is None:
        params["useBias"] = 0
    weights = [weight] if bias is None else [weight, bias]
    ctx.add_layer("connect", params, (outputs, 1, 1), weights=weights, weight_inputs=weight_inputs)


@MSNHNET_LAYERS.register("Gemm")
def convert_gemm(ctx: MsnhNodeContext) -> None:
    """connect (weights [out][in]; alpha, beta and transB folded into them)"""
    if int(ctx.attr("transA")):
        ctx.unsupported("Gemm with transA=1", _MATRIX_REMEDY)
        return
    found = ctx.weights(1, 2)
    if found is None:
        return
    matrix = np.asarray(found[1], np.float32)
    weight = matrix if int(ctx.attr("transB")) else matrix.T
    weight = weight * np.float32(ctx.attr("alpha")) if float(ctx.attr("alpha")) != 1.0 else weight
    bias = found.get(2)
    if bias is not None:
        bias = np.broadcast_to(np.asarray(bias, np.float32) * np.float32(ctx.attr("beta")), (weight.shape[0],))
    _connect(ctx, np.ascontiguousarray(weight), bias, [1, 2])


@MSNHNET_LAYERS.register("MatMul")
def convert_matmul(ctx: MsnhNodeContext) -> None:
    """connect without bias, for a constant (features, out) matrix"""
    found = ctx.weights(1)
    if found is None:
        return
    matrix = np.asarray(found[1], np.float32)
    if matrix.ndim != 2:
        ctx.problem("rank", f"MatMul by a constant of shape {matrix.shape}", _MATRIX_REMEDY)
        return
    _connect(ctx, np.ascontiguousarray(matrix.T), None, [1])
