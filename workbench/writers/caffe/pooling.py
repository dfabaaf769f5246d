"""Pooling -> Caffe Pooling, with every ONNX pad, rounding and divisor reconciled exactly.

Caffe pools with the same pad ``P`` at both ends, always rounds the output size up,
and drops a last window that would start in the end padding when any axis is padded::

    out = ceil((H + 2P - k) / s) + 1;  if P > 0 and (out - 1) * s >= H + P: out -= 1

ONNX (as PyTorch) rounds down unless ``ceil_mode``, pads ``b`` at the beginning and
``e`` at the end, and with ``ceil_mode`` drops a last window that starts past the
input and its begin padding whether or not the node is padded (that is why a 2x2
input pooled with k=1, s=2, ceil_mode gives 1x1, not 2x2).

* **Windows** are aligned as ``spatial`` describes: ``P = b + m*s`` (below the
  kernel, which Caffe requires), then a Slice keeps the ONNX windows. A max ignores
  padding in both, so MAX is exact for any pads and rounding.
* **Divisors.** Caffe's AVE divides window ``j`` by its length clipped to the
  padded input, ``min(j*s - P + k, H + P) - (j*s - P)`` per axis (the product over
  H and W). ONNX divides by the window clipped to the input padded by ``b`` and
  ``e`` (``count_include_pad=1``), or to the input alone (``count_include_pad=0``).
  Both sum the same input values, so ``onnx = caffe * (caffe divisor / onnx
  divisor)`` per output position: where the ratio is not 1 everywhere, a Scale over
  H and W multiplies by that fixed map (one more rounding; exact otherwise).
* **Dilation.** Caffe's Pooling has none. A dilated average is linear: a depthwise
  Convolution with dilation and weights 1 sums the taps, and the Scale map divides
  by the ONNX count. A dilated max without padding is a max over shifted copies:
  max is separable, so the W taps are a max of ``k_w`` Slices (offset by the
  dilation), the H taps the same on that, then a Pooling with kernel 1 and the
  stride subsamples (a window of one value is that value). Dilated max pooling
  with padding stays an error.

``GlobalAveragePool``/``GlobalMaxPool`` and ``ReduceMean``/``ReduceMax`` over
H and W become global pooling (plus a Flatten when ``keepdims=0``).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import onnx_ir as ir

from ...formats import caffe_pb2
from ...graph.pads import Window, pooled_size
from .net import CAFFE_LAYERS, CaffeNodeContext
from .spatial import AxisPlan, align_axis, conv_count, crop, planar_window

_ROLES = "hw"


def _onnx_sizes(found: Window, in_shape: tuple[int, ...], ceil: bool) -> tuple[int, ...]:
    """ONNX's output size: with ``ceil_mode`` a last window starting past the input is dropped."""
    return tuple(
        pooled_size(size, (k - 1) * d + 1, s, b, e, ceil=ceil, padded=ceil)
        for size, k, s, d, b, e in zip(
            in_shape[2:], found.kernel, found.strides, found.dilations, found.begins, found.ends
        )
    )


def _caffe_pool_count(size: int, k: int, s: int, padded: bool | None, pad: int) -> int:
    """Caffe's pooling output length with ``pad`` at both ends; ``padded`` is whether BVLC's
    last-window rule applies (it asks whether any axis is padded), None: this axis' pad decides
    (OpenCV's rule, and BVLC's for a layer padded along this axis only). No window (0) when
    the kernel is longer than the padded input, which OpenCV cannot size."""
    if size + 2 * pad < k:
        return 0
    return pooled_size(size, k, s, pad, pad, ceil=True, padded=pad > 0 if padded is None else padded)


def _plans(
    found: Window, in_shape: tuple[int, ...], onnx_size: tuple[int, ...], padded: bool | None
) -> list[AxisPlan] | None:
    plans = []
    for size, k, s, b, count in zip(in_shape[2:], found.kernel, found.strides, found.begins, onnx_size):
        plan = align_axis(b, s, count, partial(_caffe_pool_count, size, k, s, padded), pad_limit=k)
        if plan is None:
            return None
        plans.append(plan)
    return plans


