"""Element-wise arithmetic -> Eltwise, Scale or Power layers.

* Two (or more) computed tensors of the same shape: ``Add``/``Sum`` -> Eltwise
  SUM, ``Sub`` -> Eltwise SUM with coefficients ``[1, -1]`` (``a + (-1)*b`` equals
  ``a - b`` exactly), ``Mul`` -> Eltwise PROD, ``Max`` -> Eltwise MAX.
* A tensor and a constant that varies along a contiguous run of axes (a
  per-channel scale or bias, a bias along the last axis) -> Scale over those
  axes: ``Mul`` stores the constant as the scale, ``Add``/``Sub`` store ones as
  the scale and the (negated) constant as the bias (``bias_term``). Scale is
  used for biases because OpenCV's Caffe importer has no Bias layer.
* A computed tensor times a smaller computed one that varies along a
  contiguous run of its axes (squeeze-and-excitation: ``x * s`` with ``s`` of
  shape ``(N, C, 1, 1)``) -> Scale with two bottoms; ``s`` is first reshaped to
  exactly those axes (``(C,)`` or ``(N, C)``), as BVLC Caffe requires.
* A tensor and a single constant -> Power, ``y = (shift + scale * x) ^ power``:
  ``x*c``, ``x+c``, ``x-c``, ``c-x``, ``x/c`` (scale ``1/c``, within one rounding
  of the division), ``Pow(x, p)``, ``Sqrt``, ``Neg``, ``Reciprocal``.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ...formats import caffe_pb2
from .net import CAFFE_LAYERS, CaffeNet

_ELTWISE = {
    "Add": caffe_pb2.EltwiseParameter.SUM,
    "Sum": caffe_pb2.EltwiseParameter.SUM,
    "Sub": caffe_pb2.EltwiseParameter.SUM,
    "Mul": caffe_pb2.EltwiseParameter.PROD,
    "Max": caffe_pb2.EltwiseParameter.MAX,
}


def _power(
    node: ir.Node, net: CaffeNet, data: ir.Value, power: float = 1.0, scale: float = 1.0, shift: float = 0.0
) -> None:
    layer = net.add_layer(node, "Power", [net.bottom(node, data)], in_place=True)
    if power != 1.0:
        layer.power_param.power = power
    if scale != 1.0:
        layer.power_param.scale = scale
    if shift != 0.0:
        layer.power_param.shift = shift


def scale_axes(data_shape: tuple[int, ...], const_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """``(axis, num_axes)`` of the run of axes a constant varies along, aligned to the
    right of the data as ONNX broadcasting does; None if it would enlarge the data."""
    if len(const_shape) > len(data_shape):
        return None
    aligned = (1,) * (len(data_shape) - len(const_shape)) + tuple(const_shape)
    if any(c not in (1, d) for c, d in zip(aligned, data_shape)):
        return None
    varying = [axis for axis, c in enumerate(aligned) if c != 1]
    if not varying:
        return 0, 0
    return varying[0], varying[-1] - varying[0] + 1


def _with_constant(node: ir.Node, net: CaffeNet, data: ir.Value, const: np.ndarray, const_first: bool) -> None:
    op = node.op_type
    if const.size == 1:
        value = float(const.reshape(()))
        if op == "Mul":
            _power(node, net, data, scale=value)
        elif op == "Add":
            _power(node, net, data, shift=value)
        elif op == "Sub" and const_first:
            _power(node, net, data, scale=-1.0, shift=value)
        elif op == "Sub":
            _power(node, net, data, shift=-value)
        elif op == "Div" and not const_first and value != 0.0:
            _power(node, net, data, scale=float(np.float32(1.0) / np.float32(value)))
        elif op == "Pow" and not const_first:
            _power(node, net, data, power=value)
        else:
            net.problem(
                node,
                "constant-operand",
                f"{op} with a constant {'first' if const_first else 'second'} operand has no Power form",
                "rewrite it as a multiplication or addition in the source model",
            )
        return
    shape = net.shape(data)
    axes = scale_axes(shape, const.shape) if shape is not None else None
    if op not in ("Mul", "Add", "Sub") or (op == "Sub" and const_first) or axes is None:
        net.problem(
            node,
            "broadcast",
            f"{op} of a tensor {shape} and a constant {const.shape}; Caffe scales or shifts along contiguous axes",
            "use a per-channel (C,1,1) constant, or fold it into the neighbouring convolution",
        )
        return
    axis, num_axes = axes
    aligned = const.reshape((1,) * (len(shape) - const.ndim) + const.shape)
    blob = np.broadcast_to(aligned, shape)[
        (0,) * axis + (slice(None),) * num_axes + (0,) * (len(shape) - axis - num_axes)
    ]
    const_input = 0 if const_first else 1
    if op == "Mul":
        weights, weight_inputs = [blob], [const_input]
    else:
        weights = [np.ones(blob.shape, np.float32), -blob if op == "Sub" else blob]
        weight_inputs = [None, const_input]
    layer = net.add_layer(
        node, "Scale", [net.bottom(node, data)], weights=weights, weight_inputs=weight_inputs, in_place=True
    )
    if axis != 1:
        layer.scale_param.axis = axis
    if num_axes != 1:
        layer.scale_param.num_axes = num_axes
    layer.scale_param.bias_term = op != "Mul"


def _broadcast_scale(node: ir.Node, net: CaffeNet) -> bool:
    """``x * s`` with a computed ``s`` broadcast over some axes of ``x`` as a Scale
    layer with two bottoms; False (nothing written) when the shapes do not allow it."""
    output = net.shape(node.outputs[0])
    large, small = sorted(node.inputs, key=lambda value: net.shape(value) != output)
    large_shape, small_shape = net.shape(large), net.shape(small)
    axes = scale_axes(large_shape, small_shape) if large_shape == output else None
    if axes is None or axes[1] == 0:
        return False
    axis, num_axes = axes
    factor = net.bottom(node, small)
    if small_shape != large_shape[axis : axis + num_axes]:
        reshape = net.add_layer(node, "Reshape", [factor], [None], role="factor")
        reshape.reshape_param.shape.dim.extend(large_shape[axis : axis + num_axes])
        factor = reshape.top[0]
    layer = net.add_layer(node, "Scale", [net.bottom(node, large), factor])
    if axis != 1:
        layer.scale_param.axis = axis
    return True


@CAFFE_LAYERS.register("Add", "Sub", "Mul", "Div", "Max", "Sum", "Pow")
def convert_arithmetic(node: ir.Node, net: CaffeNet) -> None:
    """Eltwise SUM/PROD/MAX; Scale with a per-axis constant; Power with a scalar constant"""
    constants = [net.constant(value) for value in node.inputs]
    computed = [value for value, const in zip(node.inputs, constants) if const is None]
    if len(node.inputs) == 2 and len(computed) == 1:
        const_first = constants[0] is not None
        _with_constant(node, net, computed[0], constants[0] if const_first else constants[1], const_first)
        return
    if len(computed) != len(node.inputs) or node.op_type not in _ELTWISE:
        net.problem(
            node,
            "unsupported-op",
            f"{node.op_type} of {len(computed)} computed and {len(node.inputs) - len(computed)} constant inputs",
            "fold constant arithmetic with simplify; Caffe has Eltwise SUM, PROD and MAX",
        )
        return
    shapes = {net.shape(value) for value in node.inputs}
    if node.op_type == "Mul" and len(shapes) == 2 and None not in shapes and _broadcast_scale(node, net):
        return
    if len(shapes) != 1 or None in shapes:
        net.problem(
            node,
            "broadcast",
            f"{node.op_type} of tensors with shapes {sorted(map(str, shapes))}; Caffe's Eltwise needs equal shapes",
            "expand the smaller operand in the source model (e.g. x * s.expand_as(x))",
        )
        return
    if len(node.inputs) == 1:
        net.alias(node, node.outputs[0], node.inputs[0])
        return
    layer = net.add_layer(node, "Eltwise", [net.bottom(node, value) for value in node.inputs])
    layer.eltwise_param.operation = _ELTWISE[node.op_type]
    if node.op_type == "Sub":
        layer.eltwise_param.coeff.extend([1.0, -1.0])


@CAFFE_LAYERS.register("Sqrt", "Neg", "Reciprocal")
def convert_power(node: ir.Node, net: CaffeNet) -> None:
    """Power"""
    power, scale = {"Sqrt": (0.5, 1.0), "Neg": (1.0, -1.0), "Reciprocal": (-1.0, 1.0)}[node.op_type]
    _power(node, net, node.inputs[0], power=power, scale=scale)
