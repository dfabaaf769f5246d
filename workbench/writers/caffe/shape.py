"""Layout ops: reshape, concat, split/slice, transpose, and nodes written as nothing.

* ``Flatten``, ``Reshape``, ``Squeeze``, ``Unsqueeze`` -> Flatten when the new
  shape merges all trailing axes from some axis (``x.view(n, -1)``,
  ``torch.flatten(x, 1)``), else Reshape with the static target shape (batch
  written as ``0`` = copy, so the batch size can change).
* ``Concat`` -> Concat; ``Split`` -> Slice at the cumulative sizes; ``Slice``
  -> Slice keeping the middle piece, one per sliced axis (pieces nobody reads go
  to a Silence layer). A step ``s > 1`` along H or W keeps the range from the
  first to the last index taken, then a MAX Pooling with kernel 1 and stride
  ``s`` takes every ``s``-th value (a window of one value is that value). Other
  steps (along C, negative steps that reverse) are a one-hot linear map along
  the axis (``views.axis_map``): each output row is ``1 * x[index]``, exact.
* ``Transpose`` -> Permute, which only OpenCV's Caffe knows. A Transpose that
  only feeds flattens that only feed InnerProducts (``x.permute(...).view(n, -1)``
  before a Linear, as in MTCNN) is instead absorbed into the InnerProduct
  weights (see ``linear``), which works in both dialects.
* A channel shuffle, ``Reshape -> Transpose -> Reshape`` back to the input shape
  that only reorders channels (ShuffleNet), is a 1x1 Convolution whose weights
  are the permutation matrix: each output channel is ``1 * x[source] + 0 * ...``,
  exact in float32, and it runs in both dialects.
* ``Identity``, ``Dropout`` (inference) -> nothing: the output is the input blob.
* ``Constant`` -> nothing: constants reach Caffe only as layer weights.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from ...formats import caffe_pb2
from ...graph.converter import SliceBounds, constant_value, slice_bounds
from ...graph.shapes import static_shape
from .linear import inner_product_weights
from .net import CAFFE_LAYERS, CaffeNodeContext, Flattened
from .spatial import crop
from .views import axis_map

_INT64_MAX = np.iinfo(np.int64).max


def _is_flatten_to_2d(node: ir.Node) -> bool:
    if node.op_type not in ("Reshape", "Flatten"):
        return False
    in_shape, out_shape = static_shape(node.inputs[0]), static_shape(node.outputs[0])
    if in_shape is None or out_shape is None or len(in_shape) < 2:
        return False
    return out_shape == (in_shape[0], math.prod(in_shape[1:]))


def _flattens_into_inner_products(node: ir.Node) -> bool:
    """A flatten to (N, C*H*W) read only by InnerProducts, which flatten their input themselves."""
    return _is_flatten_to_2d(node) and _feeds_only_inner_products(node.outputs[0])


def _flat_size(value: ir.Value) -> int:
    shape = static_shape(value)
    assert shape is not None  # a flatten to 2-D has static shapes
    return math.prod(shape[1:])


def _feeds_only_inner_products(value: ir.Value) -> bool:
    users = value.consumers()
    return (
        bool(users)
        and not value.is_graph_output()
        and all(
            user.op_type in ("Gemm", "MatMul")
            and user.inputs[0] is value
            and not isinstance(inner_product_weights(user), str)
            for user in users
        )
    )


def _absorbable_transpose(node: ir.Node, perm: tuple[int, ...]) -> bool:
    output = node.outputs[0]
    users = output.consumers()
    return (
        perm[0] == 0
        and not output.is_graph_output()
        and bool(users)
        and all(
            _is_flatten_to_2d(user) and user.inputs[0] is output and _feeds_only_inner_products(user.outputs[0])
            for user in users
        )
    )


@CAFFE_LAYERS.register("Transpose")
def convert_transpose(ctx: CaffeNodeContext) -> None:
    """Permute (opencv dialect); absorbed into InnerProduct weights before flatten + Linear"""
    shape = ctx.static_shape(0)
    if shape is None:
        ctx.problem("dynamic-shape", "the Transpose input has no known shape", "export with fixed shapes")
        return
    perm = tuple(int(p) for p in ctx.attr("perm", tuple(reversed(range(len(shape))))))
    if _absorbable_transpose(ctx.node, perm):
        ctx.net.transposed[ctx.node.outputs[0]] = (ctx.node, perm)
        return
    if not ctx.require_opencv(
        "Permute",
        "write with dialect='opencv', or flatten the permuted tensor straight into a Linear layer "
        "(the writer then moves the permutation into the Linear weights)",
    ):
        return
    layer = ctx.add_layer("Permute")
    layer.permute_param.order.extend(perm)


def _write_reshape(ctx: CaffeNodeContext, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
    if in_shape == out_shape:
        ctx.alias()
        return
    for axis in range(1, len(in_shape)):
        if out_shape == in_shape[:axis] + (math.prod(in_shape[axis:]),):
            layer = ctx.add_layer("Flatten")
            if axis != 1:
                layer.flatten_param.axis = axis
            return
    layer = ctx.add_layer("Reshape")
    dims = list(out_shape)
    if in_shape and dims and dims[0] == in_shape[0]:
        dims[0] = 0  # Caffe: copy the batch dimension from the input
    layer.reshape_param.shape.dim.extend(dims)


def _only_user(value: ir.Value, op_type: str) -> ir.Node | None:
    users = value.consumers()
    if len(users) == 1 and users[0].op_type == op_type and not value.is_graph_output():
        return users[0]
    return None


def _shuffle_source(node: ir.Node) -> tuple[ir.Node, ir.Node, np.ndarray] | None:
    """``(transpose, restore, source)`` when ``node -> Transpose -> Reshape`` only reorders the
    channels of an NCHW tensor, ``source[c]`` being the input channel output channel ``c`` reads."""
    transpose = _only_user(node.outputs[0], "Transpose")
    restore = _only_user(transpose.outputs[0], "Reshape") if transpose is not None else None
    in_shape, middle = static_shape(node.inputs[0]), static_shape(node.outputs[0])
    if transpose is None or restore is None or in_shape is None or middle is None or len(in_shape) != 4:
        return None
    if static_shape(restore.outputs[0]) != in_shape or constant_value(restore.inputs[1]) is None:
        return None
    perm = transpose.attributes.get_ints("perm", tuple(reversed(range(len(middle)))))
    index = np.arange(math.prod(in_shape)).reshape(in_shape)
    moved = index.reshape(middle).transpose(perm).reshape(in_shape)
    source = moved[0, :, 0, 0] // (in_shape[2] * in_shape[3])
    return (transpose, restore, source) if np.array_equal(moved, index[:, source]) else None


def _channel_shuffle(ctx: CaffeNodeContext) -> bool:
    """Write ``node -> Transpose -> Reshape`` as a 1x1 Convolution if the three only
    reorder the channels of an NCHW tensor; False (nothing written) otherwise."""
    found = _shuffle_source(ctx.node)
    if found is None:
        return False
    transpose, restore, source = found
    channels = len(source)
    permutation = np.zeros((channels, channels, 1, 1), np.float32)
    permutation[np.arange(channels), source] = 1.0
    bottom = ctx.bottom(ctx.node.inputs[0])
    layer = ctx.net.context(restore).add_layer(
        "Convolution", [bottom], weights=[permutation], also=[ctx.node, transpose]
    )
    layer.convolution_param.num_output = channels
    layer.convolution_param.bias_term = False
    layer.convolution_param.kernel_size.append(1)
    ctx.net.absorbed.update((transpose, restore))
    ctx.net.context(transpose).problem(
        "channel-shuffle",
        "Reshape -> Transpose -> Reshape that reorders channels written as a 1x1 Convolution "
        "with a permutation matrix (exact)",
        severity="warning",
    )
    return True


def _flatten_transposed(ctx: CaffeNodeContext, data: ir.Value) -> None:
    """Record the flatten of an absorbed Transpose's output ``data`` as a reordered flatten of its input."""
    transpose, perm = ctx.net.transposed[data]
    source = transpose.inputs[0]
    shape = static_shape(source)
    assert shape is not None  # an absorbable Transpose has a static input
    index = np.arange(math.prod(shape[1:])).reshape(shape[1:]).transpose([p - 1 for p in perm[1:]]).ravel()
    blob = ctx.net.context(transpose).bottom(source)
    ctx.net.flattened[ctx.node.outputs[0]] = Flattened(blob, index, [transpose, ctx.node])


