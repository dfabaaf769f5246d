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

import math

import onnx_ir as ir

from ...formats import caffe_pb2
from .net import CAFFE_LAYERS, CaffeNet
from .spatial import Window, window


def pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True) -> int:
    """Output length of pooling along one axis: Caffe's (always ``ceil``), or
    PyTorch's and onnxruntime's for either rounding."""
    if not ceil:
        return (size + 2 * pad - kernel) // stride + 1
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _set_window(param: caffe_pb2.PoolingParameter, win: Window) -> None:
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


@CAFFE_LAYERS.register("MaxPool", "AveragePool")
def convert_pool(node: ir.Node, net: CaffeNet) -> None:
    """Pooling MAX/AVE; floor rounding becomes Pooling + Slice (exact)"""
    win = window(node, net)
    if win is None:
        return
    in_shape = net.shape(node.inputs[0])
    average = node.op_type == "AveragePool"
    if win.dilation != (1, 1):
        net.problem(node, "pool-dilation", f"dilated pooling {list(win.dilation)}", "use dilation 1")
        return
    if len(node.outputs) > 1 and node.outputs[1] is not None and node.outputs[1].consumers():
        net.problem(node, "pool-indices", "the MaxPool indices output is used", "do not use return_indices")
        return
    if average and any(win.pad) and not node.attributes.get_int("count_include_pad", 0):
        net.problem(
            node,
            "avgpool-pad",
            "average pooling over padding that does not count the padded zeros "
            "(count_include_pad=0); Caffe divides by the padded window, so border values differ",
            "use count_include_pad=True (PyTorch's default) or pad explicitly before pooling",
        )
        return
    if in_shape is None:
        net.problem(node, "dynamic-shape", "pooling needs a known input shape", "export with fixed shapes")
        return
    ceil = bool(node.attributes.get_int("ceil_mode", 0))
    windows = list(zip(in_shape[2:], win.kernel, win.stride, win.pad))
    caffe_size = tuple(pooled_size(*axis_window, ceil=True) for axis_window in windows)
    onnx_size = tuple(pooled_size(*axis_window, ceil=ceil) for axis_window in windows)
    extra = [c - o for c, o in zip(caffe_size, onnx_size)]
    if any(e not in (0, 1) for e in extra):
        net.problem(
            node,
            "pooling-rounding",
            f"Caffe's pooling gives {caffe_size}, the graph {onnx_size}; no slice reconciles them",
            "change the pooling's padding or ceil_mode in the source model",
        )
        return
    last_kept = [axis for axis, e in enumerate(extra) if e]
    layer = net.add_layer(node, "Pooling", outputs=[None] if last_kept else None)
    param = layer.pooling_param
    param.pool = caffe_pb2.PoolingParameter.AVE if average else caffe_pb2.PoolingParameter.MAX
    _set_window(param, win)
    if not last_kept:
        return
    blob = layer.top[0]
    for axis in last_kept:
        final = axis == last_kept[-1]
        cut = net.add_layer(
            node, "Slice", [blob], [node.outputs[0] if final else None, None], role=f"floor_{'hw'[axis]}"
        )
        cut.slice_param.axis = axis + 2
        cut.slice_param.slice_point.append(onnx_size[axis])
        net.discard(node, [cut.top[1]])
        blob = cut.top[0]
    net.problem(
        node,
        "pooling-floor",
        f"floor rounding ({onnx_size}) written as Caffe's ceil pooling ({caffe_size}) "
        "followed by a Slice that drops the extra last row/column (exact)",
        "use ceil_mode=True in the source model for a single Pooling layer, if the sizes allow it",
        severity="warning",
    )


def _global_pool(node: ir.Node, net: CaffeNet, average: bool, keepdims: bool) -> None:
    layer = net.add_layer(node, "Pooling", outputs=None if keepdims else [None])
    layer.pooling_param.pool = caffe_pb2.PoolingParameter.AVE if average else caffe_pb2.PoolingParameter.MAX
    layer.pooling_param.global_pooling = True
    if not keepdims:
        net.add_layer(node, "Flatten", [layer.top[0]], role="flatten")


@CAFFE_LAYERS.register("GlobalAveragePool", "GlobalMaxPool")
def convert_global_pool(node: ir.Node, net: CaffeNet) -> None:
    """Pooling with global_pooling"""
    shape = net.shape(node.inputs[0])
    if shape is not None and len(shape) != 4:
        net.problem(
            node, "rank", f"global pooling of a {len(shape)}-D tensor; Caffe pools NCHW", "pool a 4-D NCHW tensor"
        )
        return
    _global_pool(node, net, node.op_type == "GlobalAveragePool", keepdims=True)


@CAFFE_LAYERS.register("ReduceMean", "ReduceMax")
def convert_reduce(node: ir.Node, net: CaffeNet) -> None:
    """Pooling with global_pooling when reducing over H and W"""
    shape = net.shape(node.inputs[0])
    if "axes" in node.attributes:
        axes = node.attributes.get_ints("axes")
    else:
        found = net.constant(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
        axes = None if found is None else [int(a) for a in found.ravel()]
    if shape is None or axes is None or len(shape) != 4 or sorted(a % 4 for a in axes) != [2, 3]:
        net.problem(
            node,
            "reduce-axes",
            f"{node.op_type} over axes {axes} of a tensor of shape {shape}; Caffe reduces H and W of NCHW "
            "by global pooling",
            "reduce over the spatial axes (x.mean((2, 3))) only",
        )
        return
    _global_pool(node, net, node.op_type == "ReduceMean", bool(node.attributes.get_int("keepdims", 1)))
