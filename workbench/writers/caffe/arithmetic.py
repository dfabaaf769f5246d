"""Element-wise arithmetic -> Power, Scale or Eltwise layers.

In order of preference, for ``Add``, ``Sub``, ``Mul``, ``Div``, ``Max``, ``Min``,
``Sum``, ``Mean`` and ``Pow``:

* **A tensor and a single constant** -> Power, ``y = (shift + scale * x) ^ power``:
  ``x + c``, ``x - c``, ``c - x``, ``x * c``, ``x / c`` (scale ``1/c``, within one
  rounding of the division), ``c / x = (x * (1/c)) ^ -1``, ``x ^ c``, and the mean of
  ``x`` and ``c``, ``x/2 + c/2`` (halving rounds nothing). ``Max(x, c)`` and ``Min(x, c)``
  are the exact clip layers of ``activation``.
* **A tensor and a constant that varies along a contiguous run of axes** (a
  per-channel scale or bias, a bias along the last axis, a full-shape constant)
  -> Scale over those axes: ``x * c`` stores ``c``, ``x + c`` and ``x - c`` store
  ones and ``±c`` as the bias (OpenCV's Caffe importer has no Bias layer), ``c - x``
  stores ``-1`` and ``c``, ``x / c`` stores ``1/c``, ``c / x`` is a Power ``x^-1``
  then the Scale ``c``.
* **A computed tensor times a smaller computed one that varies along a contiguous
  run of its axes** (squeeze-and-excitation: ``x * s``, ``s`` of shape
  ``(N, C, 1, 1)``) -> Scale with two bottoms; ``s`` is first reshaped to exactly
  those axes, as BVLC Caffe requires.
* **Anything else** -> Eltwise over operands of the output's shape: a computed
  operand that broadcasts is Reshaped to the output's rank and copied along each
  broadcast axis by a Concat of itself (copies are exact; BVLC's Tile would do the
  same, but OpenCV's Caffe importer cannot read it); a constant operand becomes a
  constant blob already broadcast (see ``net``). Then ``Add``/``Sum`` -> SUM,
  ``Sub`` -> SUM with coefficients ``[1, -1]``, ``Mul`` -> PROD, ``Div`` -> PROD
  with the divisor's reciprocal (Power ``-1``; within a rounding of the
  division), ``Max`` -> MAX, ``Min(a, b) = -max(-a, -b)`` (negations are exact),
  ``Mean`` -> SUM then Power ``scale = 1/n``.

``Sqrt``, ``Neg`` and ``Reciprocal`` are Power layers.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from ...formats import caffe_pb2
from ...graph.converter import constant_value
from ...graph.shapes import static_shape
from .activation import clip_layers
from .net import CAFFE_LAYERS, CaffeNodeContext
from .normalization import within_channel_lrn
from .views import axes_block, scale_axes

_SUM = caffe_pb2.EltwiseParameter.SUM
_PROD = caffe_pb2.EltwiseParameter.PROD
_MAX = caffe_pb2.EltwiseParameter.MAX


def _power(
    ctx: CaffeNodeContext,
    bottom: str,
    power: float = 1.0,
    scale: float = 1.0,
    shift: float = 0.0,
    *,
    output: ir.Value | None = None,
    role: str | None = None,
    in_place: bool = True,
) -> str:
    layer = ctx.add_layer("Power", [bottom], [output], role=role, in_place=in_place)
    if power != 1.0:
        layer.power_param.power = power
    if scale != 1.0:
        layer.power_param.scale = scale
    if shift != 0.0:
        layer.power_param.shift = shift
    return str(layer.top[0])


def _reciprocal(c: float) -> float:
    """``1/c`` rounded to float32, as the division's divisor is."""
    return float(np.float32(1.0) / np.float32(c))


def power_form(op: str, c: float, const_first: bool) -> tuple[float, float, float] | None:
    """``(power, scale, shift)`` with ``(shift + scale * x) ^ power`` equal to ``x op c``
    (``c op x`` when ``const_first``), or None when Power cannot express it."""
    if op == "Mul":
        return 1.0, c, 0.0
    if op in ("Add", "Sum"):
        return 1.0, 1.0, c
    if op == "Mean":
        return 1.0, 0.5, 0.5 * c
    if op == "Div" and c != 0.0:
        return (1.0, _reciprocal(c), 0.0) if not const_first else (-1.0, _reciprocal(c), 0.0)
    forms = {("Sub", True): (1.0, -1.0, c), ("Sub", False): (1.0, 1.0, -c), ("Pow", False): (c, 1.0, 0.0)}
    return forms.get((op, const_first))


