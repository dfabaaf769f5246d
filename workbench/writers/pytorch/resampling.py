"""Resampling: ONNX ``Resize`` (opsets 10 to 19) and ``Upsample`` (opsets 7 to 9).

``nn.Upsample`` is written where PyTorch samples the same points as ONNX, for
constant scales or sizes and known spatial sizes, the batch and channel axes kept:

* ``nearest`` with whole enlarging factors ``k``: PyTorch's ``nearest`` reads
  ``floor(x / k)``, which ONNX's ``asymmetric`` + ``floor`` (and the ``simple`` rounding
  of Resize-10 and Upsample) reads, and so do the ``half_pixel`` transforms with
  either ``round_prefer`` rounding, since ``(x + 0.5) / k - 0.5`` then lies strictly
  within half a sample of ``floor(x / k)``;
* ``linear`` and ``cubic`` (bicubic: 4-d inputs, ``a = -0.75``, no ``exclude_outside``)
  with ``half_pixel`` (``align_corners=False``, whose source coordinate is
  ``(x + 0.5) / scale - 0.5`` in both), ``pytorch_half_pixel`` when no output axis
  has length 1, and ``align_corners`` or ``half_pixel_symmetric`` when ``n_in * scale``
  is whole: PyTorch's ``align_corners=True`` maps ``x * (n_in - 1) / (n_out - 1)``
  with the integer output length where ONNX divides by ``n_in * scale - 1``, and
  ``half_pixel_symmetric`` shifts ``half_pixel`` unless ``n_in * scale`` is whole;
  antialiasing only where no axis shrinks (it changes nothing there). The output
  length PyTorch computes from ``scale_factor`` must be ONNX's ``floor(n_in * scale)``.

Everything else (other transforms and roundings, fractional nearest factors,
antialiasing when shrinking, ``exclude_outside``, other cubic coefficients,
``axes``, ``keep_aspect_ratio_policy``, regions of interest, scales or sizes
computed at run time) calls ``resize``, ONNX's definition written out as a
function ``model.py`` carries (``helpers.resize``, where the math is stated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...graph import opset as opsets
from .codegen import Expr, ListOf, call, ints, number, string
from .program import EMITTERS, TorchNodeContext

_LINEAR_MODES = {3: "linear", 4: "bilinear", 5: "trilinear"}
_MODES = ("nearest", "linear", "cubic")
_TRANSFORMS = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
    "tf_crop_and_resize",
)
_ROUNDINGS = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")
_ASPECTS = ("stretch", "not_larger", "not_smaller")
# (transform, rounding) pairs that read floor(x / k) for a whole enlarging factor k
_WHOLE_FACTOR_NEAREST = {
    ("asymmetric", "floor"),
    ("asymmetric", "simple"),
    *(
        (transform, rounding)
        for transform in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric")
        for rounding in ("round_prefer_floor", "round_prefer_ceil")
    ),
}


@dataclass(frozen=True)
class _Sampling:
    """How a Resize or Upsample node samples: its attributes, as ``resize`` takes them."""

    mode: str
    transform: str
    nearest: str
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    extrapolation: float = 0.0
    axes: tuple[int, ...] | None = None
    aspect: str = "stretch"


@dataclass(frozen=True)
class _Parameter:
    """A Resize input (roi, scales, sizes) as the code passes it, and its data when constant."""

    expr: Expr
    data: np.ndarray | None


@EMITTERS.register("Resize", since=11)
def emit_resize(ctx: TorchNodeContext) -> None:
    """nn.Upsample where PyTorch samples as ONNX does, else resize() (ONNX's definition)"""
    axes = ctx.attr("axes")
    sampling = _Sampling(
        str(ctx.attr("mode")),
        str(ctx.attr("coordinate_transformation_mode")),
        str(ctx.attr("nearest_mode")),
        float(ctx.attr("cubic_coeff_a")),
        bool(ctx.attr("exclude_outside")),
        bool(ctx.attr("antialias", 0)),
        float(ctx.attr("extrapolation_value")),
        tuple(int(axis) for axis in axes) if axes is not None else None,
        str(ctx.attr("keep_aspect_ratio_policy", "stretch")),
    )
    _resample(ctx, sampling)


@EMITTERS.register("Upsample", since=7)
@EMITTERS.register("Resize", since=10)
def emit_upsample(ctx: TorchNodeContext) -> None:
    """nn.Upsample or resize(): asymmetric, nearest rounding down when enlarging and up when shrinking"""
    mode = str(ctx.attr("mode"))
    _resample(ctx, _Sampling("linear" if mode == "bilinear" else mode, "asymmetric", "simple"))


def _parameter(ctx: TorchNodeContext, name: str) -> _Parameter | None:
    """Input (or, for Upsample-7, attribute) ``name``: a literal when constant, the
    variable when computed at run time, None when left out or empty."""
    index = opsets.input_index(ctx.schema, name)
    if index is not None and ctx.has_input(index):
        data = ctx.const(index)
        if data is None:
            return _Parameter(ctx.x(index), None)
    else:
        data = ctx.param(name)
    if data is None or data.size == 0:
        return None
    values = data.reshape(-1)
    if name == "sizes":
        return _Parameter(ints(values), data)
    return _Parameter(ListOf(tuple(number(float(value)) for value in values)), data)


def _resample(ctx: TorchNodeContext, sampling: _Sampling) -> None:
    if not _known_options(ctx, sampling):
        return
    roi, scales, sizes = (_parameter(ctx, name) for name in ("roi", "scales", "sizes"))
    if scales is None and sizes is None:
        ctx.problem(
            "malformed-node", f"{ctx.node.op_type} without scales or sizes", "check the model with onnx.checker"
        )
        return
    upsample = _upsample_arguments(ctx, sampling, scales, sizes)
    if upsample is not None:
        ctx.assign(call(ctx.module(call("nn.Upsample", **upsample)), ctx.x(0)))
        return
    ctx.assign(call(ctx.helper("resize"), ctx.x(0), **_resize_arguments(sampling, roi, scales, sizes)))


def _known_options(ctx: TorchNodeContext, sampling: _Sampling) -> bool:
    """False after reporting an attribute value ONNX does not define."""
    for what, value, known in (
        ("mode", sampling.mode, _MODES),
        ("coordinate_transformation_mode", sampling.transform, _TRANSFORMS),
        ("nearest_mode", sampling.nearest, _ROUNDINGS),
        ("keep_aspect_ratio_policy", sampling.aspect, _ASPECTS),
    ):
        if value not in known:
            ctx.unsupported(f"{ctx.node.op_type} {what}={value!r}, which ONNX does not define", f"use one of {known}")
            return False
    return True


def _resize_arguments(
    sampling: _Sampling, roi: _Parameter | None, scales: _Parameter | None, sizes: _Parameter | None
) -> dict[str, Expr]:
    """``resize``'s keyword arguments that differ from its defaults (ONNX's defaults)."""
    arguments: dict[str, Expr] = {}
    if roi is not None and sampling.transform == "tf_crop_and_resize":
        arguments["roi"] = roi.expr
    for name, parameter in (("scales", scales), ("sizes", sizes)):
        if parameter is not None:
            arguments[name] = parameter.expr
    if sampling.axes is not None:
        arguments["axes"] = ints(sampling.axes)
    defaults = _Sampling("nearest", "half_pixel", "round_prefer_floor")
    for keyword, field in (
        ("mode", "mode"),
        ("transform", "transform"),
        ("nearest", "nearest"),
        ("aspect", "aspect"),
    ):
        if getattr(sampling, field) != getattr(defaults, field):
            arguments[keyword] = string(getattr(sampling, field))
    if sampling.mode == "cubic" and sampling.cubic_a != defaults.cubic_a:
        arguments["cubic_a"] = number(sampling.cubic_a)
    for keyword in ("exclude_outside", "antialias"):
        if getattr(sampling, keyword):
            arguments[keyword] = "True"
    if sampling.transform == "tf_crop_and_resize" and sampling.extrapolation != 0.0:
        arguments["extrapolation"] = number(sampling.extrapolation)
    return arguments


def _upsample_arguments(
    ctx: TorchNodeContext, sampling: _Sampling, scales: _Parameter | None, sizes: _Parameter | None
) -> dict[str, Expr] | None:
    """``nn.Upsample``'s arguments when it samples exactly as the node does (see the
    module docstring), else None."""
    shape = ctx.shape(0)
    spatial = _known_spatial(shape)
    if shape is None or spatial is None or not _resizes_whole_tensor(sampling):
        return None
    if sizes is not None:
        return _upsample_to_sizes(sampling, sizes, shape, spatial)
    return _upsample_by_scales(sampling, scales, shape, spatial)


def _known_spatial(shape: tuple[int | None, ...] | None) -> list[int] | None:
    """The spatial lengths of a 3-d to 5-d input (``nn.Upsample``'s ranks) when all are known."""
    if shape is None or len(shape) not in _LINEAR_MODES:
        return None
    spatial = [size for size in shape[2:] if size is not None]
    return spatial if len(spatial) == len(shape) - 2 else None


def _resizes_whole_tensor(sampling: _Sampling) -> bool:
    """Every axis resized to the given scales or sizes: no ``axes``, no aspect-ratio policy,
    no region of interest (``nn.Upsample`` has none of them)."""
    return sampling.axes is None and sampling.aspect == "stretch" and sampling.transform != "tf_crop_and_resize"


def _per_axis_values(parameter: _Parameter | None, rank: int) -> np.ndarray | None:
    """The flat values of a constant ``scales`` or ``sizes`` with one entry per axis, else None."""
    if parameter is None or parameter.data is None or parameter.data.size != rank:
        return None
    return parameter.data.reshape(-1)


def _upsample_to_sizes(
    sampling: _Sampling, sizes: _Parameter, shape: tuple[int | None, ...], spatial: list[int]
) -> dict[str, Expr] | None:
    """``size=`` and the mode when the constant ``sizes`` keeps the batch and channels;
    the factors are ``n_out / n_in``."""
    values = _per_axis_values(sizes, len(shape))
    if values is None or [int(v) for v in values[:2]] != list(shape[:2]):
        return None
    outs = [int(v) for v in values[2:]]
    factors = [out / n for out, n in zip(outs, spatial)]
    mode = _upsample_mode(sampling, spatial, factors, outs, len(shape))
    return {"size": ints(outs), **mode} if mode is not None else None


def _upsample_by_scales(
    sampling: _Sampling, scales: _Parameter | None, shape: tuple[int | None, ...], spatial: list[int]
) -> dict[str, Expr] | None:
    """``scale_factor=`` and the mode when the constant ``scales`` keeps the batch and
    channels and gives ONNX's output lengths ``floor(n_in * scale)`` (scales in float32)."""
    values = _per_axis_values(scales, len(shape))
    if values is None or not all(float(v) == 1.0 for v in values[:2]):
        return None
    factors = [float(np.float32(v)) for v in values[2:]]
    outs = [int(factor * n) for factor, n in zip(factors, spatial)]
    mode = _upsample_mode(sampling, spatial, factors, outs, len(shape))
    if mode is None:
        return None
    written = tuple(number(factor) for factor in factors)
    # PyTorch sizes the output floor(n_in * scale_factor) from the literal as written
    if [math.floor(n * float(text)) for n, text in zip(spatial, written)] != outs:
        return None
    return {"scale_factor": ListOf(written, "()"), **mode}


def _upsample_mode(
    sampling: _Sampling, spatial: list[int], factors: list[float], outs: list[int], rank: int
) -> dict[str, Expr] | None:
    """``nn.Upsample``'s mode arguments, or None when PyTorch would sample other points."""
    if sampling.mode == "nearest":
        return {"mode": string("nearest")} if _nearest_reads_floor(sampling, factors) else None
    if not _interpolates_alike(sampling, spatial, factors, outs, rank):
        return None
    name = "bicubic" if sampling.mode == "cubic" else _LINEAR_MODES[rank]
    return {"mode": string(name), "align_corners": str(sampling.transform == "align_corners")}


def _nearest_reads_floor(sampling: _Sampling, factors: list[float]) -> bool:
    """Whole enlarging factors ``k`` and a transform and rounding that read ``floor(x / k)``,
    as PyTorch's ``nearest`` does."""
    enlarging = all(factor >= 1 and float(factor).is_integer() for factor in factors)
    return enlarging and (sampling.transform, sampling.nearest) in _WHOLE_FACTOR_NEAREST


def _interpolates_alike(
    sampling: _Sampling, spatial: list[int], factors: list[float], outs: list[int], rank: int
) -> bool:
    """PyTorch's linear or bicubic interpolation reads the node's source coordinates: no
    antialiasing where an axis shrinks, bicubic only as PyTorch has it (4-d, ``a = -0.75``,
    outside samples kept), and a transform PyTorch computes alike for these lengths."""
    if sampling.antialias and any(factor < 1 for factor in factors):
        return False
    if sampling.mode == "cubic" and (rank != 4 or sampling.cubic_a != -0.75 or sampling.exclude_outside):
        return False
    whole = all(out == n * factor for n, factor, out in zip(spatial, factors, outs))
    transform_fits = {
        "half_pixel": True,
        "pytorch_half_pixel": all(out > 1 for out in outs),
        "half_pixel_symmetric": whole,
        "align_corners": whole,
    }
    return transform_fits.get(sampling.transform, False)
