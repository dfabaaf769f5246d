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
from ...graph.shapes import constant, static_shape
from .net import CAFFE_LAYERS, CaffeNodeContext

_ELTWISE = {
    "Add": caffe_pb2.EltwiseParameter.SUM,
    "Sum": caffe_pb2.EltwiseParameter.SUM,
    "Sub": caffe_pb2.EltwiseParameter.SUM,
    "Mul": caffe_pb2.EltwiseParameter.PROD,
    "Max": caffe_pb2.EltwiseParameter.MAX,
}


def _power(
    ctx: CaffeNodeContext, data: ir.Value | None, power: float = 1.0, scale: float = 1.0, shift: float = 0.0
) -> None:
    layer = ctx.add_layer("Power", [ctx.bottom(data)], in_place=True)
    if power != 1.0:
        layer.power_param.power = power
    if scale != 1.0:
        layer.power_param.scale = scale
    if shift != 0.0:
        layer.power_param.shift = shift


def power_form(op: str, c: float, const_first: bool) -> tuple[float, float, float] | None:
    """``(power, scale, shift)`` with ``(shift + scale * x) ^ power`` equal to ``x op c``
    (``c op x`` when ``const_first``), or None when Power cannot express it."""
    if op == "Mul":
        return 1.0, c, 0.0
    if op == "Add":
        return 1.0, 1.0, c
    if op == "Div" and not const_first and c != 0.0:
        return 1.0, float(np.float32(1.0) / np.float32(c)), 0.0
    forms = {("Sub", True): (1.0, -1.0, c), ("Sub", False): (1.0, 1.0, -c), ("Pow", False): (c, 1.0, 0.0)}
    return forms.get((op, const_first))


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


def _with_scalar(ctx: CaffeNodeContext, data: ir.Value | None, value: float, const_first: bool) -> None:
    form = power_form(ctx.node.op_type, value, const_first)
    if form is None:
        ctx.problem(
            "constant-operand",
            f"{ctx.node.op_type} with a constant {'first' if const_first else 'second'} operand has no Power form",
            "rewrite it as a multiplication or addition in the source model",
        )
        return
    power, scale, shift = form
    _power(ctx, data, power=power, scale=scale, shift=shift)


def _with_constant(ctx: CaffeNodeContext, data: ir.Value | None, const: np.ndarray, const_first: bool) -> None:
    if const.size == 1:
        _with_scalar(ctx, data, float(const.reshape(())), const_first)
        return
    op = ctx.node.op_type
    shape = static_shape(data)
    axes = scale_axes(shape, const.shape) if shape is not None else None
    if shape is None or axes is None or op not in ("Mul", "Add", "Sub") or (op == "Sub" and const_first):
        ctx.problem(
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
    weight_inputs: list[int | None]
    if op == "Mul":
        weights, weight_inputs = [blob], [const_input]
    else:
        weights = [np.ones(blob.shape, np.float32), -blob if op == "Sub" else blob]
        weight_inputs = [None, const_input]
    layer = ctx.add_layer("Scale", [ctx.bottom(data)], weights=weights, weight_inputs=weight_inputs, in_place=True)
    if axis != 1:
        layer.scale_param.axis = axis
    if num_axes != 1:
        layer.scale_param.num_axes = num_axes
    layer.scale_param.bias_term = op != "Mul"


def _broadcast_scale(ctx: CaffeNodeContext) -> bool:
    """``x * s`` with a computed ``s`` broadcast over some axes of ``x`` as a Scale
    layer with two bottoms; False (nothing written) when the shapes do not allow it."""
    output = static_shape(ctx.node.outputs[0])
    large, small = sorted(ctx.node.inputs, key=lambda value: static_shape(value) != output)
    large_shape, small_shape = static_shape(large), static_shape(small)
    if large_shape is None or small_shape is None or large_shape != output:
        return False
    axes = scale_axes(large_shape, small_shape)
    if axes is None or axes[1] == 0:
        return False
    axis, num_axes = axes
    factor = ctx.bottom(small)
    if small_shape != large_shape[axis : axis + num_axes]:
        reshape = ctx.add_layer("Reshape", [factor], [None], role="factor")
        reshape.reshape_param.shape.dim.extend(large_shape[axis : axis + num_axes])
        factor = reshape.top[0]
    layer = ctx.add_layer("Scale", [ctx.bottom(large), factor])
    if axis != 1:
        layer.scale_param.axis = axis
    return True


@CAFFE_LAYERS.register("Add", "Sub", "Mul", "Div", "Max", "Sum", "Pow")
def convert_arithmetic(ctx: CaffeNodeContext) -> None:
    """Eltwise SUM/PROD/MAX; Scale with a per-axis constant; Power with a scalar constant"""
    inputs = list(ctx.node.inputs)
    constants = [constant(value) for value in inputs]
    computed = [value for value, const in zip(inputs, constants) if const is None]
    if len(inputs) == 2 and len(computed) == 1:
        const_first = constants[0] is not None
        _with_constant(ctx, computed[0], next(c for c in constants if c is not None), const_first)
        return
    if len(computed) != len(inputs) or ctx.node.op_type not in _ELTWISE:
        ctx.problem(
            "unsupported-op",
            f"{ctx.node.op_type} of {len(computed)} computed and {len(inputs) - len(computed)} constant inputs",
            "fold constant arithmetic with simplify; Caffe has Eltwise SUM, PROD and MAX",
        )
        return
    _eltwise(ctx, inputs)


def _eltwise(ctx: CaffeNodeContext, inputs: list[ir.Value | None]) -> None:
    """Computed tensors: one Eltwise when their shapes agree, a two-bottom Scale for a broadcast product."""
    shapes = {static_shape(value) for value in inputs}
    if ctx.node.op_type == "Mul" and len(shapes) == 2 and None not in shapes and _broadcast_scale(ctx):
        return
    if len(shapes) != 1 or None in shapes:
        ctx.problem(
            "broadcast",
            f"{ctx.node.op_type} of tensors with shapes {sorted(map(str, shapes))}; Caffe's Eltwise needs equal shapes",
            "expand the smaller operand in the source model (e.g. x * s.expand_as(x))",
        )
        return
    if len(inputs) == 1:
        ctx.alias()
        return
    layer = ctx.add_layer("Eltwise", [ctx.bottom(value) for value in inputs])
    layer.eltwise_param.operation = _ELTWISE[ctx.node.op_type]
    if ctx.node.op_type == "Sub":
        layer.eltwise_param.coeff.extend([1.0, -1.0])


@CAFFE_LAYERS.register("Sqrt", "Neg", "Reciprocal")
def convert_power(ctx: CaffeNodeContext) -> None:
    """Power"""
    power, scale = {"Sqrt": (0.5, 1.0), "Neg": (1.0, -1.0), "Reciprocal": (-1.0, 1.0)}[ctx.node.op_type]
    _power(ctx, ctx.node.inputs[0], power=power, scale=scale)
