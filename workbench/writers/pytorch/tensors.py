"""Shape and layout ops: reshape, flatten, transpose, squeeze, concat, split,
slice, pad, gather, expand, tile, depth-to-space and space-to-depth, and the ops that pass
their input through (Identity, Dropout at inference).

``Dropout`` in inference mode (``training_mode`` left out or false) is the identity
with a mask of all true; in training mode it keeps each value with probability
``1 - ratio``, scaled by ``1 / (1 - ratio)``: a random mask drawn by PyTorch
(ONNX fixes no generator, so no two runtimes draw the same one).

Their shape-like parameters (target shapes, axes, pads, split sizes, scales)
must be constants, written into the code as literals; a graph that computes
them at run time should be simplified with fixed input shapes first.

Semantics that differ:

* ``Reshape``: a 0 in the target copies the input's size on that axis (unless
  ``allowzero = 1``); ``-1`` is inferred, as in ``Tensor.reshape``.
* ``Flatten(axis)`` always gives a 2-d result ``(prod(shape[:axis]), prod(shape[axis:]))``.
* ``Slice``: ends beyond the axis (``INT64_MAX``) are open ends; Python slicing
  clamps like ONNX. PyTorch has no negative steps.
* ``Gather(axis)`` with indices ``i`` is ``x[:, ..., i]`` (one advanced index),
  which gives ``shape[:axis] + i.shape + shape[axis + 1:]`` as ONNX does.
* ``Expand`` broadcasts both ways (a 1 in the target keeps the input's size).
* ``DepthToSpace``: ``CRD`` is ``nn.PixelShuffle``; ``DCR`` takes channel
  ``k * C + c`` to block position ``k`` of channel ``c``, where ``nn.PixelShuffle``
  takes channel ``c * b^2 + k``: the channels are regrouped as ``(b^2, C)``,
  transposed and flattened first. ``SpaceToDepth`` is the inverse:
  ``nn.PixelUnshuffle`` (``CRD``), its channels regrouped as ``(C, b^2)`` and
  transposed for ``DCR``.
"""

from __future__ import annotations

import numpy as np

from ...graph import opset as opsets
from ...graph.converter import slice_bounds
from .codegen import Expr, ListOf, call, flat, ints, literal, number, string
from .program import EMITTERS, LITERAL_LIMIT, TorchNodeContext

_INT64_MAX = np.iinfo(np.int64).max
_OPEN_END = 2**31 - 1  # exporters write INT32_MAX or INT64_MAX for "to the end"


def _axis(ctx: TorchNodeContext, axis: int, rank: int | None) -> int | None:
    """``axis`` made non-negative, or None (with a problem) when the rank is unknown."""
    if axis >= 0:
        return axis
    if rank is None:
        ctx.unsupported(f"negative axis {axis} on an input of unknown rank", "run shape inference first")
        return None
    return axis + rank


@EMITTERS.register("Identity")
def emit_identity(ctx: TorchNodeContext) -> None:
    """passes its input through"""
    ctx.alias(0)


@EMITTERS.register("Dropout")
def emit_dropout(ctx: TorchNodeContext) -> None:
    """passes its input through (inference, mask all true); training mode: random mask, kept values scaled by 1 / (1 - ratio)"""
    index = opsets.input_index(ctx.schema, "training_mode")
    given = index is not None and ctx.has_input(index)
    training = ctx.const(index) if given and index is not None else np.zeros((), np.bool_)
    if training is not None and not bool(training.reshape(-1)[0]):
        ctx.alias(0)
        if ctx.output_used(1):
            ctx.assign(call("torch.ones_like", ctx.x(0), dtype="torch.bool"), 1)
        return
    ratio = _dropout_ratio(ctx)
    drawn = f"{flat(call('torch.rand_like', ctx.x(0)))} >= {ratio}"
    if training is None and index is not None:
        # training_mode computed at run time: everything kept, unscaled, when it is false
        flag = ctx.x(index)
        keep = ctx.temporary(f"({drawn}) | ~{flag}", "keep")
        ctx.assign(f"{ctx.x(0)} * {keep} / (1 - {ratio} * {flag})")
    else:
        keep = ctx.temporary(drawn, "keep")
        ctx.assign(f"{ctx.x(0)} * {keep} / (1 - {ratio})")
    if ctx.output_used(1):
        ctx.alias_output(1, keep)


