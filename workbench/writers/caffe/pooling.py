"""Pooling -> Caffe Pooling, with PyTorch's floor rounding reconciled exactly.

Caffe always rounds the output size up, and drops a last window that would
start in the padding::

    out = ceil((H + 2p - k) / s) + 1;  if p > 0 and (out - 1) * s >= H + p: out -= 1

PyTorch (``ceil_mode=False``, the default) rounds down. The windows both keep
start at the same positions ``i*s - p``, so when Caffe gives one more row or
column, the first ``out_floor`` rows are exactly PyTorch's result: the writer
adds a Slice that cuts the extra row/column off (and a Silence that consumes it).
This holds for MAX, and for AVE when the divisor counts padding
(``count_include_pad``, PyTorch's default) or there is no padding, because Caffe
divides by the window clipped to the padded input, as PyTorch does.
``ceil_mode=True`` pooling maps directly: PyTorch and onnxruntime drop a last
window that starts in the padding, as Caffe does. (ONNX shape inference does not,
so the sizes are computed here from the attributes.) AVE without counting the
padding differs from Caffe at the borders and is reported.

``GlobalAveragePool``/``GlobalMaxPool`` and ``ReduceMean``/``ReduceMax`` over
H and W become global pooling (plus a Flatten when ``keepdims=0``).
"""

from __future__ import annotations

from ...formats import caffe_pb2
from ...graph.pads import Window, pooled_size
from .net import CAFFE_LAYERS, CaffeNodeContext
from .spatial import CaffeWindow, caffe_window, planar_window


def _set_window(param: caffe_pb2.PoolingParameter, win: CaffeWindow) -> None:
    if win.kernel[0] == win.kernel[1]:
        param.kernel_size = win.kernel[0]
    else:
        param.kernel_h, param.kernel_w = win.kernel
    if win.stride[0] == win.stride[1]:
        param.stride = win.stride[0]
    else:
        param.stride_h, param.stride_w = win.stride
    if win.pad[0] == win.pad[1]:
        if win.pad[0]:
            param.pad = win.pad[0]
    else:
        param.pad_h, param.pad_w = win.pad


