"""Convolutions -> Convolution / Deconvolution layers, any pads, exactly.

Weight layouts agree: ONNX ``Conv`` weights are ``(M, C/group, kH, kW)`` like
Caffe's Convolution; ``ConvTranspose`` weights are ``(C, M/group, kH, kW)`` like
Caffe's Deconvolution.

* **Conv** with pads that differ at the two ends (``SAME_UPPER`` on an even input,
  TensorFlow exports) is aligned as ``spatial`` describes: Caffe's pad
  ``P = b + m*s`` gives windows that start where ONNX's do, and a Slice keeps the
  graph's outputs. Caffe rounds a convolution's output size down, as ONNX does.
* **ConvTranspose.** Along one axis the full transposed convolution of ``H``
  inputs has ``F = s*(H - 1) + (k - 1)*d + 1`` outputs; ONNX keeps the full
  outputs ``[b, F + output_padding - e)``, rows past ``F`` receiving no input (the
  bias only). Caffe's Deconvolution keeps ``[P, F - P)``. The writer

  1. dilates the kernel itself, inserting ``d - 1`` zero taps between taps (OpenCV
     DNN ignores a Deconvolution's ``dilation``; a zero tap adds nothing): the
     same transposed convolution with dilation 1;
  2. appends zero taps at the kernel's end while ONNX keeps rows past ``F``
     (``output_padding`` beyond the end pad, an ``output_shape`` larger than the
     full output): those rows then exist and receive the bias only, as in ONNX;
  3. pads by ``P = min(begin trim, end trim)`` and Slices off the rest.

  Each step leaves every kept output the same sum of the same products.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ...formats import caffe_pb2
from ...graph.pads import Window
from .net import CAFFE_LAYERS, CaffeNodeContext
from .spatial import AxisPlan, align_axis, conv_count, crop, planar_window


def set_conv_window(
    param: caffe_pb2.ConvolutionParameter,
    kernel: tuple[int, ...],
    stride: tuple[int, ...] = (1, 1),
    pad: tuple[int, ...] = (0, 0),
    dilation: tuple[int, ...] = (1, 1),
) -> None:
    """Kernel, stride, pad and dilation of a 2-D (De)Convolution, in the shortest form."""
    if kernel[0] == kernel[1]:
        param.kernel_size.append(kernel[0])
    else:
        param.kernel_h, param.kernel_w = kernel
    if pad[0] == pad[1]:
        if pad[0]:
            param.pad.append(pad[0])
    else:
        param.pad_h, param.pad_w = pad
    if stride[0] == stride[1]:
        if stride[0] != 1:
            param.stride.append(stride[0])
    else:
        param.stride_h, param.stride_w = stride
    if tuple(dilation) != (1, 1):
        param.dilation.extend(dilation[:1] if dilation[0] == dilation[1] else dilation)


def _blobs(weight: np.ndarray, bias: np.ndarray | None) -> list[np.ndarray]:
    return [weight] if bias is None else [weight, bias]


def _weights_and_window(ctx: CaffeNodeContext) -> tuple[np.ndarray, np.ndarray | None, Window] | None:
    """The (transposed) convolution's weights, bias and resolved window, or None after a problem."""
    found = ctx.weights(1, 2)
    win = planar_window(ctx, found[1].shape[2:]) if found is not None else None
    return None if found is None or win is None else (found[1], found.get(2), win)


def _conv_plans(ctx: CaffeNodeContext, win: Window) -> list[AxisPlan] | None:
    """Caffe's pad and kept outputs per axis for asymmetric pads, or None after a problem."""
    in_shape = ctx.static_shape(0)
    if in_shape is None:
        ctx.problem("dynamic-shape", "asymmetric pads need a known input shape", "export with fixed shapes")
        return None
    plans = []
    for size, k, s, d, b, e in zip(in_shape[2:], win.kernel, win.strides, win.dilations, win.begins, win.ends):
        count = (size + b + e - ((k - 1) * d + 1)) // s + 1
        plan = align_axis(b, s, count, partial(conv_count, size, k, s, d))
        if plan is None:  # no larger pad fails to hold the windows; kept for safety
            ctx.unsupported(f"pads {list(win.pads)} cannot be aligned with Caffe's windows")
            return None
        plans.append(plan)
    return plans


