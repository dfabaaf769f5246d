"""Convolutions as ``nn.Conv{1,2,3}d`` and ``nn.ConvTranspose{1,2,3}d``.

ONNX pads are ``[begin_1, ..., begin_n, end_1, ..., end_n]``; PyTorch layers pad
each spatial axis by the same amount at both ends. Symmetric pads become the
layer's ``padding``; asymmetric ones become an ``F.pad`` before a convolution
(``F.pad`` lists pairs from the last axis: ``(begin_n, end_n, ..., begin_1, end_1)``)
and a crop after a transposed convolution, which removes ``padding`` from each
end of its full output.

``auto_pad`` (``SAME_UPPER`` / ``SAME_LOWER`` / ``VALID``) and a transposed
convolution's ``output_shape`` are resolved into explicit pads by the converter
contract (``ctx.window()``, see ``workbench.graph.pads``), the same way for every writer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...graph.pads import Window
from .codegen import Expr, call, flat, ints, single_or_tuple
from .program import EMITTERS, TorchNodeContext


def torch_pad_order(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX per-axis begins/ends -> the flat ``F.pad`` tuple (last axis first)."""
    pairs: list[int] = []
    for begin, end in zip(reversed(list(begins)), reversed(list(ends))):
        pairs += [int(begin), int(end)]
    return pairs


def conv_arguments(
    kernel: Sequence[int], strides: Sequence[int], padding: Sequence[int], dilations: Sequence[int], groups: int
) -> dict[str, Expr]:
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


def _weights(ctx: TorchNodeContext) -> tuple[np.ndarray, np.ndarray | None] | None:
    found = ctx.weights(1, 2)
    if found is None:
        return None
    weight, bias = found[1], found.get(2)
    if weight.ndim not in (3, 4, 5):
        ctx.unsupported(
            f"{ctx.node.op_type} with a {weight.ndim - 2}-d kernel; PyTorch layers are 1-d to 3-d",
        )
        return None
    return weight, bias


def _layer_window(ctx: TorchNodeContext, weight: np.ndarray) -> Window | None:
    found = ctx.window(weight.shape[2:])
    if found is not None and found.spatial != weight.ndim - 2:
        ctx.unsupported(f"{ctx.node.op_type} kernel_shape {list(found.kernel)} does not match weights {weight.shape}")
        return None
    return found


def _state(weight: np.ndarray, bias: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"weight": weight} | ({"bias": bias} if bias is not None else {})


@EMITTERS.register("Conv")
def emit_conv(ctx: TorchNodeContext) -> None:
    """nn.Conv1d/2d/3d (asymmetric pads: F.pad first)"""
    found = _weights(ctx)
    win = _layer_window(ctx, found[0]) if found is not None else None
    if found is None or win is None:
        return
    weight, bias = found
    groups = int(ctx.attr("group"))
    source = ctx.x(0)
    padding = win.begins
    if not win.symmetric:
        source = ctx.temporary(call("F.pad", source, ints(torch_pad_order(win.begins, win.ends))), f"{source}_padded")
        padding = (0,) * win.spatial
    arguments = conv_arguments(win.kernel, win.strides, padding, win.dilations, groups)
    if bias is None:
        arguments["bias"] = "False"
    layer = call(f"nn.Conv{win.spatial}d", str(weight.shape[1] * groups), str(weight.shape[0]), **arguments)
    ctx.assign(call(ctx.module(layer, _state(weight, bias), shared=[1, 2]), source))


@EMITTERS.register("ConvTranspose")
def emit_conv_transpose(ctx: TorchNodeContext) -> None:
    """nn.ConvTranspose1d/2d/3d (asymmetric pads: cropped after)"""
    found = _weights(ctx)
    win = _layer_window(ctx, found[0]) if found is not None else None
    if found is None or win is None:
        return
    weight, bias = found
    groups = int(ctx.attr("group"))
    # PyTorch crops `padding` from both ends; the rest of an asymmetric pad is sliced off
    padding = [min(b, e) for b, e in zip(win.begins, win.ends)]
    arguments = conv_arguments(win.kernel, win.strides, padding, win.dilations, groups)
    if any(p != 0 for p in win.output_padding):
        arguments["output_padding"] = single_or_tuple(win.output_padding)
    if bias is None:
        arguments["bias"] = "False"
    # keyword order as in the PyTorch signature: output_padding comes before groups and dilation
    order = ("kernel_size", "stride", "padding", "output_padding", "groups", "bias", "dilation")
    ordered = {key: arguments[key] for key in order if key in arguments}
    layer = call(f"nn.ConvTranspose{win.spatial}d", str(weight.shape[0]), str(weight.shape[1] * groups), **ordered)
    output = call(ctx.module(layer, _state(weight, bias), shared=[1, 2]), ctx.x(0))
    if win.symmetric:
        ctx.assign(output)
        return
    crops = []
    for begin, end, kept in zip(win.begins, win.ends, padding):
        start, stop = begin - kept, end - kept
        crops.append(f"{start or ''}:{-stop if stop else ''}")
    ctx.assign(f"{flat(output)}[:, :, {', '.join(crops)}]")