def _pooling_plans(
    found: Window, in_shape: tuple[int, ...], onnx_size: tuple[int, ...]
) -> tuple[list[AxisPlan], bool] | None:
    """Caffe's pad and kept outputs per axis, and whether to pool one axis at a time.

    BVLC Caffe drops a last window starting past the input on every axis when any axis is
    padded, OpenCV only on the padded axes: where that gives the two different sizes, the
    pooling is written as two layers, each over one axis and padded along it alone (max and
    sum are separable, a divisor is the product of the two axes' divisors)."""
    for padded in (False, True):
        plans = _plans(found, in_shape, onnx_size, padded)
        if plans is None or padded != any(plan.pad for plan in plans):
            continue
        opencv = [
            _caffe_pool_count(size, k, s, None, plan.pad)
            for size, k, s, plan in zip(in_shape[2:], found.kernel, found.strides, plans)
        ]
        if opencv == [plan.total for plan in plans]:
            return plans, False
    separate = _plans(found, in_shape, onnx_size, None)
    return None if separate is None else (separate, True)


def _caffe_divisors(size: int, k: int, pad: int, starts: range) -> np.ndarray:
    """Caffe's AVE divisor per window start: the window clipped to the input padded by ``pad``."""
    return np.asarray([min(start + k, size + pad) - start for start in starts], np.float64)


def _onnx_divisors(size: int, k: int, d: int, begin: int, end: int, counted: bool, starts: range) -> np.ndarray:
    """ONNX's divisor per window start: its taps inside the input padded by ``begin`` and
    ``end`` (``count_include_pad``), or inside the input."""
    low, high = (-begin, size + end) if counted else (0, size)
    return np.asarray(
        [sum(1 for tap in range(start, start + (k - 1) * d + 1, d) if low <= tap < high) for start in starts],
        np.float64,
    )


def _poolable(ctx: CaffeNodeContext, found: Window, in_shape: tuple[int, ...] | None) -> bool:
    """The rules a pooling must pass before it is planned; reports the first it breaks."""
    node = ctx.node
    if len(node.outputs) > 1 and node.outputs[1] is not None and node.outputs[1].consumers():
        ctx.problem("pool-indices", "the MaxPool indices output is used", "do not use return_indices")
    elif in_shape is None:
        ctx.problem("dynamic-shape", "pooling needs a known input shape", "export with fixed shapes")
    elif any(
        b >= (k - 1) * d + 1 or e >= (k - 1) * d + 1
        for b, e, k, d in zip(found.begins, found.ends, found.kernel, found.dilations)
    ):
        ctx.problem(
            "pool-pads",
            f"pads {list(found.pads)} as large as the kernel {list(found.kernel)}: windows that hold only padding",
            "use pads smaller than the kernel",
        )
    elif node.op_type == "MaxPool" and found.dilations != (1, 1) and any(found.pads):
        ctx.problem(
            "pool-dilation",
            f"dilated max pooling {list(found.dilations)} with pads {list(found.pads)}; Caffe's Pooling has no "
            "dilation, and the writer's exact form (a max over shifted slices) needs an unpadded input",
            "pad explicitly before the pooling in the source model, or use dilation 1",
        )
    return ctx.ok


