"""Shape and layout ops: reshape, flatten, transpose, squeeze, concat, split,
slice, pad, gather, expand, tile, depth-to-space, resize, and the ops that pass
their input through (Identity, Dropout at inference).

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
* ``Resize`` maps onto ``nn.Upsample`` when its coordinate transform matches
  one of PyTorch's: ``nearest`` is ``asymmetric`` + ``floor``; ``nearest-exact``
  is ``half_pixel`` + ``round_prefer_ceil``; ``half_pixel`` + ``round_prefer_floor``
  picks the same pixels as ``nearest`` for whole upscaling factors; linear and
  cubic are ``half_pixel`` (``align_corners=False``) or ``align_corners``.
* ``DepthToSpace``: ``CRD`` is ``nn.PixelShuffle``; ``DCR`` splits the channels
  the other way round and is written as reshape / permute / reshape.
"""

from __future__ import annotations

import numpy as np

from .codegen import ListOf, call, flat, ints, literal, number, string
from .program import EMITTERS, LITERAL_LIMIT, NodeContext

_INT64_MAX = np.iinfo(np.int64).max
_OPEN_END = 2**31 - 1  # exporters write INT32_MAX or INT64_MAX for "to the end"


def _axis(ctx: NodeContext, axis: int, rank: int | None) -> int | None:
    """``axis`` made non-negative, or None (with a problem) when the rank is unknown."""
    if axis >= 0:
        return axis
    if rank is None:
        ctx.unsupported(f"negative axis {axis} on an input of unknown rank", "run shape inference first")
        return None
    return axis + rank


@EMITTERS.register("Identity", "Dropout")
def emit_identity(ctx: NodeContext) -> None:
    """passes its input through (Dropout: inference mode)"""
    if len(ctx.node.outputs) > 1 and ctx.node.outputs[1].uses():
        ctx.unsupported("Dropout's mask output is used", "the generated model runs in inference mode")
        return
    ctx.alias(0)


@EMITTERS.register("Constant")
def emit_constant(ctx: NodeContext) -> None:
    """nothing: users read the value as a literal or a buffer"""


@EMITTERS.register("Reshape")
def emit_reshape(ctx: NodeContext) -> None:
    """x.reshape(...) with the constant target shape"""
    if not ctx.needs_constant(1, "the target shape"):
        return
    target = [int(d) for d in ctx.const(1).reshape(-1)]
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
def emit_flatten(ctx: NodeContext) -> None:
    """nn.Flatten() for axis 1 (torch.flatten inside a larger layer); reshape /
    torch.flatten for other axes"""
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
def emit_transpose(ctx: NodeContext) -> None:
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
def emit_squeeze(ctx: NodeContext) -> None:
    """torch.squeeze(x, dim=...)"""
    if not ctx.needs_constant(1, "the squeezed axes"):
        return
    axes = ctx.param(1, "axes", since=13)
    if axes is None:
        ctx.assign(call("torch.squeeze", ctx.x(0)))
        return
    dims = [int(a) for a in axes.reshape(-1)]
    ctx.assign(call("torch.squeeze", ctx.x(0), str(dims[0]) if len(dims) == 1 else ints(dims)))


@EMITTERS.register("Unsqueeze")
def emit_unsqueeze(ctx: NodeContext) -> None:
    """x.unsqueeze(a), one call per new axis in increasing order"""
    if not ctx.needs_constant(1, "the new axes"):
        return
    axes = ctx.param(1, "axes", since=13)
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
def emit_concat(ctx: NodeContext) -> None:
    """torch.cat([...], dim) in the graph's input order"""
    parts = ListOf(tuple(ctx.x(i) for i in range(len(ctx.node.inputs)) if ctx.has_input(i)))
    ctx.assign(call("torch.cat", parts, dim=str(int(ctx.attr("axis")))))


