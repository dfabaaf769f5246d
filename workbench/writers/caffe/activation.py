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
from .net import CAFFE_LAYERS, CaffeNet


@CAFFE_LAYERS.register("Relu")
def convert_relu(node: ir.Node, net: CaffeNet) -> None:
    """ReLU"""
    net.add_layer(node, "ReLU", in_place=True)


@CAFFE_LAYERS.register("LeakyRelu")
def convert_leaky_relu(node: ir.Node, net: CaffeNet) -> None:
    """ReLU with negative_slope = alpha"""
    layer = net.add_layer(node, "ReLU", in_place=True)
    layer.relu_param.negative_slope = node.attributes.get_float("alpha", 0.01)


@CAFFE_LAYERS.register("Elu")
def convert_elu(node: ir.Node, net: CaffeNet) -> None:
    """ELU with alpha"""
    layer = net.add_layer(node, "ELU", in_place=True)
    layer.elu_param.alpha = node.attributes.get_float("alpha", 1.0)


@CAFFE_LAYERS.register("Sigmoid")
def convert_sigmoid(node: ir.Node, net: CaffeNet) -> None:
    """Sigmoid"""
    net.add_layer(node, "Sigmoid", in_place=True)


@CAFFE_LAYERS.register("Tanh")
def convert_tanh(node: ir.Node, net: CaffeNet) -> None:
    """TanH"""
    net.add_layer(node, "TanH", in_place=True)


@CAFFE_LAYERS.register("PRelu")
def convert_prelu(node: ir.Node, net: CaffeNet) -> None:
    """PReLU, per channel (axis 1) or shared"""
    slope = net.constant(node.inputs[1])
    shape = net.shape(node.inputs[0])
    if slope is None:
        net.problem(node, "prelu-slope", "the PRelu slope is not a constant", "make the slope a parameter")
        return
    if slope.size == 1:
        layer = net.add_layer(
            node, "PReLU", weights=[np.asarray(slope, np.float32).reshape(())], weight_inputs=[1], in_place=True
        )
        layer.prelu_param.channel_shared = True
        return
    channels = shape[1] if shape is not None and len(shape) >= 2 else None
    # the slope broadcasts against the input aligned to the right; per-channel means
    # its only non-unit dimension lands on axis 1
    aligned = (1,) * (len(shape) - slope.ndim) + slope.shape if shape and slope.ndim <= len(shape) else None
    if aligned is None or aligned[1] != channels or math.prod(aligned) != channels:
        net.problem(
            node,
            "prelu-slope",
            f"PRelu slope of shape {slope.shape} on input {shape} is neither per channel (axis 1) nor shared",
            "use one slope per channel (nn.PReLU(num_channels)) or a single shared slope",
        )
        return
    net.add_layer(node, "PReLU", weights=[slope.reshape(channels)], weight_inputs=[1], in_place=True)


def _clip_bounds(node: ir.Node, net: CaffeNet) -> tuple[float, float] | None:
    """(low, high) from the attributes (opset 6) or the constant inputs (opset 11+)."""
    if "min" in node.attributes or "max" in node.attributes:
        return node.attributes.get_float("min", -math.inf), node.attributes.get_float("max", math.inf)
    bounds = []
    for index, default in ((1, -math.inf), (2, math.inf)):
        value = node.inputs[index] if len(node.inputs) > index else None
        array = net.constant(value) if value is not None else np.float32(default)
        if array is None:
            net.problem(node, "clip-bounds", "Clip bounds are not constants", "use constant bounds")
            return None
        bounds.append(float(array))
    return bounds[0], bounds[1]


@CAFFE_LAYERS.register("Clip")
def convert_clip(node: ir.Node, net: CaffeNet) -> None:
    """ReLU6 (opencv dialect), else exact ReLU / Power / Eltwise MAX layers"""
    bounds = _clip_bounds(node, net)
    if bounds is None:
        return
    low, high = bounds
    if (low, high) == (0.0, 6.0) and net.dialect == "opencv":
        net.add_layer(node, "ReLU6", in_place=True)
        return
    data = net.bottom(node, node.inputs[0])
    written = 0

    def power(role: str, bottom: str, scale: float, shift: float = 0.0, output: ir.Value | None = None) -> str:
        layer = net.add_layer(node, "Power", [bottom], [output], role=role)
        layer.power_param.scale = scale
        if shift:
            layer.power_param.shift = shift
        return layer.top[0]

    def eltwise_max(role: str, bottoms: list[str], output: ir.Value | None = None) -> str:
        layer = net.add_layer(node, "Eltwise", bottoms, [output], role=role)
        layer.eltwise_param.operation = caffe_pb2.EltwiseParameter.MAX
        return layer.top[0]

    has_high = math.isfinite(high)
    if low == 0.0:
        data = net.add_layer(node, "ReLU", [data], [None if has_high else node.outputs[0]]).top[0]
        written += 1
    elif math.isfinite(low):
        floor = power("low", data, 0.0, low)
        data = eltwise_max("max_low", [data, floor], None if has_high else node.outputs[0])
        written += 2
    if has_high:
        negated = power("neg", data, -1.0)
        ceiling = power("high", data, 0.0, -high)
        data = power("min_high", eltwise_max("max_high", [negated, ceiling]), -1.0, output=node.outputs[0])
        written += 4
    if written == 0:
        net.alias(node, node.outputs[0], node.inputs[0])
        return
    if written > 1:
        hint = "; dialect='opencv' writes one ReLU6 layer" if (low, high) == (0.0, 6.0) else ""
        net.problem(
            node,
            "clip-expanded",
            f"Clip({low:g}, {high:g}) written as {written} layers both BVLC Caffe and OpenCV run (exact){hint}",
            severity="warning",
        )


@CAFFE_LAYERS.register("Softmax")
def convert_softmax(node: ir.Node, net: CaffeNet) -> None:
    """Softmax along axis"""
    shape = net.shape(node.inputs[0])
    default_axis = -1 if net.graph.opset_imports.get("", 13) >= 13 else 1
    axis = node.attributes.get_int("axis", default_axis)
    if shape is None:
        net.problem(node, "dynamic-shape", "the Softmax input has no known rank", "export with fixed shapes")
        return
    axis = axis % len(shape)
    if net.graph.opset_imports.get("", 13) < 13 and any(d != 1 for d in shape[axis + 1 :]):
        net.problem(
            node,
            "softmax-axis",
            f"Softmax before opset 13 normalizes over all axes from {axis} of {shape}; Caffe over one axis",
            "re-export with opset 13 or later",
        )
        return
    layer = net.add_layer(node, "Softmax")
    layer.softmax_param.axis = axis
