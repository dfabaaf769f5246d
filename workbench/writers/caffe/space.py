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


@CAFFE_LAYERS.register("SpaceToDepth")
def convert_space_to_depth(ctx: CaffeNodeContext) -> None:
    """Convolution with kernel = stride = blocksize and one-hot weights (depthwise for CRD)"""
    found = _block(ctx)
    if found is None:
        return
    (_, channels, _, _), b = found
    crd = str(ctx.attr("mode", "DCR")) == "CRD"
    weights = np.zeros((channels * b * b, 1 if crd else channels, b, b), np.float32)
    for i in range(b):
        for j in range(b):
            if crd:
                weights[np.arange(channels) * b * b + i * b + j, 0, i, j] = 1.0
            else:
                weights[(i * b + j) * channels + np.arange(channels), np.arange(channels), i, j] = 1.0
    layer = ctx.add_layer("Convolution", weights=[weights])
    param = layer.convolution_param
    param.num_output, param.bias_term = channels * b * b, False
    if crd:
        param.group = channels
    set_conv_window(param, (b, b), (b, b))


@CAFFE_LAYERS.register("DepthToSpace")
def convert_depth_to_space(ctx: CaffeNodeContext) -> None:
    """Deconvolution with kernel = stride = blocksize and one-hot weights (depthwise for CRD)"""
    found = _block(ctx)
    if found is None:
        return
    (_, depth, _, _), b = found
    channels = depth // (b * b)
    crd = str(ctx.attr("mode")) == "CRD"
    weights = np.zeros((depth, 1 if crd else channels, b, b), np.float32)
    for i in range(b):
        for j in range(b):
            if crd:
                weights[np.arange(channels) * b * b + i * b + j, 0, i, j] = 1.0
            else:
                weights[(i * b + j) * channels + np.arange(channels), np.arange(channels), i, j] = 1.0
    layer = ctx.add_layer("Deconvolution", weights=[weights])
    param = layer.convolution_param
    param.num_output, param.bias_term = channels, False
    if crd:
        param.group = channels
    set_conv_window(param, (b, b), (b, b))