def _dropout_ratio(ctx: TorchNodeContext) -> str:
    """The drop probability as a number (default 0.5), or the variable holding it."""
    index = opsets.input_index(ctx.schema, "ratio")
    if index is not None and ctx.has_input(index) and ctx.const(index) is None:
        return ctx.x(index)
    given = ctx.param("ratio")
    return number(float(given.reshape(-1)[0]) if given is not None else 0.5)


@EMITTERS.register("Constant")
def emit_constant(ctx: TorchNodeContext) -> None:
    """nothing: users read the value as a literal or a buffer"""


@EMITTERS.register("Reshape")
def emit_reshape(ctx: TorchNodeContext) -> None:
    """x.reshape(...) with the constant target shape"""
    if not ctx.require_constants("shape"):
        return
    found = ctx.param("shape")
    if found is None:
        ctx.problem("malformed-node", "Reshape without a target shape", "check the model with onnx.checker")
        return
    target = [int(d) for d in found.reshape(-1)]
    shape = ctx.shape(0)
    source = ctx.x(0)
    sizes = []
    for axis, size in enumerate(target):
        if size == 0 and not ctx.attr("allowzero", 0):
            known = shape[axis] if shape is not None and axis < len(shape) else None
            sizes.append(str(known) if known is not None else f"{source}.shape[{axis}]")
        else:
            sizes.append(str(size))
    ctx.assign(call(f"{source}.reshape", *sizes))


@EMITTERS.register("Flatten")
def emit_flatten(ctx: TorchNodeContext) -> None:
    """nn.Flatten() for axis 1 (torch.flatten inside a larger layer), reshape or torch.flatten for other axes"""
    axis = _axis(ctx, int(ctx.attr("axis", 1)), ctx.rank(0))
    if axis is None:
        return
    source = ctx.x(0)
    rank = ctx.rank(0)
    if axis == 0:
        ctx.assign(call(f"{source}.reshape", "1", "-1"))
    elif axis == 1 and rank != 1 and ctx.whole_layer():
        ctx.assign(call(ctx.module(call("nn.Flatten")), source))
    elif axis == 1 and rank != 1:
        ctx.assign(call("torch.flatten", source, "1"))
    elif rank is not None and axis == rank:
        ctx.assign(call(f"{source}.reshape", "-1", "1"))
    else:
        inner = call("torch.flatten", source, str(axis))
        ctx.assign(call("torch.flatten", inner, "0", str(axis - 1)))


@EMITTERS.register("Transpose")
def emit_transpose(ctx: TorchNodeContext) -> None:
    """x.permute(...)"""
    perm = ctx.attr("perm")
    if perm is None:
        rank = ctx.rank(0)
        if rank is None:
            ctx.unsupported("Transpose without perm on an input of unknown rank", "run shape inference first")
            return
        perm = tuple(reversed(range(rank)))
    ctx.assign(call(f"{ctx.x(0)}.permute", *(str(int(p)) for p in perm)))


@EMITTERS.register("Squeeze")
def emit_squeeze(ctx: TorchNodeContext) -> None:
    """torch.squeeze(x, dim=...)"""
    if not ctx.require_constants("axes"):
        return
    axes = ctx.param("axes")
    if axes is None:
        ctx.assign(call("torch.squeeze", ctx.x(0)))
        return
    dims = [int(a) for a in axes.reshape(-1)]
    ctx.assign(call("torch.squeeze", ctx.x(0), str(dims[0]) if len(dims) == 1 else ints(dims)))


@EMITTERS.register("Unsqueeze")
def emit_unsqueeze(ctx: TorchNodeContext) -> None:
    """x.unsqueeze(a), one call per new axis in increasing order"""
    if not ctx.require_constants("axes"):
        return
    axes = ctx.param("axes")
    if axes is None:
        ctx.unsupported("Unsqueeze without axes")
        return
    axes_list = [int(a) for a in axes.reshape(-1)]
    rank = ctx.rank(0)
    if any(a < 0 for a in axes_list) and rank is None:
        ctx.unsupported("Unsqueeze with negative axes on an input of unknown rank", "run shape inference first")
        return
    # ONNX axes count in the output's rank; inserting them in increasing order keeps each valid
    out_rank = (rank or 0) + len(axes_list)
    expression = ctx.x(0)
    for axis in sorted(a + out_rank if a < 0 else a for a in axes_list):
        expression = f"{expression}.unsqueeze({axis})"
    ctx.assign(expression)


