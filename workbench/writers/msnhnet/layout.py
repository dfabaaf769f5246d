"""Tensor layout ops -> nothing (reshapes), ``view`` + ``permute``, ``route``, ``slice`` + ``padding``.

Reshape, Flatten, Squeeze, Unsqueeze, Identity and Dropout move no data: their
output is held by their input's layer (a ``view`` is written later only where a
layer needs other (C, H, W)). The batch axis must stay first.

``Transpose`` (and ``DepthToSpace``/``SpaceToDepth``, which are reshapes around one)
moves data. Axes of size 1 are dropped and neighbours that stay neighbours are
merged; MsnhNet's ``permute`` reorders the three axes (C, H, W) of one sample, so a
permutation of up to three groups is one ``view`` + ``permute`` (ShuffleNet's channel
shuffle ``(2, C/2, H·W) -> (C/2, 2, H·W)``; MTCNN's NCHW -> NWHC), and a longer one a
shortest sequence of them, found by breadth-first search over 2- and 3-block moves.
MsnhNet's ``pixshf`` is not PyTorch's pixel shuffle (checked in the real runtime),
so DepthToSpace is written with permutes too.

``Concat`` is a ``route`` of the layers (MsnhNet's concat is of whole flattened
samples, so along channels of images with the same H and W, or along the first
axis with data); along a later axis the parts are permuted first so that axis
leads, then back. ``Slice``, ``Split`` and ``Gather`` of one index are a ``slice``
layer (start and step per C, H, W, always to the end) followed by negative
``padding`` cutting the end of H and W, and a view + padding cutting channels.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from ...graph.converter import slice_bounds
from .net import MSNHNET_LAYERS, Dims, MsnhLayer, MsnhNodeContext, as_dims, canonical_dims, per_sample

_AXES = {2: {1: 0}, 3: {1: 0, 2: 2}, 4: {1: 0, 2: 1, 3: 2}}  # graph rank -> graph axis -> MsnhNet axis (C, H, W)
BATCH_REMEDY = "keep the batch axis first in the source model (x.view(x.size(0), ...))"


@MSNHNET_LAYERS.register("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
def convert_reshape(ctx: MsnhNodeContext) -> None:
    """nothing: the same layer holds the data (a view where a layer needs other dimensions)"""
    if ctx.const(0) is not None:
        return  # a copy of a constant (an unsimplified export's Identity on a weight): read where it is used
    before, after = ctx.static_shape(0), ctx.output_shape(0)
    if before and after and after[0] != before[0] and not _final(ctx.node.outputs[0]):
        ctx.problem("batch-axis", f"reshapes {before} to {tuple(after)}, moving the batch axis", BATCH_REMEDY)
        return
    ctx.alias()


def _final(value: ir.Value) -> bool:
    """A graph output nothing else reads (``x.squeeze()`` at the end): its layout is the caller's."""
    return value.is_graph_output() and not value.consumers()


# ---- transpositions -------------------------------------------------------------------------


def _groups(shape: Sequence[int], perm: Sequence[int]) -> tuple[list[int], list[int]]:
    """(sizes of the input's axis groups in input order, the groups' order in the output):
    axes of size 1 dropped, neighbours kept together merged."""
    kept = [axis for axis in perm[1:] if shape[axis] != 1]
    runs: list[list[int]] = []
    for axis in kept:
        if runs and axis == runs[-1][-1] + 1:
            runs[-1].append(axis)
        else:
            runs.append([axis])
    by_start = sorted(runs, key=lambda run: run[0])
    sizes = [math.prod(shape[a] for a in run) for run in by_start]
    order = [by_start.index(run) for run in runs]
    return sizes, order


