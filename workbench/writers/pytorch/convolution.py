"""Convolutions as ``nn.Conv{1,2,3}d`` and ``nn.ConvTranspose{1,2,3}d``, or as
``F.conv{1,2,3}d`` and ``F.conv_transpose{1,2,3}d`` on the tensors the node is given
when its weight or bias is computed at run time (a graph input, or the output of
other nodes); both compute ``y = x * W + b`` with the same grouping and layout.

ONNX pads are ``[begin_1, ..., begin_n, end_1, ..., end_n]``; PyTorch layers pad
each spatial axis by the same amount at both ends. Symmetric pads become the
layer's ``padding``; asymmetric ones become an ``F.pad`` before a convolution
(``F.pad`` lists pairs from the last axis: ``(begin_n, end_n, ..., begin_1, end_1)``)
and a crop after a transposed convolution, which removes ``padding`` from each
end of its full output.

``auto_pad`` (``SAME_UPPER`` / ``SAME_LOWER`` / ``VALID``) and a transposed
convolution's ``output_shape`` are resolved into explicit pads by the converter
contract (``ctx.window()``, see ``workbench.graph.pads``), the same way for every writer;
an ``output_shape`` beyond the full output becomes ``output_padding``, which PyTorch
fills as ONNX does (bias only).
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


def _stored(ctx: TorchNodeContext) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The weight and bias when both are constants the layer can store, else None
    (the node then becomes a functional call on the tensors it is given)."""
    weight = ctx.const(1)
    bias = ctx.const(2) if ctx.has_input(2) else None
    if weight is None or (ctx.has_input(2) and bias is None):
        return None
    return weight, bias


def _layer_window(ctx: TorchNodeContext) -> Window | None:
    """The node's window, its kernel from the weight's shape (or ``kernel_shape``); None
    after reporting a kernel PyTorch has no layer for or that contradicts the weight."""
    weight_shape = ctx.shape(1)
    kernel = weight_shape[2:] if weight_shape is not None and None not in weight_shape else None
    found = ctx.window([int(k) for k in kernel if k is not None] if kernel is not None else None)
    if found is None:
        return None
    if found.spatial not in (1, 2, 3):
        ctx.unsupported(f"{ctx.node.op_type} with a {found.spatial}-d kernel; PyTorch convolves 1-d to 3-d")
        return None
    if kernel is not None and tuple(kernel) != found.kernel:
        ctx.unsupported(f"{ctx.node.op_type} kernel_shape {list(found.kernel)} does not match weights {weight_shape}")
        return None
    return found


def _state(weight: np.ndarray, bias: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"weight": weight} | ({"bias": bias} if bias is not None else {})


def _tensors(ctx: TorchNodeContext) -> list[Expr]:
    """The weight and bias arguments of a functional call (``None`` for a left-out bias)."""
    return [ctx.x(1), ctx.x(2) if ctx.has_input(2) else "None"]


def _functional_arguments(
    win: Window, padding: Sequence[int], groups: int, output_padding: Sequence[int] = ()
) -> dict[str, Expr]:
    """F.conv* / F.conv_transpose* keyword arguments that differ from the defaults."""
    arguments: dict[str, Expr] = {}
    for name, values, default in (
        ("stride", win.strides, 1),
        ("padding", padding, 0),
        ("output_padding", output_padding, 0),
        ("dilation", win.dilations, 1),
    ):
        if any(v != default for v in values):
            arguments[name] = single_or_tuple(values)
    if groups != 1:
        arguments["groups"] = str(groups)
    return arguments


@EMITTERS.register("Conv")
def emit_conv(ctx: TorchNodeContext) -> None:
    """nn.Conv1d/2d/3d, or F.conv1d/2d/3d when the weights are computed at run time (asymmetric pads: F.pad first)"""
    win = _layer_window(ctx)
    if win is None:
        return
    groups = int(ctx.attr("group"))
    source = ctx.x(0)
    padding = win.begins
    if not win.symmetric:
        source = ctx.temporary(call("F.pad", source, ints(torch_pad_order(win.begins, win.ends))), f"{source}_padded")
        padding = (0,) * win.spatial
    stored = _stored(ctx)
    if stored is None:
        arguments = _functional_arguments(win, padding, groups)
        ctx.assign(call(f"F.conv{win.spatial}d", source, *_tensors(ctx), **arguments))
        return
    weight, bias = stored
    arguments = conv_arguments(win.kernel, win.strides, padding, win.dilations, groups)
    if bias is None:
        arguments["bias"] = "False"
    layer = call(f"nn.Conv{win.spatial}d", str(weight.shape[1] * groups), str(weight.shape[0]), **arguments)
    ctx.assign(call(ctx.module(layer, _state(weight, bias), shared=[1, 2]), source))


def _transposed_layer(ctx: TorchNodeContext, win: Window, padding: Sequence[int], groups: int) -> Expr:
    """``self.layer(x)`` for stored weights, else ``F.conv_transposeNd(x, w, b, ...)``."""
    stored = _stored(ctx)
    if stored is None:
        arguments = _functional_arguments(win, padding, groups, win.output_padding)
        return call(f"F.conv_transpose{win.spatial}d", ctx.x(0), *_tensors(ctx), **arguments)
    weight, bias = stored
    arguments = conv_arguments(win.kernel, win.strides, padding, win.dilations, groups)
    if any(p != 0 for p in win.output_padding):
        arguments["output_padding"] = single_or_tuple(win.output_padding)
    if bias is None:
        arguments["bias"] = "False"
    # keyword order as in the PyTorch signature: output_padding comes before groups and dilation
    order = ("kernel_size", "stride", "padding", "output_padding", "groups", "bias", "dilation")
    ordered = {key: arguments[key] for key in order if key in arguments}
    layer = call(f"nn.ConvTranspose{win.spatial}d", str(weight.shape[0]), str(weight.shape[1] * groups), **ordered)
    return call(ctx.module(layer, _state(weight, bias), shared=[1, 2]), ctx.x(0))


@EMITTERS.register("ConvTranspose")
def emit_conv_transpose(ctx: TorchNodeContext) -> None:
    """nn.ConvTranspose1d/2d/3d, or F.conv_transpose1d/2d/3d when the weights are computed at run time (asymmetric pads: cropped after)"""
    win = _layer_window(ctx)
    if win is None:
        return
    if any(p >= max(s, d) for p, s, d in zip(win.output_padding, win.strides, win.dilations)):
        ctx.unsupported(
            f"ConvTranspose output_padding {list(win.output_padding)} not below the stride or dilation "
            f"({list(win.strides)}, {list(win.dilations)}), which PyTorch requires"
        )
        return
    groups = int(ctx.attr("group"))
    # PyTorch crops `padding` from both ends; the rest of an asymmetric pad is sliced off
    padding = [min(b, e) for b, e in zip(win.begins, win.ends)]
    output = _transposed_layer(ctx, win, padding, groups)
    if win.symmetric:
        ctx.assign(output)
        return
    crops = []
    for begin, end, kept in zip(win.begins, win.ends, padding):
        start, stop = begin - kept, end - kept
        crops.append(f"{start or ''}:{-stop if stop else ''}")
    ctx.assign(f"{flat(output)}[:, :, {', '.join(crops)}]")
