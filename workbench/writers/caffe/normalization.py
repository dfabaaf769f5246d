"""Normalizations -> BatchNorm + Scale, LRN, or exact compositions of Caffe layers.

* **BatchNormalization** -> BatchNorm + Scale, the usual Caffe pair. Caffe's
  BatchNorm only normalizes: ``y = (x - mean/f) / sqrt(var/f + eps)`` with blobs
  ``[mean, var, f]``; the writer stores ``f = 1`` (the moving-average scale factor
  of training). The affine part ``gamma * y + beta`` is a Scale layer with
  ``bias_term``. Both run in place on the input blob when nothing else reads it.
  A model with BatchNorm already folded into the convolutions (``fold_bn``) needs
  neither layer.
* **LRN** ``y = x / (k + a/n * S)^b``, ``S`` the sum of squares over ``n``
  channels around ``c``: Caffe's LRN for an odd ``n``, written with ``k = 1`` as
  ``k^-b * x / (1 + (a/k)/n * S)^b`` (a Power ``scale = k^-b`` after it) because
  OpenCV's Caffe importer ignores LRN's ``k`` while BVLC applies it. An even ``n``
  (ONNX centres the window as ``[c - floor((n-1)/2), c + ceil((n-1)/2)]``, Caffe's
  LRN cannot) is written out: squares, a 1x1 Convolution whose weights are
  ``a/n`` on each channel's window with bias ``k``, Power ``-b``, a product.
  Caffe's LRN within channels (``x / (1 + a * mean of x^2 over k x k)^b``), which
  ONNX has no op for and the Caffe reader writes out as ``x * x``, a counted
  AveragePool, Mul, Add, Pow and Mul, is recognised and written back as one LRN
  layer with ``norm_region: WITHIN_CHANNEL``.
* **InstanceNormalization**, **LayerNormalization**, **GroupNormalization**
  ``y = (x - mean) / sqrt(var + eps) * scale + bias`` with the statistics over
  rows of the tensor (per (N, C) over H, W; over the axes from ``axis``; per (N,
  group)). Caffe's MVN adds ``eps`` to the deviation, not the variance, so it is
  used for the mean only: the tensor viewed as ``(rows, 1, length, 1)`` (a
  Reshape), MVN subtracts each row's mean, a product squares, a global AVE Pooling
  gives the variance, Power ``(var + eps)^-1/2``, a two-bottom Scale multiplies
  each row, a Reshape restores the shape and a Scale applies ``scale`` and
  ``bias``.
* **LpNormalization** ``y = x / ||x||_p`` along an axis (``p`` = 1, 2): on the
  ``views`` form of that axis, ``|x|`` or ``x * x``, a Convolution summing over the
  axis, Power ``(sum + FLT_MIN)^(-1/p)``, a Deconvolution copying it back, a product.
  ``FLT_MIN`` leaves any sum from ``2^-102`` up unchanged and turns a zero vector
  into zeros (as onnxruntime gives) instead of ``0 * inf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from ...formats import caffe_pb2
from ...graph.converter import constant_value
from .net import CAFFE_LAYERS, CaffeNodeContext
from .views import AxisView, from_view, product, reshape, to_view, view_spread, view_sum


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


_FLT_MIN = float(np.finfo(np.float32).tiny)


# --- local response normalization -------------------------------------------------------------


def _lrn_band(channels: int, size: int, alpha: float) -> np.ndarray:
    """The 1x1 Convolution summing ``alpha/size * x^2`` over ONNX's channel window of ``c``:
    ``[c - floor((size-1)/2), c + ceil((size-1)/2)]``."""
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    band = np.zeros((channels, channels, 1, 1), np.float32)
    for c in range(channels):
        band[c, max(0, c - before) : c + after + 1] = alpha / size
    return band


@CAFFE_LAYERS.register("LRN")
def convert_lrn(ctx: CaffeNodeContext) -> None:
    """LRN (odd size; bias k as alpha/k and a Power k^-beta), else squares, a 1x1 band Convolution, Power"""
    size, alpha, beta, bias = (
        int(ctx.attr("size")),
        float(ctx.attr("alpha")),
        float(ctx.attr("beta")),
        float(ctx.attr("bias")),
    )
    shape = ctx.static_shape(0)
    if size % 2 == 1 and bias > 0:
        # (k + a/n S)^b = k^b (1 + (a/k)/n S)^b: OpenCV's Caffe importer ignores LRN's k, BVLC does not
        layer = ctx.add_layer("LRN", outputs=None if bias == 1.0 else [None])
        layer.lrn_param.local_size, layer.lrn_param.alpha, layer.lrn_param.beta = size, alpha / bias, beta
        if bias != 1.0:
            power = ctx.add_layer("Power", [layer.top[0]], role="bias", in_place=True)
            power.power_param.scale = float(bias**-beta)
        return
    if shape is None or len(shape) != 4:
        ctx.problem("rank", f"LRN of an even size needs a known 4-D input, found {shape}", "use an odd size")
        return
    data = ctx.bottom(ctx.node.inputs[0])
    square = product(ctx, [data, data], role="square")
    summed = ctx.add_layer(
        "Convolution",
        [square],
        [None],
        role="window",
        weights=[_lrn_band(shape[1], size, alpha), np.full(shape[1], bias)],
    )
    summed.convolution_param.num_output = shape[1]
    summed.convolution_param.kernel_size.append(1)
    factor = ctx.add_layer("Power", [summed.top[0]], [None], role="power", in_place=True)
    factor.power_param.power = -beta
    product(ctx, [data, str(factor.top[0])], role=None, output=ctx.node.outputs[0])
    ctx.problem(
        "lrn-composed",
        f"LRN of even size {size} (a window Caffe's LRN cannot centre) written as squares, a 1x1 Convolution "
        "summing each channel's window, Power -beta and a product (exact)",
        severity="warning",
    )


# --- normalizations by statistics over some axes ----------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """The blobs of a row normalization: the view of the input, ``(var + eps)^-1/2`` per row
    (``(P, 1, 1, 1)``), and the normalized view."""

    data: str
    inverse: str
    normalized: str


def _normalized_rows(ctx: CaffeNodeContext, view: AxisView, epsilon: float) -> _Rows:
    """``(x - mean) / sqrt(var + eps)`` over ``L`` of the ``(P, 1, L, 1)`` view: MVN subtracts the
    mean, the mean of the squares is a global AVE Pooling, Power gives ``(var + eps)^-1/2`` and a
    two-bottom Scale multiplies each row by it."""
    data = to_view(ctx, ctx.bottom(ctx.node.inputs[0]), view)
    centred = ctx.add_layer("MVN", [data], [None], role="centre")
    centred.mvn_param.normalize_variance = False
    square = product(ctx, [str(centred.top[0]), str(centred.top[0])], role="square")
    inverse = ctx.add_layer("Pooling", [square], [None], role="variance")
    inverse.pooling_param.pool = caffe_pb2.PoolingParameter.AVE
    inverse.pooling_param.global_pooling = True
    power = ctx.add_layer("Power", [inverse.top[0]], [None], role="inverse_std", in_place=True)
    power.power_param.shift, power.power_param.power = epsilon, -0.5
    factor = reshape(ctx, str(power.top[0]), (view.rows,), "per_row")
    scaled = ctx.add_layer("Scale", [centred.top[0], factor], [None], role="normalize")
    scaled.scale_param.axis = 0
    return _Rows(data, str(power.top[0]), str(scaled.top[0]))


def _statistics(ctx: CaffeNodeContext, rows: _Rows, shape: tuple[int, ...]) -> None:
    """LayerNormalization's optional outputs ``Mean`` and ``InvStdDev`` (shape ``S[:axis] + 1...``),
    when the graph reads them: a global AVE Pooling of the view, and the row factor, reshaped."""
    for index, role in ((1, "mean"), (2, "inv_std_dev")):
        value = ctx.node.outputs[index] if index < len(ctx.node.outputs) else None
        if value is None or not (value.consumers() or value.is_graph_output()):
            continue
        blob = rows.inverse
        if index == 1:
            mean = ctx.add_layer("Pooling", [rows.data], [None], role=role)
            mean.pooling_param.pool = caffe_pb2.PoolingParameter.AVE
            mean.pooling_param.global_pooling = True
            blob = str(mean.top[0])
        reshape(ctx, blob, shape, f"{role}/shape", value)


def _affine(
    ctx: CaffeNodeContext, blob: str, view: AxisView, axis: int, scale: np.ndarray | None, bias: np.ndarray | None
) -> None:
    """Restore the shape, then ``* scale + bias`` over the axes from ``axis`` (either may be absent)."""
    if scale is None and bias is None:
        from_view(ctx, blob, view, ctx.node.outputs[0])
        return
    restored = from_view(ctx, blob, view, None)
    ctx.add_scale(restored, scale, bias, axis=axis, role="affine", weight_inputs=[1, 2])


def _norm_inputs(ctx: CaffeNodeContext) -> tuple[dict[int, np.ndarray], tuple[int, ...]] | None:
    """The scale and bias (by input index) and the input shape, or None after a problem."""
    found = ctx.weights(1, 2)
    shape = ctx.static_shape(0)
    if found is not None and shape is None:
        ctx.problem("dynamic-shape", f"{ctx.node.op_type} needs a known input shape", "export with fixed shapes")
    return None if found is None or shape is None else (found, shape)


def _report_composed(ctx: CaffeNodeContext, what: str) -> None:
    ctx.problem(
        "norm-composed",
        f"{ctx.node.op_type} written as {what}: MVN (mean only), squares, global AVE Pooling, Power "
        "(var + eps)^-1/2, a two-bottom Scale and the affine Scale (exact; eps inside the root as ONNX has it, "
        "where Caffe's MVN adds it to the deviation)",
        severity="warning",
    )


@CAFFE_LAYERS.register("InstanceNormalization")
def convert_instance_norm(ctx: CaffeNodeContext) -> None:
    """normalized per (N, C) over the spatial axes, then Scale (scale, B) per channel"""
    inputs = _norm_inputs(ctx)
    if inputs is None:
        return
    found, shape = inputs
    view = AxisView(shape, shape[0] * shape[1], int(np.prod(shape[2:], dtype=np.int64)), 1)
    rows = _normalized_rows(ctx, view, float(ctx.attr("epsilon")))
    _affine(ctx, rows.normalized, view, 1, found[1], found[2])
    _report_composed(ctx, "statistics per (N, C)")


@CAFFE_LAYERS.register("LayerNormalization")
def convert_layer_norm(ctx: CaffeNodeContext) -> None:
    """normalized over the axes from axis, then Scale (scale, B) over those axes"""
    inputs = _norm_inputs(ctx)
    if inputs is None:
        return
    found, shape = inputs
    axis = int(ctx.attr("axis")) % len(shape)
    view = AxisView.over(shape, axis, len(shape) - 1)
    rows = _normalized_rows(ctx, view, float(ctx.attr("epsilon")))
    scale, bias = found[1], found.get(2)
    normalized = shape[axis:]
    _affine(
        ctx,
        rows.normalized,
        view,
        axis,
        np.broadcast_to(scale, normalized).astype(np.float32),
        None if bias is None else np.broadcast_to(bias, normalized).astype(np.float32),
    )
    _statistics(ctx, rows, (*shape[:axis], *[1] * (len(shape) - axis)))
    _report_composed(ctx, f"statistics over axes {axis}..{len(shape) - 1}")


@CAFFE_LAYERS.register("GroupNormalization")
def convert_group_norm(ctx: CaffeNodeContext) -> None:
    """normalized per (N, group), then Scale (scale, bias) per channel (per group before opset 21)"""
    inputs = _norm_inputs(ctx)
    if inputs is None:
        return
    found, shape = inputs
    groups, channels = int(ctx.attr("num_groups")), shape[1]
    if channels % groups:
        ctx.problem("malformed-node", f"{channels} channels in {groups} groups", "use a divisor of the channels")
        return
    rest = int(np.prod(shape[2:], dtype=np.int64))
    view = AxisView(shape, shape[0] * groups, channels // groups * rest, 1)
    rows = _normalized_rows(ctx, view, float(ctx.attr("epsilon")))
    scale, bias = (np.repeat(w, channels // w.size).astype(np.float32) for w in (found[1], found[2]))
    _affine(ctx, rows.normalized, view, 1, scale, bias)
    _report_composed(ctx, "statistics per (N, group)")


@CAFFE_LAYERS.register("LpNormalization")
def convert_lp_norm(ctx: CaffeNodeContext) -> None:
    """x * (sum abs(x)^p)^(-1/p) along axis (p = 1, 2): a Convolution sums, a Deconvolution spreads"""
    shape = ctx.static_shape(0)
    p = int(ctx.attr("p"))
    if shape is None or p not in (1, 2):
        ctx.problem("no-caffe-form", f"LpNormalization p={p} of shape {shape}", "use p=1 or p=2 with fixed shapes")
        return
    view = AxisView.over(shape, int(ctx.attr("axis")) % len(shape))
    data = to_view(ctx, ctx.bottom(ctx.node.inputs[0]), view)
    if p == 2:
        powered = product(ctx, [data, data], role="square")
    else:
        powered = str(ctx.add_layer("AbsVal", [data], [None], role="magnitude").top[0])
    inverse = ctx.add_layer("Power", [view_sum(ctx, powered, view, "norm")], [None], role="inverse", in_place=True)
    # + FLT_MIN: a zero vector gives 0 * finite = 0 as onnxruntime does, not 0 * inf; a sum of at least
    # 2^-102 is unchanged by it (half an ulp of the sum is more than FLT_MIN)
    inverse.power_param.shift, inverse.power_param.power = _FLT_MIN, -1.0 / p
    spread = view_spread(ctx, str(inverse.top[0]), view, "spread")
    from_view(ctx, product(ctx, [data, spread], role="scaled"), view, ctx.node.outputs[0])
    ctx.problem(
        "norm-composed",
        f"LpNormalization (p={p}) written as a sum over the axis by Convolution, Power -1/p, a Deconvolution "
        "copying it back and a product (exact)",
        severity="warning",
    )


# --- LRN within channels, as the Caffe reader writes it out -------------------------------------


def _single_user(value: ir.Value, op_type: str) -> ir.Node | None:
    users = value.consumers()
    if len(users) == 1 and users[0].op_type == op_type and not value.is_graph_output():
        return users[0]
    return None


def _scalar_operand(node: ir.Node, data: ir.Value) -> float | None:
    """The other operand of a binary ``node`` when it is a scalar constant."""
    others = [value for value in node.inputs if value is not data]
    found = constant_value(others[0]) if len(others) == 1 else None
    return float(found.reshape(())) if found is not None and found.size == 1 else None


def _single_user_chain(value: ir.Value, op_types: tuple[str, ...]) -> list[ir.Node] | None:
    """The nodes of ``op_types`` in turn, each the only reader of the previous output
    (from ``value``), or None where the chain branches, ends or has another op."""
    nodes = []
    for op_type in op_types:
        node = _single_user(value, op_type)
        if node is None:
            return None
        nodes.append(node)
        value = node.outputs[0]
    return nodes


def _counted_window(pool: ir.Node) -> int:
    """``k`` when the AveragePool ``pool`` averages ``k x k`` windows (``k`` odd) around each
    value: pads ``(k-1)/2``, stride 1, the padding counted, as Caffe's AVE Pooling divides
    every window by ``k*k``; 0 for any other pooling."""
    kernel = tuple(pool.attributes.get_ints("kernel_shape", ()))
    if len(kernel) != 2 or kernel[0] != kernel[1] or not kernel[0] % 2:
        return 0
    size = kernel[0]
    centred = tuple(pool.attributes.get_ints("pads", (0,) * 4)) == ((size - 1) // 2,) * 4
    every_value = tuple(pool.attributes.get_ints("strides", (1, 1))) == (1, 1)
    counted = pool.attributes.get_int("count_include_pad", 0) == 1
    return size if centred and every_value and counted else 0


def _within_channel_chain(square: ir.Node) -> tuple[list[ir.Node], int, float, float] | None:
    """``(nodes, size, alpha, beta)`` when ``square = x * x`` starts
    ``x * (1 + alpha * AveragePool(x^2, k x k, pad (k-1)/2, counted))^-beta``."""
    nodes = _single_user_chain(square.outputs[0], ("AveragePool", "Mul", "Add", "Pow", "Mul"))
    if nodes is None:
        return None
    pool, scaled, base, power, product = nodes
    size = _counted_window(pool)
    alpha, one = _scalar_operand(scaled, pool.outputs[0]), _scalar_operand(base, scaled.outputs[0])
    exponent = constant_value(power.inputs[1])
    if not size or alpha is None or one != 1.0 or exponent is None or exponent.size != 1:
        return None
    if power.inputs[0] is not base.outputs[0] or square.inputs[0] not in product.inputs:
        return None
    return nodes, size, alpha, -float(exponent.reshape(()))


def within_channel_lrn(ctx: CaffeNodeContext) -> bool:
    """Write ``x * x`` and the nodes after it as one LRN WITHIN_CHANNEL layer when they are the
    Caffe reader's expansion of one (see ``convert_lrn``); False (nothing written) otherwise.
    Caffe computes exactly that: square, AVE Pooling (k, pad (k-1)/2, stride 1: every window
    divides by k*k), Power ``(1 + alpha * mean)^-beta``, product."""
    found = _within_channel_chain(ctx.node)
    if found is None:
        return False
    nodes, size, alpha, beta = found
    last = ctx.net.context(nodes[-1])
    layer = last.add_layer("LRN", [ctx.bottom(ctx.node.inputs[0])], also=[ctx.node, *nodes[:-1]])
    param = layer.lrn_param
    param.local_size, param.alpha, param.beta = size, alpha, beta
    param.norm_region = caffe_pb2.LRNParameter.WITHIN_CHANNEL
    ctx.net.absorbed.update(nodes)
    return True
