"""Pooling and reductions -> ``maxpool``, ``localavgpool``, ``globalavgpool``, ``reduction``.

MsnhNet's pooling windows start at ``i * stride - padding`` like ONNX's; what differs
is how many there are and, for averages, the divisor:

* The output size: ``ceilMode: 0`` gives ``(in + 2p - k) / s + 1`` (floor); ``ceilMode:
  1`` adds one more window when ``(in + 2p - k) % s > p`` — not PyTorch's or ONNX's
  ceil rule when p > 0 (8x8, k3 s2 p1: 4x4 in MsnhNet, 5x5 in PyTorch). The writer
  takes the mode that gives at least the graph's windows and crops any extra ones
  with a ``padding`` layer of negative size (exact: the first windows are the same).
* ``maxpool`` ignores padded cells, as ONNX does. MsnhNet 2.0's x86 AVX path
  (equal X and Y strides) computes stride-1 windows with X padding, and 2-wide
  stride-2 windows with X padding or a height other than 2, wrongly (checked in
  the real runtime); those windows are written as an explicit ``padding`` layer of
  -FLT_MAX followed by an unpadded ``maxpool`` (2-wide, stride-2 windows of another
  height are reported).
* ``localavgpool`` divides by the cells inside the input (``count_include_pad=0``).
  ONNX's ``count_include_pad=1`` (PyTorch's default) divides by the window clipped
  to the padded input: the padding is written as an explicit ``padding`` layer of
  zeros, then the cells of the padded input all count — the same divisor.

``GlobalAveragePool`` is ``globalavgpool``, ``GlobalMaxPool`` a ``maxpool`` as large as
the image. ``ReduceMean``/``ReduceSum`` over channels, H or W (or all three) is a
``reduction`` (mean over H and W: ``globalavgpool``); ``ReduceMax`` over channels
a ``maxpool`` with ``maxPoolDepth``, over H and W a global ``maxpool``.
"""

from __future__ import annotations

from ...graph.pads import pooled_size
from .net import FLOAT_MAX, MSNHNET_LAYERS, Dims, MsnhNodeContext, pair
from .window import Plane, plane_of

Counts = tuple[int, int]


