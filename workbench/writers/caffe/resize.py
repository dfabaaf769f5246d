"""Resize / Upsample -> Deconvolution, or one linear map per axis; BVLC Caffe has no resize layer.

Every ONNX resize of an NCHW tensor over H and W is linear and separable: per
channel ``Y = A_H · X · A_Wᵀ``, where row ``o`` of ``A`` holds the weights output
``o`` gives the inputs (one 1 for nearest, two taps for linear, four for cubic,
more for antialiased downsampling; zero rows where ``tf_crop_and_resize``
extrapolates). Three forms, the cheapest that is exact:

* **Nearest upsampling by an integer factor** ``s`` (the coordinate modes that
  copy each pixel into an ``s x s`` block: ``asymmetric`` + ``floor``, and
  ``half_pixel`` + round, since ``x_in = q + ((r + 0.5)/s - 0.5)`` for
  ``x_out = q*s + r`` rounds to ``q``): a depthwise Deconvolution with
  ``kernel = stride = s`` and weights 1.
* **Linear upsampling by an integer factor** ``s`` (``half_pixel``,
  ``pytorch_half_pixel``, ``asymmetric``: PyTorch's ``align_corners=False``).
  Output ``o`` samples ``u = o/s + δ`` (``δ = 1/(2s) - 1/2`` for half-pixel, ``0``
  for asymmetric) with the tent ``max(0, 1 - |u - i|)`` over inputs ``i``, ``u``
  clamped to ``[0, H-1]``. Clamping equals reading a copy of the edge row: the
  input gets one replicated row before (when ``δ < 0``) and after (Slice +
  Concat), and then the weights depend only on ``o mod s``, which is a depthwise
  Deconvolution with stride ``s`` and the fixed kernel ``K[t] = max(0, 1 - |t -
  c|/s)`` (the classic bilinear upsampling kernel, ``c`` its centre); its pad and a
  Slice keep the outputs ``[off, off + s*H)`` of the full deconvolution, and the 2-D
  kernel is the outer product of the two axes' kernels.
* **Anything else** (``align_corners``, fractional scales, downsampling, cubic,
  antialias, ``tf_crop_and_resize``): the matrices themselves. ``A`` is the resize
  applied to the identity, computed by onnxruntime on a one-axis Resize with the
  node's own attributes, so every mode the spec defines is covered as the
  verifying runtime implements it. ``A_W`` is an InnerProduct over the last axis;
  ``A_H`` a 1x1 Convolution after a Reshape that makes H the channel axis
  (``(N, C, H, W) -> (N*C, H, W, 1)``, a view), then a Reshape back (``views``). A constant
  ``extrapolation_value`` is added by a Scale's bias where a row or column
  extrapolates. The sums read zero weights too, so inputs must be finite (as
  everywhere in a network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from .conv import set_conv_window
from .net import CAFFE_LAYERS, CaffeNodeContext
from .spatial import crop
from .views import axis_map

_REPLICATING_MODES = {
    # coordinate_transformation_mode -> nearest_mode values for which integer
    # upscaling copies each pixel into an s x s block (see the module docstring)
    "asymmetric": {"floor"},
    "half_pixel": {"round_prefer_floor", "round_prefer_ceil"},
    "pytorch_half_pixel": {"round_prefer_floor", "round_prefer_ceil"},
}
# coordinate modes whose integer linear upsampling is the tent kernel (half_pixel_symmetric equals
# half_pixel when the output is exactly s times the input)
_TENT_MODES = frozenset({"asymmetric", "half_pixel", "pytorch_half_pixel", "half_pixel_symmetric"})
_PROBE_OPSET = 19


@dataclass(frozen=True)
class ResizeSpec:
    """One Resize over H and W, as the spec computes it."""

    mode: str  # nearest, linear, cubic
    transform: str  # coordinate_transformation_mode
    nearest: str
    cubic_a: float
    exclude_outside: int
    extrapolation: float
    antialias: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    scales: tuple[float, float] | None  # given scales (None: sizes were given)
    roi: tuple[tuple[float, float], tuple[float, float]]  # (start, end) per axis, tf_crop_and_resize

    def integer_factors(self) -> tuple[int, int] | None:
        """``s`` per axis when the output is exactly ``s`` times the input (and the scale says so)."""
        factors = []
        for axis in range(2):
            size, out = self.in_size[axis], self.out_size[axis]
            if out % size or (self.scales is not None and self.scales[axis] != out // size):
                return None
            factors.append(out // size)
        return factors[0], factors[1]


def _spec(ctx: CaffeNodeContext, mode: str, transform: str, nearest: str) -> ResizeSpec | None:
    """The resize the node computes, or None after reporting why it is not over H and W of NCHW."""
    in_shape, out_shape = ctx.static_shape(0), ctx.output_shape(0)
    if in_shape is None or out_shape is None or None in out_shape or len(in_shape) != 4:
        ctx.problem("dynamic-shape", "the resize needs known 4-D input and output shapes", "export with fixed shapes")
        return None
    if 0 in out_shape:
        ctx.problem("resize-empty", f"resize from {in_shape} to an empty {out_shape}", "use scales that keep a pixel")
        return None
    if tuple(out_shape[:2]) != in_shape[:2]:
        ctx.problem("resize-axes", f"resize from {in_shape} to {out_shape} changes N or C", "resize H and W only")
        return None
    if ctx.node.op_type == "Resize" and str(ctx.attr("keep_aspect_ratio_policy", "stretch")) != "stretch":
        ctx.problem(
            "resize-policy",
            f"keep_aspect_ratio_policy={ctx.attr('keep_aspect_ratio_policy')}",
            "resize to explicit sizes (the default policy, stretch)",
        )
        return None
    return ResizeSpec(
        mode="linear" if mode == "bilinear" else mode,
        transform=transform,
        nearest=nearest,
        cubic_a=float(ctx.attr("cubic_coeff_a", -0.75)),
        exclude_outside=int(ctx.attr("exclude_outside", 0)),
        extrapolation=float(ctx.attr("extrapolation_value", 0.0)),
        antialias=int(ctx.attr("antialias", 0)),
        in_size=(in_shape[2], in_shape[3]),
        out_size=(int(out_shape[2] or 0), int(out_shape[3] or 0)),
        scales=_given_scales(ctx),
        roi=_roi(ctx, transform),
    )


def _spatial_values(ctx: CaffeNodeContext, name: str, *older: str) -> list[float] | None:
    """Parameter ``name`` for H and W, whether given for all four axes or for ``axes`` only."""
    found = ctx.param(name, *older)
    if found is None or found.size == 0:
        return None
    values = [float(v) for v in found.reshape(-1)]
    axes = ctx.attr("axes", None) if ctx.node.op_type == "Resize" else None
    if axes:
        per_axis = dict(zip((int(a) % 4 for a in axes), values))
        return [per_axis.get(2, 1.0), per_axis.get(3, 1.0)]
    return values[-2:]


def _given_scales(ctx: CaffeNodeContext) -> tuple[float, float] | None:
    scales = _spatial_values(ctx, "scales")
    return None if scales is None or ctx.param("sizes") is not None else (scales[0], scales[1])


def _roi(ctx: CaffeNodeContext, transform: str) -> tuple[tuple[float, float], tuple[float, float]]:
    whole = ((0.0, 1.0), (0.0, 1.0))
    if transform != "tf_crop_and_resize":
        return whole
    roi = ctx.param("roi")
    if roi is None or roi.size == 0:
        return whole
    values = [float(v) for v in roi.reshape(-1)]
    half = len(values) // 2
    starts, ends = values[:half], values[half:]
    axes = ctx.attr("axes", None)
    if axes:
        starts_by, ends_by = dict(zip((int(a) % 4 for a in axes), starts)), dict(zip((int(a) % 4 for a in axes), ends))
        return ((starts_by.get(2, 0.0), ends_by.get(2, 1.0)), (starts_by.get(3, 0.0), ends_by.get(3, 1.0)))
    return ((starts[-2], ends[-2]), (starts[-1], ends[-1]))


@CAFFE_LAYERS.register("Resize", since=11)
def convert_resize(ctx: CaffeNodeContext) -> None:
    """Deconvolution (integer nearest/linear upsampling), else a linear map per axis (every mode)"""
    if not ctx.require_constants("roi", "scales", "sizes"):
        return
    spec = _spec(
        ctx, str(ctx.attr("mode")), str(ctx.attr("coordinate_transformation_mode")), str(ctx.attr("nearest_mode"))
    )
    if spec is not None:
        _write_resize(ctx, spec)


@CAFFE_LAYERS.register("Upsample")
@CAFFE_LAYERS.register("Resize", since=10)
def convert_upsample(ctx: CaffeNodeContext) -> None:
    """Deconvolution or a linear map per axis, sampling asymmetrically (x_in = x_out / scale, nearest rounds down)"""
    if not ctx.require_constants("scales"):
        return
    spec = _spec(ctx, str(ctx.attr("mode")), "asymmetric", "floor")
    if spec is not None:
        _write_resize(ctx, spec)


def _ambiguous(ctx: CaffeNodeContext, spec: ResizeSpec) -> bool:
    """Reports (True) a resize whose value the spec and onnxruntime define differently: with
    ``align_corners`` or ``tf_crop_and_resize`` the spec divides by ``input * scale - 1`` even
    when that is fractional, onnxruntime (and PyTorch) by the rounded output size ``- 1``."""
    if spec.scales is None or spec.transform not in ("align_corners", "tf_crop_and_resize"):
        return False
    lengths = [size * scale for size, scale in zip(spec.in_size, spec.scales)]
    if all(length == out for length, out in zip(lengths, spec.out_size)):
        return False
    ctx.problem(
        "resize-ambiguous",
        f"{spec.transform} with scales {list(spec.scales)} on {spec.in_size}: the ONNX specification samples for "
        f"an output of length {[round(v, 4) for v in lengths]}, onnxruntime and PyTorch for {spec.out_size}, "
        "and the two give different values",
        "give the output size (sizes) instead of scales, or scales whose output length is a whole number",
    )
    return True


def _write_resize(ctx: CaffeNodeContext, spec: ResizeSpec) -> None:
    factors = spec.integer_factors()
    if _ambiguous(ctx, spec):
        return
    if spec.in_size == spec.out_size and spec.transform != "tf_crop_and_resize" and not spec.antialias:
        ctx.alias()
    elif factors is not None and spec.mode == "nearest" and spec.nearest in _REPLICATING_MODES.get(spec.transform, ()):
        _nearest_deconvolution(ctx, factors)
    elif factors is not None and spec.mode == "linear" and spec.transform in _TENT_MODES:
        _linear_deconvolution(ctx, spec, factors)
    else:
        _separable_maps(ctx, spec)


# --- integer nearest upsampling ------------------------------------------------------------------


def _nearest_deconvolution(ctx: CaffeNodeContext, factors: tuple[int, int]) -> None:
    in_shape = ctx.static_shape(0)
    assert in_shape is not None  # checked by _spec
    channels = in_shape[1]
    layer = ctx.add_layer("Deconvolution", weights=[np.ones((channels, 1, *factors), np.float32)])
    param = layer.convolution_param
    param.num_output, param.group, param.bias_term = channels, channels, False
    set_conv_window(param, factors, factors)


# --- integer linear upsampling -------------------------------------------------------------------


@dataclass(frozen=True)
class _Tent:
    """One axis of the bilinear Deconvolution: replicated rows, kernel, and the outputs kept."""

    before: int
    after: int
    kernel: np.ndarray
    pad: int
    keep: tuple[int, int, int]  # start, end, length of the Deconvolution's output


def _tent(size: int, s: int, transform: str) -> _Tent:
    """Sampling ``u = o/s + delta``: with ``before`` replicated rows the weight of padded row ``j``
    for output ``o`` is ``tent((o + off - j*s - c)/s)``, a kernel in ``t = o + off - j*s``."""
    delta = 0.0 if transform == "asymmetric" or s == 1 else 0.5 / s - 0.5
    before = 1 if delta < 0 else 0
    after = 1 if s > 1 else 0
    centre_shift = -s * delta - s * before  # c = off + centre_shift
    off = math.ceil(s - 1 - centre_shift)
    centre = off + centre_shift
    taps = np.arange(math.ceil(centre + s))
    kernel = np.maximum(0.0, 1.0 - np.abs(taps - centre) / s)
    full = (size + before + after - 1) * s + len(kernel)
    pad = min(off, full - off - s * size)
    return _Tent(before, after, kernel, pad, (off - pad, off - pad + s * size, full - 2 * pad))


def _replicate_edges(ctx: CaffeNodeContext, blob: str, axis: int, size: int, before: int, after: int) -> str:
    """``blob`` with its first row repeated ``before`` times in front and its last ``after`` times behind."""
    if not before and not after:
        return blob
    if size == 1:
        first = last = blob
    else:
        points = [p for p in (1, size - 1) if 0 < p < size]
        points = sorted(set(points))
        cut = ctx.add_layer("Slice", [blob], [None] * (len(points) + 1), role=f"edges_axis{axis}")
        cut.slice_param.axis = axis
        cut.slice_param.slice_point.extend(points)
        first, last = str(cut.top[0]), str(cut.top[-1])
        ctx.discard([str(top) for top in cut.top[1:-1]])
        for top, used in ((first, before), (last, after)):
            if not used:
                ctx.discard([top])
    joined = ctx.add_layer("Concat", [first] * before + [blob] + [last] * after, [None], role=f"replicate_axis{axis}")
    joined.concat_param.axis = axis
    return str(joined.top[0])


def _linear_deconvolution(ctx: CaffeNodeContext, spec: ResizeSpec, factors: tuple[int, int]) -> None:
    tents = [_tent(size, s, spec.transform) for size, s in zip(spec.in_size, factors)]
    blob = ctx.bottom(ctx.node.inputs[0])
    for axis, (tent, size) in enumerate(zip(tents, spec.in_size)):
        blob = _replicate_edges(ctx, blob, axis + 2, size, tent.before, tent.after)
    in_shape = ctx.static_shape(0)
    assert in_shape is not None  # checked by _spec
    channels = in_shape[1]
    kernel = np.outer(tents[0].kernel, tents[1].kernel).astype(np.float32)
    cropped = any(tent.keep[:2] != (0, tent.keep[2]) for tent in tents)
    layer = ctx.add_layer(
        "Deconvolution",
        [blob],
        [None] if cropped else None,
        weights=[np.broadcast_to(kernel, (channels, 1, *kernel.shape))],
    )
    param = layer.convolution_param
    param.num_output, param.group, param.bias_term = channels, channels, False
    set_conv_window(param, kernel.shape, factors, (tents[0].pad, tents[1].pad))
    if cropped:
        crop(ctx, str(layer.top[0]), {axis + 2: tent.keep for axis, tent in enumerate(tents)}, ctx.node.outputs[0])
    ctx.problem(
        "resize-linear",
        f"linear upsampling by {factors[0]}x{factors[1]} ({spec.transform}) written as edge rows copied by "
        "Slice + Concat and a depthwise Deconvolution with the bilinear kernel (exact)",
        severity="warning",
    )


# --- the general form: one matrix per axis ----------------------------------------------------------


def interpolation_matrix(spec: ResizeSpec, axis: int, extrapolation: float = 0.0) -> np.ndarray:
    """``A`` (out x in) of one axis: the node's resize applied to the identity by onnxruntime.
    Raises ValueError when onnxruntime refuses the resize."""
    import onnxruntime as ort  # only this form needs a runtime; the writer imports fast otherwise
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    size, out = spec.in_size[axis], spec.out_size[axis]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, (size, 1, size, 1))]
    (start, end) = spec.roi[axis]
    initializers = [onnx.numpy_helper.from_array(np.array([0, 0, start, 0, 1, 1, end, 1], np.float32), "roi")]
    if spec.scales is not None:
        initializers.append(onnx.numpy_helper.from_array(np.array([1, 1, spec.scales[axis], 1], np.float32), "scales"))
        names = ["x", "roi", "scales"]
    else:
        initializers.append(onnx.numpy_helper.from_array(np.array([size, 1, out, 1], np.int64), "sizes"))
        names = ["x", "roi", "", "sizes"]
    node = helper.make_node(
        "Resize",
        names,
        ["y"],
        mode=spec.mode,
        coordinate_transformation_mode=spec.transform,
        nearest_mode=spec.nearest,
        cubic_coeff_a=spec.cubic_a,
        exclude_outside=spec.exclude_outside,
        extrapolation_value=extrapolation,
        antialias=spec.antialias,
    )
    graph = helper.make_graph(
        [node], "probe", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers
    )
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _PROBE_OPSET)])
    identity = np.eye(size, dtype=np.float32).reshape(size, 1, size, 1)
    try:
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {"x": identity})
    except (ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.NotImplemented) as error:
        raise ValueError(str(error).splitlines()[0][:200]) from error
    return np.ascontiguousarray(result.reshape(size, out).T)


def _separable_maps(ctx: CaffeNodeContext, spec: ResizeSpec) -> None:
    shape = ctx.static_shape(0)
    assert shape is not None  # checked by _spec
    try:
        matrices = [interpolation_matrix(spec, axis) for axis in range(2)]
    except ValueError as error:
        ctx.problem(
            "resize-mode",
            f"onnxruntime cannot compute this resize ({error})",
            "use a standard mode (nearest, linear, cubic) in the source model",
        )
        return
    identity = [m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0])) for m in matrices]
    extrapolated = spec.transform == "tf_crop_and_resize" and spec.extrapolation != 0.0
    steps = [axis for axis in (1, 0) if not identity[axis]]
    if not steps and not extrapolated:
        ctx.alias()
        return
    blob = ctx.bottom(ctx.node.inputs[0])
    current = list(shape)
    for index, axis in enumerate(steps):
        output = ctx.node.outputs[0] if index == len(steps) - 1 and not extrapolated else None
        blob = axis_map(ctx, blob, tuple(current), axis + 2, matrices[axis], output, f"map_{'hw'[axis]}")
        current[axis + 2] = matrices[axis].shape[0]
    if extrapolated:
        _add_extrapolation(ctx, blob, spec, matrices)
    ctx.problem(
        "resize-maps",
        f"resize {spec.mode} ({spec.transform}) from {spec.in_size} to {spec.out_size} written as one linear "
        "map per axis (InnerProduct over W, a 1x1 Convolution over H) with onnxruntime's weights (exact)",
        severity="warning",
    )


def _add_extrapolation(ctx: CaffeNodeContext, blob: str, spec: ResizeSpec, matrices: list[np.ndarray]) -> None:
    """``extrapolation_value`` where a row or column samples outside the crop (its matrix row is zero)."""
    outside = [np.logical_not(m.any(axis=1)) for m in matrices]
    bias = np.where(outside[0][:, None] | outside[1][None, :], spec.extrapolation, 0.0).astype(np.float32)
    ctx.add_scale(blob, None, bias, axis=2, role="extrapolate")
