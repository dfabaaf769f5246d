"""Convolutions -> ``conv``, ``deconv``.

Weight layouts agree with ONNX: ``conv`` takes ``[N][C/groups][kY][kX]`` (ONNX
``Conv``'s ``(M, C/group, kH, kW)``), ``deconv`` ``[C][N][kY][kX]`` (``ConvTranspose``'s
``(C, M/group, kH, kW)``).

Where MsnhNet 2.0 computes something else (each checked in the real runtime):

* ``conv`` lays out its im2col with X and Y swapped (``cpuIm2colEx`` is called with
  kSizeX as the kernel height, paddingX as the height padding, ...), so any
  convolution whose kernel, stride, padding or dilation differs between X and Y
  comes out wrong; and a 2x2 kernel with dilation 2, padding 1, stride 1 takes a
  3x3-only im2col path. Such a convolution is written exactly as a square one: the
  kernel zero-embedded in a ``K x K`` kernel (a dilation that differs between axes
  is written into the kernel as zero taps first), the padding as an explicit
  ``padding`` layer (which also holds pads that differ at the two ends), and
  strides that differ as the common part in the ``conv`` plus a ``slice`` step.
  Zero taps add exact zeros.
* ``deconv`` counts its input as width x width x channels, which MsnhNet's runClassify
  checks for layer 0: a deconv of a non-square input is never layer 0;
* ``deconv`` with ``groups > 1`` is wrong, and it has no dilation, output padding or
  pads that differ at the two ends: grouped weights are written block-diagonal
  (zeros between groups) with ``groups: 1``, a dilation as zero taps, and the pads
  as a full ``deconv`` followed by a ``padding`` layer cropping it (negative pads).
"""

from __future__ import annotations

import math

import numpy as np

from .net import MSNHNET_LAYERS, Dims, MsnhLayer, MsnhNodeContext, pair
from .window import Plane, plane_of


def _planar(weight: np.ndarray) -> np.ndarray:
    """A 1-D kernel ``(out, in, k)`` as the one-row 2-D kernel ``(out, in, 1, k)``."""
    return weight[:, :, None, :] if weight.ndim == 3 else weight


def _undilated(weight: np.ndarray, dilations: tuple[int, int]) -> np.ndarray:
    """The kernel with its dilation written as zero taps."""
    out_c, in_c, kh, kw = weight.shape
    dh, dw = dilations
    spread = np.zeros((out_c, in_c, dh * (kh - 1) + 1, dw * (kw - 1) + 1), np.float32)
    spread[:, :, ::dh, ::dw] = weight
    return spread


def _square(weight: np.ndarray, size: int) -> np.ndarray:
    """The kernel zero-embedded at the top left of a ``size x size`` kernel."""
    out = np.zeros((*weight.shape[:2], size, size), np.float32)
    out[:, :, : weight.shape[2], : weight.shape[3]] = weight
    return out


def _native_conv(plane: Plane) -> bool:
    """Whether MsnhNet's ``conv`` computes this window as written (see the module docstring)."""
    kh, kw = plane.kernel
    square = kh == kw and plane.strides[0] == plane.strides[1] and plane.begins == plane.ends
    square = square and plane.begins[0] == plane.begins[1] and (kh == 1 or plane.dilations[0] == plane.dilations[1])
    avx_path = (kh, plane.dilations[0], plane.begins[0], plane.strides[0]) == (2, 2, 1, 1)
    return square and not avx_path


def _conv_params(filters: int, groups: int, kernel: int, stride: int, pad: int, dilation: int) -> dict:
    params: dict = {"filters": filters}
    if groups != 1:
        params["groups"] = groups
    for key, value, default in (("kSize", kernel, 1), ("stride", stride, 1), ("padding", pad, 0)):
        pair(params, key, value, value, default)
    if dilation != 1 and kernel > 1:
        params["dilation"] = dilation
    return params


