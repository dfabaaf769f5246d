"""Functions a generated ``model.py`` carries for ONNX ops PyTorch has no exact built-in for.

``resize`` is ONNX Resize (opsets 10 to 19, and Upsample) in every mode, coordinate
transformation and option; ``average_pool`` is ONNX AveragePool for windows
``nn.AvgPool`` cannot hold; ``max_pool_indices`` numbers MaxPool's selected cells
as ONNX does. Their docstrings state the math.

The PyTorch writer copies the source of the functions a model needs into its
``model.py`` (``helper_source``), so the generated file depends on torch alone and
reads on its own (annotations use builtins and torch only); here they are ordinary
functions, linted, typed and tested with the rest of the package. Written by hand:
no library computes these ops in PyTorch as ONNX defines them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn import functional as F


def _resize_float32(value: float) -> float:
    """``value`` rounded to float32, the precision a model holds its scales in."""
    return float(torch.tensor(value, dtype=torch.float32))


def _resize_values(values: torch.Tensor | list[float] | list[int] | None) -> list[float] | None:
    """A parameter given as a tensor, a sequence or nothing, as a list (None when empty)."""
    if values is None:
        return None
    listed = values.reshape(-1).tolist() if isinstance(values, torch.Tensor) else list(values)
    return listed or None


def _resize_targets(
    in_sizes: list[int], scales: list[float] | None, sizes: list[float] | None, aspect: str
) -> tuple[list[float], list[int]]:
    """Scale and output length per resized axis: from ``sizes`` (scale = out / in, or one
    scale for all axes with ``keep_aspect_ratio_policy``), else from ``scales``
    (out = floor(in * scale), the region of interest left out as onnxruntime and
    ONNX's reference implementation leave it out)."""
    if sizes is not None:
        factors = [int(size) / n for size, n in zip(sizes, in_sizes)]
        if aspect == "stretch":
            return factors, [int(size) for size in sizes]
        common = min(factors) if aspect == "not_larger" else max(factors)
        return [common] * len(in_sizes), [int(common * n + 0.5) for n in in_sizes]
    if scales is None:
        raise ValueError("Resize needs scales or sizes")
    factors = [_resize_float32(scale) for scale in scales]
    outs = [int(factor * n) for factor, n in zip(factors, in_sizes)]
    return factors, outs


def _resize_coordinates(n_out: int, n_in: int, scale: float, transform: str, start: float, end: float) -> torch.Tensor:
    """``x_original`` of every output sample along one axis (see ``resize``)."""
    x = torch.arange(n_out, dtype=torch.float64)
    width = scale * n_in
    if transform == "align_corners":
        return x * (n_in - 1) / (width - 1) if width != 1 else torch.zeros_like(x)
    if transform == "asymmetric":
        return x / scale
    if transform == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if transform == "tf_crop_and_resize":
        if width == 1:
            return torch.full_like(x, (end - start) * (n_in - 1) / 2 + start * (n_in - 1))
        return x * (end - start) * (n_in - 1) / (width - 1) + start * (n_in - 1)
    if transform == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if n_out > 1 else torch.zeros_like(x)
    if transform == "half_pixel_symmetric":
        return (n_in / 2) * (1 - n_out / width) + (x + 0.5) / scale - 0.5
    if transform == "half_pixel":
        return (x + 0.5) / scale - 0.5
    raise ValueError(f"unknown coordinate_transformation_mode {transform!r}")


def _resize_nearest(coordinate: torch.Tensor, n_in: int, rounding: str, scale: float) -> torch.Tensor:
    """The index of the sample each coordinate rounds to, kept inside the input."""
    if rounding == "simple":
        rounding = "ceil" if scale < 1 else "floor"
    below = torch.floor(coordinate)
    fraction = coordinate - below
    if rounding == "round_prefer_floor":
        index = torch.where(fraction > 0.5, below + 1, below)
    elif rounding == "round_prefer_ceil":
        index = torch.where(fraction >= 0.5, below + 1, below)
    elif rounding == "floor":
        index = below
    elif rounding == "ceil":
        index = torch.ceil(coordinate)
    else:
        raise ValueError(f"unknown nearest_mode {rounding!r}")
    return index.clamp(0, n_in - 1).long()


def _resize_kernel(distance: torch.Tensor, mode: str, a: float) -> torch.Tensor:
    """The interpolation kernel at ``distance``: the triangle, or Keys' cubic with coefficient ``a``."""
    d = distance.abs()
    if mode == "linear":
        return (1 - d).clamp(0, 1)
    inner = ((a + 2) * d - (a + 3)) * d * d + 1
    outer = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d <= 1, inner, torch.where(d < 2, outer, torch.zeros_like(d)))