@CAFFE_LAYERS.register("Conv")
def convert_conv(ctx: CaffeNodeContext) -> None:
    """Convolution (group, dilation, depthwise); pads longer at one end + Slice"""
    found = _weights_and_window(ctx)
    if found is None:
        return
    weight, bias, win = found
    plans = None if win.symmetric else _conv_plans(ctx, win)
    if not win.symmetric and plans is None:
        return
    cropped = plans is not None and any(plan.cropped for plan in plans)
    layer = ctx.add_layer(
        "Convolution",
        outputs=[None] if cropped else None,
        weights=_blobs(weight, bias),
        weight_inputs=[1, 2],
    )
    param = layer.convolution_param
    param.num_output = weight.shape[0]
    param.bias_term = bias is not None
    pads = tuple(plan.pad for plan in plans) if plans is not None else win.begins
    set_conv_window(param, win.kernel, win.strides, pads, win.dilations)
    group = int(ctx.attr("group"))
    if group != 1:
        param.group = group
    if plans is None:
        return
    ctx.problem(
        "conv-pads",
        f"pads {list(win.pads)} written as Caffe's pad {list(pads)}"
        + (" and a Slice that keeps the graph's outputs (exact)" if cropped else " (the same windows, exact)"),
        severity="warning",
    )
    if cropped:
        ranges = {axis + 2: (p.first, p.first + p.count, p.total) for axis, p in enumerate(plans)}
        crop(ctx, str(layer.top[0]), ranges, ctx.node.outputs[0])


def dilated_kernel(weight: np.ndarray, dilation: tuple[int, ...], tail: tuple[int, ...] = (0, 0)) -> np.ndarray:
    """``weight`` with ``d - 1`` zero taps between taps along each spatial axis, and ``tail``
    more zero taps at the end: the same (transposed) convolution with dilation 1."""
    kernel = weight.shape[2:]
    shape = [(k - 1) * d + 1 + t for k, d, t in zip(kernel, dilation, tail)]
    out = np.zeros((*weight.shape[:2], *shape), weight.dtype)
    out[:, :, : (kernel[0] - 1) * dilation[0] + 1 : dilation[0], : (kernel[1] - 1) * dilation[1] + 1 : dilation[1]] = (
        weight
    )
    return out


def _deconvolution_axes(
    ctx: CaffeNodeContext, win: Window, in_shape: tuple[int, ...]
) -> tuple[tuple[int, int], list[tuple[int, int, int, int]]] | None:
    """(zero taps appended per axis, [(pad, keep start, keep end, Caffe length)] per axis), or None
    after reporting an output size the graph does not have."""
    tails, axes = [], []
    for size, k, s, d, b, e, extra in zip(
        in_shape[2:], win.kernel, win.strides, win.dilations, win.begins, win.ends, win.output_padding
    ):
        full = s * (size - 1) + (k - 1) * d + 1
        end = full + extra - e  # ONNX keeps the full outputs [b, end)
        tail = max(0, end - full)
        pad = min(b, full + tail - end)
        total = full + tail - 2 * pad
        tails.append(tail)
        axes.append((pad, b - pad, end - pad, total))
    out_shape = ctx.output_shape(0)
    sizes = tuple(keep_end - keep_start for _, keep_start, keep_end, _ in axes)
    if out_shape is not None and None not in out_shape[2:] and tuple(out_shape[2:]) != sizes:
        ctx.problem(
            "deconv-shape",
            f"the transposed convolution gives {sizes}, the graph has {tuple(out_shape[2:])}",
            "export without output_shape, with explicit pads",
        )
        return None
    return (tails[0], tails[1]), axes


@CAFFE_LAYERS.register("ConvTranspose")
def convert_conv_transpose(ctx: CaffeNodeContext) -> None:
    """Deconvolution; dilation as zero taps, output_padding and asymmetric pads + Slice"""
    found = _weights_and_window(ctx)
    in_shape = ctx.static_shape(0)
    if found is None:
        return
    if in_shape is None:
        ctx.problem("dynamic-shape", "ConvTranspose needs a known input shape", "export with fixed shapes")
        return
    weight, bias, win = found
    planned = _deconvolution_axes(ctx, win, in_shape)
    if planned is None:
        return
    tails, axes = planned
    kernel = weight
    if win.dilations != (1, 1) or any(tails):
        kernel = dilated_kernel(weight, win.dilations, tails)
    cropped = any((start, end) != (0, total) for _, start, end, total in axes)
    group = int(ctx.attr("group"))
    layer = ctx.add_layer(
        "Deconvolution", outputs=[None] if cropped else None, weights=_blobs(kernel, bias), weight_inputs=[1, 2]
    )
    param = layer.convolution_param
    param.num_output = weight.shape[1] * group
    param.bias_term = bias is not None
    set_conv_window(param, kernel.shape[2:], win.strides, tuple(pad for pad, *_ in axes))
    if group != 1:
        param.group = group
    if kernel is not weight or cropped:
        ctx.problem(
            "deconv-form",
            f"ConvTranspose (dilations {list(win.dilations)}, pads {list(win.pads)}, output_padding "
            f"{list(win.output_padding)}) written as a Deconvolution with a {kernel.shape[2]}x{kernel.shape[3]} "
            "kernel of the weights and zero taps" + (", and a Slice (exact)" if cropped else " (exact)"),
            severity="warning",
        )
    if cropped:
        ranges = {axis + 2: (start, end, total) for axis, (_, start, end, total) in enumerate(axes)}
        crop(ctx, str(layer.top[0]), ranges, ctx.node.outputs[0])