@CAFFE_LAYERS.register("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def convert_reshape(ctx: CaffeNodeContext) -> None:
    """Flatten, or Reshape with the static target shape; channel shuffles as 1x1 Convolution"""
    data, output = ctx.node.inputs[0], ctx.node.outputs[0]
    if ctx.node.op_type == "Reshape" and ctx.const(1) is not None and _channel_shuffle(ctx):
        return
    if data is not None and data in ctx.net.transposed and _is_flatten_to_2d(ctx.node):
        _flatten_transposed(ctx, data)
        return
    if data is not None and _flattens_into_inner_products(ctx.node):
        # InnerProduct flattens from axis 1 itself, in the same row-major order:
        # no Flatten layer, as a Caffe zoo's deploy file has none
        ctx.net.flattened[output] = Flattened(ctx.bottom(data), np.arange(_flat_size(output)), [ctx.node])
        return
    if ctx.node.op_type == "Reshape" and ctx.const(1) is None:
        ctx.problem(
            "needs-simplify",
            "the Reshape target shape is computed at run time (a Shape/Gather chain from x.view(x.size(0), -1))",
            "run simplify (workbench.steps.simplify) so the target shape becomes a constant",
        )
        return
    in_shape, out_shape = static_shape(data), static_shape(output)
    if in_shape is None or out_shape is None:
        ctx.problem("dynamic-shape", f"{ctx.node.op_type} needs known shapes", "export with fixed shapes")
        return
    _write_reshape(ctx, in_shape, out_shape)


@CAFFE_LAYERS.register("Concat")
def convert_concat(ctx: CaffeNodeContext) -> None:
    """Concat along axis, inputs in graph order"""
    shape = static_shape(ctx.node.outputs[0])
    axis = int(ctx.attr("axis", 1))
    if shape is not None:
        axis %= len(shape)
    bottoms = [ctx.bottom(value) for value in ctx.node.inputs]
    if len(bottoms) == 1:
        ctx.alias()
        return
    layer = ctx.add_layer("Concat", bottoms)
    if axis != 1:
        layer.concat_param.axis = axis


@CAFFE_LAYERS.register("Split")
def convert_split(ctx: CaffeNodeContext) -> None:
    """Slice at the cumulative split sizes"""
    shape = ctx.static_shape(0)
    sizes = [size for size in map(static_shape, ctx.node.outputs) if size is not None]
    if shape is None or len(sizes) != len(ctx.node.outputs):
        ctx.problem("dynamic-shape", "Split needs known shapes", "export with fixed shapes")
        return
    axis = int(ctx.attr("axis", 0)) % len(shape)
    if len(ctx.node.outputs) == 1:
        ctx.alias()
        return
    layer = ctx.add_layer("Slice")
    layer.slice_param.axis = axis
    layer.slice_param.slice_point.extend(np.cumsum([s[axis] for s in sizes])[:-1].tolist())


def slice_indices(start: int, end: int, step: int, size: int) -> range:
    """The indices ONNX's Slice keeps along an axis of ``size``: negative bounds count from the
    end, then bounds are clamped to ``[0, size]`` (``[-1, size - 1]`` for a negative step)."""
    start = start + size if start < 0 else start
    end = end + size if end < 0 else end
    if step > 0:
        return range(min(max(start, 0), size), min(max(end, 0), size), step)
    return range(min(max(start, 0), size - 1), min(max(end, -1), size - 1), step)


def _slice_axes(bounds: SliceBounds, shape: tuple[int, ...]) -> dict[int, range] | str:
    """axis -> the indices kept, for every axis the Slice changes, or why it cannot be written."""
    kept = {}
    for start, end, axis, step in zip(bounds.starts, bounds.ends, bounds.axes, bounds.steps):
        axis %= len(shape)
        if step == 0:
            return "Slice with step 0"
        indices = slice_indices(start, end, step, shape[axis])
        if not indices:
            return f"Slice of an empty range on axis {axis}"
        if indices != range(shape[axis]):
            kept[axis] = indices
    if 0 in kept and kept[0].step != 1:
        return f"Slice with step {kept[0].step} along the batch axis; Caffe layers keep every item"
    return kept


def _subsample(ctx: CaffeNodeContext, blob: str, strides: tuple[int, int], output: ir.Value | None) -> str:
    """Every ``stride``-th row and column from the first: MAX Pooling with kernel 1 (one value per window)."""
    layer = ctx.add_layer("Pooling", [blob], [output], role="stride")
    param = layer.pooling_param
    param.pool = caffe_pb2.PoolingParameter.MAX
    param.kernel_size = 1
    param.stride_h, param.stride_w = strides
    return str(layer.top[0])


def _select(
    ctx: CaffeNodeContext, blob: str, shape: list[int], axis: int, indices: range, output: ir.Value | None
) -> str:
    """Rows ``indices`` along ``axis`` by a one-hot linear map (any step, reversed included)."""
    matrix = np.zeros((len(indices), shape[axis]), np.float32)
    matrix[np.arange(len(indices)), list(indices)] = 1.0
    return axis_map(ctx, blob, tuple(shape), axis, matrix, output, f"select_axis{axis}")


def _spatial_steps(kept: dict[int, range], shape: tuple[int, ...]) -> dict[int, range]:
    """The kept H and W ranges of a 4-d input taken with a step above 1: every ``step``-th
    value of the span from the first to the last index, which a kernel-1 Pooling takes."""
    if len(shape) != 4:
        return {}
    return {axis: indices for axis, indices in kept.items() if indices.step > 1 and axis in (2, 3)}


def _crop_ranges(
    kept: dict[int, range], spatial_steps: dict[int, range], shape: tuple[int, ...]
) -> dict[int, tuple[int, int, int]]:
    """axis -> ``(start, stop, size)`` the crop keeps: each unit-step range, and for a strided
    H or W range the span from its first to its last index (the Pooling then subsamples it)."""
    ranges = {axis: (indices.start, indices.stop, shape[axis]) for axis, indices in kept.items() if indices.step == 1}
    ranges.update({axis: (indices.start, indices[-1] + 1, shape[axis]) for axis, indices in spatial_steps.items()})
    return ranges


def _pooling_strides(spatial_steps: dict[int, range]) -> tuple[int, int]:
    """The (H, W) strides of the kernel-1 Pooling: 1 along an axis kept whole."""
    stride_h, stride_w = (spatial_steps[axis].step if axis in spatial_steps else 1 for axis in (2, 3))
    return stride_h, stride_w


@CAFFE_LAYERS.register("Slice")
def convert_slice(ctx: CaffeNodeContext) -> None:
    """Slice per cut axis; steps: kernel-1 Pooling (H, W), else a one-hot map (InnerProduct / 1x1 Convolution)"""
    shape = ctx.static_shape(0)
    if shape is None:
        ctx.problem("dynamic-shape", "Slice needs a known input shape", "export with fixed shapes")
        return
    bounds = slice_bounds(ctx)
    if bounds is None:
        return
    kept = _slice_axes(bounds, shape)
    if isinstance(kept, str):
        ctx.problem("slice", kept, "slice with constant bounds, and every item of the batch")
        return
    if not kept:
        ctx.alias()
        return
    _write_slice(ctx, shape, kept)


def _write_slice(ctx: CaffeNodeContext, shape: tuple[int, ...], kept: dict[int, range]) -> None:
    """Crop the unit-step ranges (and the spans of strided H, W ranges), subsample the strided
    H, W ranges by Pooling, then select along each remaining axis by a one-hot map; the last
    layer written produces the node's output."""
    output = ctx.node.outputs[0]
    spatial_steps = _spatial_steps(kept, shape)
    selected = {
        axis: indices for axis, indices in sorted(kept.items()) if indices.step != 1 and axis not in spatial_steps
    }
    ranges = _crop_ranges(kept, spatial_steps, shape)
    blob = crop(ctx, ctx.bottom(ctx.node.inputs[0]), ranges, None if spatial_steps or selected else output)
    if spatial_steps:
        blob = _subsample(ctx, blob, _pooling_strides(spatial_steps), None if selected else output)
    current = [len(kept[axis]) if axis in ranges else size for axis, size in enumerate(shape)]
    for index, (axis, indices) in enumerate(selected.items()):
        blob = _select(ctx, blob, current, axis, indices, output if index == len(selected) - 1 else None)
        current[axis] = len(indices)


@CAFFE_LAYERS.register("Identity", "Dropout")
def convert_identity(ctx: CaffeNodeContext) -> None:
    """no layer: the output is the input blob (a Split copy when a graph input is a graph output)"""
    if ctx.node.op_type == "Dropout" and len(ctx.node.outputs) > 1 and ctx.node.outputs[1].consumers():
        ctx.problem("dropout-mask", "the Dropout mask output is used", "do not use the dropout mask")
        return
    training = ctx.param("training_mode") if ctx.node.op_type == "Dropout" else None
    if training is not None and bool(training.reshape(-1)[0]):
        ctx.problem("training-mode", "Dropout in training mode drops values at random", "export in eval() mode")
        return
    ctx.alias()
    ctx.problem(
        "removed",
        f"{ctx.node.op_type} does nothing at inference and is not written",
        "run simplify to remove it from the graph as well",
        severity="warning",
    )


@CAFFE_LAYERS.register("Constant")
def convert_constant(ctx: CaffeNodeContext) -> None:
    """no layer: constants reach Caffe as the weights of the layers that use them"""
