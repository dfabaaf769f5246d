"""Activations -> the ``activation`` of the preceding ``conv``/``connect``/``batchnorm``,
or an ``act`` layer; ``clip``; ``varop`` for what MsnhNet has no activation of.

An activation is merged into the layer that computed its input when nothing else
reads that layer's output (as MsnhNet's own converters and darknet do); it is a
separate ``act`` layer otherwise. Formulas, each checked in the real runtime
(x86 AVX2 build): relu, relu6, ``leaky,alpha``, elu (alpha 1 only), logistic,
hardswish ``x * relu6(x + 3) / 6``, prelu (one slope per channel), ``softplus,T``
(``x`` above T, ``exp(x)`` below -T, else ``log(1 + exp(x))``: written with T = 20,
where float32 cannot tell them apart; without T MsnhNet uses 0.1).

Where MsnhNet computes something else:

* ``tanh``: its scalar tail (the last ``count % 8`` values of a layer) computes
  ``(exp(2x) - 1) / (exp(2x) + 1)``, NaN above x = 44; the written layer clips its
  input at 20 (tanh is 1 in float32 from 9 on) unless the count is a multiple of 8.
  (``varop tanh`` computes tan, and is never written.)
* ``selu``: MsnhNet's constants are rounded (1.0507, 1.6732): written with a
  warning, up to 4e-5 relative difference.
* ``x * Sigmoid(x)`` (SiLU, exported as two nodes) is the ``swish`` activation;
* ``Mish`` is written as softplus, tanh and a ``varop mul`` (MsnhNet's AVX mish
  differs by 1e-4 relative); ``HardSigmoid`` as ``varop mulConst``, ``addConst``
  and a ``clip``; ``Elu`` with alpha other than 1 is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from ...graph import provenance
from .net import ACTIVATION_HOSTS, MSNHNET_LAYERS, MsnhLayer, MsnhNodeContext, float_text

TANH_SAFE_INPUT = 20.0  # tanh(x) rounds to 1 in float32 for x > 9; MsnhNet's tail overflows above 44


def activate(
    ctx: MsnhNodeContext,
    activation: str,
    weights: Sequence[np.ndarray] = (),
    weight_inputs: Sequence[int] = (),
    *,
    dims_needed: bool = False,
) -> None:
    """Merge ``activation`` into the layer that computed input 0, or add an ``act`` layer."""
    host = ctx.absorbing_layer(ACTIVATION_HOSTS)
    if host is not None and host.activation == "none" and host.role is None:
        host.params["activation"] = activation
        ctx.absorb(host, weights, weight_inputs)
        host.transforms.append(f"{ctx.node.op_type} written as the layer's activation {activation}")
        return
    if ctx.feed(0, ctx.dims_of(0) if dims_needed else None) is None:
        return
    dims, size = ctx.previous()
    ctx.add_layer("act", {"activation": activation}, dims, size=size, weights=weights, weight_inputs=weight_inputs)


@MSNHNET_LAYERS.register("Relu")
def convert_relu(ctx: MsnhNodeContext) -> None:
    """activation relu"""
    activate(ctx, "relu")


@MSNHNET_LAYERS.register("Sigmoid")
def convert_sigmoid(ctx: MsnhNodeContext) -> None:
    """activation logistic; x * sigmoid(x) (SiLU) as activation swish"""
    partner = _swish_partner(ctx)
    if partner is None:
        activate(ctx, "logistic")
    else:
        _swish(ctx, partner)


def _swish_partner(ctx: MsnhNodeContext) -> ir.Node | None:
    """The Mul computing ``x * sigmoid(x)`` with this Sigmoid, when nothing else reads the sigmoid."""
    x, gate = ctx.value(0), ctx.node.outputs[0]
    users = gate.consumers()
    if x is None or gate.is_graph_output() or len(users) != 1 or users[0].op_type != "Mul":
        return None
    mul = users[0]
    return mul if set(mul.inputs) == {x, gate} and len(mul.inputs) == 2 else None


def _swish_host(ctx: MsnhNodeContext, mul: ir.Node) -> MsnhLayer | None:
    """The layer that computed x, when only the Sigmoid and the Mul read it and it takes an activation."""
    x, last = ctx.value(0), ctx.net.last
    if x is None or last is None or not ctx.net.is_previous(x) or x.is_graph_output():
        return None
    if set(x.consumers()) != {ctx.node, mul} or last.value != x.name or last.role is not None:
        return None
    fits = last.kind in ACTIVATION_HOSTS and last.activation == "none"
    return last if fits and not ctx.net.called_elsewhere([ctx.node, mul]) else None


def _swish(ctx: MsnhNodeContext, mul: ir.Node) -> None:
    """``swish`` (x * logistic(x), MsnhNet's formula) merged into the layer that computed x
    when nothing but the Sigmoid and the Mul read it, else an ``act`` layer."""
    ctx.net.absorbed.add(mul)
    output = mul.outputs[0]
    host = _swish_host(ctx, mul)
    if host is not None:
        host.params["activation"] = "swish"
        sources = [*provenance.sources(ctx.node), *provenance.sources(mul)]
        host.stands_for(output, sources, [ctx.node.name or "Sigmoid", mul.name or "Mul"])
        host.transforms.append("x * sigmoid(x) written as the layer's activation swish")
        ctx.net.bind(output, host)
        return
    if ctx.feed(0) is None:
        return
    dims, size = ctx.previous()
    ctx.add_layer("act", {"activation": "swish"}, dims, size=size, output=output, also=[mul])


@MSNHNET_LAYERS.register("HardSwish")
def convert_hard_swish(ctx: MsnhNodeContext) -> None:
    """activation hardswish"""
    activate(ctx, "hardswish")


@MSNHNET_LAYERS.register("Softplus")
def convert_softplus(ctx: MsnhNodeContext) -> None:
    """activation softplus,20"""
    activate(ctx, f"softplus,{float_text(TANH_SAFE_INPUT)}")


@MSNHNET_LAYERS.register("LeakyRelu")
def convert_leaky_relu(ctx: MsnhNodeContext) -> None:
    """activation leaky,alpha"""
    activate(ctx, f"leaky,{float_text(float(ctx.attr('alpha')))}")


@MSNHNET_LAYERS.register("Elu")
def convert_elu(ctx: MsnhNodeContext) -> None:
    """activation elu (alpha 1)"""
    alpha = float(ctx.attr("alpha"))
    if alpha != 1.0:
        ctx.unsupported(f"Elu with alpha {alpha}; MsnhNet's elu has alpha 1", "use alpha=1 (nn.ELU's default)")
        return
    activate(ctx, "elu")


@MSNHNET_LAYERS.register("Selu")
def convert_selu(ctx: MsnhNodeContext) -> None:
    """activation selu (MsnhNet's constants rounded: a warning, 4e-5 relative)"""
    alpha, gamma = float(ctx.attr("alpha")), float(ctx.attr("gamma"))
    if abs(alpha - 1.6732632) > 1e-6 or abs(gamma - 1.0507010) > 1e-6:
        ctx.unsupported(f"Selu with alpha {alpha}, gamma {gamma}; MsnhNet's selu has fixed constants")
        return
    ctx.problem(
        "selu-constants",
        "MsnhNet's selu uses gamma 1.0507 and alpha 1.6732 (rounded): outputs differ by up to 4e-5 relative",
        "accept the difference, or replace SELU in the source model",
        severity="warning",
    )
    activate(ctx, "selu")


@MSNHNET_LAYERS.register("PRelu")
def convert_prelu(ctx: MsnhNodeContext) -> None:
    """activation prelu (one slope per channel; a shared slope repeated)"""
    found = ctx.weights(1)
    dims = ctx.dims_of(0)
    if found is None or dims is None:
        return
    slope = np.asarray(found[1], np.float32)
    channels, rank = dims[0], ctx.rank(0) or 0
    aligned = (1,) * (rank - slope.ndim) + slope.shape
    if slope.size == 1:
        slope = np.full(channels, slope.reshape(-1)[0], np.float32)
    elif len(aligned) != rank or aligned[1] != channels or np.prod(aligned) != channels:
        ctx.unsupported(f"PRelu slopes of shape {slope.shape} for an input of {dims}; MsnhNet has one per channel")
        return
    activate(ctx, "prelu", [slope.reshape(-1)], [1], dims_needed=True)


@MSNHNET_LAYERS.register("Clip")
def convert_clip(ctx: MsnhNodeContext) -> None:
    """activation relu6 / relu, else clip (min, max)"""
    if not ctx.require_constants("min", "max"):
        return
    low, high = ctx.param("min"), ctx.param("max")
    bounds = (None if low is None else float(low), None if high is None else float(high))
    if bounds == (0.0, 6.0):
        activate(ctx, "relu6")
    elif bounds[0] == 0.0 and (bounds[1] is None or bounds[1] == np.inf):
        activate(ctx, "relu")
    else:
        clip(ctx, *bounds)


def clip(ctx: MsnhNodeContext, low: float | None, high: float | None, output: bool = True) -> MsnhLayer | None:
    """A ``clip`` layer on input 0 (an absent or infinite bound is left out)."""
    if ctx.feed(0) is None:
        return None
    dims, size = ctx.previous()
    params = {key: bound for key, bound in (("min", low), ("max", high)) if bound is not None and np.isfinite(bound)}
    return ctx.add_layer("clip", params, dims, size=size, output=True if output else None)


def varop(
    ctx: MsnhNodeContext, kind: str, const: float | None = None, refs: Sequence[MsnhLayer] = (), output: bool = True
) -> MsnhLayer | None:
    """A ``varop`` of ``kind`` on the previous layer (and the layers ``refs``)."""
    ctx.first_layer_allowed()
    dims, size = ctx.previous()
    params: dict = {"type": kind}
    if refs:
        params = {"layers": list(refs), **params}
    if const is not None:
        params["constVal"] = const
    return ctx.add_layer("varop", params, dims, size=size, output=True if output else None)


def tanh(ctx: MsnhNodeContext, output: bool = True) -> None:
    """``act tanh`` on the previous layer, its input clipped when MsnhNet's scalar tail could overflow."""
    dims, size = ctx.previous()
    if (size * ctx.net.batch) % 8:
        ctx.add_layer("clip", {"max": TANH_SAFE_INPUT}, dims, size=size, output=None, role="tanh-guard")
    ctx.add_layer("act", {"activation": "tanh"}, dims, size=size, output=True if output else None)


@MSNHNET_LAYERS.register("Tanh")
def convert_tanh(ctx: MsnhNodeContext) -> None:
    """activation tanh (its input clipped at 20 when MsnhNet's scalar tail would overflow)"""
    value = ctx.value(0)
    merged_safe = (ctx.previous()[1] * ctx.net.batch) % 8 == 0
    if value is not None and ctx.net.is_previous(value) and merged_safe:
        activate(ctx, "tanh")
    elif ctx.feed(0) is not None:
        tanh(ctx)


@MSNHNET_LAYERS.register("Mish")
def convert_mish(ctx: MsnhNodeContext) -> None:
    """softplus, tanh and varop mul (x * tanh(softplus(x)))"""
    x = ctx.holder(0)
    if x is None or ctx.feed(0) is None:
        return
    dims, size = ctx.previous()
    softplus = {"activation": f"softplus,{float_text(TANH_SAFE_INPUT)}"}
    ctx.add_layer("act", softplus, dims, size=size, output=None)
    tanh(ctx, output=False)
    varop(ctx, "mul", refs=[x])


@MSNHNET_LAYERS.register("HardSigmoid")
def convert_hard_sigmoid(ctx: MsnhNodeContext) -> None:
    """varop mulConst alpha, addConst beta, clip 0..1"""
    if ctx.feed(0) is None:
        return
    varop(ctx, "mulConst", float(ctx.attr("alpha")), output=False)
    varop(ctx, "addConst", float(ctx.attr("beta")), output=False)
    dims, size = ctx.previous()
    ctx.add_layer("clip", {"min": 0.0, "max": 1.0}, dims, size=size)