def _with_scalar(ctx: CaffeNodeContext, data: ir.Value, value: float, const_first: bool) -> bool:
    op = ctx.node.op_type
    if op in ("Max", "Min"):
        low, high = (value, math.inf) if op == "Max" else (-math.inf, value)
        clip_layers(ctx, ctx.bottom(data), low, high, ctx.node.outputs[0])
        return True
    form = power_form(op, value, const_first)
    if form is None:
        return False
    power, scale, shift = form
    _power(ctx, ctx.bottom(data), power=power, scale=scale, shift=shift, output=ctx.node.outputs[0])
    return True


def _scale_and_bias(op: str, blob: np.ndarray, const_first: bool) -> tuple[np.ndarray | None, np.ndarray | None] | None:
    """The Scale layer's ``(scale, bias)`` equal to ``x op c`` over the constant's axes, or None."""
    ones = np.ones(blob.shape, np.float32)
    if op == "Mul":
        return blob, None
    if op in ("Add", "Sum"):
        return None, blob
    if op == "Sub":
        return (-ones, blob) if const_first else (None, -blob)
    if op == "Div" and not const_first and blob.all():
        return (ones / blob).astype(np.float32), None
    if op == "Div" and const_first:
        return blob, None  # applied to x^-1
    return None


def _with_constant(ctx: CaffeNodeContext, data: ir.Value, const: np.ndarray, const_first: bool) -> bool:
    """Write ``x op c`` as a Power or a Scale; False (nothing written) when neither fits."""
    if const.size == 1 and static_shape(ctx.node.outputs[0]) == static_shape(data):
        return _with_scalar(ctx, data, float(const.reshape(())), const_first)
    op = ctx.node.op_type
    shape = static_shape(data)
    axes = scale_axes(shape, const.shape) if shape is not None else None
    if shape is None or axes is None or axes[1] == 0:
        return False
    axis, num_axes = axes
    blob = axes_block(const, shape, axis, num_axes)
    found = _scale_and_bias(op, blob, const_first)
    if found is None:
        return False
    bottom = ctx.bottom(data)
    if op == "Div" and const_first:
        bottom = _power(ctx, bottom, power=-1.0, role="reciprocal", in_place=False)
    scale, bias = found
    index = 0 if const_first else 1
    ctx.add_scale(bottom, scale, bias, axis=axis, weight_inputs=[index] if bias is None else [None, index])
    return True


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
    aligned = (1,) * (len(large_shape) - len(small_shape)) + small_shape
    if aligned[axis : axis + num_axes] != large_shape[axis : axis + num_axes]:
        return False  # s repeats along an axis inside its run: no two-bottom Scale form
    factor = ctx.bottom(small)
    if small_shape != large_shape[axis : axis + num_axes]:
        reshape = ctx.add_layer("Reshape", [factor], [None], role="factor")
        reshape.reshape_param.shape.dim.extend(large_shape[axis : axis + num_axes])
        factor = reshape.top[0]
    layer = ctx.add_layer("Scale", [ctx.bottom(large), factor])
    if axis != 1:
        layer.scale_param.axis = axis
    return True


@CAFFE_LAYERS.register("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow")
def convert_arithmetic(ctx: CaffeNodeContext) -> None:
    """Power (a scalar constant), Scale (a constant along some axes, a broadcast product), else Eltwise"""
    inputs = list(ctx.node.inputs)
    constants = [constant_value(value) for value in inputs]
    computed = [value for value, const in zip(inputs, constants) if const is None]
    if not computed:
        ctx.problem("constant-input", f"{ctx.node.op_type} of constants only", "fold constant arithmetic with simplify")
        return
    if _with_one_constant(ctx, constants, computed):
        return
    if ctx.node.op_type == "Pow":
        ctx.problem(
            "no-caffe-form",
            "Pow with a computed or non-scalar exponent; Caffe's Power raises to one constant power",
            "use a constant scalar exponent in the source model",
        )
        return
    if _is_square(ctx.node) and within_channel_lrn(ctx):
        return
    if _is_broadcast_product(ctx.node, computed) and _broadcast_scale(ctx):
        return
    _eltwise(ctx, inputs, constants)


def _with_one_constant(
    ctx: CaffeNodeContext, constants: list[np.ndarray | None], computed: list[ir.Value | None]
) -> bool:
    """``x op c`` of a binary node with one constant operand as a Power or a Scale
    (``_with_constant``); False (nothing written) for other nodes or when neither fits."""
    if len(constants) != 2 or len(computed) != 1 or computed[0] is None:
        return False
    const = next(c for c in constants if c is not None)
    return _with_constant(ctx, computed[0], const, constants[0] is not None)


def _is_square(node: ir.Node) -> bool:
    """``x * x``: the first node of the Caffe reader's expansion of LRN within channels."""
    return node.op_type == "Mul" and len(node.inputs) == 2 and node.inputs[0] is node.inputs[1]


def _is_broadcast_product(node: ir.Node, computed: list[ir.Value | None]) -> bool:
    """``a * b`` of two computed tensors of different shapes (one broadcast over the other)."""
    shapes = {static_shape(value) for value in computed}
    return node.op_type == "Mul" and len(computed) == len(node.inputs) == 2 and len(shapes) > 1


