"""Activations and softmax: ONNX element-wise non-linearities -> Caffe layers.

* ``Relu`` -> ReLU; ``LeakyRelu(alpha)`` -> ReLU with ``negative_slope = alpha``.
* ``PRelu(x, slope)`` -> PReLU: Caffe keeps one slope per channel (axis 1) or one
  shared slope (``channel_shared``, a 0-d blob as BVLC Caffe expects).
* ``Elu``, ``Sigmoid``, ``Tanh`` -> ELU, Sigmoid, TanH.
* ``Clip(lo, hi)`` has no layer both BVLC Caffe and OpenCV run (BVLC's Clip is
  unknown to OpenCV, OpenCV's ReLU6 to BVLC). It is written exactly with layers
  both know: ``max(x, lo)`` is ReLU when ``lo == 0``, else Eltwise MAX of ``x``
  and a constant blob ``c = 0*x + lo`` (a Power layer with ``scale = 0``);
  ``min(y, hi) = -max(-y, -hi)`` with Power ``scale = -1`` for the negations.
  Every step is exact in float32 (negation and ``0*x + c`` round nothing). The
  opencv dialect writes ``Clip(0, 6)`` as one ReLU6.
* ``Softmax(axis)`` -> Softmax; before opset 13 ONNX flattened the input at
  ``axis``, which equals Caffe's softmax only when ``axis`` is the last non-unit
  dimension.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from ...formats import caffe_pb2
from .net import CAFFE_LAYERS, CaffeNodeContext


@CAFFE_LAYERS.register("Relu")
def convert_relu(ctx: CaffeNodeContext) -> None:
    """ReLU"""
    ctx.add_layer("ReLU", in_place=True)


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


@CAFFE_LAYERS.register("Sigmoid")
def convert_sigmoid(ctx: CaffeNodeContext) -> None:
    """Sigmoid"""
    ctx.add_layer("Sigmoid", in_place=True)


@CAFFE_LAYERS.register("Tanh")
def convert_tanh(ctx: CaffeNodeContext) -> None:
    """TanH"""
    ctx.add_layer("TanH", in_place=True)


@CAFFE_LAYERS.register("PRelu")
def convert_prelu(ctx: CaffeNodeContext) -> None:
    """PReLU, per channel (axis 1) or shared"""
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
    if aligned is None or aligned[1] != channels or math.prod(aligned) != channels:
        ctx.problem(
            "prelu-slope",
            f"PRelu slope of shape {slope.shape} on input {shape} is neither per channel (axis 1) nor shared",
            "use one slope per channel (nn.PReLU(num_channels)) or a single shared slope",
        )
        return
    ctx.add_layer("PReLU", weights=[slope.reshape(channels)], weight_inputs=[1], in_place=True)


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
    ctx: CaffeNodeContext, role: str, bottom: str, scale: float, shift: float = 0.0, output: ir.Value | None = None
) -> str:
    layer = ctx.add_layer("Power", [bottom], [output], role=role)
    layer.power_param.scale = scale
    if shift:
        layer.power_param.shift = shift
    return str(layer.top[0])


def _eltwise_max(ctx: CaffeNodeContext, role: str, bottoms: list[str], output: ir.Value | None = None) -> str:
    layer = ctx.add_layer("Eltwise", bottoms, [output], role=role)
    layer.eltwise_param.operation = caffe_pb2.EltwiseParameter.MAX
    return str(layer.top[0])


def _clip_layers(ctx: CaffeNodeContext, low: float, high: float) -> int:
    """Write ``max(x, low)`` then ``min(., high)`` for the finite bounds; returns the layer count."""
    data = ctx.bottom(ctx.node.inputs[0])
    output = ctx.node.outputs[0]
    has_high = math.isfinite(high)
    written = 0
    if low == 0.0:
        data = ctx.add_layer("ReLU", [data], [None if has_high else output]).top[0]
        written += 1
    elif math.isfinite(low):
        floor = _power(ctx, "low", data, 0.0, low)
        data = _eltwise_max(ctx, "max_low", [data, floor], None if has_high else output)
        written += 2
    if has_high:
        negated = _power(ctx, "neg", data, -1.0)
        ceiling = _power(ctx, "high", data, 0.0, -high)
        _power(ctx, "min_high", _eltwise_max(ctx, "max_high", [negated, ceiling]), -1.0, output=output)
        written += 4
    return written


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
    written = _clip_layers(ctx, low, high)
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
    """Softmax along axis, when the axes after it (which ONNX flattens into it) have size 1"""
    found = _softmax_axis(ctx)
    if found is None:
        return
    axis, shape = found
    if any(d != 1 for d in shape[axis + 1 :]):
        ctx.problem(
            "softmax-axis",
            f"Softmax before opset 13 normalizes over all axes from {axis} of {shape}; Caffe over one axis",
            "re-export with opset 13 or later",
        )
        return
    _write_softmax(ctx, axis)
