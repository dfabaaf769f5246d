"""Element-wise arithmetic -> ``route`` (add), ``varop``, ``batchnorm`` (per-channel constants).

Two computed tensors of one shape: ``Add``/``Sum`` is a ``route`` with ``addModel: 1``
(it zero-fills, then adds each named layer: exact), ``Sub``/``Mul``/``Div`` a
``varop`` of the previous layer with one named layer (``sub`` is previous minus
named). A computed tensor broadcast to a larger one is repeated first, exactly:
over channels by a 1x1 ``conv`` of ones, over H and W by a nearest ``upsample``
with strides H and W (a squeeze-and-excitation gate).

With a constant: a single value is a ``varop`` ``addConst``/``subConst``/
``subConstInv``/``mulConst``/``divConst``/``divConstInv``; one value per channel is a
``batchnorm`` with scale and bias (mean 0, var 1, eps 0: exactly ``scale * x +
bias``; a division by constants becomes a multiplication by their reciprocals,
1 ulp apart), or the bias of the ``conv``/``connect`` just before that has none. A
constant of any other shape has no MsnhNet layer and is reported.

Unary math maps to ``varop`` (abs, exp, log, sqrt, sin, cos, tan, asin, acos,
atan, sinh, cosh, ``pow`` with a constant exponent); ``Neg`` is ``mulConst -1`` and
``Reciprocal`` ``divConstInv 1``. MsnhNet's ``varop tanh`` computes tan, so Tanh is
an activation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .activation import varop
from .net import MSNHNET_LAYERS, MsnhLayer, MsnhNodeContext, canonical_dims

_CONST_OPS = {  # op -> (varop type for x op c, varop type for c op x)
    "Add": ("addConst", "addConst"),
    "Sub": ("subConst", "subConstInv"),
    "Mul": ("mulConst", "mulConst"),
    "Div": ("divConst", "divConstInv"),
}
_TENSOR_OPS = {"Sub": "sub", "Mul": "mul", "Div": "div"}
_UNARY = {
    "Abs": "abs",
    "Exp": "exp",
    "Log": "log",
    "Sqrt": "sqrt",
    "Sin": "sin",
    "Cos": "cos",
    "Tan": "tan",
    "Asin": "asin",
    "Acos": "acos",
    "Atan": "atan",
    "Sinh": "sinh",
    "Cosh": "cosh",
}


@MSNHNET_LAYERS.register("Add", "Sub", "Mul", "Div")
def convert_binary(ctx: MsnhNodeContext) -> None:
    """route addModel (Add), varop (Sub/Mul/Div), varop *Const (scalar), batchnorm (per-channel constant)"""
    constants = [ctx.const(0), ctx.const(1)]
    if constants[0] is not None and constants[1] is not None:
        ctx.problem("needs-simplify", "both operands are constants", "run simplify so the node folds away")
    elif constants[0] is None and constants[1] is None:
        _tensors(ctx, [0, 1])
    else:
        data = 0 if constants[1] is not None else 1
        constant = constants[1 - data]
        assert constant is not None
        _with_constant(ctx, data, np.asarray(constant, np.float32))


@MSNHNET_LAYERS.register("Sum")
def convert_sum(ctx: MsnhNodeContext) -> None:
    """route addModel 1"""
    if len(ctx.node.inputs) == 1:
        ctx.alias()
        return
    _tensors(ctx, list(range(len(ctx.node.inputs))))


def _tensors(ctx: MsnhNodeContext, indices: list[int]) -> None:
    target = ctx.output_shape(0)
    if target is None or any(d is None for d in target):
        ctx.problem("dynamic-shape", "element-wise op with unknown shapes", "export with a fixed input shape")
        return
    shape = tuple(int(d or 0) for d in target)
    dims = canonical_dims(shape)
    if ctx.node.op_type in ("Add", "Sum"):
        layers = [_operand(ctx, index, shape) for index in indices]
        if all(layer is not None for layer in layers):
            ctx.first_layer_allowed()
            ctx.add_layer("route", {"layers": layers, "addModel": 1}, dims)
        return
    other = _operand(ctx, 1, shape)
    first = _operand(ctx, 0, shape) if other is not None else None
    if other is None or first is None:
        return
    ctx.bring(first)
    varop(ctx, _TENSOR_OPS[ctx.node.op_type], refs=[other])


def _operand(ctx: MsnhNodeContext, index: int, shape: tuple[int, ...]) -> MsnhLayer | None:
    """A layer holding input ``index`` as ``shape`` (repeated over channels / H and W
    when it broadcasts), with that shape's dims."""
    value, own = ctx.value(index), ctx.static_shape(index)
    if value is None or own is None:
        return None
    if tuple(own) == shape:
        return ctx.layer_for(value, canonical_dims(shape))
    aligned = (1,) * (len(shape) - len(own)) + tuple(own)
    if not _repeatable(aligned, shape):
        ctx.problem(
            "broadcast",
            f"input {value.name} of shape {own} broadcast to {shape}; MsnhNet repeats a tensor only over "
            "channels or over H and W of an image",
            "broadcast in the source model with expand(), or keep operands the same shape",
        )
        return None
    return _repeated(ctx, index, aligned, shape)


