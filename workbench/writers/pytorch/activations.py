"""Activations and softmax as ``torch.nn`` layers.

ONNX and PyTorch agree on these formulas; the parameters differ in name only,
except:

* ``Selu`` is ``gamma * (x if x > 0 else alpha * (exp(x) - 1))``, which is
  ``gamma * F.elu(x, alpha)``; ``nn.SELU`` is the case of the default constants.
* ``Clip`` with both bounds left out is the identity; ``min > max`` gives ``max``
  everywhere, as ``torch.clamp`` does (``nn.Hardtanh`` requires ``min < max``);
  bounds computed at run time are ``torch.clamp``'s tensor bounds.
* ``HardSigmoid`` is ``clamp(alpha * x + beta, 0, 1)``; ``nn.Hardsigmoid`` is the
  case ``alpha = 1/6, beta = 1/2``, any other pair is written out.
* ``PRelu`` broadcasts its slope numpy-style; ``nn.PReLU`` holds one slope per
  channel (axis 1) or a single one, so other slope shapes are written out with
  ``torch.where``.
* ``Softmax`` before opset 13 flattens the input from ``axis`` on and normalises
  over all those elements together.
* ``x * sigmoid(x)`` (how exporters write SiLU) becomes one ``nn.SiLU``.
"""

from __future__ import annotations

import numpy as np

from ...graph import opset as opsets
from .codegen import call, flat, number, string
from .program import EMITTERS, TorchNodeContext, single_use

# nn.SELU's constants, as ONNX's Selu defaults write them
_SELU_ALPHA = 1.67326319217681884765625
_SELU_GAMMA = 1.05070102214813232421875


def _simple(ctx: TorchNodeContext, layer: str, **kwargs: str) -> None:
    ctx.assign(call(ctx.module(call(layer, **kwargs)), ctx.x(0)))


@EMITTERS.register("Relu")
def emit_relu(ctx: TorchNodeContext) -> None:
    """nn.ReLU"""
    _simple(ctx, "nn.ReLU")


@EMITTERS.register("Tanh")
def emit_tanh(ctx: TorchNodeContext) -> None:
    """nn.Tanh"""
    _simple(ctx, "nn.Tanh")


@EMITTERS.register("Sigmoid")
def emit_sigmoid(ctx: TorchNodeContext) -> None:
    """nn.Sigmoid, or nn.SiLU with the Mul that multiplies its input by it"""
    product = single_use(ctx.node.outputs[0], "Mul")
    source = ctx.value(0)
    if product is not None and source is not None and source in product.inputs:
        ctx.absorb(product)
        _simple(ctx, "nn.SiLU")
        return
    _simple(ctx, "nn.Sigmoid")


@EMITTERS.register("LeakyRelu")
def emit_leaky_relu(ctx: TorchNodeContext) -> None:
    """nn.LeakyReLU(alpha)"""
    _simple(ctx, "nn.LeakyReLU", negative_slope=number(ctx.attr("alpha", 0.01)))


@EMITTERS.register("Elu")
def emit_elu(ctx: TorchNodeContext) -> None:
    """nn.ELU(alpha)"""
    _simple(ctx, "nn.ELU", alpha=number(ctx.attr("alpha", 1.0)))


@EMITTERS.register("Celu")
def emit_celu(ctx: TorchNodeContext) -> None:
    """nn.CELU(alpha)"""
    _simple(ctx, "nn.CELU", alpha=number(ctx.attr("alpha", 1.0)))


@EMITTERS.register("Selu")
def emit_selu(ctx: TorchNodeContext) -> None:
    """nn.SELU for the default alpha and gamma, else gamma * F.elu(x, alpha)"""
    alpha, gamma = float(ctx.attr("alpha", _SELU_ALPHA)), float(ctx.attr("gamma", _SELU_GAMMA))
    if np.isclose(alpha, _SELU_ALPHA, rtol=1e-6) and np.isclose(gamma, _SELU_GAMMA, rtol=1e-6):
        _simple(ctx, "nn.SELU")
        return
    ctx.assign(f"{number(gamma)} * {flat(call('F.elu', ctx.x(0), alpha=number(alpha)))}")


@EMITTERS.register("Softplus")
def emit_softplus(ctx: TorchNodeContext) -> None:
    """nn.Softplus"""
    _simple(ctx, "nn.Softplus")


@EMITTERS.register("Softsign")
def emit_softsign(ctx: TorchNodeContext) -> None:
    """nn.Softsign"""
    _simple(ctx, "nn.Softsign")


@EMITTERS.register("Mish")
def emit_mish(ctx: TorchNodeContext) -> None:
    """nn.Mish"""
    _simple(ctx, "nn.Mish")


@EMITTERS.register("HardSwish")
def emit_hard_swish(ctx: TorchNodeContext) -> None:
    """nn.Hardswish"""
    _simple(ctx, "nn.Hardswish")


@EMITTERS.register("HardSigmoid")
def emit_hard_sigmoid(ctx: TorchNodeContext) -> None:
    """nn.Hardsigmoid when alpha = 1/6 and beta = 1/2, else clamp(alpha * x + beta, 0, 1)"""
    alpha, beta = float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))
    if np.isclose(alpha, 1 / 6, rtol=1e-6) and np.isclose(beta, 0.5, rtol=1e-6):
        _simple(ctx, "nn.Hardsigmoid")
        return
    ctx.assign(call("torch.clamp", f"{ctx.x(0)} * {number(alpha)} + {number(beta)}", "0.0", "1.0"))