def _expand(ctx: CaffeNodeContext, value: ir.Value | None, const: np.ndarray | None, shape: tuple[int, ...]) -> str:
    """A blob of ``shape`` holding the operand broadcast: a constant blob, or copies by Concat."""
    name = value.name if value is not None and value.name else "operand"
    if const is not None:
        index = ctx.node.inputs.index(value) if value in ctx.node.inputs else None
        broadcast = np.ascontiguousarray(np.broadcast_to(const.astype(np.float32), shape))
        return ctx.net.constant_blob(ctx, broadcast, f"{name}_broadcast", None, index) or f"missing:{name}"
    blob = ctx.bottom(value)
    own = static_shape(value)
    assert own is not None  # checked by _eltwise
    aligned = (1,) * (len(shape) - len(own)) + own
    if aligned != own:
        reshape = ctx.add_layer("Reshape", [blob], [None], role=f"{name}/rank")
        reshape.reshape_param.shape.dim.extend(aligned)
        blob = str(reshape.top[0])
    for axis, (have, want) in enumerate(zip(aligned, shape)):
        if have != want:
            copies = ctx.add_layer("Concat", [blob] * want, [None], role=f"{name}/tile_axis{axis}")
            copies.concat_param.axis = axis
            blob = str(copies.top[0])
    return blob


def _eltwise(ctx: CaffeNodeContext, inputs: list[ir.Value | None], constants: list[np.ndarray | None]) -> None:
    """Operands expanded to the output's shape, combined by Eltwise (and Power for Div, Min, Mean)."""
    op, output = ctx.node.op_type, ctx.node.outputs[0]
    shape = static_shape(output)
    found = [static_shape(value) for value, const in zip(inputs, constants) if const is None]
    shapes = [own for own in found if own is not None]
    if shape is None or len(shapes) != len(found):
        ctx.problem("dynamic-shape", f"{op} needs known shapes to broadcast", "export with fixed shapes")
        return
    if len(inputs) == 1:
        ctx.alias()
        return
    _combine(ctx, op, _eltwise_operands(ctx, op, inputs, constants, shape), output)
    if any(shape != own for own in shapes) or any(const is not None for const in constants):
        ctx.problem(
            "broadcast",
            f"{op} of operands {[list(s) for s in shapes]} broadcast to {list(shape)} by Concat copies "
            "(constants as constant blobs) before the Eltwise (exact)",
            severity="warning",
        )


def _eltwise_operands(
    ctx: CaffeNodeContext,
    op: str,
    inputs: list[ir.Value | None],
    constants: list[np.ndarray | None],
    shape: tuple[int, ...],
) -> list[str]:
    """The blobs Eltwise combines, each of the output's ``shape``: the operands broadcast
    (``_expand``), for Div the divisor as its reciprocal (``a / b = a * b^-1``: PROD), for
    Min every operand negated (``min(a, b) = -max(-a, -b)``: MAX)."""
    if op == "Div" and constants[1] is not None:
        constants = [constants[0], np.reciprocal(constants[1].astype(np.float32))]
    blobs = [_expand(ctx, value, const, shape) for value, const in zip(inputs, constants)]
    if op == "Div" and constants[1] is None:
        blobs[1] = _power(ctx, blobs[1], power=-1.0, role="reciprocal", in_place=False)
    if op == "Min":
        blobs = [_power(ctx, blob, scale=-1.0, role=f"negate{i}", in_place=False) for i, blob in enumerate(blobs)]
    return blobs


def _combine(ctx: CaffeNodeContext, op: str, blobs: list[str], output: ir.Value) -> None:
    operation = {"Mul": _PROD, "Div": _PROD, "Max": _MAX, "Min": _MAX}.get(op, _SUM)
    last = op not in ("Min", "Mean")
    layer = ctx.add_layer("Eltwise", blobs, [output if last else None])
    layer.eltwise_param.operation = operation
    if op == "Sub":
        layer.eltwise_param.coeff.extend([1.0, -1.0])
    if op == "Min":
        _power(ctx, str(layer.top[0]), scale=-1.0, output=output, role="negate")
    elif op == "Mean":
        _power(ctx, str(layer.top[0]), scale=1.0 / len(blobs), output=output, role="mean")


@CAFFE_LAYERS.register("Sqrt", "Neg", "Reciprocal")
def convert_power(ctx: CaffeNodeContext) -> None:
    """Power"""
    power, scale = {"Sqrt": (0.5, 1.0), "Neg": (1.0, -1.0), "Reciprocal": (-1.0, 1.0)}[ctx.node.op_type]
    _power(ctx, ctx.bottom(ctx.node.inputs[0]), power=power, scale=scale, output=ctx.node.outputs[0])