def _moves(count: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every split of ``count`` groups into 2 or 3 blocks (their end positions) and a
    non-identity order of the blocks."""
    moves: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for i in range(1, count):
        moves.append(((i, count), (1, 0)))
        for j in range(i + 1, count):
            for order in ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
                moves.append(((i, j, count), order))
    return moves


def _apply(state: tuple[int, ...], cuts: tuple[int, ...], order: tuple[int, ...]) -> tuple[int, ...]:
    blocks = [state[a:b] for a, b in zip((0, *cuts[:-1]), cuts)]
    return tuple(g for index in order for g in blocks[index])


def permute_plan(count: int, target: Sequence[int]) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """The fewest block moves taking groups ``0..count-1`` to ``target``: (state before, cuts, order)."""
    start, goal = tuple(range(count)), tuple(target)
    previous: dict[tuple[int, ...], tuple] = {start: ()}
    queue = deque([start])
    moves = _moves(count)
    while queue and goal not in previous:
        state = queue.popleft()
        for cuts, order in moves:
            following = _apply(state, cuts, order)
            if following not in previous:
                previous[following] = (state, cuts, order)
                queue.append(following)
    plan = []
    state = goal
    while previous[state]:
        before, cuts, order = previous[state]
        plan.append((before, cuts, order))
        state = before
    return plan[::-1]


def transpose(ctx: MsnhNodeContext, shape: Sequence[int], perm: Sequence[int]) -> None:
    """Write input 0, of ``shape``, transposed by ``perm`` (batch first), as views and permutes."""
    if perm[0] != 0:
        ctx.problem("batch-axis", f"transposes the batch axis (perm {list(perm)})", BATCH_REMEDY)
        return
    sizes, order = _groups(shape, perm)
    if order == sorted(order):
        ctx.alias()
        return
    if ctx.feed(0) is None:
        return
    for state, cuts, block_order in permute_plan(len(sizes), order):
        blocks = [math.prod(sizes[g] for g in state[a:b]) for a, b in zip((0, *cuts[:-1]), cuts)]
        dims = tuple(blocks) if len(blocks) == 3 else (blocks[0], blocks[1], 1)
        permutation = block_order if len(block_order) == 3 else (1, 0, 2)
        if ctx.view_previous(as_dims(dims)) is None:
            return
        out_dims = as_dims([dims[d] for d in permutation])
        params = {"dim0": permutation[0], "dim1": permutation[1], "dim2": permutation[2]}
        ctx.add_layer("permute", params, out_dims, output=None)
    _stands_for_output(ctx)


def _stands_for_output(ctx: MsnhNodeContext, output: int = 0) -> None:
    last = ctx.net.last
    if last is not None:
        value = ctx.node.outputs[output]
        last.stands_for(value, ())
        ctx.net.bind(value, last)


@MSNHNET_LAYERS.register("Transpose")
def convert_transpose(ctx: MsnhNodeContext) -> None:
    """view + permute (a shortest sequence of them for more than three axis groups)"""
    shape = ctx.static_shape(0)
    if shape is None:
        ctx.problem("dynamic-shape", "transpose of an unknown shape", "export with a fixed input shape")
        return
    perm = ctx.attr("perm", None)
    transpose(ctx, shape, list(perm) if perm is not None else [0, *range(len(shape) - 1, 0, -1)])


@MSNHNET_LAYERS.register("DepthToSpace", "SpaceToDepth")
def convert_depth_to_space(ctx: MsnhNodeContext) -> None:
    """views and permutes (MsnhNet's pixshf is another shuffle)"""
    shape = ctx.static_shape(0)
    if shape is None or len(shape) != 4:
        ctx.problem("dynamic-shape", "needs a known 4-D input", "export with a fixed input shape")
        return
    n, c, h, w = shape
    b = int(ctx.attr("blocksize"))
    if ctx.node.op_type == "SpaceToDepth":
        transpose(ctx, (n, c, h // b, b, w // b, b), (0, 3, 5, 1, 2, 4))
    elif str(ctx.attr("mode")) == "CRD":
        transpose(ctx, (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3))
    else:
        transpose(ctx, (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2))


# ---- concatenation ----------------------------------------------------------------------------


@MSNHNET_LAYERS.register("Concat")
def convert_concat(ctx: MsnhNodeContext) -> None:
    """route of the layers (along a later axis: permuted so it leads, then back)"""
    known = _known_shapes(ctx)
    if known is None:
        ctx.problem("dynamic-shape", "concatenation of unknown shapes", "export with a fixed input shape")
        return
    shapes, out = known
    axis = int(ctx.attr("axis")) % len(out)
    if axis == 0:
        ctx.problem("batch-axis", "concatenation along the batch axis", "concatenate along an axis after the batch")
        return
    before, after = math.prod(out[1:axis]), math.prod(out[axis + 1 :])
    sizes = [int(s[axis]) for s in shapes]
    if before == 1:
        _route(ctx, [_concat_dims(s, after) for s in shapes], sizes, after)
    else:
        _route_leading(ctx, before, sizes, after)


def _known_shapes(ctx: MsnhNodeContext) -> tuple[list[tuple[int, ...]], tuple[int, ...]] | None:
    """The shapes of every input and of the output, when all are known."""
    shapes = [ctx.static_shape(i) for i in range(len(ctx.node.inputs))]
    out = ctx.output_shape(0)
    if out is None or any(d is None for d in out):
        return None
    known = [s for s in shapes if s is not None]
    return (known, tuple(int(d or 0) for d in out)) if len(known) == len(shapes) else None


def _concat_dims(shape: Sequence[int], after: int) -> Dims:
    dims = canonical_dims(shape)
    return dims if dims[1] * dims[2] == after else (per_sample(shape) // after, 1, after)


def _route(ctx: MsnhNodeContext, dims: list[Dims], sizes: list[int], after: int) -> None:
    if len({d[1:] for d in dims}) != 1:
        dims = [(size, 1, after) for size in sizes]
    layers = [ctx.layer_for(value, d) for value, d in zip(ctx.node.inputs, dims) if value is not None]
    if any(layer is None for layer in layers) or len(layers) != len(dims):
        return
    ctx.first_layer_allowed()
    ctx.add_layer("route", {"layers": layers}, (sum(d[0] for d in dims), *dims[0][1:]))


def _route_leading(ctx: MsnhNodeContext, before: int, sizes: list[int], after: int) -> None:
    """Concatenate along an axis with ``before`` values before it: each part as
    (axis, before, after), a route, and the result permuted back."""
    parts: list[MsnhLayer] = []
    for index, size in enumerate(sizes):
        if ctx.feed(index, (before, size, after)) is None:
            return
        parts.append(ctx.add_layer("permute", {"dim0": 1, "dim1": 0, "dim2": 2}, (size, before, after), output=None))
    ctx.add_layer("route", {"layers": parts}, (sum(sizes), before, after), output=None)
    ctx.add_layer("permute", {"dim0": 1, "dim1": 0, "dim2": 2}, (before, sum(sizes), after))


# ---- slicing ----------------------------------------------------------------------------------


def cut(ctx: MsnhNodeContext, ranges: dict[int, tuple[int, int, int]], output: ir.Value) -> None:
    """Write input 0's ``ranges`` (graph axis -> normalised (start, count, step)) for ``output``."""
    shape = ctx.static_shape(0)
    rank = len(shape) if shape is not None else 0
    if shape is None or rank not in _AXES or 0 in ranges or any(axis not in _AXES[rank] for axis in ranges):
        ctx.problem(
            "slice",
            f"slices axes {sorted(ranges)} of a tensor of shape {shape}; MsnhNet slices C, H and W of one sample",
            "slice a 2-D to 4-D tensor along axes after the batch",
        )
        return
    if not ranges:
        held = ctx.holder(0)
        if held is not None:
            ctx.net.bind(output, held)
        return
    dims = canonical_dims(shape)
    if ctx.feed(0, dims) is None:
        return
    wanted = [[0, d, 1] for d in dims]
    for axis, (start, count, step) in ranges.items():
        wanted[_AXES[rank][axis]] = [start, count, step]
    _slice_layers(ctx, dims, wanted, output)


def _slice_layers(ctx: MsnhNodeContext, dims: Dims, wanted: list[list[int]], output: ir.Value) -> None:
    current = list(dims)
    params: dict = {}
    for axis, (start, _, step) in enumerate(wanted):
        if start:
            params[f"start{axis}"] = start
        if step != 1:
            params[f"step{axis}"] = step
        current[axis] = -(-(dims[axis] - start) // step)
    counts = [count for _, count, _ in wanted]
    if params:
        ctx.add_layer("slice", params, as_dims(current), output=None)
    if current[1:] != counts[1:]:
        crop = {"down": counts[1] - current[1], "right": counts[2] - current[2]}
        current = [current[0], *counts[1:]]
        ctx.add_layer("padding", crop, as_dims(current), output=None, role="crop")
    if current[0] != counts[0]:
        plane = current[1] * current[2]
        if ctx.view_previous((1, current[0], plane)) is None:
            return
        ctx.add_layer("padding", {"down": counts[0] - current[0]}, (1, counts[0], plane), output=None, role="crop")
    computed = ctx.net.last
    if computed is not None:
        computed.stands_for(output, ())  # its data is the output's, whatever dimensions follow
    if ctx.view_previous(as_dims(counts)) is None:
        return
    last = ctx.net.last
    if last is not None:
        last.stands_for(output, ())
        ctx.net.bind(output, last)


def _normalised(start: int, end: int, step: int, size: int) -> tuple[int, int, int] | None:
    """ONNX Slice bounds on an axis of ``size`` as (start, count, step); None for a negative step."""
    if step < 0:
        return None
    begin = min(max(start + size if start < 0 else start, 0), size)
    stop = min(max(end + size if end < 0 else end, 0), size)
    return begin, len(range(begin, stop, step)), step


@MSNHNET_LAYERS.register("Slice")
def convert_slice(ctx: MsnhNodeContext) -> None:
    """slice (start, step) + padding cutting the end (negative pads)"""
    bounds = slice_bounds(ctx)
    shape = ctx.static_shape(0)
    if bounds is None or shape is None:
        return
    ranges = {}
    for start, end, axis, step in zip(bounds.starts, bounds.ends, bounds.axes, bounds.steps):
        axis %= len(shape)
        found = _normalised(start, end, step, shape[axis])
        if found is None or found[1] == 0:
            ctx.unsupported(
                f"slice with step {step} giving {found[1] if found else 'reversed'} values", "slice forward"
            )
            return
        if found != (0, shape[axis], 1):
            ranges[axis] = found
    cut(ctx, ranges, ctx.node.outputs[0])


@MSNHNET_LAYERS.register("Split")
def convert_split(ctx: MsnhNodeContext) -> None:
    """one slice (+ crops) per output"""
    shape = ctx.static_shape(0)
    if shape is None or not ctx.require_constants("split"):
        ctx.problem("dynamic-shape", "split of an unknown shape", "export with a fixed input shape")
        return
    axis = int(ctx.attr("axis")) % len(shape)
    found = ctx.param("split")
    outputs = ctx.node.outputs
    sizes = [int(s) for s in found.reshape(-1)] if found is not None else _equal_parts(shape[axis], len(outputs))
    start = 0
    for output, size in zip(outputs, sizes):
        if output.consumers() or output.is_graph_output():
            cut(ctx, {axis: (start, size, 1)}, output)
        start += size


def _equal_parts(size: int, count: int) -> list[int]:
    part = -(-size // count)
    return [min(part, size - part * i) for i in range(count)]


@MSNHNET_LAYERS.register("Gather")
def convert_gather(ctx: MsnhNodeContext) -> None:
    """slice of one index (the axis dropped: no data moves)"""
    indices = ctx.const(1)
    shape = ctx.static_shape(0)
    if indices is None or shape is None or np.asarray(indices).size != 1:
        ctx.unsupported("Gather of indices other than one constant", "index with a constant (x[:, 0]) or use Slice")
        return
    axis = int(ctx.attr("axis")) % len(shape)
    index = int(np.asarray(indices).reshape(-1)[0]) % shape[axis]
    cut(ctx, {axis: (index, 1, 1)}, ctx.node.outputs[0])
