"""Convolutions as ``nn.Conv{1,2,3}d`` and ``nn.ConvTranspose{1,2,3}d``.

ONNX pads are ``[begin_1, ..., begin_n, end_1, ..., end_n]``; PyTorch layers pad
each spatial axis by the same amount at both ends. Symmetric pads become the
layer's ``padding``; asymmetric ones become an ``F.pad`` before a convolution
(``F.pad`` lists pairs from the last axis: ``(begin_n, end_n, ..., begin_1, end_1)``)
and a crop after a transposed convolution, which removes ``padding`` from each
end of its full output.

``auto_pad = SAME_UPPER / SAME_LOWER`` is resolved from the input size:
``total = max((ceil(in / stride) - 1) * stride + (kernel - 1) * dilation + 1 - in, 0)``,
``begin = total // 2`` (UPPER) or ``total - total // 2`` (LOWER).

A transposed convolution's output size is
``stride * (in - 1) + output_padding + (kernel - 1) * dilation + 1 - begin - end``;
with ``output_shape`` given the pads are solved from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .codegen import Expr, call, flat, ints, single_or_tuple
from .program import EMITTERS, NodeContext


def torch_pad_order(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX per-axis begins/ends -> the flat ``F.pad`` tuple (last axis first)."""
    pairs: list[int] = []
    for begin, end in zip(reversed(list(begins)), reversed(list(ends))):
        pairs += [int(begin), int(end)]
    return pairs


