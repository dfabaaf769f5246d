"""Activations and softmax: ONNX element-wise non-linearities -> Caffe layers.

* ``Relu``, ``Sigmoid``, ``Tanh``, ``Abs``, ``Exp``, ``Log``, ``Softplus`` -> ReLU,
  Sigmoid, TanH, AbsVal, Exp, Log, BNLL; ``LeakyRelu(alpha)`` -> ReLU with
  ``negative_slope = alpha``.
* ``PRelu(x, slope)`` -> PReLU: Caffe keeps one slope per channel (axis 1) or one
  shared slope (``channel_shared``, a 0-d blob as BVLC Caffe expects).
* ``Elu`` -> ELU; ``Selu`` -> ELU then Power ``scale = gamma`` (``gamma * elu(x)``).
* ``HardSigmoid`` -> Power ``alpha * x + beta`` and the exact clip to [0, 1] below;
  ``HardSwish`` -> ``x`` times that (Eltwise PROD); ``Softsign`` -> ``x * (1 + |x|)^-1``
  (AbsVal, Power, PROD); ``Mish`` -> ``x * tanh(softplus(x))`` (BNLL, TanH, PROD);
  ``Gelu(approximate='tanh')`` -> its formula in Eltwise, TanH and Power layers.
  ``Erf`` (and erf-based ``Gelu``) has no Caffe form: reported.
* ``PRelu`` whose slope varies along other axes than the channels ->
  ``relu(x) - slope * relu(-x)`` (ReLU, Power -1, ReLU, Scale, Eltwise SUM): exact,
  ``x + 0`` and ``(-s) * (-x)`` round as ``s * x`` does.
* ``Clip(lo, hi)`` has no layer both BVLC Caffe and OpenCV run (BVLC's Clip is
  unknown to OpenCV, OpenCV's ReLU6 to BVLC). It is written exactly with layers
  both know: ``max(x, lo)`` is ReLU when ``lo == 0``, else Eltwise MAX of ``x``
  and a constant blob ``c = 0*x + lo`` (a Power layer with ``scale = 0``);
  ``min(y, hi) = -max(-y, -hi)`` with Power ``scale = -1`` for the negations.
  Every step is exact in float32 (negation and ``0*x + c`` round nothing). The
  opencv dialect writes ``Clip(0, 6)`` as one ReLU6.
* ``Softmax(axis)`` -> Softmax; before opset 13 ONNX normalizes the axes from
  ``axis`` on together: a Reshape to ``(rows, 1, length, 1)``, Softmax, Reshape back.
* ``LogSoftmax`` -> ``z - log(sum(exp(z)))`` with ``z = x - max(x)`` over the axis
  (``views``: a MAX Pooling, a Deconvolution copying the max back, Exp, a
  Convolution summing, Log), as onnxruntime computes it; ``log(softmax(x))`` would
  give ``-inf`` where a probability underflows.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from ...formats import caffe_pb2
from .net import CAFFE_LAYERS, CaffeNodeContext
from .views import (
    AxisView,
    axes_block,
    difference,
    from_view,
    product,
    scale_axes,
    to_view,
    view_max,
    view_spread,
    view_sum,
)

_ONE_LAYER = {
    "Relu": "ReLU",
    "Sigmoid": "Sigmoid",
    "Tanh": "TanH",
    "Abs": "AbsVal",
    "Exp": "Exp",  # base e (Caffe's default base -1)
    "Log": "Log",
    "Softplus": "BNLL",  # log(1 + exp(x)), computed without overflow
}


@CAFFE_LAYERS.register(*_ONE_LAYER)
def convert_one_layer(ctx: CaffeNodeContext) -> None:
    """the Caffe layer of the same function: ReLU, Sigmoid, TanH, AbsVal, Exp, Log, BNLL (Softplus)"""
    ctx.add_layer(_ONE_LAYER[ctx.node.op_type], in_place=True)


@CAFFE_LAYERS.register("LeakyRelu")
def convert_leaky_relu(ctx: CaffeNodeContext) -> None:
    """ReLU with negative_slope = alpha"""
    layer = ctx.add_layer("ReLU", in_place=True)
    layer.relu_param.negative_slope = float(ctx.attr("alpha", 0.01))


@CAFFE_LAYERS.register("Elu")
def convert_elu(ctx: CaffeNodeContext) -> None:
    """ELU with alpha"""
    layer = ctx.add_layer("ELU", in_place=True)
    layer.elu_param.alpha = float(ctx.attr("alpha", 1.0))


@CAFFE_LAYERS.register("PRelu")
def convert_prelu(ctx: CaffeNodeContext) -> None:
    """PReLU, per channel (axis 1) or shared; other slopes as relu(x) - slope * relu(-x)"""
    slope = ctx.const(1)
    shape = ctx.static_shape(0)
    if slope is None:
        ctx.problem("prelu-slope", "the PRelu slope is not a constant", "make the slope a parameter")
        return
    if slope.size == 1:
        layer = ctx.add_layer(
            "PReLU", weights=[np.asarray(slope, np.float32).reshape(())], weight_inputs=[1], in_place=True
        )
        layer.prelu_param.channel_shared = True
        return
    channels = shape[1] if shape is not None and len(shape) >= 2 else None
    # the slope broadcasts against the input aligned to the right; per-channel means
    # its only non-unit dimension lands on axis 1
    aligned = (1,) * (len(shape) - slope.ndim) + slope.shape if shape and slope.ndim <= len(shape) else None
    if aligned is not None and aligned[1] == channels and math.prod(aligned) == channels:
        ctx.add_layer("PReLU", weights=[slope.reshape(channels)], weight_inputs=[1], in_place=True)
    elif not _broadcast_prelu(ctx, slope, shape):
        ctx.problem(
            "prelu-slope",
            f"PRelu slope of shape {slope.shape} does not broadcast to the input {shape}",
            "use one slope per channel (nn.PReLU(num_channels)) or a single shared slope",
        )


def _broadcast_prelu(ctx: CaffeNodeContext, slope: np.ndarray, shape: tuple[int, ...] | None) -> bool:
    """``relu(x) + (-slope) * relu(-x)`` for a slope along other axes than the channels: exact
    (``x + 0`` and ``(-s) * (-x) = s * x`` round nothing more than ``s * x``); False if it does not fit."""
    axes = scale_axes(shape, slope.shape) if shape is not None else None
    if shape is None or axes is None or axes[1] == 0:
        return False
    data = ctx.bottom(ctx.node.inputs[0])
    positive = str(ctx.add_layer("ReLU", [data], [None], role="positive").top[0])
    negated = _power(ctx, "negate", data, -1.0)
    negative = str(ctx.add_layer("ReLU", [negated], [None], role="negative", in_place=True).top[0])
    scaled = ctx.add_scale(negative, -axes_block(slope, shape, *axes), axis=axes[0], role="slope", weight_inputs=[1])
    layer = ctx.add_layer("Eltwise", [positive, scaled])
    layer.eltwise_param.operation = caffe_pb2.EltwiseParameter.SUM
    ctx.problem(
        "prelu-composed",
        f"PRelu with a slope of shape {slope.shape} (not per channel) written as relu(x) - slope * relu(-x) "
        "with ReLU, Power, Scale and Eltwise (exact)",
        severity="warning",
    )
    return True


def _clip_bounds(ctx: CaffeNodeContext) -> tuple[float, float] | None:
    """(low, high) where the opset keeps them (attributes before 11, constant inputs after)."""
    if not ctx.require_constants("min", "max"):
        return None
    low, high = ctx.param("min"), ctx.param("max")
    return (
        -math.inf if low is None else float(low.reshape(())),
        math.inf if high is None else float(high.reshape(())),
    )


def _power(
    ctx: CaffeNodeContext,
    role: str | None,
    bottom: str,
    scale: float = 1.0,
    shift: float = 0.0,
    output: ir.Value | None = None,
    power: float = 1.0,
) -> str:
    """A Power layer ``(shift + scale * x) ^ power``; returns its top."""
    layer = ctx.add_layer("Power", [bottom], [output], role=role)
    if scale != 1.0:
        layer.power_param.scale = scale
    if shift:
        layer.power_param.shift = shift
    if power != 1.0:
        layer.power_param.power = power
    return str(layer.top[0])


def _eltwise_max(ctx: CaffeNodeContext, role: str, bottoms: list[str], output: ir.Value | None = None) -> str:
    layer = ctx.add_layer("Eltwise", bottoms, [output], role=role)
    layer.eltwise_param.operation = caffe_pb2.EltwiseParameter.MAX
    return str(layer.top[0])


def clip_layers(ctx: CaffeNodeContext, data: str, low: float, high: float, output: ir.Value | None) -> tuple[str, int]:
    """Write ``max(x, low)`` then ``min(., high)`` for the finite bounds on blob ``data``, the last
    top standing for ``output``; returns (that top, the layer count)."""
    has_high = math.isfinite(high)
    written = 0
    if low == 0.0:
        data = str(ctx.add_layer("ReLU", [data], [None if has_high else output], role="low").top[0])
        written += 1
    elif math.isfinite(low):
        floor = _power(ctx, "low", data, 0.0, low)
        data = _eltwise_max(ctx, "max_low", [data, floor], None if has_high else output)
        written += 2
    if has_high:
        negated = _power(ctx, "neg", data, -1.0)
        ceiling = _power(ctx, "high", data, 0.0, -high)
        data = _power(ctx, "min_high", _eltwise_max(ctx, "max_high", [negated, ceiling]), -1.0, output=output)
        written += 4
    return data, written


@CAFFE_LAYERS.register("Clip")
def convert_clip(ctx: CaffeNodeContext) -> None:
    """ReLU6 (opencv dialect), else exact ReLU / Power / Eltwise MAX layers"""
    bounds = _clip_bounds(ctx)
    if bounds is None:
        return
    low, high = bounds
    if (low, high) == (0.0, 6.0) and ctx.dialect == "opencv":
        ctx.add_layer("ReLU6", in_place=True)
        return
    _, written = clip_layers(ctx, ctx.bottom(ctx.node.inputs[0]), low, high, ctx.node.outputs[0])
    if written == 0:
        ctx.alias()
    elif written > 1:
        hint = "; dialect='opencv' writes one ReLU6 layer" if (low, high) == (0.0, 6.0) else ""
        ctx.problem(
            "clip-expanded",
            f"Clip({low:g}, {high:g}) written as {written} layers both BVLC Caffe and OpenCV run (exact){hint}",
            severity="warning",
        )


def _softmax_axis(ctx: CaffeNodeContext) -> tuple[int, tuple[int, ...]] | None:
    """The non-negative softmax axis and the input shape, or None after a problem."""
    shape = ctx.static_shape(0)
    if shape is None:
        ctx.problem("dynamic-shape", "the Softmax input has no known rank", "export with fixed shapes")
        return None
    return int(ctx.attr("axis")) % len(shape), shape


def _write_softmax(ctx: CaffeNodeContext, axis: int) -> None:
    layer = ctx.add_layer("Softmax")
    layer.softmax_param.axis = axis


@CAFFE_LAYERS.register("Softmax", since=13)
def convert_softmax(ctx: CaffeNodeContext) -> None:
    """Softmax along axis"""
    found = _softmax_axis(ctx)
    if found is not None:
        _write_softmax(ctx, found[0])


@CAFFE_LAYERS.register("Softmax", since=1)
def convert_flattening_softmax(ctx: CaffeNodeContext) -> None:
    """Softmax over the axes from axis together (ONNX before opset 13): Reshape, Softmax, Reshape"""
    found = _softmax_axis(ctx)
    if found is None:
        return
    axis, shape = found
    if all(d == 1 for d in shape[axis + 1 :]):
        _write_softmax(ctx, axis)
        return
    view = AxisView.over(shape, axis, len(shape) - 1)
    flat = to_view(ctx, ctx.bottom(ctx.node.inputs[0]), view)
    layer = ctx.add_layer("Softmax", [flat], [None])
    layer.softmax_param.axis = 2
    from_view(ctx, str(layer.top[0]), view, ctx.node.outputs[0])


def _log_softmax_axes(ctx: CaffeNodeContext) -> AxisView | None:
    """The axes LogSoftmax normalizes over (one axis; from ``axis`` on before opset 13) as a view."""
    found = _softmax_axis(ctx)
    if found is None:
        return None
    axis, shape = found
    return AxisView.over(shape, axis, axis if ctx.opset >= 13 else len(shape) - 1)


@CAFFE_LAYERS.register("LogSoftmax")
def convert_log_softmax(ctx: CaffeNodeContext) -> None:
    """z = x - max(x), z - log(sum(exp(z))) over the axis: Pooling MAX, Convolution sum, Exp, Log"""
    view = _log_softmax_axes(ctx)
    if view is None:
        return
    data = to_view(ctx, ctx.bottom(ctx.node.inputs[0]), view)
    shifted = difference(ctx, data, view_spread(ctx, view_max(ctx, data, view, "max"), view, "max_spread"), "shift")
    exponent = str(ctx.add_layer("Exp", [shifted], [None], role="exp").top[0])
    log_sum = str(ctx.add_layer("Log", [view_sum(ctx, exponent, view, "sum")], [None], role="log").top[0])
    result = difference(ctx, shifted, view_spread(ctx, log_sum, view, "log_spread"), "normalize")
    from_view(ctx, result, view, ctx.node.outputs[0])
    ctx.problem(
        "log-softmax",
        "LogSoftmax written as x - max (a MAX Pooling over the axis, copied back by a Deconvolution of ones), "
        "Exp, a Convolution summing, Log, and the difference (exact, as onnxruntime computes it)",
        severity="warning",
    )


# --- element-wise functions with a layer of their own, or an exact composition of layers -------


@CAFFE_LAYERS.register("Selu")
def convert_selu(ctx: CaffeNodeContext) -> None:
    """ELU(alpha) then Power(scale = gamma): gamma * elu(x)"""
    elu = ctx.add_layer("ELU", outputs=[None], in_place=True)
    elu.elu_param.alpha = float(ctx.attr("alpha"))
    _power(ctx, "gamma", str(elu.top[0]), float(ctx.attr("gamma")), output=ctx.node.outputs[0])


def _hard_sigmoid(ctx: CaffeNodeContext, alpha: float, beta: float, output: ir.Value | None) -> str:
    """``max(0, min(1, alpha * x + beta))``: Power, then the exact clip layers."""
    line = _power(ctx, "line", ctx.bottom(ctx.node.inputs[0]), alpha, beta)
    return clip_layers(ctx, line, 0.0, 1.0, output)[0]


@CAFFE_LAYERS.register("HardSigmoid")
def convert_hard_sigmoid(ctx: CaffeNodeContext) -> None:
    """Power(alpha, beta), then ReLU and min(., 1) as -max(-y, -1) (Power, Eltwise MAX)"""
    _hard_sigmoid(ctx, float(ctx.attr("alpha")), float(ctx.attr("beta")), ctx.node.outputs[0])


@CAFFE_LAYERS.register("HardSwish")
def convert_hard_swish(ctx: CaffeNodeContext) -> None:
    """x * HardSigmoid(1/6, 1/2)(x) (Eltwise PROD)"""
    gate = _hard_sigmoid(ctx, 1.0 / 6.0, 0.5, None)
    product(ctx, [ctx.bottom(ctx.node.inputs[0]), gate], output=ctx.node.outputs[0])


@CAFFE_LAYERS.register("Softsign")
def convert_softsign(ctx: CaffeNodeContext) -> None:
    """x * (1 + abs(x))^-1: AbsVal, Power(shift 1, power -1), Eltwise PROD"""
    data = ctx.bottom(ctx.node.inputs[0])
    magnitude = str(ctx.add_layer("AbsVal", [data], [None], role="abs").top[0])
    inverse = _power(ctx, "inverse", magnitude, shift=1.0, power=-1.0)
    product(ctx, [data, inverse], output=ctx.node.outputs[0])


@CAFFE_LAYERS.register("Mish")
def convert_mish(ctx: CaffeNodeContext) -> None:
    """x * tanh(softplus(x)): BNLL, TanH, Eltwise PROD"""
    data = ctx.bottom(ctx.node.inputs[0])
    softplus = str(ctx.add_layer("BNLL", [data], [None], role="softplus").top[0])
    gate = str(ctx.add_layer("TanH", [softplus], [None], role="tanh").top[0])
    product(ctx, [data, gate], output=ctx.node.outputs[0])


_GELU_CUBIC = 0.044715
_GELU_SCALE = math.sqrt(2.0 / math.pi)


@CAFFE_LAYERS.register("Gelu")
def convert_gelu(ctx: CaffeNodeContext) -> None:
    """approximate='tanh': x * (1/2 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)) / 2)"""
    if str(ctx.attr("approximate")) != "tanh":
        ctx.problem(
            "no-caffe-form",
            "Gelu (exact, through erf): Caffe has no erf, and no composition of its layers computes it exactly",
            "use GELU(approximate='tanh') in the source model (a different function, within 5e-4 of it), "
            "which Caffe computes exactly",
        )
        return
    data = ctx.bottom(ctx.node.inputs[0])
    cube = product(ctx, [data, data, data], role="cube")
    inner = ctx.add_layer("Eltwise", [data, cube], [None], role="inner")
    inner.eltwise_param.operation = caffe_pb2.EltwiseParameter.SUM
    inner.eltwise_param.coeff.extend([_GELU_SCALE, _GELU_SCALE * _GELU_CUBIC])
    gate = str(ctx.add_layer("TanH", [inner.top[0]], [None], role="tanh").top[0])
    half = _power(ctx, "half", gate, 0.5, 0.5)
    product(ctx, [data, half], output=ctx.node.outputs[0])


@CAFFE_LAYERS.register("Erf")
def convert_erf(ctx: CaffeNodeContext) -> None:
    """none: Caffe has no erf and no exact composition of its layers"""
    ctx.problem(
        "no-caffe-form",
        "Erf: Caffe has no erf, and no composition of its layers computes it exactly",
        "replace erf-based GELU with GELU(approximate='tanh') in the source model, or keep this part out of Caffe",
    )
