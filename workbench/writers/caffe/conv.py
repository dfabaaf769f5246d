"""Convolutions and nearest upsampling -> Convolution / Deconvolution layers.

Weight layouts agree: ONNX ``Conv`` weights are ``(M, C/group, kH, kW)`` like
Caffe's Convolution; ``ConvTranspose`` weights are ``(C, M/group, kH, kW)`` like
Caffe's Deconvolution. Caffe's deconvolution output is
``stride*(H-1) + dilation*(k-1) + 1 - 2*pad``, ONNX's adds ``output_padding``
and allows different begin/end pads, which Caffe cannot express.

Nearest upsampling by an integer factor ``s`` (``Resize``/``Upsample``) is a
depthwise Deconvolution with ``kernel = stride = s`` and all weights 1: each
input pixel is copied into an ``s x s`` block, which is what nearest sampling
with integer scale gives for the coordinate modes checked below (``Upsample`` and
``Resize`` before opset 11 sample asymmetrically and round down). BVLC Caffe has
no Upsample layer; this form runs in both BVLC Caffe and OpenCV.
"""

from __future__ import annotations

import numpy as np

from ...formats import caffe_pb2
from ...graph.shapes import static_shape
from .net import CAFFE_LAYERS, CaffeNodeContext
from .spatial import CaffeWindow, window


def _set_window(param: caffe_pb2.ConvolutionParameter, win: CaffeWindow) -> None:
    if win.kernel[0] == win.kernel[1]:
        param.kernel_size.append(win.kernel[0])
    else:
        param.kernel_h, param.kernel_w = win.kernel
    if win.pad[0] == win.pad[1]:
        if win.pad[0]:
            param.pad.append(win.pad[0])
    else:
        param.pad_h, param.pad_w = win.pad
    if win.stride[0] == win.stride[1]:
        if win.stride[0] != 1:
            param.stride.append(win.stride[0])
    else:
        param.stride_h, param.stride_w = win.stride
    if win.dilation != (1, 1):
        param.dilation.extend(win.dilation[:1] if win.dilation[0] == win.dilation[1] else win.dilation)


def _blobs(weight: np.ndarray, bias: np.ndarray | None) -> list[np.ndarray]:
    return [weight] if bias is None else [weight, bias]


def _weights_and_window(ctx: CaffeNodeContext) -> tuple[np.ndarray, np.ndarray | None, CaffeWindow] | None:
    """The (transposed) convolution's weights, bias and Caffe window, or None after a problem."""
    found = ctx.weights(1, 2)
    win = window(ctx, found[1].shape[2:]) if found is not None else None
    return None if found is None or win is None else (found[1], found.get(2), win)


@CAFFE_LAYERS.register("Conv")
def convert_conv(ctx: CaffeNodeContext) -> None:
    """Convolution (group, dilation, depthwise)"""
    found = _weights_and_window(ctx)
    if found is None:
        return
    weight, bias, win = found
    layer = ctx.add_layer("Convolution", weights=_blobs(weight, bias), weight_inputs=[1, 2])
    param = layer.convolution_param
    param.num_output = weight.shape[0]
    param.bias_term = bias is not None
    _set_window(param, win)
    group = int(ctx.attr("group"))
    if group != 1:
        param.group = group


def _deconvolution_fits(ctx: CaffeNodeContext, win: CaffeWindow, output_padding: tuple[int, ...]) -> bool:
    """True when Caffe's Deconvolution gives the graph's output size; else reports why not."""
    if any(output_padding):
        ctx.problem(
            "output-padding",
            f"output_padding {list(output_padding)} adds rows/columns Caffe's Deconvolution does not produce",
            "use output_padding=0 in the source model (adjust kernel or padding instead)",
        )
        return False
    in_shape, out_shape = ctx.static_shape(0), static_shape(ctx.node.outputs[0])
    if in_shape is None or out_shape is None:
        return True
    expected = tuple(
        s * (h - 1) + d * (k - 1) + 1 - 2 * p
        for h, k, s, p, d in zip(in_shape[2:], win.kernel, win.stride, win.pad, win.dilation)
    )
    if expected != tuple(out_shape[2:]):
        ctx.problem(
            "deconv-shape",
            f"Caffe's Deconvolution would give {expected}, the graph has {tuple(out_shape[2:])}",
            "export without output_shape, using symmetric pads",
        )
        return False
    return True