@EMITTERS.register("Gelu")
def emit_gelu(ctx: TorchNodeContext) -> None:
    """nn.GELU(approximate)"""
    approximate = ctx.attr("approximate", "none")
    if approximate == "none":
        _simple(ctx, "nn.GELU")
    else:
        _simple(ctx, "nn.GELU", approximate=string(approximate))


def _scalar(array: np.ndarray | None) -> float | None:
    return None if array is None else float(np.asarray(array).reshape(()))


@EMITTERS.register("Clip")
def emit_clip(ctx: TorchNodeContext) -> None:
    """nn.ReLU6 for [0, 6], nn.Hardtanh for other bounds min < max, torch.clamp otherwise (one bound, min >= max, bounds computed at run time)"""
    given = {name: opsets.input_index(ctx.schema, name) for name in ("min", "max")}
    computed = {name: index for name, index in given.items() if index is not None and ctx.has_input(index)}
    if any(ctx.const(index) is None for index in computed.values()):
        # bounds computed at run time: torch.clamp's tensor form (constant bounds as buffers)
        ctx.assign(call("torch.clamp", ctx.x(0), **{name: ctx.x(index) for name, index in computed.items()}))
        return
    _clip_between(ctx, _scalar(ctx.param("min")), _scalar(ctx.param("max")))


def _clip_between(ctx: TorchNodeContext, low: float | None, high: float | None) -> None:
    """Clip to constant bounds (None: unbounded on that side): nothing for no bound, the
    activation modules for float inputs with low < high, torch.clamp for the rest."""
    if low is None and high is None:
        ctx.alias(0)
        return
    dtype = ctx.dtype(0)
    if dtype is None or dtype.kind == "f":
        if low == 0.0 and high == 6.0:
            _simple(ctx, "nn.ReLU6")
            return
        if low is not None and high is not None and low < high:
            _simple(ctx, "nn.Hardtanh", min_val=number(low), max_val=number(high))
            return
    # torch.clamp, as ONNX, gives max everywhere when min > max
    bounds = {name: number(bound, dtype) for name, bound in (("min", low), ("max", high)) if bound is not None}
    ctx.assign(call("torch.clamp", ctx.x(0), **bounds))


@EMITTERS.register("PRelu")
def emit_prelu(ctx: TorchNodeContext) -> None:
    """nn.PReLU(channels) for per-channel or single slopes"""
    slope = ctx.const(1)
    rank = ctx.rank(0)
    if slope is None:
        ctx.assign(call("torch.where", f"{ctx.x(0)} >= 0", ctx.x(0), f"{ctx.x(0)} * {ctx.x(1)}"))
        return
    if slope.size == 1:
        ctx.assign(call(ctx.module(call("nn.PReLU"), {"weight": slope.reshape(1)}, shared=[1]), ctx.x(0)))
        return
    # the slope lines up with axis 1 when, aligned to the input's rank from the right,
    # its only dimension larger than one is the channel dimension
    aligned = (1,) * ((rank or 0) - slope.ndim) + slope.shape if rank is not None else None
    if (
        aligned is not None
        and rank is not None
        and rank >= 2
        and len(aligned) == rank
        and all(size == 1 for axis, size in enumerate(aligned) if axis != 1)
    ):
        channels = slope.size
        layer = ctx.module(
            call("nn.PReLU", num_parameters=str(channels)), {"weight": slope.reshape(channels)}, shared=[1]
        )
        ctx.assign(call(layer, ctx.x(0)))
        return
    ctx.assign(call("torch.where", f"{ctx.x(0)} >= 0", ctx.x(0), f"{ctx.x(0)} * {ctx.x(1)}"))


def _softmax(ctx: TorchNodeContext, layer: str) -> None:
    rank = ctx.rank(0)
    axis = int(ctx.attr("axis"))
    if rank is not None and axis < 0:
        axis += rank
    ctx.assign(call(ctx.module(call(layer, dim=str(axis))), ctx.x(0)))


def _flattening_softmax(ctx: TorchNodeContext, layer: str, function: str) -> None:
    """Before opset 13: normalise over everything from ``axis`` on, as one flattened row."""
    rank = ctx.rank(0)
    axis = int(ctx.attr("axis"))
    if rank is not None and axis < 0:
        axis += rank
    if axis == -1 or (rank is not None and axis == rank - 1):
        _softmax(ctx, layer)
        return
    if rank is None:
        ctx.unsupported(
            f"{ctx.node.op_type} (opset {ctx.opset}) on an input of unknown rank",
            "run shape inference or simplify the model first",
        )
        return
    flattened = call("torch.flatten", ctx.x(0), str(axis))
    ctx.assign(call(f"{function}({flat(flattened)}, dim=-1).reshape", f"{ctx.x(0)}.shape"))


@EMITTERS.register("Softmax", since=13)
def emit_softmax(ctx: TorchNodeContext) -> None:
    """nn.Softmax(dim)"""
    _softmax(ctx, "nn.Softmax")


@EMITTERS.register("Softmax", since=1)
def emit_flattening_softmax(ctx: TorchNodeContext) -> None:
    """nn.Softmax(dim) over the last axis, else softmax of the input flattened from axis"""
    _flattening_softmax(ctx, "nn.Softmax", "torch.softmax")


@EMITTERS.register("LogSoftmax", since=13)
def emit_log_softmax(ctx: TorchNodeContext) -> None:
    """nn.LogSoftmax(dim)"""
    _softmax(ctx, "nn.LogSoftmax")


@EMITTERS.register("LogSoftmax", since=1)
def emit_flattening_log_softmax(ctx: TorchNodeContext) -> None:
    """nn.LogSoftmax(dim) over the last axis, else log-softmax of the input flattened from axis"""
    _flattening_softmax(ctx, "nn.LogSoftmax", "torch.log_softmax")