@EMITTERS.register("Split")
def emit_split(ctx: NodeContext) -> None:
    """a, b, ... = torch.split(x, [sizes], dim)"""
    if not ctx.needs_constant(1, "the split sizes"):
        return
    axis = int(ctx.attr("axis", 0))
    sizes = ctx.param(1, "split", since=13)
    count = len(ctx.node.outputs)
    if sizes is None:
        shape = ctx.shape(0)
        total = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None
        if total is None:
            ctx.problem(
                "dynamic-shape",
                f"Split into {count} equal parts along an axis of unknown size",
                "give the model fixed input shapes and simplify it first",
            )
            return
        # ONNX (opset 18 num_outputs): parts of ceil(total / count), the last one smaller
        part = -(-total // count)
        sizes = np.array([part] * (count - 1) + [total - part * (count - 1)])
    ctx.assign_all(call("torch.split", ctx.x(0), ints(sizes.reshape(-1)), dim=str(axis)))


@EMITTERS.register("Slice")
def emit_slice(ctx: NodeContext) -> None:
    """x[start:end:step, ...] with constant bounds"""
    if ctx.opset >= 10:
        roles = {1: "the starts", 2: "the ends", 3: "the axes", 4: "the steps"}
        if not all(ctx.needs_constant(index, role) for index, role in roles.items()):
            return
        starts, ends = ctx.const(1), ctx.const(2)
        axes = ctx.const(3) if ctx.has_input(3) else None
        steps = ctx.const(4) if ctx.has_input(4) else None
    else:
        starts, ends = np.asarray(ctx.attr("starts")), np.asarray(ctx.attr("ends"))
        axes = np.asarray(ctx.attr("axes")) if ctx.attr("axes") is not None else None
        steps = None
    starts = [int(s) for s in starts.reshape(-1)]
    ends = [int(e) for e in ends.reshape(-1)]
    axes_list = [int(a) for a in axes.reshape(-1)] if axes is not None else list(range(len(starts)))
    steps_list = [int(s) for s in steps.reshape(-1)] if steps is not None else [1] * len(starts)
    rank = ctx.rank(0)
    normalized = [_axis(ctx, a, rank) for a in axes_list]
    if any(a is None for a in normalized):
        return
    if any(step < 1 for step in steps_list):
        ctx.unsupported(
            f"Slice with steps {steps_list}; PyTorch slicing needs positive steps",
            "reverse the axis with a separate op (torch.flip) in the source model",
        )
        return
    bounds = {axis: (s, e, st) for axis, s, e, st in zip(normalized, starts, ends, steps_list)}
    items = []
    for axis in range(max(bounds) + 1):
        start, end, step = bounds.get(axis, (0, _INT64_MAX, 1))
        text = f"{start or ''}:{'' if end >= _OPEN_END else end}"
        items.append(text + (f":{step}" if step != 1 else ""))
    ctx.assign(f"{ctx.x(0)}[{', '.join(items)}]")


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@EMITTERS.register("Pad")
def emit_pad(ctx: NodeContext) -> None:
    """F.pad(x, pads, mode, value)"""
    mode = ctx.attr("mode", "constant")
    if mode not in _PAD_MODES:
        ctx.unsupported(f"Pad mode {mode!r}")
        return
    if ctx.opset >= 11:
        if not (ctx.needs_constant(1, "the pads") and ctx.needs_constant(2, "the pad value")):
            return
        if not ctx.needs_constant(3, "the padded axes"):
            return
        pads = ctx.const(1)
        value = ctx.const(2) if ctx.has_input(2) else None
        axes = ctx.const(3) if ctx.has_input(3) else None
    else:
        pads = np.asarray(ctx.attr("pads", ctx.attr("paddings")))
        value = np.asarray(ctx.attr("value", 0.0))
        axes = None
    rank = ctx.rank(0)
    pads = [int(p) for p in pads.reshape(-1)]
    axes_list = [int(a) for a in axes.reshape(-1)] if axes is not None else list(range(len(pads) // 2))
    if rank is None and any(a < 0 for a in axes_list):
        ctx.unsupported("Pad with negative axes on an input of unknown rank", "run shape inference first")
        return
    count = len(axes_list)
    per_axis = {(a + rank if a < 0 else a): (pads[i], pads[i + count]) for i, a in enumerate(axes_list)}
    padded = [a for a, pair in per_axis.items() if pair != (0, 0)]
    if not padded:
        ctx.alias(0)
        return
    last = max(per_axis) if rank is None else rank - 1
    flat_pads = []
    # F.pad takes (begin, end) pairs from the last axis back to the first padded one
    for axis in range(last, min(padded) - 1, -1):
        flat_pads += list(per_axis.get(axis, (0, 0)))
    arguments = {}
    if mode != "constant":
        arguments["mode"] = string(_PAD_MODES[mode])
    elif value is not None and float(np.asarray(value).reshape(())) != 0.0:
        arguments["value"] = number(np.asarray(value).reshape(()).item(), ctx.dtype(0))
    ctx.assign(call("F.pad", ctx.x(0), ints(flat_pads), **arguments))


@EMITTERS.register("Gather")
def emit_gather(ctx: NodeContext) -> None:
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
def emit_expand(ctx: NodeContext) -> None:
    """x.expand(...) to the broadcast of the input's and the given shape"""
    if not ctx.needs_constant(1, "the target shape"):
        return
    target = tuple(int(d) for d in ctx.const(1).reshape(-1))
    shape = ctx.shape(0)
    if shape is not None and all(d is not None for d in shape):
        ctx.assign(call(f"{ctx.x(0)}.expand", *(str(d) for d in np.broadcast_shapes(shape, target))))
        return
    broadcast = call("torch.broadcast_shapes", f"{ctx.x(0)}.shape", ints(target))
    ctx.assign(call("torch.broadcast_to", ctx.x(0), broadcast))


@EMITTERS.register("Tile")
def emit_tile(ctx: NodeContext) -> None:
    """x.repeat(...)"""
    if not ctx.needs_constant(1, "the repeats"):
        return
    ctx.assign(call(f"{ctx.x(0)}.repeat", *(str(int(r)) for r in ctx.const(1).reshape(-1))))


@EMITTERS.register("DepthToSpace")
def emit_depth_to_space(ctx: NodeContext) -> None:
    """nn.PixelShuffle for CRD; reshape / permute / reshape for DCR"""
    block = int(ctx.attr("blocksize"))
    if ctx.attr("mode", "DCR") == "CRD":
        ctx.assign(call(ctx.module(call("nn.PixelShuffle", str(block))), ctx.x(0)))
        return
    shape = ctx.shape(0)
    if shape is None or len(shape) != 4 or any(d is None for d in shape):
        ctx.problem(
            "dynamic-shape",
            "DepthToSpace (DCR) needs the input's full shape",
            "give the model fixed input shapes and simplify it first",
        )
        return
    n, c, h, w = shape
    split = call(f"{ctx.x(0)}.reshape", str(n), str(block), str(block), str(c // block**2), str(h), str(w))
    moved = call(f"{flat(split)}.permute", "0", "3", "4", "1", "5", "2")
    ctx.assign(call(f"{flat(moved)}.reshape", str(n), str(c // block**2), str(h * block), str(w * block)))


_LINEAR_MODES = {3: "linear", 4: "bilinear", 5: "trilinear"}


@EMITTERS.register("Resize")
def emit_resize(ctx: NodeContext) -> None:
    """nn.Upsample(scale_factor or size, mode, align_corners)"""
    scales_index, sizes_index = (1, None) if ctx.opset < 11 else (2, 3)
    if not ctx.needs_constant(scales_index, "the scales"):
        return
    if sizes_index is not None and not ctx.needs_constant(sizes_index, "the output size"):
        return
    if ctx.attr("axes") is not None or ctx.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        ctx.unsupported("Resize with axes or keep_aspect_ratio_policy", "resize all axes with explicit sizes")
        return
    rank = ctx.rank(0)
    scales = ctx.const(scales_index) if ctx.has_input(scales_index) else None
    sizes = ctx.const(sizes_index) if sizes_index is not None and ctx.has_input(sizes_index) else None
    scales = scales if scales is not None and scales.size else None
    sizes = sizes if sizes is not None and sizes.size else None
    if scales is not None and any(float(s) != 1.0 for s in scales.reshape(-1)[:2]):
        ctx.unsupported(f"Resize scaling the batch or channel axis (scales {scales.tolist()})")
        return
    factors = scales
    shape = ctx.shape(0)
    if factors is None and sizes is not None and shape is not None and None not in shape:
        factors = sizes.reshape(-1).astype(np.float64) / np.array(shape, dtype=np.float64)
    mode = _upsample_mode(ctx, factors, rank)
    if mode is None:
        return
    if rank not in (3, 4, 5) or (mode["mode"] == '"bicubic"' and rank != 4):
        ctx.unsupported(
            f"Resize ({mode['mode']}) of an input of rank {rank}; nn.Upsample takes 3-d to 5-d inputs (bicubic: 4-d)",
            "run shape inference or simplify the model first" if rank is None else "",
        )
        return
    arguments = {}
    if sizes is not None:
        arguments["size"] = ints(sizes.reshape(-1)[2:])
    elif scales is not None:
        spatial = [float(s) for s in scales.reshape(-1)[2:]]
        arguments["scale_factor"] = ListOf(tuple(number(s) for s in spatial), "()")
    else:
        ctx.unsupported("Resize without scales or sizes")
        return
    arguments.update(mode)
    ctx.assign(call(ctx.module(call("nn.Upsample", **arguments)), ctx.x(0)))


def _upsample_mode(ctx: NodeContext, factors: np.ndarray | None, rank: int | None) -> dict[str, str] | None:
    """nn.Upsample's mode arguments for the node, ``factors`` being output / input size per axis."""
    mode = ctx.attr("mode", "nearest")
    transform = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if ctx.opset < 11:
        transform = "asymmetric"  # Resize-10 had only the asymmetric transform
    nearest_mode = ctx.attr("nearest_mode", "round_prefer_floor")
    half_pixel = transform in ("half_pixel", "pytorch_half_pixel")
    antialias = bool(ctx.attr("antialias", 0))
    if antialias:
        mode = f"{mode} (antialiased)"  # nn.Upsample never antialiases
    if mode == "nearest":
        if transform == "asymmetric" and nearest_mode == "floor":
            return {"mode": '"nearest"'}
        if half_pixel and nearest_mode == "round_prefer_ceil":
            return {"mode": '"nearest-exact"'}
        whole = factors is not None and all(float(f).is_integer() and f >= 1 for f in factors.reshape(-1))
        if half_pixel and nearest_mode == "round_prefer_floor" and whole:
            return {"mode": '"nearest"'}
    elif mode == "linear" and (half_pixel or transform == "align_corners"):
        name = _LINEAR_MODES.get(rank, "linear")
        return {"mode": string(name), "align_corners": str(transform == "align_corners")}
    elif mode == "cubic" and (half_pixel or transform == "align_corners"):
        # PyTorch's bicubic kernel is a = -0.75 over all neighbours, inside the image or not
        if np.isclose(float(ctx.attr("cubic_coeff_a", -0.75)), -0.75) and not ctx.attr("exclude_outside", 0):
            return {"mode": '"bicubic"', "align_corners": str(transform == "align_corners")}
    ctx.unsupported(
        f"Resize mode={mode}, coordinate_transformation_mode={transform}, nearest_mode={nearest_mode}",
        "nn.Upsample matches asymmetric+floor or half_pixel+round_prefer_ceil (nearest), and "
        "half_pixel or align_corners (linear; cubic with a=-0.75), without antialiasing",
    )
    return None