@CAFFE_LAYERS.register("ConvTranspose")
def convert_conv_transpose(ctx: CaffeNodeContext) -> None:
    """Deconvolution"""
    found = _weights_and_window(ctx)
    output_padding = tuple(int(p) for p in ctx.attr("output_padding", (0, 0)))
    if found is None or not _deconvolution_fits(ctx, found[2], output_padding):
        return
    weight, bias, win = found
    group = int(ctx.attr("group"))
    layer = ctx.add_layer("Deconvolution", weights=_blobs(weight, bias), weight_inputs=[1, 2])
    param = layer.convolution_param
    param.num_output = weight.shape[1] * group
    param.bias_term = bias is not None
    _set_window(param, win)
    if group != 1:
        param.group = group


_REPLICATING_MODES = {
    # coordinate_transformation_mode -> nearest_mode values for which integer
    # upscaling copies each pixel into an s x s block. asymmetric: x_in = x_out / s;
    # half_pixel: x_in = (x_out + 0.5) / s - 0.5 = q + ((r + 0.5) / s - 0.5) with
    # x_out = q*s + r, and the offset lies strictly inside (-0.5, 0.5).
    "asymmetric": {"floor"},
    "half_pixel": {"round_prefer_floor", "round_prefer_ceil"},
    "pytorch_half_pixel": {"round_prefer_floor", "round_prefer_ceil"},
}


@CAFFE_LAYERS.register("Resize", since=11)
def convert_resize(ctx: CaffeNodeContext) -> None:
    """Deconvolution with fixed weights for nearest upsampling by an integer factor"""
    _nearest_upsampling(
        ctx, str(ctx.attr("mode")), str(ctx.attr("coordinate_transformation_mode")), str(ctx.attr("nearest_mode"))
    )


@CAFFE_LAYERS.register("Upsample")
@CAFFE_LAYERS.register("Resize", since=10)
def convert_upsample(ctx: CaffeNodeContext) -> None:
    """Deconvolution with fixed weights for nearest upsampling by an integer factor (asymmetric sampling)"""
    _nearest_upsampling(ctx, str(ctx.attr("mode")), "asymmetric", "floor")


def _nearest_upsampling(ctx: CaffeNodeContext, mode: str, transform: str, nearest: str) -> None:
    in_shape, out_shape = ctx.static_shape(0), static_shape(ctx.node.outputs[0])
    if in_shape is None or out_shape is None or len(in_shape) != 4:
        ctx.problem("dynamic-shape", "the resize needs known 4-D input and output shapes", "export with fixed shapes")
        return
    factors = [o / i for i, o in zip(in_shape, out_shape)]
    integer = all(f == int(f) and f >= 1 for f in factors) and factors[:2] == [1, 1]
    if mode != "nearest" or not integer or nearest not in _REPLICATING_MODES.get(transform, ()):
        ctx.problem(
            "resize-mode",
            f"{ctx.node.op_type} mode={mode}, coordinate_transformation_mode={transform}, nearest_mode={nearest}, "
            f"scale {factors[2:]}; only nearest upsampling by an integer factor maps to Caffe",
            "use F.interpolate(scale_factor=<integer>, mode='nearest'), or a learned ConvTranspose2d",
        )
        return
    channels = in_shape[1]
    scale = (int(factors[2]), int(factors[3]))
    layer = ctx.add_layer("Deconvolution", weights=[np.ones((channels, 1, *scale), np.float32)])
    param = layer.convolution_param
    param.num_output = channels
    param.group = channels
    param.bias_term = False
    _set_window(param, CaffeWindow(scale, scale, (0, 0), (1, 1)))
