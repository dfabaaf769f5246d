"""Normalization: ``BatchNormalization``, ``InstanceNormalization``,
``LayerNormalization``, ``GroupNormalization``, ``LpNormalization`` and ``LRN``.

Layers (``nn.BatchNorm{1,2,3}d``, ``nn.InstanceNorm{1,2,3}d``, ``nn.LayerNorm``,
``nn.GroupNorm``) hold constant parameters; parameters computed at run time (graph
inputs, or other nodes' outputs) go to the functional forms (``F.batch_norm``,
``F.instance_norm``, ``F.layer_norm``, ``F.group_norm``), which compute the same.

* BatchNormalization (inference) is ``y = (x - mean) / sqrt(var + eps) * scale + bias``
  in both; the layer also keeps ``num_batches_tracked``, written as 0 so that
  ``load_state_dict`` finds every key. In training mode (opset 14 on) ONNX
  normalizes with the batch's own statistics, ``mean`` and the population variance
  ``var`` over every axis but the channels, and outputs the running statistics
  ``input_mean * momentum + mean * (1 - momentum)`` (and the same for the variance).
  PyTorch's training-mode update uses the unbiased variance and the other momentum
  convention, so the statistics are written out and ``F.batch_norm`` given them.
* InstanceNormalization normalizes each channel of each sample over its spatial
  axes, GroupNormalization each group of ``C / num_groups`` channels; both use the
  population variance, as PyTorch does. GroupNormalization before opset 21 holds
  one scale and bias per group, from 21 on one per channel; a per-group one is
  repeated over the group's channels.
* LayerNormalization normalizes over the axes from ``axis`` on with scale and bias
  broadcast to them; its optional outputs are ``Mean`` and ``InvStdDev =
  1 / sqrt(var + eps)``, kept as dimensions of size 1. When they are read the
  whole is written out: ``y = (x - Mean) * InvStdDev * scale + bias``.
* LpNormalization is ``x / ||x||_p`` along ``axis``, and 0 where the norm is 0 (as
  onnxruntime and ONNX's reference give it; ``F.normalize`` would instead clamp
  every norm below its epsilon).
* LRN is ``y = x / (k + alpha / size * sum of x^2 over the size channels around c) ^ beta``
  in both; for an even ``size`` the window sits one channel differently (ONNX puts
  the extra channel after c, PyTorch before), so only odd sizes are written.
"""

from __future__ import annotations

import numpy as np

from .codegen import Expr, call, flat, ints, number
from .program import EMITTERS, TorchNodeContext

_EPSILON = 1e-5  # the ONNX default of every op here, and PyTorch's


def _norm_rank(ctx: TorchNodeContext, layer: str, low: int) -> int | None:
    """The 1/2/3 of nn.XNorm{n}d for the input's rank, or None with a problem."""
    rank = ctx.rank(0)
    if rank is None or rank < low or rank > 5:
        ctx.unsupported(
            f"{ctx.node.op_type} on an input of rank {rank}; {layer} handles ranks {low} to 5",
            "run shape inference or simplify the model first" if rank is None else "",
        )
        return None
    return max(rank - 2, 1)


def _constants(ctx: TorchNodeContext, *indices: int) -> list[np.ndarray] | None:
    """The inputs' constant data, or None when any of them is computed at run time."""
    found = [ctx.const(index) for index in indices]
    return [data for data in found if data is not None] if all(data is not None for data in found) else None


def _epsilon(ctx: TorchNodeContext) -> float:
    return float(ctx.attr("epsilon", _EPSILON))


def _reduced_axes(ctx: TorchNodeContext, first: int) -> Expr | None:
    """``(first, ..., rank - 1)`` (negative axes when the rank is unknown and ``first`` is
    negative), or None after reporting an unknown rank."""
    rank = ctx.rank(0)
    if rank is not None:
        return ints(range(first % rank if first < 0 else first, rank))
    if first < 0:
        return ints(range(first, 0))
    ctx.unsupported(f"{ctx.node.op_type} on an input of unknown rank", "run shape inference first")
    return None