@MSNHNET_LAYERS.register("Conv")
def convert_conv(ctx: MsnhNodeContext) -> None:
    """conv (groups, dilation); non-square windows and one-sided pads as a square kernel + padding (+ slice), exactly"""
    found = ctx.weights(1, 2)
    window = ctx.window(found[1].shape[2:]) if found is not None else None
    plane = plane_of(ctx, window) if window is not None else None
    if found is None or plane is None or ctx.feed(0, ctx.dims_of(0)) is None:
        return
    weight, bias = _planar(found[1]), found.get(2)
    out_shape = ctx.output_shape(0)
    groups = int(ctx.attr("group"))
    if _native_conv(plane):
        params = _conv_params(
            weight.shape[0], groups, plane.kernel[0], plane.strides[0], plane.begins[0], plane.dilations[0]
        )
        _add_conv(ctx, params, weight, bias, _out_dims(out_shape, weight.shape[0]))
        return
    _square_conv(ctx, plane, weight, bias, groups, _out_dims(out_shape, weight.shape[0]))


def _out_dims(shape: tuple[int | None, ...] | None, channels: int) -> Dims:
    known = [int(d) if d is not None else 1 for d in (shape or ())]
    return (channels, known[2], known[3]) if len(known) == 4 else (channels, 1, known[2] if len(known) == 3 else 1)


def _add_conv(
    ctx: MsnhNodeContext,
    params: dict,
    weight: np.ndarray,
    bias: np.ndarray | None,
    dims: Dims,
    output: bool = True,
) -> MsnhLayer:
    if bias is None:
        params["useBias"] = 0
    weights = [weight] if bias is None else [weight, bias]
    return ctx.add_layer("conv", params, dims, weights=weights, weight_inputs=[1, 2], output=True if output else None)