def _msnh_counts(plane: Plane, ceil_mode: int, pads: tuple[int, int]) -> Counts | None:
    """Windows MsnhNet makes per axis (Y, X) with symmetric ``pads``; None when
    ``ceilMode: 1`` throws (the remainder reaches the kernel)."""
    counts = []
    for size, k, s, p in zip(plane.size, plane.kernel, plane.strides, pads):
        span = size + 2 * p - k
        if span < 0:
            return None
        if ceil_mode == 1:
            if span % s >= k:
                return None
            counts.append(span // s + (1 if span % s <= p else 2))
        else:
            counts.append(span // s + 1)
    return counts[0], counts[1]


def _graph_counts(ctx: MsnhNodeContext, plane: Plane) -> Counts:
    """The graph's windows per axis, by onnxruntime's rule (ONNX shape inference does
    not drop a last window that starts in the padding)."""
    ceil = bool(ctx.attr("ceil_mode", 0))
    counts = [
        pooled_size(size, k, s, b, e, ceil=ceil, padded=b > 0 or e > 0)
        for size, k, s, b, e in zip(plane.size, plane.kernel, plane.strides, plane.begins, plane.ends)
    ]
    return counts[0], counts[1]


def _mode(plane: Plane, wanted: Counts, pads: tuple[int, int]) -> tuple[int, Counts] | None:
    """The ceilMode giving at least ``wanted`` windows, and the windows it gives."""
    for mode in (0, 1):
        counts = _msnh_counts(plane, mode, pads)
        if counts is not None and counts[0] >= wanted[0] and counts[1] >= wanted[1]:
            return mode, counts
    return None


def _avx_wrong(plane: Plane, pad_x: int, out_x: int) -> bool:
    """Whether MsnhNet's x86 AVX max pooling miscomputes this window (see the docstring)."""
    (ky, kx), (sy, sx) = plane.kernel, plane.strides
    if sx != sy:
        return False
    if sx == 1:
        return pad_x > 0
    return kx == 2 and sx == 2 and out_x > 4 and (pad_x > 0 or ky != 2)


def _pool_params(plane: Plane, pads: tuple[int, int], mode: int) -> dict:
    params: dict = {}
    pair(params, "kSize", plane.kernel[1], plane.kernel[0], 1)
    pair(params, "stride", plane.strides[1], plane.strides[0], 1)
    pair(params, "padding", pads[1], pads[0], 0)
    if mode:
        params["ceilMode"] = mode
    return params


def _crop(ctx: MsnhNodeContext, channels: int, counts: Counts, wanted: Counts) -> None:
    """Drop MsnhNet's extra last windows (a padding layer of negative size)."""
    if counts != wanted:
        crop = {"down": wanted[0] - counts[0], "right": wanted[1] - counts[1]}
        ctx.add_layer("padding", crop, (channels, *wanted), role="crop")


def _pool(ctx: MsnhNodeContext, kind: str, plane: Plane, wanted: Counts, pads: tuple[int, int], channels: int) -> bool:
    """A pooling with MsnhNet padding ``pads`` (+ a crop); False when no ceilMode fits."""
    found = _mode(plane, wanted, pads)
    if found is None:
        return False
    mode, counts = found
    if kind == "maxpool" and _avx_wrong(plane, pads[1], counts[1]):
        return False
    cropped = counts != wanted
    ctx.add_layer(kind, _pool_params(plane, pads, mode), (channels, *counts), output=None if cropped else True)
    _crop(ctx, channels, counts, wanted)
    return True


def _explicit(ctx: MsnhNodeContext, kind: str, plane: Plane, wanted: Counts, channels: int, fill: float) -> bool:
    """The graph's pads as a ``padding`` layer of ``fill``, then an unpadded pooling (+ a crop)."""
    size = (plane.size[0] + plane.begins[0] + plane.ends[0], plane.size[1] + plane.begins[1] + plane.ends[1])
    padded = Plane(size, plane.kernel, plane.strides, plane.dilations, (0, 0), (0, 0))
    found = _mode(padded, wanted, (0, 0))
    if found is None or (kind == "maxpool" and _avx_wrong(padded, 0, found[1][1])):
        return False
    params = {"top": plane.begins[0], "down": plane.ends[0], "left": plane.begins[1], "right": plane.ends[1]}
    ctx.add_layer("padding", {**params, "paddingVal": fill}, (channels, *size), output=None, role="pad")
    return _pool(ctx, kind, padded, wanted, (0, 0), channels)


def _covers_everything(plane: Plane, wanted: Counts) -> bool:
    """One window per axis, starting at the input's first cell and reaching past its last."""
    return wanted == (1, 1) and not any(plane.begins) and all(k >= n for k, n in zip(plane.kernel, plane.size))


def _window(ctx: MsnhNodeContext) -> tuple[Plane, Dims, Counts] | None:
    """The pooling's window, the dims of its (fed) input and the graph's window counts."""
    found = ctx.window()
    plane = plane_of(ctx, found) if found is not None else None
    if plane is None:
        return None
    if plane.dilations != (1, 1):
        ctx.unsupported(f"dilated pooling {plane.dilations}; MsnhNet pools without dilation", "use dilation 1")
        return None
    outputs = ctx.node.outputs
    if len(outputs) > 1 and outputs[1] is not None and outputs[1].consumers():
        ctx.unsupported("the MaxPool indices output is used", "do not use return_indices")
        return None
    dims = ctx.feed(0, ctx.dims_of(0))
    return (plane, dims, _graph_counts(ctx, plane)) if dims is not None else None


@MSNHNET_LAYERS.register("MaxPool")
def convert_max_pool(ctx: MsnhNodeContext) -> None:
    """maxpool (+ a crop of extra windows); padding MsnhNet's AVX path gets wrong as a -FLT_MAX padding layer"""
    found = _window(ctx)
    if found is None:
        return
    plane, dims, wanted = found
    if _pool(ctx, "maxpool", plane, wanted, plane.begins, dims[0]):
        return
    if not _explicit(ctx, "maxpool", plane, wanted, dims[0], -FLOAT_MAX):
        ctx.unsupported(
            f"max pooling {plane.kernel[0]}x{plane.kernel[1]} (HxW) with stride 2: MsnhNet 2.0's x86 AVX path reads "
            "only 2 rows of a 2-wide stride-2 window",
            "use a square pooling window",
        )


@MSNHNET_LAYERS.register("AveragePool")
def convert_average_pool(ctx: MsnhNodeContext) -> None:
    """localavgpool (+ a crop); counted padding as an explicit zero padding layer"""
    found = _window(ctx)
    if found is None:
        return
    plane, dims, wanted = found
    padded = any(plane.begins) or any(plane.ends)
    if padded and int(ctx.attr("count_include_pad", 0)):
        if not _explicit(ctx, "localavgpool", plane, wanted, dims[0], 0.0):
            ctx.unsupported("average pooling whose windows MsnhNet cannot count", "use symmetric pads")
        return
    if _pool(ctx, "localavgpool", plane, wanted, plane.begins, dims[0]):
        return
    if _covers_everything(plane, wanted):  # one window over the whole input, padding not counted: the mean
        ctx.add_layer("globalavgpool", {}, (dims[0], 1, 1))
        return
    ctx.unsupported(
        f"average pooling with pads {plane.begins}/{plane.ends} and ceil_mode={int(ctx.attr('ceil_mode', 0))}: "
        "MsnhNet's windows cannot be made to match without counting padded cells",
        "use count_include_pad=True, or symmetric pads",
    )


@MSNHNET_LAYERS.register("GlobalAveragePool")
def convert_global_average_pool(ctx: MsnhNodeContext) -> None:
    """globalavgpool"""
    dims = ctx.feed(0, ctx.dims_of(0))
    if dims is not None:
        ctx.add_layer("globalavgpool", {}, (dims[0], 1, 1))


@MSNHNET_LAYERS.register("GlobalMaxPool")
def convert_global_max_pool(ctx: MsnhNodeContext) -> None:
    """maxpool with the image's size as kernel"""
    dims = ctx.feed(0, ctx.dims_of(0))
    if dims is not None:
        _global_max(ctx, dims)


def _global_max(ctx: MsnhNodeContext, dims: Dims) -> None:
    params: dict = {}
    pair(params, "kSize", dims[2], dims[1], 1)
    ctx.add_layer("maxpool", params, (dims[0], 1, 1))


# ---- reductions ------------------------------------------------------------------------------

_AXES = {2: {1: 0}, 3: {1: 0, 2: 2}, 4: {1: 0, 2: 1, 3: 2}}  # graph rank -> graph axis -> MsnhNet axis (C, H, W)


def _reduced_axes(ctx: MsnhNodeContext) -> list[int] | None:
    """MsnhNet's axes (0 C, 1 H, 2 W) the node reduces, or None after a problem."""
    if not ctx.require_constants("axes"):
        return None
    rank = ctx.rank(0)
    found = ctx.param("axes")
    if rank not in _AXES:
        ctx.problem("rank", f"reduction of a {rank}-D tensor", "reduce a 2-D to 4-D tensor")
        return None
    axes = list(range(1, rank)) if found is None else sorted({int(a) % rank for a in found.reshape(-1)})
    if 0 in axes or any(a not in _AXES[rank] for a in axes):
        ctx.problem(
            "batch-axis", f"reduction over axes {axes}, including the batch", "reduce over axes after the batch"
        )
        return None
    return [_AXES[rank][a] for a in axes]


@MSNHNET_LAYERS.register("ReduceMean", "ReduceSum")
def convert_reduce(ctx: MsnhNodeContext) -> None:
    """reduction (sum/mean over C, H or W; two for H and W; axis -1 for all); mean over H, W: globalavgpool"""
    axes = _reduced_axes(ctx)
    dims = ctx.feed(0, ctx.dims_of(0)) if axes is not None else None
    if axes is None or dims is None:
        return
    kind = "mean" if ctx.node.op_type == "ReduceMean" else "sum"
    if axes == [1, 2] and kind == "mean":
        ctx.add_layer("globalavgpool", {}, (dims[0], 1, 1))
        return
    if axes == [0, 1, 2]:
        ctx.add_layer("reduction", {"type": kind, "axis": -1}, (1, 1, 1))
        return
    for position, axis in enumerate(axes):
        dims = (1, dims[1], dims[2]) if axis == 0 else (dims[0], 1, dims[2]) if axis == 1 else (dims[0], dims[1], 1)
        final = position == len(axes) - 1
        ctx.add_layer("reduction", {"type": kind, "axis": axis}, dims, output=True if final else None)


@MSNHNET_LAYERS.register("ReduceMax")
def convert_reduce_max(ctx: MsnhNodeContext) -> None:
    """maxpool maxPoolDepth (over channels) or as large as the image (over H and W)"""
    axes = _reduced_axes(ctx)
    dims = ctx.feed(0, ctx.dims_of(0)) if axes is not None else None
    if axes is None or dims is None:
        return
    if axes == [0]:
        ctx.add_layer("maxpool", {"maxPoolDepth": 1, "outChannels": 1}, (1, dims[1], dims[2]))
    elif axes == [1, 2]:
        _global_max(ctx, dims)
    else:
        ctx.unsupported(f"ReduceMax over MsnhNet axes {axes}", "reduce over channels, or over H and W")