@EMITTERS.register("BatchNormalization")
def emit_batch_norm(ctx: TorchNodeContext) -> None:
    """nn.BatchNorm1d/2d/3d(channels, eps); F.batch_norm for statistics computed at run time; training mode written out"""
    if not ctx.attr("spatial", 1):
        ctx.unsupported(
            f"BatchNormalization (opset {ctx.opset}) with spatial=0: statistics per activation",
            "flatten the input to (N, C * D1 * ...) before the BatchNormalization, as ONNX advises",
        )
        return
    if ctx.attr("training_mode", 0):
        _training_batch_norm(ctx)
        return
    if any(ctx.output_used(index) for index in range(1, len(ctx.node.outputs))):
        ctx.unsupported(
            f"BatchNormalization (opset {ctx.opset}) whose batch statistics outputs are used (training)",
            "export the source model in eval() mode, or with opset 14 or later (training_mode)",
        )
        return
    eps = _epsilon(ctx)
    stored = _constants(ctx, 1, 2, 3, 4)
    if stored is None:
        statistics = [ctx.x(index) for index in (3, 4, 1, 2)]
        ctx.assign(call("F.batch_norm", ctx.x(0), *statistics, **_eps_argument(eps, "eps")))
        return
    spatial = _norm_rank(ctx, "nn.BatchNorm", 2)
    if spatial is None:
        return
    scale, bias, mean, var = stored
    channels = scale.size
    state = {
        "weight": scale.reshape(channels),
        "bias": bias.reshape(channels),
        "running_mean": mean.reshape(channels),
        "running_var": var.reshape(channels),
        "num_batches_tracked": np.zeros((), dtype=np.int64),
    }
    constructor = call(f"nn.BatchNorm{spatial}d", str(channels), **_eps_argument(eps, "eps"))
    layer = ctx.module(constructor, state, shared=[1, 2, 3, 4])
    ctx.assign(call(layer, ctx.x(0)))


def _eps_argument(eps: float, keyword: str) -> dict[str, Expr]:
    """``{keyword: eps}`` unless it is the default both sides share."""
    return {} if number(eps) == number(_EPSILON) else {keyword: number(eps)}


def _training_batch_norm(ctx: TorchNodeContext) -> None:
    """Batch statistics, the normalization with them, and the updated running statistics."""
    rank = ctx.rank(0)
    if rank is None:
        ctx.unsupported("BatchNormalization in training mode on an input of unknown rank", "run shape inference first")
        return
    source = ctx.x(0)
    axes = ints(axis for axis in range(rank) if axis != 1)
    mean = ctx.temporary(call(f"{source}.mean", dim=axes), "batch_mean")
    var = ctx.temporary(call(f"{source}.var", dim=axes, unbiased="False"), "batch_var")
    eps = _eps_argument(_epsilon(ctx), "eps")
    ctx.assign(call("F.batch_norm", source, mean, var, ctx.x(1), ctx.x(2), **eps))
    momentum = float(ctx.attr("momentum", 0.9))
    for output, (running, batch) in enumerate(((ctx.x(3), mean), (ctx.x(4), var)), start=1):
        if ctx.output_used(output):
            ctx.assign(f"{running} * {number(momentum)} + {batch} * {number(1 - momentum)}", output)


@EMITTERS.register("InstanceNormalization")
def emit_instance_norm(ctx: TorchNodeContext) -> None:
    """nn.InstanceNorm1d/2d/3d(channels, eps, affine=True); F.instance_norm for parameters computed at run time"""
    eps = number(_epsilon(ctx))
    stored = _constants(ctx, 1, 2)
    if stored is None:
        ctx.assign(call("F.instance_norm", ctx.x(0), weight=ctx.x(1), bias=ctx.x(2), eps=eps))
        return
    spatial = _norm_rank(ctx, "nn.InstanceNorm", 3)
    if spatial is None:
        return
    scale, bias = stored
    channels = scale.size
    layer = call(f"nn.InstanceNorm{spatial}d", str(channels), eps=eps, affine="True")
    state = {"weight": scale.reshape(channels), "bias": bias.reshape(channels)}
    ctx.assign(call(ctx.module(layer, state, shared=[1, 2]), ctx.x(0)))


@EMITTERS.register("LayerNormalization")
def emit_layer_norm(ctx: TorchNodeContext) -> None:
    """nn.LayerNorm over the axes from `axis`; F.layer_norm for parameters computed at run time; written out when Mean or InvStdDev is read"""
    axis = int(ctx.attr("axis", -1))
    if ctx.output_used(1) or ctx.output_used(2):
        _layer_norm_with_statistics(ctx, axis)
        return
    shape = ctx.shape(0)
    trailing = shape[axis:] if shape is not None else None
    known = tuple(size for size in trailing if size is not None) if trailing is not None else None
    normalized = known if known is not None and trailing is not None and len(known) == len(trailing) else None
    stored = _constants(ctx, 1, *([2] if ctx.has_input(2) else []))
    if stored is not None and normalized is not None:
        _layer_norm_module(ctx, normalized, stored)
        return
    source = ctx.x(0)
    sizes = flat(ints(normalized)) if normalized is not None else f"{source}.shape[{axis}:]"
    parameters = [_broadcast(ctx, 1, normalized, sizes)]
    parameters.append(_broadcast(ctx, 2, normalized, sizes) if ctx.has_input(2) else "None")
    eps = _eps_argument(_epsilon(ctx), "eps")
    ctx.assign(call("F.layer_norm", source, sizes, *parameters, **eps))


def _broadcast(ctx: TorchNodeContext, index: int, normalized: tuple[int, ...] | None, sizes: str) -> str:
    """Input ``index`` as F.layer_norm needs it: of the normalized shape itself."""
    if normalized is not None and ctx.shape(index) == normalized:
        return ctx.x(index)
    return f"{ctx.x(index)}.expand({sizes})"


