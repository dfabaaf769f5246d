"""SpaceToDepth / DepthToSpace -> one-hot Convolution / Deconvolution.

Both only move values, so each is a (transposed) convolution with kernel and
stride ``b`` (the block size) whose weights are 0 or 1, one 1 per output value:
every output is ``1 * x[source] + 0 * ...``, exact for finite inputs.

* ``SpaceToDepth``: ``y[k, h, w] = x[c, h*b + i, w*b + j]`` with ``k = (i*b + j)*C + c``
  (``DCR``, the only mode before opset 25) or ``k = c*b*b + i*b + j`` (``CRD``), a
  Convolution with ``W[k, c, i, j] = 1``, depthwise for ``CRD``.
* ``DepthToSpace``: ``y[c, h*b + i, w*b + j] = x[k, h, w]`` with ``k = (i*b + j)*C + c``
  (``DCR``, the default) or ``k = c*b*b + i*b + j`` (``CRD``, PyTorch's
  PixelShuffle), a Deconvolution with ``W[k, c, i, j] = 1``; ``CRD`` reads each
  output channel from its own ``b*b`` inputs, so it is depthwise (``group = C``).
"""

from __future__ import annotations

import numpy as np

from .conv import set_conv_window
from .net import CAFFE_LAYERS, CaffeNodeContext


def _block(ctx: CaffeNodeContext) -> tuple[tuple[int, ...], int] | None:
    shape = ctx.static_shape(0)
    block = int(ctx.attr("blocksize"))
    if shape is None or len(shape) != 4:
        ctx.problem("rank", f"{ctx.node.op_type} needs a known NCHW input, found {shape}", "export with fixed shapes")
        return None
    return shape, block


def _one_hot(channels: int, b: int, crd: bool) -> np.ndarray:
    """``W[k, c, i, j] = 1`` for the depth channel ``k`` of (c, i, j); ``(C*b*b, 1, b, b)`` when
    depthwise (CRD: channel ``c`` owns depth channels ``c*b*b`` to ``c*b*b + b*b - 1``)."""
    weights = np.zeros((channels * b * b, 1 if crd else channels, b, b), np.float32)
    for i in range(b):
        for j in range(b):
            if crd:
                weights[np.arange(channels) * b * b + i * b + j, 0, i, j] = 1.0
            else:
                weights[(i * b + j) * channels + np.arange(channels), np.arange(channels), i, j] = 1.0
    return weights


def _write(ctx: CaffeNodeContext, layer_type: str, channels: int, b: int, crd: bool) -> None:
    layer = ctx.add_layer(layer_type, weights=[_one_hot(channels, b, crd)])
    param = layer.convolution_param
    param.num_output = channels * b * b if layer_type == "Convolution" else channels
    param.bias_term = False
    if crd:
        param.group = channels
    set_conv_window(param, (b, b), (b, b))


@CAFFE_LAYERS.register("SpaceToDepth")
def convert_space_to_depth(ctx: CaffeNodeContext) -> None:
    """Convolution with kernel = stride = blocksize and one-hot weights (depthwise for CRD)"""
    found = _block(ctx)
    if found is not None:
        (_, channels, _, _), b = found
        _write(ctx, "Convolution", channels, b, str(ctx.attr("mode", "DCR")) == "CRD")


@CAFFE_LAYERS.register("DepthToSpace")
def convert_depth_to_space(ctx: CaffeNodeContext) -> None:
    """Deconvolution with kernel = stride = blocksize and one-hot weights (depthwise for CRD)"""
    found = _block(ctx)
    if found is not None:
        (_, depth, _, _), b = found
        _write(ctx, "Deconvolution", depth // (b * b), b, str(ctx.attr("mode")) == "CRD")