@CAFFE_LAYERS.register("MaxPool", "AveragePool")
def convert_pool(ctx: CaffeNodeContext) -> None:
    """Pooling MAX/AVE for any pads and rounding (+ Slice, + a divisor Scale); dilated: Convolution or slices"""
    found = planar_window(ctx)
    in_shape = ctx.static_shape(0)
    if found is None or not _poolable(ctx, found, in_shape) or in_shape is None:
        return
    onnx_size = _onnx_sizes(found, in_shape, bool(ctx.attr("ceil_mode", 0)))
    if min(onnx_size) < 1:
        ctx.problem(
            "pool-window",
            f"the window {list(found.kernel)} (dilations {list(found.dilations)}) is larger than the input "
            f"{list(in_shape[2:])} with its pads {list(found.pads)}: no output",
            "use a kernel that fits the padded input",
        )
        return
    average = ctx.node.op_type == "AveragePool"
    if found.dilations != (1, 1):
        (_dilated_average if average else _dilated_max)(ctx, found, in_shape, onnx_size)
        return
    planned = _pooling_plans(found, in_shape, onnx_size)
    if planned is None:
        ctx.problem(
            "pooling-rounding",
            f"no Caffe pad below the kernel {list(found.kernel)} gives the graph's {onnx_size} windows "
            f"(pads {list(found.pads)}, strides {list(found.strides)})",
            "change the pooling's padding or ceil_mode in the source model",
        )
        return
    plans = planned[0]
    correction = _correction(ctx, found, in_shape, plans) if average else None
    corrected = correction is not None and bool((correction != 1.0).any())
    blob = _write_pooling(ctx, found, planned, None if corrected else ctx.node.outputs[0])
    if corrected and correction is not None:
        ctx.add_scale(blob, correction.astype(np.float32), axis=2, role="divisor")
        ctx.problem(
            "avgpool-divisor",
            f"average pooling (count_include_pad={int(bool(ctx.attr('count_include_pad', 0)))}, pads "
            f"{list(found.pads)}) written as Caffe's average times a fixed map of divisor ratios (exact)",
            severity="warning",
        )


def _write_pooling(
    ctx: CaffeNodeContext, found: Window, planned: tuple[list[AxisPlan], bool], output: ir.Value | None
) -> str:
    """The Pooling layer with the plans' pads (or one per axis), then the Slices keeping ONNX's
    windows; the last layer's top is ``output``. Returns the blob holding the kept windows."""
    plans, separate = planned
    cropped = any(plan.cropped for plan in plans)
    pads = tuple(plan.pad for plan in plans)
    blob = _pooling_layers(ctx, _pooling_windows(found, pads, separate), None if cropped else output)
    if not found.symmetric or separate:
        how = "and a Slice that keeps the graph's windows" if cropped else "(its rounded-up last window covers the end)"
        one_axis = ", one axis at a time (BVLC and OpenCV round a once-padded pooling differently)" if separate else ""
        ctx.problem(
            "pooling-pads",
            f"pads {list(found.pads)} written as Caffe's pad {list(pads)}{one_axis} {how} (exact)",
            severity="warning",
        )
    if not cropped:
        return blob
    ctx.problem(
        "pooling-floor",
        f"the graph's {tuple(p.count for p in plans)} windows kept from Caffe's "
        f"{tuple(p.total for p in plans)} by a Slice (exact)",
        "use ceil_mode=True and symmetric pads in the source model for a single Pooling layer, if the sizes allow it",
        severity="warning",
    )
    return crop(ctx, blob, _ranges(plans), output)


def _pooling_windows(
    found: Window, pads: tuple[int, ...], separate: bool
) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """``(kernel, stride, pad)`` of each Pooling layer: one over H and W, or when ``separate``
    one over H then one over W."""
    if not separate:
        return [(found.kernel, found.strides, pads)]
    return [
        ((found.kernel[0], 1), (found.strides[0], 1), (pads[0], 0)),
        ((1, found.kernel[1]), (1, found.strides[1]), (0, pads[1])),
    ]


def _pooling_layers(
    ctx: CaffeNodeContext,
    windows: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
    output: ir.Value | None,
) -> str:
    """One Pooling layer per window, each reading the one before; the last one's top is ``output``."""
    blob = ctx.bottom(ctx.node.inputs[0])
    for index, (kernel, stride, pad) in enumerate(windows):
        last = index == len(windows) - 1
        layer = ctx.add_layer("Pooling", [blob], [output if last else None], role=None if index == 0 else "width")
        param = layer.pooling_param
        param.pool = (
            caffe_pb2.PoolingParameter.AVE if ctx.node.op_type == "AveragePool" else caffe_pb2.PoolingParameter.MAX
        )
        _set_window(param, kernel, stride, pad)
        blob = str(layer.top[0])
    return blob


