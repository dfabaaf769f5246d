"""Padding and resizing -> ``padding``, ``upsample``.

``Pad`` (constant mode, H and W only) is a ``padding`` layer: ``top``, ``down``, ``left``,
``right`` and ``paddingVal``; negative pads crop (checked in the real runtime).

``Resize``/``Upsample``:

* nearest by an integer factor, with a coordinate rule that copies each pixel into
  an s x s block (asymmetric + floor, half_pixel / pytorch_half_pixel + round) is
  ``upsample`` ``type: nearest`` with ``strideX``/``strideY``;
* linear on H and W (bilinear) with half_pixel / pytorch_half_pixel coordinates is
  ``type: bilinear`` with ``alignCorners: 0``, align_corners with ``alignCorners: 1``.
  MsnhNet samples at ``(x + 0.5) * in / out - 0.5`` clamped at 0 (or ``x * (in - 1) /
  (out - 1)``), so the graph's scale must be ``out / in``; its output size is
  ``int(in * scale)`` in float32, so the written scale is the float32 that gives ``out``.

MsnhNet's ``upsample`` parser fills X and Y from the scalar ``stride``/``scale`` after
every key it reads, so ``type`` is written first and X and Y are always written
(checked in the real runtime: ``stride: 2`` after ``type`` leaves the size unchanged).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .net import MSNHNET_LAYERS, Dims, MsnhNodeContext

_NEAREST_BLOCKS = {  # coordinate_transformation_mode -> nearest modes that copy pixels into s x s blocks
    "asymmetric": {"floor"},
    "half_pixel": {"round_prefer_floor", "round_prefer_ceil"},
    "pytorch_half_pixel": {"round_prefer_floor", "round_prefer_ceil"},
}
_RESIZE_REMEDY = "use F.interpolate(scale_factor=<integer>, mode='nearest') or mode='bilinear' with matching sizes"


@MSNHNET_LAYERS.register("Pad")
def convert_pad(ctx: MsnhNodeContext) -> None:
    """padding (constant, H and W; negative pads crop)"""
    if not ctx.require_constants("pads", "constant_value", "value", "axes"):
        return
    pads, value = ctx.param("pads"), ctx.param("constant_value", "value")
    shape, mode = ctx.static_shape(0), str(ctx.attr("mode"))
    axes = ctx.param("axes")
    if pads is None or shape is None or len(shape) != 4 or mode != "constant" or axes is not None:
        ctx.unsupported(f"{mode} padding of {shape}; MsnhNet pads H and W with a constant", "use constant padding")
        return
    begins, ends = [int(p) for p in pads[:4]], [int(p) for p in pads[4:]]
    if begins[:2] != [0, 0] or ends[:2] != [0, 0]:
        ctx.unsupported(f"padding of the batch or channel axis (pads {list(pads)})", "pad H and W only")
        return
    dims = ctx.feed(0, ctx.dims_of(0))
    out = ctx.output_shape(0)
    if dims is None or out is None:
        return
    params: dict[str, Any] = {"top": begins[2], "down": ends[2], "left": begins[3], "right": ends[3]}
    if value is not None and float(np.asarray(value).reshape(-1)[0]) != 0.0:
        params["paddingVal"] = float(np.asarray(value).reshape(-1)[0])
    ctx.add_layer("padding", params, (dims[0], dims[1] + begins[2] + ends[2], dims[2] + begins[3] + ends[3]))


def _sizes(ctx: MsnhNodeContext) -> tuple[Dims, tuple[int, int]] | None:
    shape, out = ctx.static_shape(0), ctx.output_shape(0)
    if shape is None or out is None or len(shape) != 4 or len(out) != 4 or any(d is None for d in out):
        ctx.problem("dynamic-shape", "resizing needs known 4-D input and output shapes", "export with fixed shapes")
        return None
    if tuple(out[:2]) != tuple(shape[:2]):
        ctx.unsupported(f"resizing {shape} to {tuple(out)} changes batch or channels", "resize H and W only")
        return None
    return (shape[1], shape[2], shape[3]), (int(out[2] or 0), int(out[3] or 0))


def _nearest(ctx: MsnhNodeContext, dims: Dims, out: tuple[int, int], transform: str, rounding: str) -> None:
    factors = (out[0] / dims[1], out[1] / dims[2])
    integer = all(f == int(f) and f >= 1 for f in factors)
    if not integer or rounding not in _NEAREST_BLOCKS.get(transform, ()):
        ctx.unsupported(
            f"nearest resizing by {factors} with {transform} / {rounding}; MsnhNet's nearest upsample copies "
            "pixels into blocks of an integer size",
            _RESIZE_REMEDY,
        )
        return
    if ctx.feed(0, dims) is not None:
        params = {"type": "nearest", "strideX": int(factors[1]), "strideY": int(factors[0])}
        ctx.add_layer("upsample", params, (dims[0], *out))


def _float_scale(size: int, out: int) -> float | None:
    """A float32 scale ``s`` with ``int(size * s) == out`` in float32 arithmetic (as MsnhNet computes)."""
    scale = np.float32(out / size)
    for candidate in (scale, np.nextafter(scale, np.float32(np.inf))):
        if int(np.float32(size) * candidate) == out:
            return float(candidate)
    return None


def _graph_scales_agree(ctx: MsnhNodeContext, dims: Dims, out: tuple[int, int]) -> bool:
    """Whether the graph samples at in / out (its ``scales`` give ``out`` exactly, or sizes are given)."""
    scales = ctx.param("scales")
    if scales is None or scales.size < 4:
        return True
    return all(float(s) * size == o for s, size, o in zip(scales.reshape(-1)[2:], dims[1:], out))


def _bilinear(ctx: MsnhNodeContext, dims: Dims, out: tuple[int, int], transform: str) -> None:
    corners = transform == "align_corners"
    scale_y, scale_x = _float_scale(dims[1], out[0]), _float_scale(dims[2], out[1])
    one_pixel = transform == "pytorch_half_pixel" and 1 in out
    fits = transform in ("half_pixel", "pytorch_half_pixel", "align_corners") and not one_pixel
    if not fits or scale_x is None or scale_y is None or not _graph_scales_agree(ctx, dims, out):
        ctx.unsupported(
            f"linear resizing of {dims[1:]} to {out} with {transform}; MsnhNet's bilinear upsample samples at "
            "half pixels (or aligned corners) with the ratio in / out",
            _RESIZE_REMEDY,
        )
        return
    if ctx.feed(0, dims) is not None:
        params = {"type": "bilinear", "scaleX": scale_x, "scaleY": scale_y, "alignCorners": int(corners)}
        ctx.add_layer("upsample", params, (dims[0], *out))


@MSNHNET_LAYERS.register("Resize", since=11)
def convert_resize(ctx: MsnhNodeContext) -> None:
    """upsample nearest (integer factors) or bilinear (half-pixel or aligned corners)"""
    if not ctx.require_constants("scales", "sizes", "roi"):
        return
    found = _sizes(ctx)
    if found is None:
        return
    dims, out = found
    mode, transform = str(ctx.attr("mode")), str(ctx.attr("coordinate_transformation_mode"))
    if int(ctx.attr("antialias", 0)) and (out[0] < dims[1] or out[1] < dims[2]):
        ctx.unsupported("antialiased downscaling", "resize without antialias")
    elif mode == "nearest":
        _nearest(ctx, dims, out, transform, str(ctx.attr("nearest_mode")))
    elif mode == "linear":
        _bilinear(ctx, dims, out, transform)
    else:
        ctx.unsupported(f"{mode} resizing; MsnhNet upsamples nearest or bilinear", _RESIZE_REMEDY)


@MSNHNET_LAYERS.register("Upsample")
@MSNHNET_LAYERS.register("Resize", since=10)
def convert_upsample(ctx: MsnhNodeContext) -> None:
    """upsample nearest by integer factors (asymmetric sampling; linear here is not MsnhNet's bilinear)"""
    found = _sizes(ctx)
    if found is None:
        return
    dims, out = found
    if str(ctx.attr("mode")) != "nearest":
        ctx.unsupported("linear Upsample samples asymmetrically, MsnhNet at half pixels", _RESIZE_REMEDY)
        return
    _nearest(ctx, dims, out, "asymmetric", "floor")