def _square_conv(
    ctx: MsnhNodeContext, plane: Plane, weight: np.ndarray, bias: np.ndarray | None, groups: int, dims: Dims
) -> None:
    """The convolution as explicit padding, a square-kernel ``conv`` with a common
    stride, and a ``slice`` keeping every (sY, sX)-th output when the strides differ."""
    dilations = plane.dilations
    if dilations[0] != dilations[1] and min(plane.kernel) > 1:
        weight, dilations = _undilated(weight, dilations), (1, 1)
    dilation = max(dilations) if min(plane.kernel) == 1 else dilations[0]
    size = max(weight.shape[2:])
    stride = math.gcd(*plane.strides)
    steps = (plane.strides[0] // stride, plane.strides[1] // stride)
    kernel_span = dilation * (size - 1) + 1
    # rows the conv must produce so that every steps-th one gives the output
    rows = [(out - 1) * step + 1 for out, step in zip(dims[1:], steps)]
    ends = [(r - 1) * stride + kernel_span - n - b for r, n, b in zip(rows, plane.size, plane.begins)]
    if any(plane.begins) or any(ends):
        padded = (plane.size[0] + plane.begins[0] + ends[0], plane.size[1] + plane.begins[1] + ends[1])
        padding = {"top": plane.begins[0], "down": ends[0], "left": plane.begins[1], "right": ends[1]}
        ctx.add_layer("padding", padding, (weight.shape[1] * groups, *padded), output=None, role="pad")
    params = _conv_params(weight.shape[0], groups, size, stride, 0, dilation)
    cropped = steps != (1, 1)
    conv_dims = (dims[0], rows[0], rows[1])
    layer = _add_conv(ctx, params, _square(weight, size), bias, conv_dims, output=not cropped)
    layer.transforms.append(f"kernel {tuple(plane.kernel)} written as a {size}x{size} kernel with zero taps")
    if cropped:
        ctx.add_layer("slice", {"step1": steps[0], "step2": steps[1]}, dims, role="stride")


@MSNHNET_LAYERS.register("ConvTranspose")
def convert_conv_transpose(ctx: MsnhNodeContext) -> None:
    """deconv; groups as block-diagonal weights, dilation as zero taps, output padding and one-sided pads as a crop"""
    found = ctx.weights(1, 2)
    window = ctx.window(found[1].shape[2:]) if found is not None else None
    plane = plane_of(ctx, window) if window is not None else None
    if found is None or plane is None or window is None or ctx.feed(0, ctx.dims_of(0)) is None:
        return
    weight, bias = _planar(found[1]), found.get(2)
    if plane.size[0] != plane.size[1]:
        ctx.first_layer_allowed()  # as layer 0, MsnhNet checks the input against width x width x channels
    weight = _deconv_weight(weight, int(ctx.attr("group")), plane.dilations)
    dims = _out_dims(ctx.output_shape(0), weight.shape[1])
    kh, kw = weight.shape[2:]
    params: dict = {"filters": weight.shape[1]}
    pair(params, "kSize", kw, kh, 1)
    pair(params, "stride", plane.strides[1], plane.strides[0], 1)
    full = tuple((n - 1) * s + k for n, s, k in zip(plane.size, plane.strides, (kh, kw)))
    crop_end = [f - b - o for f, b, o in zip(full, plane.begins, dims[1:])]
    if plane.begins == tuple(crop_end):
        pair(params, "padding", plane.begins[1], plane.begins[0], 0)
        _add_deconv(ctx, params, weight, bias, dims, final=True)
        return
    _cropped_deconv(ctx, params, weight, bias, (full[0], full[1]), plane.begins, crop_end, dims)


def _deconv_weight(weight: np.ndarray, groups: int, dilations: tuple[int, int]) -> np.ndarray:
    """ConvTranspose weights as one group without dilation: block-diagonal over the groups,
    the dilation written as zero taps."""
    if groups > 1:
        weight = _block_diagonal(weight, groups)
    if dilations != (1, 1):
        weight = _undilated(weight, dilations)
    return weight


def _cropped_deconv(
    ctx: MsnhNodeContext,
    params: dict,
    weight: np.ndarray,
    bias: np.ndarray | None,
    full: tuple[int, int],
    begins: tuple[int, int],
    ends: list[int],
    dims: Dims,
) -> None:
    """The full ``deconv`` (every tap: ``(n - 1) * s + k`` per axis) cropped to ``dims`` by a
    ``padding`` with negative pads, ``begins`` at the top and left, ``ends`` at the bottom and
    right. A negative end (output padding) adds rows past every tap, which hold the bias
    alone: the bias then comes after the crop, as a ``batchnorm`` (scale 1, mean 0, var 1,
    eps 0: exactly ``x + bias``)."""
    bias_later = bias is not None and min(ends) < 0
    _add_deconv(ctx, params, weight, None if bias_later else bias, (dims[0], *full), final=False)
    crop = {"top": -begins[0], "down": -ends[0], "left": -begins[1], "right": -ends[1]}
    ctx.add_layer("padding", crop, dims, output=not bias_later, role="crop")
    if bias_later and bias is not None:
        ones, zeros = np.ones_like(bias), np.zeros_like(bias)
        ctx.add_layer("batchnorm", {"eps": 0}, dims, weights=[ones, bias, zeros, ones], weight_inputs=[None, 2])


def _add_deconv(
    ctx: MsnhNodeContext, params: dict, weight: np.ndarray, bias: np.ndarray | None, dims: Dims, final: bool
) -> None:
    if bias is None:
        params["useBias"] = 0
    weights = [weight] if bias is None else [weight, bias]
    ctx.add_layer("deconv", params, dims, weights=weights, weight_inputs=[1, 2], output=True if final else None)


def _block_diagonal(weight: np.ndarray, groups: int) -> np.ndarray:
    """ConvTranspose weights ``(C, M/groups, kH, kW)`` as one group ``(C, M, kH, kW)``."""
    in_c, out_per_group = weight.shape[:2]
    per_group = in_c // groups
    dense = np.zeros((in_c, out_per_group * groups, *weight.shape[2:]), np.float32)
    for g in range(groups):
        rows = slice(g * per_group, (g + 1) * per_group)
        dense[rows, g * out_per_group : (g + 1) * out_per_group] = weight[rows]
    return dense