def _ranges(plans: list[AxisPlan]) -> dict[int, tuple[int, int, int]]:
    """The crop of every axis (H = 2, W = 3) the plans keep."""
    return {axis + 2: (p.first, p.first + p.count, p.total) for axis, p in enumerate(plans)}


def _kept_starts(plan: AxisPlan, stride: int) -> range:
    """The input position each kept window starts at."""
    return range(plan.first * stride - plan.pad, (plan.first + plan.count) * stride - plan.pad, stride)


def _correction(ctx: CaffeNodeContext, found: Window, in_shape: tuple[int, ...], plans: list[AxisPlan]) -> np.ndarray:
    """Caffe's divisor / ONNX's divisor at every kept output position (H x W)."""
    counted = bool(ctx.attr("count_include_pad", 0))
    ratios = []
    for size, k, s, b, e, plan in zip(in_shape[2:], found.kernel, found.strides, found.begins, found.ends, plans):
        starts = _kept_starts(plan, s)
        ratios.append(_caffe_divisors(size, k, plan.pad, starts) / _onnx_divisors(size, k, 1, b, e, counted, starts))
    return np.outer(ratios[0], ratios[1])


def _set_window(
    param: caffe_pb2.PoolingParameter, kernel: tuple[int, ...], stride: tuple[int, ...], pad: tuple[int, ...]
) -> None:
    if kernel[0] == kernel[1]:
        param.kernel_size = kernel[0]
    else:
        param.kernel_h, param.kernel_w = kernel
    if stride[0] == stride[1]:
        param.stride = stride[0]
    else:
        param.stride_h, param.stride_w = stride
    if pad[0] == pad[1]:
        if pad[0]:
            param.pad = pad[0]
    else:
        param.pad_h, param.pad_w = pad


# --- dilated pooling -----------------------------------------------------------------------


def _dilated_average(
    ctx: CaffeNodeContext, found: Window, in_shape: tuple[int, ...], onnx_size: tuple[int, ...]
) -> None:
    """Sum the dilated taps with a depthwise Convolution of ones, then divide by the ONNX count per position."""
    counted = bool(ctx.attr("count_include_pad", 0))
    plans, ratios = [], []
    axes = zip(in_shape[2:], found.kernel, found.strides, found.dilations, found.begins, found.ends, onnx_size)
    for size, k, s, d, b, e, count in axes:
        plan = align_axis(b, s, count, partial(conv_count, size, k, s, d))
        if plan is None:
            ctx.problem("pooling-rounding", f"no Convolution pad gives the graph's {onnx_size}", "use ceil_mode=0")
            return
        ratios.append(1.0 / _onnx_divisors(size, k, d, b, e, counted, _kept_starts(plan, s)))
        plans.append(plan)
    channels = in_shape[1]
    summed = ctx.add_layer(
        "Convolution", outputs=[None], weights=[np.ones((channels, 1, *found.kernel[:2]), np.float32)]
    )
    param = summed.convolution_param
    param.num_output, param.group, param.bias_term = channels, channels, False
    param.kernel_h, param.kernel_w = found.kernel
    param.stride_h, param.stride_w = found.strides
    param.pad_h, param.pad_w = (plan.pad for plan in plans)
    param.dilation.extend(found.dilations)
    blob = crop(ctx, str(summed.top[0]), _ranges(plans), None)
    ctx.add_scale(blob, np.outer(*ratios).astype(np.float32), axis=2, role="divisor")
    ctx.problem(
        "pool-dilation",
        f"dilated average pooling {list(found.dilations)} written as a depthwise Convolution of ones and a "
        "Scale by the divisor of every position (exact)",
        severity="warning",
    )


