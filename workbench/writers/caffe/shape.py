"""Layout ops: reshape, concat, split/slice, transpose, and nodes written as nothing.

* ``Flatten``, ``Reshape``, ``Squeeze``, ``Unsqueeze`` -> Flatten when the new
  shape merges all trailing axes from some axis (``x.view(n, -1)``,
  ``torch.flatten(x, 1)``), else Reshape with the static target shape (batch
  written as ``0`` = copy, so the batch size can change).
* ``Concat`` -> Concat; ``Split`` -> Slice at the cumulative sizes; ``Slice``
  (step 1) -> Slice keeping the middle piece, one per sliced axis; pieces nobody
  reads go to a Silence layer.
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

from .linear import inner_product_weights
from .net import CAFFE_LAYERS, CaffeNet, Flattened

_INT64_MAX = np.iinfo(np.int64).max


def _is_flatten_to_2d(node: ir.Node, net: CaffeNet) -> bool:
    if node.op_type not in ("Reshape", "Flatten"):
        return False
    in_shape, out_shape = net.shape(node.inputs[0]), net.shape(node.outputs[0])
    if in_shape is None or out_shape is None or len(in_shape) < 2:
        return False
    return out_shape == (in_shape[0], math.prod(in_shape[1:]))


def _feeds_only_inner_products(value: ir.Value, net: CaffeNet) -> bool:
    users = value.consumers()
    return (
        bool(users)
        and not value.is_graph_output()
        and all(
            user.op_type in ("Gemm", "MatMul")
            and user.inputs[0] is value
            and not isinstance(inner_product_weights(user, net), str)
            for user in users
        )
    )


def _absorbable_transpose(node: ir.Node, net: CaffeNet, perm: tuple[int, ...]) -> bool:
    output = node.outputs[0]
    users = output.consumers()
    return (
        perm[0] == 0
        and not output.is_graph_output()
        and bool(users)
        and all(
            _is_flatten_to_2d(user, net)
            and user.inputs[0] is output
            and _feeds_only_inner_products(user.outputs[0], net)
            for user in users
        )
    )


@CAFFE_LAYERS.register("Transpose")
def convert_transpose(node: ir.Node, net: CaffeNet) -> None:
    """Permute (opencv dialect); absorbed into InnerProduct weights before flatten + Linear"""
    shape = net.shape(node.inputs[0])
    if shape is None:
        net.problem(node, "dynamic-shape", "the Transpose input has no known shape", "export with fixed shapes")
        return
    perm = tuple(node.attributes.get_ints("perm", tuple(reversed(range(len(shape))))))
    if _absorbable_transpose(node, net, perm):
        net.transposed[node.outputs[0]] = (node, perm)
        return
    if not net.require_opencv(
        node,
        "Permute",
        "write with dialect='opencv', or flatten the permuted tensor straight into a Linear layer "
        "(the writer then moves the permutation into the Linear weights)",
    ):
        return
    layer = net.add_layer(node, "Permute")
    layer.permute_param.order.extend(perm)


def _write_reshape(node: ir.Node, net: CaffeNet, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
    if in_shape == out_shape:
        net.alias(node, node.outputs[0], node.inputs[0])
        return
    for axis in range(1, len(in_shape)):
        if out_shape == in_shape[:axis] + (math.prod(in_shape[axis:]),):
            layer = net.add_layer(node, "Flatten")
            if axis != 1:
                layer.flatten_param.axis = axis
            return
    layer = net.add_layer(node, "Reshape")
    dims = list(out_shape)
    if in_shape and dims and dims[0] == in_shape[0]:
        dims[0] = 0  # Caffe: copy the batch dimension from the input
    layer.reshape_param.shape.dim.extend(dims)


def _only_user(value: ir.Value, op_type: str) -> ir.Node | None:
    users = value.consumers()
    if len(users) == 1 and users[0].op_type == op_type and not value.is_graph_output():
        return users[0]
    return None


def _channel_shuffle(node: ir.Node, net: CaffeNet) -> bool:
    """Write ``node -> Transpose -> Reshape`` as a 1x1 Convolution if the three only
    reorder the channels of an NCHW tensor; False (nothing written) otherwise."""
    transpose = _only_user(node.outputs[0], "Transpose")
    restore = _only_user(transpose.outputs[0], "Reshape") if transpose is not None else None
    in_shape, middle = net.shape(node.inputs[0]), net.shape(node.outputs[0])
    if restore is None or in_shape is None or middle is None or len(in_shape) != 4:
        return False
    if net.shape(restore.outputs[0]) != in_shape or net.constant(restore.inputs[1]) is None:
        return False
    perm = transpose.attributes.get_ints("perm", tuple(reversed(range(len(middle)))))
    index = np.arange(math.prod(in_shape)).reshape(in_shape)
    moved = index.reshape(middle).transpose(perm).reshape(in_shape)
    plane = in_shape[2] * in_shape[3]
    source = moved[0, :, 0, 0] // plane  # the input channel each output channel reads
    if not np.array_equal(moved, index[:, source]):
        return False
    channels = in_shape[1]
    permutation = np.zeros((channels, channels, 1, 1), np.float32)
    permutation[np.arange(channels), source] = 1.0
    layer = net.add_layer(
        restore, "Convolution", [net.bottom(node, node.inputs[0])], weights=[permutation], also=[node, transpose]
    )
    layer.convolution_param.num_output = channels
    layer.convolution_param.bias_term = False
    layer.convolution_param.kernel_size.append(1)
    net.absorbed.update((transpose, restore))
    net.problem(
        transpose,
        "channel-shuffle",
        "Reshape -> Transpose -> Reshape that reorders channels written as a 1x1 Convolution "
        "with a permutation matrix (exact)",
        severity="warning",
    )
    return True


@CAFFE_LAYERS.register("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def convert_reshape(node: ir.Node, net: CaffeNet) -> None:
    """Flatten, or Reshape with the static target shape; channel shuffles as 1x1 Convolution"""
    data, output = node.inputs[0], node.outputs[0]
    if node.op_type == "Reshape" and net.constant(node.inputs[1]) is not None and _channel_shuffle(node, net):
        return
    if data in net.transposed and _is_flatten_to_2d(node, net):
        transpose, perm = net.transposed[data]
        source = transpose.inputs[0]
        shape = net.shape(source)
        index = np.arange(math.prod(shape[1:])).reshape(shape[1:]).transpose([p - 1 for p in perm[1:]]).ravel()
        net.flattened[output] = Flattened(net.bottom(transpose, source), index, [transpose, node])
        return
    if node.op_type == "Reshape" and net.constant(node.inputs[1]) is None:
        net.problem(
            node,
            "needs-simplify",
            "the Reshape target shape is computed at run time (a Shape/Gather chain from x.view(x.size(0), -1))",
            "run simplify (workbench.steps.simplify) so the target shape becomes a constant",
        )
        return
    in_shape, out_shape = net.shape(data), net.shape(output)
    if in_shape is None or out_shape is None:
        net.problem(node, "dynamic-shape", f"{node.op_type} needs known shapes", "export with fixed shapes")
        return
    _write_reshape(node, net, in_shape, out_shape)


@CAFFE_LAYERS.register("Concat")
def convert_concat(node: ir.Node, net: CaffeNet) -> None:
    """Concat along axis, inputs in graph order"""
    shape = net.shape(node.outputs[0])
    axis = node.attributes.get_int("axis", 1)
    if shape is not None:
        axis %= len(shape)
    bottoms = [net.bottom(node, value) for value in node.inputs]
    if len(bottoms) == 1:
        net.alias(node, node.outputs[0], node.inputs[0])
        return
    layer = net.add_layer(node, "Concat", bottoms)
    if axis != 1:
        layer.concat_param.axis = axis


@CAFFE_LAYERS.register("Split")
def convert_split(node: ir.Node, net: CaffeNet) -> None:
    """Slice at the cumulative split sizes"""
    shape = net.shape(node.inputs[0])
    sizes = [net.shape(value) for value in node.outputs]
    if shape is None or any(s is None for s in sizes):
        net.problem(node, "dynamic-shape", "Split needs known shapes", "export with fixed shapes")
        return
    axis = node.attributes.get_int("axis", 0) % len(shape)
    if len(node.outputs) == 1:
        net.alias(node, node.outputs[0], node.inputs[0])
        return
    layer = net.add_layer(node, "Slice")
    layer.slice_param.axis = axis
    layer.slice_param.slice_point.extend(np.cumsum([s[axis] for s in sizes])[:-1].tolist())


def _slice_ranges(node: ir.Node, net: CaffeNet, shape: tuple[int, ...]) -> dict[int, tuple[int, int]] | str:
    """axis -> (start, end) of every axis the Slice cuts, or why it cannot be written."""
    if "starts" in node.attributes:
        starts = node.attributes.get_ints("starts")
        ends = node.attributes.get_ints("ends")
        axes = node.attributes.get_ints("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        found = [net.constant(v) if v is not None else None for v in list(node.inputs[1:5]) + [None] * 4]
        if (
            found[0] is None
            or found[1] is None
            or any(v is not None and f is None for v, f in zip(node.inputs[3:5], found[2:4]))
        ):
            return "the Slice bounds are computed at run time"
        starts, ends = found[0].tolist(), found[1].tolist()
        axes = found[2].tolist() if found[2] is not None else list(range(len(starts)))
        steps = found[3].tolist() if found[3] is not None else [1] * len(starts)
    if any(step != 1 for step in steps):
        return f"Slice with steps {steps}; Caffe's Slice takes contiguous ranges only"
    ranges = {}
    for start, end, axis in zip(starts, ends, axes):
        axis %= len(shape)
        size = shape[axis]
        start = min(max(start + size if start < 0 else start, 0), size)
        end = size if end >= _INT64_MAX else min(max(end + size if end < 0 else end, 0), size)
        if end <= start:
            return f"Slice of an empty range [{start}, {end}) on axis {axis}"
        if (start, end) != (0, size):
            ranges[axis] = (start, end)
    return ranges


@CAFFE_LAYERS.register("Slice")
def convert_slice(node: ir.Node, net: CaffeNet) -> None:
    """Slice keeping one piece per cut axis (step 1)"""
    shape = net.shape(node.inputs[0])
    if shape is None:
        net.problem(node, "dynamic-shape", "Slice needs a known input shape", "export with fixed shapes")
        return
    ranges = _slice_ranges(node, net, shape)
    if isinstance(ranges, str):
        net.problem(node, "slice", ranges, "slice with constant bounds and step 1")
        return
    if not ranges:
        net.alias(node, node.outputs[0], node.inputs[0])
        return
    blob = net.bottom(node, node.inputs[0])
    axes = sorted(ranges)
    for axis in axes:
        start, end = ranges[axis]
        points = [p for p in (start, end) if 0 < p < shape[axis]]
        kept = 1 if start > 0 else 0
        outputs: list[ir.Value | None] = [None] * (len(points) + 1)
        if axis == axes[-1]:
            outputs[kept] = node.outputs[0]
        layer = net.add_layer(node, "Slice", [blob], outputs, role=None if len(axes) == 1 else f"axis{axis}")
        layer.slice_param.axis = axis
        layer.slice_param.slice_point.extend(points)
        blob = layer.top[kept]
        net.discard(node, [top for index, top in enumerate(layer.top) if index != kept])


@CAFFE_LAYERS.register("Identity", "Dropout")
def convert_identity(node: ir.Node, net: CaffeNet) -> None:
    """no layer: the output is the input blob (reported)"""
    if node.op_type == "Dropout" and len(node.outputs) > 1 and node.outputs[1].consumers():
        net.problem(node, "dropout-mask", "the Dropout mask output is used", "do not use the dropout mask")
        return
    net.alias(node, node.outputs[0], node.inputs[0])
    net.problem(
        node,
        "removed",
        f"{node.op_type} does nothing at inference and is not written",
        "run simplify to remove it from the graph as well",
        severity="warning",
    )


@CAFFE_LAYERS.register("Constant")
def convert_constant(node: ir.Node, net: CaffeNet) -> None:
    """no layer: constants reach Caffe as the weights of the layers that use them"""
