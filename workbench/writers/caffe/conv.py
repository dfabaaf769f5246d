"""Convolutions and nearest upsampling -> Convolution / Deconvolution layers.

Weight layouts agree: ONNX ``Conv`` weights are ``(M, C/group, kH, kW)`` like
Caffe's Convolution; ``ConvTranspose`` weights are ``(C, M/group, kH, kW)`` like
Caffe's Deconvolution. Caffe's deconvolution output is
``stride*(H-1) + dilation*(k-1) + 1 - 2*pad``, ONNX's adds ``output_padding``
and allows different begin/end pads, which Caffe cannot express.

Nearest upsampling by an integer factor ``s`` (``Resize``/``Upsample``) is a
depthwise Deconvolution with ``kernel = stride = s`` and all weights 1: each
input pixel is copied into an ``s x s`` block, which is what nearest sampling
with integer scale gives for the coordinate modes checked below. BVLC Caffe has
no Upsample layer; this form runs in both BVLC Caffe and OpenCV.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ...formats import caffe_pb2
from .net import CAFFE_LAYERS, CaffeNet
from .spatial import Window, window


def _set_window(param: caffe_pb2.ConvolutionParameter, win: Window) -> None:
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


def _weights(node: ir.Node, net: CaffeNet) -> tuple[np.ndarray, np.ndarray | None] | None:
    weight = net.constant(node.inputs[1])
    bias_value = node.inputs[2] if len(node.inputs) > 2 else None
    bias = net.constant(bias_value) if bias_value is not None else None
    if weight is None or (bias_value is not None and bias is None):
        net.problem(
            node,
            "dynamic-weights",
            f"{node.op_type} weights or bias are computed at run time; Caffe stores them as blobs",
            "make them parameters of the source model, or run simplify to fold them",
        )
        return None
    return weight, bias


@CAFFE_LAYERS.register("Conv")
def convert_conv(node: ir.Node, net: CaffeNet) -> None:
    """Convolution (group, dilation, depthwise)"""
    found = _weights(node, net)
    if found is None:
        return
    weight, bias = found
    win = window(node, net, weight.shape[2:])
    if win is None:
        return
    layer = net.add_layer(
        node, "Convolution", weights=[weight] + ([bias] if bias is not None else []), weight_inputs=[1, 2]
    )
    param = layer.convolution_param
    param.num_output = weight.shape[0]
    param.bias_term = bias is not None
    _set_window(param, win)
    group = node.attributes.get_int("group", 1)
    if group != 1:
        param.group = group


@CAFFE_LAYERS.register("ConvTranspose")
def convert_conv_transpose(node: ir.Node, net: CaffeNet) -> None:
    """Deconvolution"""
    found = _weights(node, net)
    if found is None:
        return
    weight, bias = found
    win = window(node, net, weight.shape[2:])
    if win is None:
        return
    output_padding = tuple(node.attributes.get_ints("output_padding", (0, 0)))
    if any(output_padding):
        net.problem(
            node,
            "output-padding",
            f"output_padding {list(output_padding)} adds rows/columns Caffe's Deconvolution does not produce",
            "use output_padding=0 in the source model (adjust kernel or padding instead)",
        )
        return
    in_shape, out_shape = net.shape(node.inputs[0]), net.shape(node.outputs[0])
    if in_shape is not None and out_shape is not None:
        expected = tuple(
            s * (h - 1) + d * (k - 1) + 1 - 2 * p
            for h, k, s, p, d in zip(in_shape[2:], win.kernel, win.stride, win.pad, win.dilation)
        )
        if expected != tuple(out_shape[2:]):
            net.problem(
                node,
                "deconv-shape",
                f"Caffe's Deconvolution would give {expected}, the graph has {tuple(out_shape[2:])}",
                "export without output_shape, using symmetric pads",
            )
            return
    group = node.attributes.get_int("group", 1)
    layer = net.add_layer(
        node, "Deconvolution", weights=[weight] + ([bias] if bias is not None else []), weight_inputs=[1, 2]
    )
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


@CAFFE_LAYERS.register("Resize", "Upsample")
def convert_resize(node: ir.Node, net: CaffeNet) -> None:
    """Deconvolution with fixed weights for nearest upsampling by an integer factor"""
    in_shape, out_shape = net.shape(node.inputs[0]), net.shape(node.outputs[0])
    mode = node.attributes.get_string("mode", "nearest")
    transform = node.attributes.get_string("coordinate_transformation_mode", "half_pixel")
    nearest = node.attributes.get_string("nearest_mode", "round_prefer_floor")
    if node.op_type == "Upsample":
        transform, nearest = "asymmetric", "floor"
    if in_shape is None or out_shape is None or len(in_shape) != 4:
        net.problem(
            node, "dynamic-shape", "the resize needs known 4-D input and output shapes", "export with fixed shapes"
        )
        return
    factors = [o / i for i, o in zip(in_shape, out_shape)]
    integer = all(f == int(f) and f >= 1 for f in factors) and factors[:2] == [1, 1]
    if mode != "nearest" or not integer or nearest not in _REPLICATING_MODES.get(transform, ()):
        net.problem(
            node,
            "resize-mode",
            f"{node.op_type} mode={mode}, coordinate_transformation_mode={transform}, nearest_mode={nearest}, "
            f"scale {factors[2:]}; only nearest upsampling by an integer factor maps to Caffe",
            "use F.interpolate(scale_factor=<integer>, mode='nearest'), or a learned ConvTranspose2d",
        )
        return
    channels = in_shape[1]
    scale = (int(factors[2]), int(factors[3]))
    layer = net.add_layer(node, "Deconvolution", weights=[np.ones((channels, 1, *scale), np.float32)])
    param = layer.convolution_param
    param.num_output = channels
    param.group = channels
    param.bias_term = False
    _set_window(param, Window(scale, scale, (0, 0), (1, 1)))