def _shifted_max(
    ctx: CaffeNodeContext, blob: str, axis: int, sizes: tuple[int, int, int, int], output: ir.Value | None
) -> str:
    """``max over q < k of x[q*d : q*d + length]`` along ``axis`` (``sizes`` = input length,
    k, d, length): one Slice per tap, one Eltwise MAX."""
    size, k, d, length = sizes
    if k == 1:
        return crop(ctx, blob, {axis: (0, length, size)}, output)
    taps = [crop(ctx, blob, {axis: (q * d, q * d + length, size)}, None) for q in range(k)]
    layer = ctx.add_layer("Eltwise", taps, [output], role=f"max_{_ROLES[axis - 2]}")
    layer.eltwise_param.operation = caffe_pb2.EltwiseParameter.MAX
    return str(layer.top[0])


def _dilated_max(ctx: CaffeNodeContext, found: Window, in_shape: tuple[int, ...], onnx_size: tuple[int, ...]) -> None:
    """Unpadded dilated max pooling: the max of shifted slices along W, then H, then a kernel-1
    Pooling with the stride (a window of one value is that value)."""
    axes = list(zip(in_shape[2:], found.kernel, found.dilations, found.strides, onnx_size))
    if any((count - 1) * s + (k - 1) * d >= size for size, k, d, s, count in axes):
        ctx.problem(
            "pool-dilation",
            "dilated max pooling whose last window reaches past the input (ceil_mode)",
            "use ceil_mode=0 with dilated pooling in the source model",
        )
        return
    subsample = found.strides != (1, 1)
    blob = ctx.bottom(ctx.node.inputs[0])
    for axis in (3, 2):
        size, k, d, s, count = axes[axis - 2]
        output = ctx.node.outputs[0] if axis == 2 and not subsample else None
        blob = _shifted_max(ctx, blob, axis, (size, k, d, (count - 1) * s + 1), output)
    if subsample:
        layer = ctx.add_layer("Pooling", [blob])
        layer.pooling_param.pool = caffe_pb2.PoolingParameter.MAX
        _set_window(layer.pooling_param, (1, 1), found.strides, (0, 0))
    ctx.problem(
        "pool-dilation",
        f"dilated max pooling {list(found.dilations)} written as a max over shifted slices and a kernel-1 "
        "Pooling with the stride (exact)",
        severity="warning",
    )


# --- global pooling -------------------------------------------------------------------------


def _global_pool(ctx: CaffeNodeContext, average: bool, keepdims: bool) -> None:
    layer = ctx.add_layer("Pooling", outputs=None if keepdims else [None])
    layer.pooling_param.pool = caffe_pb2.PoolingParameter.AVE if average else caffe_pb2.PoolingParameter.MAX
    layer.pooling_param.global_pooling = True
    if not keepdims:
        ctx.add_layer("Flatten", [layer.top[0]], role="flatten")


@CAFFE_LAYERS.register("GlobalAveragePool", "GlobalMaxPool")
def convert_global_pool(ctx: CaffeNodeContext) -> None:
    """Pooling with global_pooling"""
    shape = ctx.static_shape(0)
    if shape is not None and len(shape) != 4:
        ctx.problem("rank", f"global pooling of a {len(shape)}-D tensor; Caffe pools NCHW", "pool a 4-D NCHW tensor")
        return
    _global_pool(ctx, ctx.node.op_type == "GlobalAveragePool", keepdims=True)


@CAFFE_LAYERS.register("ReduceMean", "ReduceMax")
def convert_reduce(ctx: CaffeNodeContext) -> None:
    """Pooling with global_pooling when reducing over H and W"""
    if not ctx.require_constants("axes"):
        return
    shape = ctx.static_shape(0)
    found = ctx.param("axes")
    axes = None if found is None else [int(a) for a in found.ravel()]
    if shape is None or axes is None or len(shape) != 4 or sorted(a % 4 for a in axes) != [2, 3]:
        ctx.problem(
            "reduce-axes",
            f"{ctx.node.op_type} over axes {axes} of a tensor of shape {shape}; Caffe reduces H and W of NCHW "
            "by global pooling",
            "reduce over the spatial axes (x.mean((2, 3))) only",
        )
        return
    _global_pool(ctx, ctx.node.op_type == "ReduceMean", bool(ctx.attr("keepdims", 1)))
