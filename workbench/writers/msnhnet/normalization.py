"""Normalisation -> ``batchNorm`` of a ``conv``/``connect``, ``batchnorm``; LRN from ``varop`` and ``conv``.

``BatchNormalization`` after a ``conv`` becomes its ``batchNorm: 1`` (weights scale,
bias, mean, var; a conv bias ``b`` moves into the mean: ``mean - b``), after a
``connect`` its ``batchNorm: 1`` (order scale, mean, var, bias), elsewhere a
``batchnorm`` layer: ``scale * (x - mean) / sqrt(var + eps) + bias``.

``LRN`` across channels, ``x / (bias + alpha / size * sum of x^2 over the channel
window)^beta``, has no MsnhNet layer; it is written exactly from four:
``varop mul`` (x^2), a 1x1 ``conv`` whose weights are ``alpha / size`` on the band of
channels each window covers and whose bias is ``bias``, ``varop pow`` (-beta) and
``varop mul`` with x.
"""

from __future__ import annotations

import numpy as np

from .activation import varop
from .net import MSNHNET_LAYERS, MsnhLayer, MsnhNodeContext


def _statistics(ctx: MsnhNodeContext) -> dict[int, np.ndarray] | None:
    if int(ctx.attr("training_mode", 0)):
        ctx.problem("training-mode", "BatchNormalization in training mode", "export the model in eval mode")
        return None
    return ctx.weights(1, 2, 3, 4)


def _fold_into(ctx: MsnhNodeContext, layer: MsnhLayer, stats: dict[int, np.ndarray], eps: float) -> None:
    """``batchNorm: 1`` in the conv or connect that computed the input (a bias moves into the mean)."""
    scale, shift, mean, var = (np.asarray(stats[i], np.float32) for i in (1, 2, 3, 4))
    if layer.params.pop("useBias", 1):
        mean = mean - layer.weights.pop(1)
        layer.weight_params.pop(1)
    layer.params["batchNorm"] = 1
    if layer.kind == "conv":
        layer.params["eps"] = eps
        ctx.absorb(layer, [scale, shift, mean, var], [1, 2, 3, 4])
    else:
        layer.params["bnEps"] = eps
        ctx.absorb(layer, [scale, mean, var, shift], [1, 3, 4, 2])
    layer.transforms.append("BatchNormalization written as the layer's batchNorm")


@MSNHNET_LAYERS.register("BatchNormalization")
def convert_batch_norm(ctx: MsnhNodeContext) -> None:
    """batchNorm of the preceding conv/connect, else batchnorm (scale, bias, mean, var)"""
    stats = _statistics(ctx)
    if stats is None:
        return
    eps = float(ctx.attr("epsilon"))
    host = ctx.absorbing_layer(("conv", "connect"))
    if host is not None and not host.params.get("batchNorm") and host.activation == "none" and host.role is None:
        _fold_into(ctx, host, stats, eps)
        return
    dims = ctx.feed(0, ctx.dims_of(0))
    if dims is None:
        return
    weights = [stats[i] for i in (1, 2, 3, 4)]
    ctx.add_layer("batchnorm", {"eps": eps}, dims, weights=weights, weight_inputs=[1, 2, 3, 4])


def _lrn_weights(channels: int, size: int, alpha: float) -> np.ndarray:
    """1x1 conv weights summing, for each channel c, channels c - (size-1)//2 ... c + size//2 (ONNX's window)."""
    offsets = np.arange(channels)[None, :] - np.arange(channels)[:, None]
    band = (offsets >= -((size - 1) // 2)) & (offsets <= size // 2)
    return (band * np.float32(alpha / size)).astype(np.float32).reshape(channels, channels, 1, 1)


@MSNHNET_LAYERS.register("LRN")
def convert_lrn(ctx: MsnhNodeContext) -> None:
    """varop mul, conv 1x1 (alpha/size on the channel window, bias), varop pow -beta, varop mul"""
    value, dims = ctx.value(0), ctx.dims_of(0)
    x = ctx.layer_for(value, dims) if value is not None and dims is not None else None
    if dims is None or x is None:
        return
    ctx.bring(x)
    size, alpha, beta, bias = (ctx.attr(name) for name in ("size", "alpha", "beta", "bias"))
    varop(ctx, "mul", refs=[x], output=False)
    weights = [_lrn_weights(dims[0], int(size), float(alpha)), np.full(dims[0], bias, np.float32)]
    ctx.add_layer("conv", {"filters": dims[0]}, dims, weights=weights, output=None, role="window")
    varop(ctx, "pow", -float(beta), output=False)
    varop(ctx, "mul", refs=[x])