def resolve_pads(
    ctx: NodeContext, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> list[int] | None:
    """ONNX pads for a convolution or pooling node, ``auto_pad`` resolved; None
    (with a problem recorded) when that needs an unknown input size."""
    spatial = len(kernel)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        return [int(p) for p in ctx.attr("pads", (0,) * (2 * spatial))]
    if auto_pad == "VALID":
        return [0] * (2 * spatial)
    shape = ctx.shape(0)
    sizes = shape[2:] if shape is not None else None
    if sizes is None or any(size is None for size in sizes):
        ctx.problem(
            "dynamic-shape",
            f"auto_pad={auto_pad} needs the input's spatial size, which is not known",
            "give the model fixed input shapes (--input-shape) and simplify it first",
        )
        return None
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return begins + ends


def conv_arguments(kernel, strides, padding, dilations, groups) -> dict[str, Expr]:
    """Keyword arguments that differ from the PyTorch defaults, so the layer reads short."""
    arguments: dict[str, Expr] = {"kernel_size": single_or_tuple(kernel)}
    if any(s != 1 for s in strides):
        arguments["stride"] = single_or_tuple(strides)
    if any(p != 0 for p in padding):
        arguments["padding"] = single_or_tuple(padding)
    if any(d != 1 for d in dilations):
        arguments["dilation"] = single_or_tuple(dilations)
    if groups != 1:
        arguments["groups"] = str(groups)
    return arguments


def _weights(ctx: NodeContext) -> tuple[np.ndarray, np.ndarray | None] | None:
    weight = ctx.const(1)
    bias = ctx.const(2) if ctx.has_input(2) else None
    if weight is None or (ctx.has_input(2) and bias is None):
        ctx.problem(
            "dynamic-weight",
            f"{ctx.node.op_type} weights are computed at run time, not stored in the model",
            "constant-fold the model (workbench.steps.simplify) so the weights are initializers",
        )
        return None
    if weight.ndim not in (3, 4, 5):
        ctx.unsupported(
            f"{ctx.node.op_type} with a {weight.ndim - 2}-d kernel; PyTorch layers are 1-d to 3-d",
        )
        return None
    return weight, bias


@dataclass
class _Geometry:
    """What Conv and ConvTranspose share: weights and the window attributes."""

    weight: np.ndarray
    bias: np.ndarray | None
    spatial: int
    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    groups: int

    def state(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight} | ({"bias": self.bias} if self.bias is not None else {})


def _geometry(ctx: NodeContext) -> _Geometry | None:
    found = _weights(ctx)
    if found is None:
        return None
    weight, bias = found
    spatial = weight.ndim - 2
    return _Geometry(
        weight,
        bias,
        spatial,
        list(weight.shape[2:]),
        list(ctx.attr("strides", (1,) * spatial)),
        list(ctx.attr("dilations", (1,) * spatial)),
        int(ctx.attr("group", 1)),
    )


@EMITTERS.register("Conv")
def emit_conv(ctx: NodeContext) -> None:
    """nn.Conv1d/2d/3d (asymmetric pads: F.pad first)"""
    conv = _geometry(ctx)
    if conv is None:
        return
    pads = resolve_pads(ctx, conv.kernel, conv.strides, conv.dilations)
    if pads is None:
        return
    begins, ends = pads[: conv.spatial], pads[conv.spatial :]
    source = ctx.x(0)
    padding = begins
    if begins != ends:
        source = ctx.temporary(call("F.pad", source, ints(torch_pad_order(begins, ends))), f"{source}_padded")
        padding = [0] * conv.spatial
    arguments = conv_arguments(conv.kernel, conv.strides, padding, conv.dilations, conv.groups)
    if conv.bias is None:
        arguments["bias"] = "False"
    layer = call(
        f"nn.Conv{conv.spatial}d", str(conv.weight.shape[1] * conv.groups), str(conv.weight.shape[0]), **arguments
    )
    ctx.assign(call(ctx.module(layer, conv.state(), shared=[1, 2]), source))


@EMITTERS.register("ConvTranspose")
def emit_conv_transpose(ctx: NodeContext) -> None:
    """nn.ConvTranspose1d/2d/3d (asymmetric pads: cropped after)"""
    conv = _geometry(ctx)
    if conv is None:
        return
    output_padding = list(ctx.attr("output_padding", (0,) * conv.spatial))
    pads = _transpose_pads(ctx, conv.kernel, conv.strides, conv.dilations, output_padding)
    if pads is None:
        return
    begins, ends = pads[: conv.spatial], pads[conv.spatial :]
    # PyTorch crops `padding` from both ends; the rest of an asymmetric pad is sliced off
    padding = [min(b, e) for b, e in zip(begins, ends)]
    arguments = conv_arguments(conv.kernel, conv.strides, padding, conv.dilations, conv.groups)
    if any(p != 0 for p in output_padding):
        arguments["output_padding"] = single_or_tuple(output_padding)
    if conv.bias is None:
        arguments["bias"] = "False"
    # keyword order as in the PyTorch signature: output_padding comes before groups and dilation
    order = ("kernel_size", "stride", "padding", "output_padding", "groups", "bias", "dilation")
    ordered = {key: arguments[key] for key in order if key in arguments}
    layer = call(
        f"nn.ConvTranspose{conv.spatial}d",
        str(conv.weight.shape[0]),
        str(conv.weight.shape[1] * conv.groups),
        **ordered,
    )
    output = call(ctx.module(layer, conv.state(), shared=[1, 2]), ctx.x(0))
    if begins == ends:
        ctx.assign(output)
        return
    crops = []
    for begin, end, kept in zip(begins, ends, padding):
        start, stop = begin - kept, end - kept
        crops.append(f"{start or ''}:{-stop if stop else ''}")
    ctx.assign(f"{flat(output)}[:, :, {', '.join(crops)}]")


def _transpose_pads(
    ctx: NodeContext,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    output_padding: Sequence[int],
) -> list[int] | None:
    spatial = len(kernel)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    output_shape = ctx.attr("output_shape")
    if output_shape is None and auto_pad == "NOTSET":
        return [int(p) for p in ctx.attr("pads", (0,) * (2 * spatial))]
    if output_shape is None and auto_pad == "VALID":
        return [0] * (2 * spatial)
    shape = ctx.shape(0)
    sizes = shape[2:] if shape is not None else None
    if sizes is None or any(size is None for size in sizes):
        ctx.problem(
            "dynamic-shape",
            "ConvTranspose output_shape / auto_pad needs the input's spatial size, which is not known",
            "give the model fixed input shapes (--input-shape) and simplify it first",
        )
        return None
    if output_shape is not None:
        targets = list(output_shape)[-spatial:]
    else:
        targets = [size * stride for size, stride in zip(sizes, strides)]
    begins, ends = [], []
    for size, k, s, d, extra, target in zip(sizes, kernel, strides, dilations, output_padding, targets):
        total = s * (size - 1) + extra + (k - 1) * d + 1 - target
        if total < 0:
            ctx.unsupported(f"ConvTranspose output_shape {list(output_shape)} is larger than the full output")
            return None
        # ONNX puts the odd pixel at the end only for SAME_UPPER (also with output_shape)
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return begins + ends