def _repeats_channels(aligned: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """One channel (of ``aligned``, the operand's shape padded to the rank of ``shape``) broadcast to several."""
    return len(shape) >= 2 and aligned[1] == 1 and shape[1] != 1


def _repeatable(aligned: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether MsnhNet can repeat an operand of ``aligned`` shape to the image ``shape``: the
    same batch, channels equal or one, H and W equal or all one."""
    if len(shape) != 4 or aligned[0] != shape[0]:
        return False
    channels_fit = aligned[1] == shape[1] or _repeats_channels(aligned, shape)
    return channels_fit and (all(d == 1 for d in aligned[2:]) or aligned[2:] == shape[2:])


def _repeated(ctx: MsnhNodeContext, index: int, aligned: tuple[int, ...], shape: tuple[int, ...]) -> MsnhLayer | None:
    """Input ``index`` (of ``aligned`` shape) repeated to ``shape``, exactly: over channels by a
    1x1 ``conv`` of ones (every output channel is 1 * the one input channel), over H and W
    by a nearest ``upsample`` with strides H and W."""
    current = ctx.feed(index, canonical_dims(aligned))
    if current is None:
        return None
    dims = canonical_dims(shape)
    if _repeats_channels(aligned, shape):
        ones = np.ones((shape[1], 1, 1, 1), np.float32)
        current = (shape[1], current[1], current[2])
        ctx.add_layer("conv", {"filters": shape[1], "useBias": 0}, current, weights=[ones], output=None, role="repeat")
    if current != dims:
        ctx.add_layer("upsample", {"type": "nearest", "strideX": dims[2], "strideY": dims[1]}, dims, output=None)
    return ctx.net.last


# ---- constants ----------------------------------------------------------------------------


def _per_channel(constant: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The constant's one value per channel (axis 1 of ``shape``), if that is its form."""
    aligned = (1,) * (len(shape) - constant.ndim) + constant.shape
    if len(aligned) != len(shape) or len(shape) < 2 or aligned[0] != 1:
        return None
    if all(d == 1 for i, d in enumerate(aligned) if i != 1) and aligned[1] == shape[1]:
        return constant.reshape(-1)
    return None


def _affine(op: str, values: np.ndarray, constant_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) with ``scale * x + bias`` equal to ``x op c`` (``c op x`` when ``constant_first``)."""
    ones, zeros = np.ones_like(values), np.zeros_like(values)
    if op == "Add":
        return ones, values
    if op == "Sub":
        return (-ones, values) if constant_first else (ones, -values)
    if op == "Mul":
        return values, zeros
    if constant_first:  # c / x = c * (1 / x): the reciprocal is a varop before
        return values, zeros
    return (1.0 / values).astype(np.float32), zeros


def _with_constant(ctx: MsnhNodeContext, data: int, constant: np.ndarray) -> None:
    op = ctx.node.op_type
    shape = ctx.static_shape(data)
    out = ctx.output_shape(0)
    if shape is None or out is None or tuple(out) != tuple(shape):
        ctx.problem(
            "broadcast",
            f"the constant of shape {constant.shape} changes the shape of {shape} to {out}",
            "keep the data operand's shape (broadcast the data in the source model)",
        )
        return
    if constant.size == 1:
        if ctx.feed(data) is not None:
            varop(ctx, _CONST_OPS[op][data], float(constant.reshape(-1)[0]))
        return
    values = _per_channel(constant, shape)
    if values is None:
        ctx.problem(
            "constant-tensor",
            f"{op} with a constant of shape {constant.shape}: MsnhNet holds constants only as a single value or "
            "one per channel",
            "make the constant a per-channel or scalar value, or fold it into a neighbouring layer",
        )
        return
    if op in ("Add", "Sub") and data == 0 and _into_bias(ctx, values if op == "Add" else -values):
        return
    _channel_affine(ctx, data, op, values)


def _into_bias(ctx: MsnhNodeContext, bias: np.ndarray) -> bool:
    """The bias of the ``conv``/``connect`` that computed the input, when it has none."""
    host = ctx.absorbing_layer(("conv", "connect"))
    if host is None or host.params.get("useBias", 1) or host.params.get("batchNorm") or host.role is not None:
        return False
    if host.activation != "none":
        return False
    del host.params["useBias"]
    host.weights.insert(1, bias.astype(np.float32))
    host.weight_params.insert(1, ctx.weight_params([1])[0])
    ctx.absorb(host)
    host.transforms.append(f"{ctx.node.op_type} of a constant written as the layer's bias")
    return True


def _channel_affine(ctx: MsnhNodeContext, data: int, op: str, values: np.ndarray) -> None:
    dims = ctx.feed(data, ctx.dims_of(data))
    if dims is None:
        return
    constant_index = 1 - data
    if op == "Div" and data == 1:
        varop(ctx, "divConstInv", 1.0, output=False)
    scale, bias = _affine(op, values, constant_first=data == 1)
    zeros, ones = np.zeros_like(values), np.ones_like(values)
    ctx.add_layer("batchnorm", {"eps": 0}, dims, weights=[scale, bias, zeros, ones], weight_inputs=[constant_index])


# ---- unary -----------------------------------------------------------------------------------


def _unary(ctx: MsnhNodeContext, kind: str, const: Any = None) -> None:
    if ctx.feed(0) is not None:
        varop(ctx, kind, const)


@MSNHNET_LAYERS.register(*_UNARY)
def convert_unary(ctx: MsnhNodeContext) -> None:
    """varop of the same name"""
    _unary(ctx, _UNARY[ctx.node.op_type])


@MSNHNET_LAYERS.register("Neg")
def convert_neg(ctx: MsnhNodeContext) -> None:
    """varop mulConst -1"""
    _unary(ctx, "mulConst", -1.0)


@MSNHNET_LAYERS.register("Reciprocal")
def convert_reciprocal(ctx: MsnhNodeContext) -> None:
    """varop divConstInv 1"""
    _unary(ctx, "divConstInv", 1.0)


@MSNHNET_LAYERS.register("Pow")
def convert_pow(ctx: MsnhNodeContext) -> None:
    """varop pow with a constant exponent"""
    exponent = ctx.const(1)
    if exponent is None or exponent.size != 1:
        ctx.unsupported("Pow with an exponent that is not one constant value", "use a constant exponent")
        return
    _unary(ctx, "pow", float(exponent.reshape(-1)[0]))
