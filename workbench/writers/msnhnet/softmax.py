"""Softmax and LogSoftmax -> ``softmax``, or an exact construction over channels.

MsnhNet's ``softmax`` normalises the whole flattened sample, split into ``groups``
contiguous chunks, and leaves its output without dimensions (C = H = W = 0): no
layer that needs an image may follow it, and a ``varop`` after it computes nothing.
So it is written only when the normalised axis is the last one with data (Softmax
before opset 13 normalises the flattened trailing axes: always) and nothing but
``connect`` layers read the result.

Any other softmax over an axis of length A, with T values after it, is written on
the data viewed as (A, 1, T) — the axis as channels — from layers that keep
dimensions, each exact up to float rounding:

    m = maxpool maxPoolDepth (the channel maximum)   -> conv 1x1 of ones (broadcast to A channels)
    d = x - m   (varop subInv)                       -> e = exp(d) (varop exp)
    s = reduction sum over channels                  -> conv 1x1 of ones (broadcast)
    softmax = e / s (varop divInv);  log-softmax = d - log(s) (varop log, subInv)

With values before the axis (other than the batch), the data viewed as (before,
A, T) is permuted so that the axis leads, normalised, and permuted back.
"""

from __future__ import annotations

import math

import numpy as np

from .activation import varop
from .net import MSNHNET_LAYERS, Dims, MsnhLayer, MsnhNodeContext

_DIMLESS_READERS = ("Gemm", "MatMul")  # converted to ``connect``, which reads only the element count


def _axis(ctx: MsnhNodeContext, rank: int) -> int:
    axis = int(ctx.attr("axis"))
    return axis + rank if axis < 0 else axis


def _native_allowed(ctx: MsnhNodeContext) -> bool:
    output = ctx.node.outputs[0]
    return all(user.op_type in _DIMLESS_READERS for user in output.consumers())


@MSNHNET_LAYERS.register("Softmax", since=13)
def convert_softmax(ctx: MsnhNodeContext) -> None:
    """softmax (groups) when only Linear layers read it; else exp / sum from layers with dimensions (any axis), exactly"""
    _softmax(ctx, log=False, flattening=False)


@MSNHNET_LAYERS.register("Softmax")
def convert_softmax_flattening(ctx: MsnhNodeContext) -> None:
    """softmax (groups) over the flattened trailing axes; exp / sum from layers with dimensions when read as an image"""
    _softmax(ctx, log=False, flattening=True)


@MSNHNET_LAYERS.register("LogSoftmax", since=13)
def convert_log_softmax(ctx: MsnhNodeContext) -> None:
    """x - max - log(sum(exp(x - max))) from layers with dimensions"""
    _softmax(ctx, log=True, flattening=False)


@MSNHNET_LAYERS.register("LogSoftmax")
def convert_log_softmax_flattening(ctx: MsnhNodeContext) -> None:
    """x - max - log(sum(exp(x - max))) over the flattened trailing axes"""
    _softmax(ctx, log=True, flattening=True)


def _softmax(ctx: MsnhNodeContext, *, log: bool, flattening: bool) -> None:
    shape = ctx.static_shape(0)
    if shape is None:
        ctx.problem("dynamic-shape", "softmax needs a known input shape", "export with a fixed input shape")
        return
    axis = _axis(ctx, len(shape))
    if axis == 0:
        ctx.problem("batch-axis", "softmax over the batch axis", "normalise over an axis after the batch")
        return
    before = math.prod(shape[1:axis])
    along = math.prod(shape[axis:]) if flattening else shape[axis]
    after = 1 if flattening else math.prod(shape[axis + 1 :])
    if after == 1 and not log and _native_allowed(ctx):
        if ctx.feed(0) is not None:
            ctx.add_layer("softmax", {"groups": before}, (0, 0, 0), size=ctx.previous()[1])
        return
    _over_channels(ctx, before, along, after, log)


def _ones(count: int) -> np.ndarray:
    return np.ones((count, 1, 1, 1), np.float32)


def _broadcast(ctx: MsnhNodeContext, channels: int, dims: Dims) -> None:
    """A 1x1 conv of ones: a (1, H, W) layer repeated over ``channels`` channels (exact)."""
    ctx.add_layer("conv", {"filters": channels, "useBias": 0}, dims, weights=[_ones(channels)], output=None)


def _over_channels(ctx: MsnhNodeContext, before: int, along: int, after: int, log: bool) -> None:
    """The construction over channels on the input viewed as (along, before·after); with
    values before the axis, the input is permuted so that the axis leads, and back after."""
    value = ctx.value(0)
    if value is None:
        return
    own = ctx.dims_of(0)
    dims = own if before == 1 and own is not None and own[0] == along else (along, before, after)
    if before == 1:
        x = ctx.layer_for(value, dims)
        if x is None:
            return
        ctx.bring(x)
    else:
        if ctx.feed(0, (before, along, after)) is None:
            return
        x = ctx.add_layer("permute", {"dim0": 1, "dim1": 0, "dim2": 2}, dims, output=None, role="axis-first")
    _normalise(ctx, x, dims, log, final=before == 1)
    if before != 1:
        ctx.add_layer("permute", {"dim0": 1, "dim1": 0, "dim2": 2}, (before, along, after), role="axis-back")


def _normalise(ctx: MsnhNodeContext, x: MsnhLayer, dims: Dims, log: bool, final: bool) -> None:
    channels, plane = dims[0], (1, dims[1], dims[2])
    ctx.add_layer("maxpool", {"maxPoolDepth": 1, "outChannels": 1}, plane, output=None, role="max")
    _broadcast(ctx, channels, dims)
    shifted = varop(ctx, "subInv", refs=[x], output=False)
    exps: MsnhLayer | None = varop(ctx, "exp", output=False)
    ctx.add_layer("reduction", {"type": "sum", "axis": 0}, plane, output=None, role="sum")
    if log:
        varop(ctx, "log", output=False)
        _broadcast(ctx, channels, dims)
        if shifted is not None:
            varop(ctx, "subInv", refs=[shifted], output=final)
    else:
        _broadcast(ctx, channels, dims)
        if exps is not None:
            varop(ctx, "divInv", refs=[exps], output=final)