def _caffe_sizes(found: Window, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Caffe's output size: the begin pads at both ends, always rounding up."""
    padded = any(found.begins)
    return tuple(
        pooled_size(size, k, s, b, b, ceil=True, padded=padded)
        for size, k, s, b in zip(in_shape[2:], found.kernel, found.strides, found.begins)
    )


def _onnx_sizes(found: Window, in_shape: tuple[int, ...], ceil: bool) -> tuple[int, ...]:
    return tuple(
        pooled_size(size, k, s, b, e, ceil=ceil, padded=b > 0 or e > 0)
        for size, k, s, b, e in zip(in_shape[2:], found.kernel, found.strides, found.begins, found.ends)
    )


def _average_divisors_agree(found: Window, in_shape: tuple[int, ...], sizes: tuple[int, ...], counted: bool) -> bool:
    """Whether every kept average window divides by the same count in Caffe (the window
    clipped to the input padded by ``begin`` at both ends) and in ONNX (clipped to the
    padded input when ``counted``, else to the input itself)."""
    for size, k, s, b, e, out in zip(in_shape[2:], found.kernel, found.strides, found.begins, found.ends, sizes):
        for start in range(-b, out * s - b, s):
            caffe = min(start + k, size + b) - start
            onnx = min(start + k, size + e) - start if counted else min(start + k, size) - max(start, 0)
            if caffe != onnx:
                return False
    return True


def _poolable(ctx: CaffeNodeContext, found: Window, in_shape: tuple[int, ...] | None) -> bool:
    """The rules a pooling must pass before its sizes are compared; reports the first it breaks."""
    node = ctx.node
    counted = bool(ctx.attr("count_include_pad", 0))
    if found.dilations != (1, 1):
        ctx.problem("pool-dilation", f"dilated pooling {list(found.dilations)}", "use dilation 1")
    elif len(node.outputs) > 1 and node.outputs[1] is not None and node.outputs[1].consumers():
        ctx.problem("pool-indices", "the MaxPool indices output is used", "do not use return_indices")
    elif node.op_type == "AveragePool" and any(found.begins) and not counted:
        ctx.problem(
            "avgpool-pad",
            "average pooling over padding that does not count the padded zeros "
            "(count_include_pad=0); Caffe divides by the padded window, so border values differ",
            "use count_include_pad=True (PyTorch's default) or pad explicitly before pooling",
        )
    elif in_shape is None:
        ctx.problem("dynamic-shape", "pooling needs a known input shape", "export with fixed shapes")
    elif any(b > e for b, e in zip(found.begins, found.ends)):
        ctx.problem(
            "asymmetric-pads",
            f"pads {list(found.pads)} are longer at the beginning than at the end; Caffe pads the beginning "
            "no more than the end",
            "pad explicitly in the source model (e.g. F.pad before the layer) or use SAME_UPPER / symmetric pads",
        )
    return ctx.ok


@CAFFE_LAYERS.register("MaxPool", "AveragePool")
def convert_pool(ctx: CaffeNodeContext) -> None:
    """Pooling MAX/AVE; floor rounding and longer end pads become Pooling (+ Slice), exactly"""
    found = planar_window(ctx)
    in_shape = ctx.static_shape(0)
    if found is None or not _poolable(ctx, found, in_shape) or in_shape is None:
        return
    caffe_size = _caffe_sizes(found, in_shape)
    onnx_size = _onnx_sizes(found, in_shape, bool(ctx.attr("ceil_mode", 0)))
    extra = [c - o for c, o in zip(caffe_size, onnx_size)]
    if any(e not in (0, 1) for e in extra):
        ctx.problem(
            "pooling-rounding",
            f"Caffe's pooling gives {caffe_size}, the graph {onnx_size}; no slice reconciles them",
            "change the pooling's padding or ceil_mode in the source model",
        )
        return
    counted = bool(ctx.attr("count_include_pad", 0))
    average = ctx.node.op_type == "AveragePool"
    if average and not found.symmetric and not _average_divisors_agree(found, in_shape, onnx_size, counted):
        ctx.problem(
            "avgpool-pad",
            f"average pooling with pads {list(found.pads)}: Caffe's windows at the end divide by a different "
            f"count than ONNX's (count_include_pad={int(counted)})",
            "pad explicitly before pooling in the source model, or use symmetric pads",
        )
        return
    _write_pooling(ctx, found, onnx_size, caffe_size, [axis for axis, e in enumerate(extra) if e])


def _write_pooling(
    ctx: CaffeNodeContext,
    found: Window,
    onnx_size: tuple[int, ...],
    caffe_size: tuple[int, ...],
    cut_axes: list[int],
) -> None:
    """One Pooling layer, then a Slice dropping the extra last row/column on each of ``cut_axes``."""
    layer = ctx.add_layer("Pooling", outputs=[None] if cut_axes else None)
    param = layer.pooling_param
    average = ctx.node.op_type == "AveragePool"
    param.pool = caffe_pb2.PoolingParameter.AVE if average else caffe_pb2.PoolingParameter.MAX
    _set_window(param, caffe_window(found, found.begins))
    if not found.symmetric:
        ctx.problem(
            "pooling-pads",
            f"pads {list(found.pads)} written as Caffe's pad {list(found.begins)}, whose rounded-up last window "
            "covers the longer end padding (exact)",
            severity="warning",
        )
    if not cut_axes:
        return
    blob = layer.top[0]
    for axis in cut_axes:
        final = axis == cut_axes[-1]
        cut = ctx.add_layer("Slice", [blob], [ctx.node.outputs[0] if final else None, None], role=f"floor_{'hw'[axis]}")
        cut.slice_param.axis = axis + 2
        cut.slice_param.slice_point.append(onnx_size[axis])
        ctx.discard([cut.top[1]])
        blob = cut.top[0]
    ctx.problem(
        "pooling-floor",
        f"floor rounding ({onnx_size}) written as Caffe's ceil pooling ({caffe_size}) "
        "followed by a Slice that drops the extra last row/column (exact)",
        "use ceil_mode=True in the source model for a single Pooling layer, if the sizes allow it",
        severity="warning",
    )


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