@EMITTERS.register("Concat")
def emit_concat(ctx: TorchNodeContext) -> None:
    """torch.cat([...], dim) in the graph's input order"""
    parts = ListOf(tuple(ctx.x(i) for i in range(len(ctx.node.inputs)) if ctx.has_input(i)))
    ctx.assign(call("torch.cat", parts, dim=str(int(ctx.attr("axis")))))


def _equal_parts(ctx: TorchNodeContext, axis: int, count: int) -> list[int] | None:
    """ONNX's split into ``count`` parts (opset 18 ``num_outputs``): ``ceil(total / count)``
    each, the last one smaller; None after a problem when the axis size is unknown."""
    shape = ctx.shape(0)
    total = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None
    if total is None:
        ctx.problem(
            "dynamic-shape",
            f"Split into {count} equal parts along an axis of unknown size",
            "give the model fixed input shapes and simplify it first",
        )
        return None
    part = -(-total // count)
    return [part] * (count - 1) + [total - part * (count - 1)]


@EMITTERS.register("Split")
def emit_split(ctx: TorchNodeContext) -> None:
    """a, b, ... = torch.split(x, [sizes], dim) (sizes computed at run time: their .tolist())"""
    axis = int(ctx.attr("axis", 0))
    index = opsets.input_index(ctx.schema, "split")
    if index is not None and ctx.has_input(index) and ctx.const(index) is None:
        ctx.assign_all(call("torch.split", ctx.x(0), f"{ctx.x(index)}.tolist()", dim=str(axis)))
        return
    given = ctx.param("split")
    sizes = [int(s) for s in given.reshape(-1)] if given is not None else _equal_parts(ctx, axis, len(ctx.node.outputs))
    if sizes is not None:
        ctx.assign_all(call("torch.split", ctx.x(0), ints(sizes), dim=str(axis)))


def _python_slice(start: int, end: int, step: int) -> str:
    text = f"{start or ''}:{'' if end >= _OPEN_END else end}"
    return text + (f":{step}" if step != 1 else "")


@EMITTERS.register("Slice")
def emit_slice(ctx: TorchNodeContext) -> None:
    """x[start:end:step, ...] with constant bounds"""
    bounds = slice_bounds(ctx)
    if bounds is None:
        return
    rank = ctx.rank(0)
    found = [_axis(ctx, a, rank) for a in bounds.axes]
    normalized = [a for a in found if a is not None]
    if len(normalized) != len(found):
        return
    if any(step < 1 for step in bounds.steps):
        ctx.unsupported(
            f"Slice with steps {list(bounds.steps)}; PyTorch slicing needs positive steps",
            "reverse the axis with a separate op (torch.flip) in the source model",
        )
        return
    by_axis = {axis: (s, e, st) for axis, s, e, st in zip(normalized, bounds.starts, bounds.ends, bounds.steps)}
    items = [_python_slice(*by_axis.get(axis, (0, _INT64_MAX, 1))) for axis in range(max(by_axis) + 1)]
    ctx.assign(f"{ctx.x(0)}[{', '.join(items)}]")


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def _pads_per_axis(ctx: TorchNodeContext) -> dict[int, tuple[int, int]] | None:
    """axis -> (begin, end) of a Pad node, its ``pads`` and ``axes`` read where the opset
    keeps them; None after a problem."""
    pads = ctx.param("pads", "paddings")
    if pads is None:
        ctx.problem("malformed-node", "Pad without pads", "check the model with onnx.checker")
        return None
    flat_pads = [int(p) for p in pads.reshape(-1)]
    axes = ctx.param("axes")
    axes_list = [int(a) for a in axes.reshape(-1)] if axes is not None else list(range(len(flat_pads) // 2))
    rank = ctx.rank(0)
    if rank is None and any(a < 0 for a in axes_list):
        ctx.unsupported("Pad with negative axes on an input of unknown rank", "run shape inference first")
        return None
    count = len(axes_list)
    return {
        (a + rank if a < 0 and rank is not None else a): (flat_pads[i], flat_pads[i + count])
        for i, a in enumerate(axes_list)
    }


def _pad_arguments(ctx: TorchNodeContext, mode: str) -> dict[str, Expr]:
    """F.pad's mode and fill value, when they are not the defaults (constant zeros)."""
    if mode != "constant":
        return {"mode": string(_PAD_MODES[mode])}
    value = ctx.param("constant_value", "value")
    if value is not None and value.size and float(value.reshape(())) != 0.0:
        return {"value": number(value.reshape(()).item(), ctx.dtype(0))}
    return {}


@EMITTERS.register("Pad")
def emit_pad(ctx: TorchNodeContext) -> None:
    """F.pad(x, pads, mode, value)"""
    mode = str(ctx.attr("mode", "constant"))
    if mode not in _PAD_MODES:
        ctx.unsupported(f"Pad mode {mode!r}")
        return
    if not ctx.require_constants("pads", "constant_value", "axes"):
        return
    per_axis = _pads_per_axis(ctx)
    if per_axis is None:
        return
    padded = [a for a, pair in per_axis.items() if pair != (0, 0)]
    if not padded:
        ctx.alias(0)
        return
    rank = ctx.rank(0)
    last = max(per_axis) if rank is None else rank - 1
    # F.pad takes (begin, end) pairs from the last axis back to the first padded one
    flat_pads = [p for axis in range(last, min(padded) - 1, -1) for p in per_axis.get(axis, (0, 0))]
    ctx.assign(call("F.pad", ctx.x(0), ints(flat_pads), **_pad_arguments(ctx, mode)))


@EMITTERS.register("Gather")
def emit_gather(ctx: TorchNodeContext) -> None:
    """x[:, ..., indices] (small constant indices written as literals)"""
    axis = _axis(ctx, int(ctx.attr("axis", 0)), ctx.rank(0))
    if axis is None:
        return
    indices = ctx.const(1)
    if indices is not None and indices.size <= LITERAL_LIMIT:
        index = flat(literal(indices.astype(np.int64)))
    else:
        index = ctx.x(1)
    ctx.assign(f"{ctx.x(0)}[{':, ' * axis}{index}]")


@EMITTERS.register("Expand")
def emit_expand(ctx: TorchNodeContext) -> None:
    """x.expand(...) to the broadcast of the input's and the given shape"""
    found = ctx.param("shape") if ctx.require_constants("shape") else None
    if found is None:
        return
    target = tuple(int(d) for d in found.reshape(-1))
    shape = ctx.static_shape(0)
    if shape is not None:
        ctx.assign(call(f"{ctx.x(0)}.expand", *(str(d) for d in np.broadcast_shapes(shape, target))))
        return
    broadcast = call("torch.broadcast_shapes", f"{ctx.x(0)}.shape", ints(target))
    ctx.assign(call("torch.broadcast_to", ctx.x(0), broadcast))


@EMITTERS.register("Tile")
def emit_tile(ctx: TorchNodeContext) -> None:
    """x.repeat(...) (repeats computed at run time: their .tolist())"""
    index = opsets.input_index(ctx.schema, "repeats")
    if index is None:
        ctx.unsupported(f"Tile (opset {ctx.opset}) with tiles and axis inputs", "re-export with opset 6 or later")
        return
    repeats = ctx.const(index)
    if repeats is None:
        ctx.assign(call(f"{ctx.x(0)}.repeat", f"*{ctx.x(index)}.tolist()"))
        return
    ctx.assign(call(f"{ctx.x(0)}.repeat", *(str(int(r)) for r in repeats.reshape(-1))))


def _blocks_in_channel_order(block: int, source: str, *, inward: bool) -> str:
    """Reorder channels between ONNX's DCR order (block position outermost: channel
    ``k * C + c`` for block position ``k``) and PyTorch's pixel-shuffle order (``c * b^2 + k``)."""
    groups = f"(-1, {block * block})" if inward else f"({block * block}, -1)"
    return f"{source}.unflatten(1, {groups}).transpose(1, 2).flatten(1, 2)"


@EMITTERS.register("DepthToSpace")
def emit_depth_to_space(ctx: TorchNodeContext) -> None:
    """nn.PixelShuffle (CRD); DCR: the channels reordered first"""
    block = int(ctx.attr("blocksize"))
    source = ctx.x(0)
    if (ctx.attr("mode") or "DCR") != "CRD":
        source = _blocks_in_channel_order(block, source, inward=False)
    ctx.assign(call(ctx.module(call("nn.PixelShuffle", str(block))), source))


@EMITTERS.register("SpaceToDepth")
def emit_space_to_depth(ctx: TorchNodeContext) -> None:
    """nn.PixelUnshuffle (CRD); DCR: its channels reordered after"""
    block = int(ctx.attr("blocksize"))
    unshuffled = call(ctx.module(call("nn.PixelUnshuffle", str(block))), ctx.x(0))
    if (ctx.attr("mode") or "DCR") == "CRD":
        ctx.assign(unshuffled)
        return
    ctx.assign(_blocks_in_channel_order(block, flat(unshuffled), inward=True))
