"""Normalization layers: ``nn.BatchNorm{1,2,3}d``, ``nn.InstanceNorm{1,2,3}d``,
``nn.LayerNorm`` and ``nn.LocalResponseNorm``.

Inference-mode BatchNormalization is
``y = (x - mean) / sqrt(var + eps) * scale + bias`` in both frameworks; the
PyTorch layer also keeps ``num_batches_tracked``, written as 0 so that
``load_state_dict`` finds every key. LRN is
``y = x / (k + alpha / size * sum of x^2 over the size channels around c) ^ beta``
in both; for an even ``size`` the window sits one channel differently (ONNX
puts the extra channel after c, PyTorch before), so only odd sizes are written.
"""

from __future__ import annotations

import numpy as np

from .codegen import call, flat, ints, number
from .program import EMITTERS, TorchNodeContext


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


@EMITTERS.register("BatchNormalization")
def emit_batch_norm(ctx: TorchNodeContext) -> None:
    """nn.BatchNorm1d/2d/3d(channels, eps) in inference mode"""
    if ctx.attr("training_mode", 0) or any(output.uses() for output in ctx.node.outputs[1:]):
        ctx.unsupported(
            "BatchNormalization in training mode (batch statistics as outputs)",
            "export the source model in eval() mode",
        )
        return
    spatial = _norm_rank(ctx, "nn.BatchNorm", 2)
    found = ctx.weights(1, 2, 3, 4)
    if spatial is None or found is None:
        return
    scale, bias, mean, var = found.values()
    channels = scale.size
    arguments = {}
    eps = float(ctx.attr("epsilon", 1e-5))
    if number(eps) != "1e-05":
        arguments["eps"] = number(eps)
    state = {
        "weight": scale.reshape(channels),
        "bias": bias.reshape(channels),
        "running_mean": mean.reshape(channels),
        "running_var": var.reshape(channels),
        "num_batches_tracked": np.zeros((), dtype=np.int64),
    }
    constructor = call(f"nn.BatchNorm{spatial}d", str(channels), **arguments)
    layer = ctx.module(constructor, state, shared=[1, 2, 3, 4])
    ctx.assign(call(layer, ctx.x(0)))


@EMITTERS.register("InstanceNormalization")
def emit_instance_norm(ctx: TorchNodeContext) -> None:
    """nn.InstanceNorm1d/2d/3d(channels, eps, affine=True)"""
    spatial = _norm_rank(ctx, "nn.InstanceNorm", 3)
    found = ctx.weights(1, 2)
    if spatial is None or found is None:
        return
    scale, bias = found.values()
    channels = scale.size
    eps = number(float(ctx.attr("epsilon", 1e-5)))
    layer = call(f"nn.InstanceNorm{spatial}d", str(channels), eps=eps, affine="True")
    state = {"weight": scale.reshape(channels), "bias": bias.reshape(channels)}
    ctx.assign(call(ctx.module(layer, state, shared=[1, 2]), ctx.x(0)))


@EMITTERS.register("LayerNormalization")
def emit_layer_norm(ctx: TorchNodeContext) -> None:
    """nn.LayerNorm(normalized shape, eps) over the trailing axes from `axis`"""
    shape = ctx.shape(0)
    axis = int(ctx.attr("axis", -1))
    scale = ctx.const(1)
    bias = ctx.const(2) if ctx.has_input(2) else None
    if shape is None or scale is None or (ctx.has_input(2) and bias is None):
        ctx.unsupported(
            "LayerNormalization needs the input rank and constant scale and bias",
            "run shape inference or simplify the model first",
        )
        return
    normalized = tuple(size for size in shape[axis:] if size is not None)
    if len(normalized) != len(shape[axis:]):
        ctx.problem(
            "dynamic-shape",
            f"LayerNormalization over axes of unknown size {shape[axis:]}",
            "give the model fixed input shapes and simplify it first",
        )
        return
    size = int(np.prod(normalized))
    state = {"weight": np.broadcast_to(scale, normalized).copy()}
    arguments = {"eps": number(float(ctx.attr("epsilon", 1e-5)))}
    if bias is None:
        arguments["bias"] = "False"
    else:
        state["bias"] = np.broadcast_to(bias, normalized).copy()
    if scale.size not in (1, size):
        ctx.unsupported(f"LayerNormalization scale of shape {scale.shape} for axes of shape {normalized}")
        return
    layer = call("nn.LayerNorm", flat(ints(normalized)), **arguments)
    ctx.assign(call(ctx.module(layer, state, shared=[1, 2]), ctx.x(0)))


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
