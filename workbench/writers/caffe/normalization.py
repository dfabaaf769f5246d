"""BatchNormalization -> BatchNorm + Scale, the usual Caffe pair.

Caffe's BatchNorm only normalizes: ``y = (x - mean/f) / sqrt(var/f + eps)`` with
blobs ``[mean, var, f]``; the writer stores ``f = 1`` (the moving-average scale
factor of training). The affine part ``gamma * y + beta`` is a Scale layer with
``bias_term``. Both run in place on the input blob when nothing else reads it.
A model with BatchNorm already folded into the convolutions (``fold_bn``) needs
neither layer.
"""

from __future__ import annotations

import numpy as np

from .net import CAFFE_LAYERS, CaffeNodeContext


@CAFFE_LAYERS.register("BatchNormalization")
def convert_batch_norm(ctx: CaffeNodeContext) -> None:
    """BatchNorm (mean, var, factor 1, eps) + Scale (gamma, beta)"""
    found = ctx.weights(1, 2, 3, 4, remedy="export the model in eval() mode so the running statistics are stored")
    if found is None:
        return
    scale, bias, mean, var = found.values()
    if ctx.attr("training_mode", 0) or any(v is not None and v.consumers() for v in ctx.node.outputs[1:]):
        ctx.problem("training-mode", "BatchNormalization in training mode", "export the model in eval() mode")
        return
    norm = ctx.add_layer(
        "BatchNorm",
        outputs=[None],
        weights=[mean, var, np.ones(1, np.float32)],
        weight_inputs=[3, 4, None],
        in_place=True,
    )
    norm.batch_norm_param.use_global_stats = True
    norm.batch_norm_param.eps = float(ctx.attr("epsilon", 1e-5))
    affine = ctx.add_layer(
        "Scale",
        [norm.top[0]],
        [ctx.node.outputs[0]],
        role="scale",
        weights=[scale, bias],
        weight_inputs=[1, 2],
        in_place=True,
    )
    affine.scale_param.bias_term = True