def _layer_norm_module(ctx: TorchNodeContext, normalized: tuple[int, ...], stored: list[np.ndarray]) -> None:
    scale, bias = stored[0], stored[1] if len(stored) > 1 else None
    if any(np.broadcast_shapes(array.shape, normalized) != normalized for array in stored):
        ctx.unsupported(f"LayerNormalization scale of shape {scale.shape} for axes of shape {normalized}")
        return
    state = {"weight": np.broadcast_to(scale, normalized).copy()}
    arguments = {"eps": number(_epsilon(ctx))}
    if bias is None:
        arguments["bias"] = "False"
    else:
        state["bias"] = np.broadcast_to(bias, normalized).copy()
    layer = call("nn.LayerNorm", flat(ints(normalized)), **arguments)
    ctx.assign(call(ctx.module(layer, state, shared=[1, 2]), ctx.x(0)))


def _layer_norm_with_statistics(ctx: TorchNodeContext, axis: int) -> None:
    """Mean, InvStdDev and Y = (x - Mean) * InvStdDev * scale + bias, each where read."""
    axes = _reduced_axes(ctx, axis)
    if axes is None:
        return
    source = ctx.x(0)
    mean = ctx.temporary(call(f"{source}.mean", dim=axes, keepdim="True"), "mean")
    variance = call(f"{source}.var", dim=axes, unbiased="False", keepdim="True")
    inv_std = ctx.temporary(call("torch.rsqrt", f"{flat(variance)} + {number(_epsilon(ctx))}"), "inv_std_dev")
    normalized = f"({source} - {mean}) * {inv_std} * {ctx.x(1)}"
    ctx.assign(f"{normalized} + {ctx.x(2)}" if ctx.has_input(2) else normalized)
    for output, variable in ((1, mean), (2, inv_std)):
        if ctx.output_used(output):
            ctx.alias_output(output, variable)


@EMITTERS.register("GroupNormalization", since=18)
def emit_group_norm_per_group(ctx: TorchNodeContext) -> None:
    """nn.GroupNorm or F.group_norm, each group's scale and bias repeated over its channels"""
    _group_norm(ctx, per_group=True)


@EMITTERS.register("GroupNormalization", since=21)
def emit_group_norm(ctx: TorchNodeContext) -> None:
    """nn.GroupNorm(groups, channels, eps); F.group_norm for parameters computed at run time"""
    _group_norm(ctx, per_group=False)


def _group_norm(ctx: TorchNodeContext, *, per_group: bool) -> None:
    groups = int(ctx.attr("num_groups"))
    eps = _eps_argument(_epsilon(ctx), "eps")
    shape = ctx.shape(0)
    channels = shape[1] if shape is not None and len(shape) > 1 else None
    stored = _constants(ctx, 1, 2)
    if stored is not None and channels is not None:
        repeats = channels // groups if per_group else 1
        state = {"weight": np.repeat(stored[0].reshape(-1), repeats), "bias": np.repeat(stored[1].reshape(-1), repeats)}
        layer = call("nn.GroupNorm", str(groups), str(channels), **eps)
        ctx.assign(call(ctx.module(layer, state, shared=[1, 2]), ctx.x(0)))
        return
    source = ctx.x(0)
    parameters: list[Expr] = [ctx.x(1), ctx.x(2)]
    if per_group:
        per_channel = str(channels // groups) if channels is not None else f"{source}.shape[1] // {groups}"
        parameters = [call(f"{parameter}.repeat_interleave", per_channel) for parameter in (ctx.x(1), ctx.x(2))]
    ctx.assign(call("F.group_norm", source, str(groups), *parameters, **eps))


@EMITTERS.register("LpNormalization")
def emit_lp_norm(ctx: TorchNodeContext) -> None:
    """x / torch.linalg.vector_norm(x, p, axis, keepdim=True), 0 where the norm is 0"""
    p = int(ctx.attr("p", 2))
    axis = int(ctx.attr("axis", -1))
    source = ctx.x(0)
    norm = ctx.temporary(call("torch.linalg.vector_norm", source, ord=str(p), dim=str(axis), keepdim="True"), "norm")
    ctx.assign(call("torch.where", f"{norm} == 0", "0.0", f"{source} / {norm}"))


@EMITTERS.register("LRN")
def emit_lrn(ctx: TorchNodeContext) -> None:
    """nn.LocalResponseNorm(size, alpha, beta, k) for odd sizes"""
    size = int(ctx.attr("size"))
    if size % 2 == 0:
        ctx.unsupported(
            f"LRN with an even size ({size}): PyTorch centres the window one channel differently",
            "use an odd size",
        )
        return
    layer = call(
        "nn.LocalResponseNorm",
        str(size),
        alpha=number(float(ctx.attr("alpha", 1e-4))),
        beta=number(float(ctx.attr("beta", 0.75))),
        k=number(float(ctx.attr("bias", 1.0))),
    )
    ctx.assign(call(ctx.module(layer), ctx.x(0)))