def _resize_taps(
    coordinate: torch.Tensor, n_in: int, scale: float, mode: str, a: float, antialias: bool, exclude_outside: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and weights, ``(n_out, taps)``, of the samples each output interpolates."""
    radius = 1 if mode == "linear" else 2
    stretch = min(scale, 1.0) if antialias else 1.0
    reach = -radius / stretch  # negative: floor(reach) is int(reach), less 1 unless whole
    first = (int(reach) if reach.is_integer() else int(reach) - 1) + 1
    offsets = torch.arange(first, 2 - first, dtype=torch.float64)
    index = torch.floor(coordinate)[:, None] + offsets
    weight = _resize_kernel((index - coordinate[:, None]) * stretch, mode, a)
    if antialias:
        weight = weight / weight.sum(1, keepdim=True)
    if exclude_outside:
        weight = torch.where((index < 0) | (index > n_in - 1), torch.zeros_like(weight), weight)
        total = weight.sum(1, keepdim=True)
        weight = weight / torch.where(total == 0, torch.ones_like(total), total)
    return index.clamp(0, n_in - 1).long(), weight


def _resize_axis(
    x: torch.Tensor, axis: int, n_out: int, scale: float, start: float, end: float, options: dict
) -> torch.Tensor:
    """``x`` resized along one axis."""
    n_in = x.shape[axis]
    coordinate = _resize_coordinates(n_out, n_in, scale, options["transform"], start, end)
    if options["mode"] == "nearest":
        result = x.index_select(axis, _resize_nearest(coordinate, n_in, options["nearest"], scale))
    else:
        index, weight = _resize_taps(
            coordinate,
            n_in,
            scale,
            options["mode"],
            options["cubic_a"],
            options["antialias"],
            options["exclude_outside"],
        )
        taps = x.index_select(axis, index.reshape(-1)).unflatten(axis, tuple(index.shape))
        trailing = (1,) * (x.dim() - axis - 1)
        result = (taps * weight.to(x.dtype).reshape(tuple(weight.shape) + trailing)).sum(axis + 1)
    if options["transform"] == "tf_crop_and_resize":
        outside = ((coordinate < 0) | (coordinate > n_in - 1)).reshape((n_out,) + (1,) * (x.dim() - axis - 1))
        result = torch.where(outside, torch.full_like(result, options["extrapolation"]), result)
    return result


def resize(
    x: torch.Tensor,
    roi: torch.Tensor | list[float] | None = None,
    scales: torch.Tensor | list[float] | None = None,
    sizes: torch.Tensor | list[int] | None = None,
    *,
    axes: tuple[int, ...] | None = None,
    mode: str = "nearest",
    transform: str = "half_pixel",
    nearest: str = "round_prefer_floor",
    cubic_a: float = -0.75,
    exclude_outside: bool = False,
    antialias: bool = False,
    extrapolation: float = 0.0,
    aspect: str = "stretch",
) -> torch.Tensor:
    """ONNX Resize of ``x``: ``roi``, ``scales`` and ``sizes`` as the op's inputs (tensors
    or lists, one entry per axis in ``axes``, default all), its attributes as keywords.

    The output length of an axis is ``sizes``, or ``floor(n_in * scale)`` (a region of
    interest left out, as onnxruntime and ONNX's reference implementation leave it out);
    with ``keep_aspect_ratio_policy`` (``aspect``) one scale, the smallest
    (``not_larger``) or largest (``not_smaller``) of ``size / n_in``, gives
    ``round(n_in * scale)``. Resizing is separable: one axis at a time. Output sample
    ``x`` of an axis reads the input at ``x_original`` (``w = scale * n_in``, the
    fractional target length; ``scale = n_out / n_in`` when sizes are given):

    * ``half_pixel``: ``(x + 0.5) / scale - 0.5``; ``pytorch_half_pixel`` the same, or 0
      when ``n_out`` is 1; ``half_pixel_symmetric`` that plus ``n_in / 2 * (1 - n_out / w)``;
    * ``align_corners``: ``x * (n_in - 1) / (w - 1)``, 0 when ``w`` is 1 (onnxruntime
      divides by ``n_out - 1`` instead, which differs when ``w`` is not whole);
    * ``asymmetric``: ``x / scale``; ``tf_half_pixel_for_nn``: ``(x + 0.5) / scale``;
    * ``tf_crop_and_resize``: ``start * (n_in - 1) + x * (end - start) * (n_in - 1) / (w - 1)``
      for the region ``[start, end]``, and ``extrapolation`` where that lies outside
      ``[0, n_in - 1]``.

    ``nearest`` reads the sample ``x_original`` rounds to (``round_prefer_floor``,
    ``round_prefer_ceil``, ``floor``, ``ceil``; ``simple``, Resize-10 and Upsample:
    down when enlarging, up when shrinking). ``linear`` and ``cubic`` weigh the samples
    ``i`` around it by the triangle ``1 - |d|`` or Keys' cubic kernel of coefficient
    ``a`` at ``d = i - x_original``; ``antialias`` stretches the kernel by ``1 / scale``
    when shrinking (``d * scale``, more samples) and normalizes the weights;
    ``exclude_outside`` drops the weights of samples beyond the edges and renormalizes.
    A sample beyond an edge reads the edge sample.

    Scales and regions are taken as the float32 values a model holds; output sizes
    and coordinates are computed in float64, as ONNX's reference implementation and
    shape inference compute them (onnxruntime computes in float32, and so differs
    where ``n_in * scale`` falls just below a whole number).
    """
    rank = x.dim()
    resized = [axis % rank for axis in axes] if axes is not None else list(range(rank))
    in_sizes = [int(x.shape[axis]) for axis in resized]
    given = _resize_values(roi) if transform == "tf_crop_and_resize" else None
    region = [_resize_float32(value) for value in given] if given is not None else None
    starts = region[: len(resized)] if region is not None else [0.0] * len(resized)
    ends = region[len(resized) :] if region is not None else [1.0] * len(resized)
    factors, outs = _resize_targets(in_sizes, _resize_values(scales), _resize_values(sizes), aspect)
    options = {
        "mode": mode,
        "transform": transform,
        "nearest": nearest,
        "cubic_a": cubic_a,
        "exclude_outside": exclude_outside,
        "antialias": antialias,
        "extrapolation": extrapolation,
    }
    for axis, n_in, scale, n_out, start, end in zip(resized, in_sizes, factors, outs, starts, ends):
        unchanged = scale == 1 and n_out == n_in and (start, end) == (0, 1)
        if not (unchanged and transform != "tf_half_pixel_for_nn"):
            x = _resize_axis(x, axis, n_out, scale, start, end, options)
    return x


def average_pool(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    strides: tuple[int, ...] | None = None,
    dilations: tuple[int, ...] | None = None,
    begins: tuple[int, ...] | None = None,
    ends: tuple[int, ...] | None = None,
    ceil_mode: bool = False,
    count_include_pad: bool = False,
) -> torch.Tensor:
    """ONNX AveragePool over the trailing ``len(kernel)`` axes of ``x``, for windows
    ``nn.AvgPool`` cannot hold (dilated, or padded unequally or beyond half the kernel).

    Each output is ``sum(window) / count(window)``: the window's sum over the input
    padded with zeros (``begins`` / ``ends`` per axis, strides 1 and no dilation by
    default), divided by the same sum over a mask that is 1 where a cell counts (the
    input, and the pads when ``count_include_pad``) and 0 elsewhere. With
    ``ceil_mode`` the output length is ``ceil((n + begin + end - reach) / stride) + 1``
    (``reach = (kernel - 1) * dilation + 1``), less one when the last window would start
    beyond the input and its begin pad; the cells that window reaches beyond the end
    pad are zeros of both sums, never counted.
    """
    spatial = len(kernel)
    strides = strides or (1,) * spatial
    dilations = dilations or (1,) * spatial
    begins = begins or (0,) * spatial
    ends = ends or (0,) * spatial
    sizes = x.shape[x.dim() - spatial :]
    beyond = []
    for size, k, s, d, begin, end in zip(sizes, kernel, strides, dilations, begins, ends):
        reach = (k - 1) * d + 1
        span = size + begin + end - reach
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + begin:
            out -= 1  # the last window must start inside the input or its begin padding
        beyond.append(max((out - 1) * s + reach - (size + begin + end), 0))
    # F.pad takes (begin, end) pairs from the last axis backwards
    pads = [p for b, e in reversed(list(zip(begins, ends))) for p in (b, e)]
    extension = [p for extra in reversed(beyond) for p in (0, extra)]
    ones = torch.ones((1,) * (x.dim() - spatial) + tuple(sizes), dtype=x.dtype)
    mask = F.pad(F.pad(ones, pads, value=1.0 if count_include_pad else 0.0), extension)
    total = F.pad(F.pad(x, pads), extension)
    for axis, (k, s, d) in enumerate(zip(kernel, strides, dilations)):
        dim = x.dim() - spatial + axis
        total = total.unfold(dim, (k - 1) * d + 1, s)[..., ::d]
        mask = mask.unfold(dim, (k - 1) * d + 1, s)[..., ::d]
    window_axes = tuple(range(-spatial, 0))
    return total.sum(window_axes) / mask.sum(window_axes)


def max_pool_indices(
    indices: torch.Tensor,
    sizes: tuple[int, ...],
    storage_order: int = 0,
    padded: tuple[int, ...] | None = None,
    begins: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """ONNX MaxPool's ``Indices`` from ``nn.MaxPool``'s ``return_indices``.

    PyTorch numbers the cell each window selected within its (sample, channel) plane,
    row-major over the plane it pooled (``padded``, an input ``F.pad`` gave ``begins``
    more cells at the start of each axis; else the input, of spatial ``sizes``). ONNX
    numbers it over the whole input: ``(n * C + c) * prod(sizes)`` plus its place in
    the plane, row-major (``storage_order`` 0) or column-major (1, first axis fastest).
    """
    spatial = len(sizes)
    rest = indices
    coordinates: list[torch.Tensor] = []
    for size, begin in reversed(list(zip(padded or sizes, begins or (0,) * spatial))):
        coordinates.insert(0, rest % size - begin)
        rest = rest // size
    axes = range(spatial - 1, -1, -1) if storage_order else range(spatial)
    place = torch.zeros_like(indices)
    for axis in axes:
        place = place * sizes[axis] + coordinates[axis]
    planes = torch.arange(indices.shape[0] * indices.shape[1]).reshape(indices.shape[:2] + (1,) * spatial)
    cells = 1
    for size in sizes:
        cells *= size
    return planes * cells + place


# the helpers a generated model may call -> the functions its model.py needs, in order
HELPERS: dict[str, tuple[Callable[..., Any], ...]] = {
    "resize": (
        _resize_float32,
        _resize_values,
        _resize_targets,
        _resize_coordinates,
        _resize_nearest,
        _resize_kernel,
        _resize_taps,
        _resize_axis,
        resize,
    ),
    "average_pool": (average_pool,),
    "max_pool_indices": (max_pool_indices,),
}


def helper_source(names: Sequence[str]) -> str:
    """The source of the helpers ``names`` (and the functions they call), for ``model.py``."""
    functions: list[Callable[..., Any]] = []
    for name in names:
        functions += [function for function in HELPERS[name] if function not in functions]
    return "\n\n".join(inspect.getsource(function) for function in functions)
