"""Error statistics between a reference tensor and a candidate tensor.

For reference ``a`` and candidate ``b`` (flattened, float64):

* ``max_abs = max|a - b|``, ``mean_abs = mean|a - b|``
* ``max_rel = max(|a - b| / (|a| + eps))`` with ``eps = 1e-6 * max|a|`` (so exact
  zeros in the reference do not dominate)
* ``cosine = <a, b> / (|a| |b|)`` (1 when both are zero)

A NaN on both sides at the same position, or the same infinity, is agreement (both
runtimes took the Log or Sqrt of the same negative value); a non-finite value on one
side only is an infinite difference. Magnitudes and the cosine are taken over the
positions where both sides are finite.

A pair passes when ``max_abs <= atol + rtol * max|a|``; ``needed_atol`` is the
smallest ``atol`` that would have passed with the given ``rtol``.

The second half recognises known conversion pitfalls from the two tensors alone:
pooling rounding, concat order, layout, and per-channel affine differences
(BatchNorm eps, fix_gamma, preprocessing); the relations are listed where they are
implemented. ``compare_causes`` asks them, with the causes that need more than
the tensors, in a stated order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True, kw_only=True)
class ErrorStats:
    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    reference_max: float
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]

    @property
    def shapes_match(self) -> bool:
        return self.shape_a == self.shape_b

    def passes(self, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> bool:
        return self.shapes_match and self.max_abs <= atol + rtol * self.reference_max

    def needed_atol(self, rtol: float = DEFAULT_RTOL) -> float:
        return max(0.0, self.max_abs - rtol * self.reference_max)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shape_a"], data["shape_b"] = list(self.shape_a), list(self.shape_b)
        return data


def _differences(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``|a - b|`` where equal non-finite values (NaN and NaN, inf and inf of one sign:
    a Log or Sqrt of the same negative inputs) count as agreement and a non-finite value
    against anything else as an infinite difference; and ``a``, ``b`` with every
    non-finite position zeroed, for the magnitudes and the cosine."""
    finite = np.isfinite(a) & np.isfinite(b)
    if finite.all():
        return np.abs(a - b), a, b
    same = (np.isnan(a) & np.isnan(b)) | (a == b)
    with np.errstate(invalid="ignore"):
        diff = np.where(finite, np.abs(a - b), np.where(same, 0.0, np.inf))
    return diff, np.where(finite, a, 0.0), np.where(finite, b, 0.0)


def error_stats(reference: np.ndarray, candidate: np.ndarray) -> ErrorStats:
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape:
        if a.size != b.size:
            inf = float("inf")
            return ErrorStats(
                max_abs=inf,
                mean_abs=inf,
                max_rel=inf,
                cosine=0.0,
                reference_max=float(np.abs(a).max(initial=0.0)),
                shape_a=a.shape,
                shape_b=b.shape,
            )
        # same data in another layout (e.g. a flattened blob): compare values, report shapes
        b = b.reshape(a.shape)
        shapes = (a.shape, np.shape(candidate))
    else:
        shapes = (a.shape, b.shape)
    diff, a, b = _differences(a, b)
    magnitude = np.abs(a)  # once: every layer of a per-layer comparison passes here
    reference_max = float(magnitude.max(initial=0.0))
    eps = max(1e-6 * reference_max, 1e-12)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(np.dot(a.ravel(), b.ravel()) / norm) if norm > 0 else float(np.array_equal(a, b))
    return ErrorStats(
        max_abs=float(diff.max(initial=0.0)),
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        max_rel=float((diff / (magnitude + eps)).max(initial=0.0)),
        cosine=cosine,
        reference_max=reference_max,
        shape_a=tuple(shapes[0]),
        shape_b=tuple(shapes[1]),
    )


# Known pitfalls, recognised from the two tensors (and their shapes) alone.
#
# Each test looks for a simple relation between the reference ``a`` and the
# candidate ``b`` that one conversion mistake produces:
#
# * pooling rounding: ``H, W`` differ by one (ceil vs floor), or only the last
#   row / column differ (the extra window of a ceil-mode pool, padded differently);
# * concat order: ``b[:, j] == a[:, p(j)]`` for a permutation ``p`` of channel blocks;
# * layout: ``b`` holds ``a``'s values with the axes in another order;
# * per-channel affine: ``b[:, c] = s_c * a[:, c] + t_c`` (least squares per channel).
#   BatchNorm with another epsilon gives ``s_c = sqrt((var_c + e_a) / (var_c + e_b))``:
#   all ``s_c`` close to 1, on the same side of 1, furthest from 1 where the variance
#   is small. A gamma that should have been 1 (MXNet ``fix_gamma``) gives ``s_c = gamma_c``:
#   arbitrary factors. A different input scale / mean gives one ``s`` for all channels.


@dataclass(frozen=True)
class Cause:
    """A known pitfall that explains a difference, in words, with its numbers."""

    kind: str  # "pooling-rounding", "concat-order", "layout", "bn-eps", "fix-gamma", "preprocessing", ...
    explanation: str
    numbers: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "explanation": self.explanation, **self.numbers}


def _close(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> bool:
    scale = float(np.abs(a).max(initial=0.0))
    return bool(np.abs(a - b).max(initial=0.0) <= atol + rtol * scale)


def pooling_rounding(reference: np.ndarray, candidate: np.ndarray, atol: float = DEFAULT_ATOL) -> Cause | None:
    """Output sizes one apart in H or W, or a difference confined to the last row/column."""
    a, b = np.asarray(reference), np.asarray(candidate)
    if a.ndim < 3 or a.ndim != b.ndim or a.shape[:-2] != b.shape[:-2]:
        return None
    if a.shape != b.shape:
        steps = [int(y) - int(x) for x, y in zip(a.shape[-2:], b.shape[-2:])]
        if any(abs(step) > 1 for step in steps):
            return None
        larger = "candidate" if sum(steps) > 0 else "reference"
        return Cause(
            "pooling-rounding",
            f"output size {'×'.join(map(str, a.shape[-2:]))} in the reference, "
            f"{'×'.join(map(str, b.shape[-2:]))} in the candidate: the {larger} rounds the "
            "pooled size up (ceil) where the other rounds down (floor). Caffe always rounds up; "
            "set ceil_mode / pooling_convention to match, or pad the input by one",
            {"reference_shape": list(a.shape), "candidate_shape": list(b.shape)},
        )
    wrong = np.abs(a.astype(np.float64) - b) > atol + DEFAULT_RTOL * float(np.abs(a).max(initial=0.0))
    if a.shape[-1] < 2 or a.shape[-2] < 2 or not wrong.any() or wrong[..., :-1, :-1].any():
        return None
    return Cause(
        "pooling-rounding",
        "only the last row/column of the output differ: the last pooling window hangs over the "
        "border, which ceil-mode pooling (Caffe) and floor-mode pooling with padding treat differently; "
        "match ceil_mode and padding",
        {"differing_elements": int(wrong.sum())},
    )


MIN_CHANNEL_ELEMENTS = 4  # fewer values per channel say nothing about a per-channel pattern


def _channels(array: np.ndarray) -> np.ndarray:
    """``[C, rest]`` view of an ``[N, C, ...]`` array."""
    return np.moveaxis(np.asarray(array, dtype=np.float64), 1, 0).reshape(array.shape[1], -1)


def _channel_order(ref: np.ndarray, cand: np.ndarray, tolerance: float) -> list[int] | None:
    """For each candidate channel, a distinct reference channel that agrees with it on
    a sample of positions (its own index when that one does), or None."""
    sample = np.linspace(0, ref.shape[1] - 1, num=min(ref.shape[1], 64)).astype(int)
    ref_sample = ref[:, sample]
    order: list[int] = []
    used: set[int] = set()
    for j in range(cand.shape[0]):
        distance = np.abs(ref_sample - cand[j, sample]).max(axis=1)
        matches = [i for i in np.flatnonzero(distance <= tolerance) if i not in used]
        if not matches:
            return None
        choice = j if j in matches else int(matches[0])
        order.append(choice)
        used.add(choice)
    return order


def _blocks(order: list[int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Runs of consecutive channels: ((candidate start, end), (reference start, end))."""
    blocks, start = [], 0
    for j in range(1, len(order) + 1):
        if j == len(order) or order[j] != order[j - 1] + 1:
            blocks.append(((start, j), (order[start], order[j - 1] + 1)))
            start = j
    return blocks


def channel_permutation(
    reference: np.ndarray, candidate: np.ndarray, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL
) -> Cause | None:
    """The candidate's channels are the reference's, in blocks of another order."""
    a, b = np.asarray(reference), np.asarray(candidate)
    if a.shape != b.shape or a.ndim < 2 or a.shape[1] < 2:
        return None
    ref, cand = _channels(a), _channels(b)
    if ref.shape[1] < MIN_CHANNEL_ELEMENTS:
        return None
    order = _channel_order(ref, cand, atol + rtol * float(np.abs(ref).max(initial=0.0)))
    if order is None or order == list(range(len(order))) or not _close(ref[order], cand, atol, rtol):
        return None
    blocks = _blocks(order)
    listing = ", ".join(f"candidate {c0}:{c1} = reference {r0}:{r1}" for (c0, c1), (r0, r1) in blocks)
    return Cause(
        "concat-order",
        f"the channels are the reference's in another block order ({listing}): the inputs of a "
        "concatenation are in a different order; follow the source's order (the prototxt's bottoms)",
        {"blocks": [[c0, c1, r0, r1] for (c0, c1), (r0, r1) in blocks]},
    )


def axis_permutation(
    reference: np.ndarray,
    candidate: np.ndarray,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    earlier_shapes: tuple[tuple[int, ...], ...] = (),
) -> Cause | None:
    """The candidate holds the reference's values with the axes in another order. A
    flattened tensor is tried in the shapes of earlier layers with as many elements."""
    import itertools

    a, b = np.asarray(reference), np.asarray(candidate)
    if a.size != b.size or a.size < 2:
        return None
    for shape in [a.shape, *[s for s in earlier_shapes if int(np.prod(s)) == a.size and s != a.shape]]:
        unflattened = a.reshape(shape)
        for axes in itertools.permutations(range(len(shape))):
            if axes == tuple(range(len(shape))) or len(shape) > 5:
                continue
            moved = np.transpose(unflattened, axes).reshape(b.shape)
            if _close(moved, b, atol, rtol):
                return Cause(
                    "layout",
                    f"the candidate holds the reference's values with axes {list(shape)} in the order "
                    f"{list(axes)}: a reshape/flatten over another layout (e.g. NHWC vs NCHW before a "
                    "fully connected layer); transpose the data or the next layer's weights to match",
                    {"shape": list(shape), "axes": list(axes)},
                )
    return None


@dataclass(frozen=True)
class ChannelFit:
    """Least-squares ``candidate[:, c] = scale[c] * reference[:, c] + shift[c]``."""

    scale: np.ndarray
    shift: np.ndarray
    explained: float  # 1 - (largest misfit / largest difference); 1 = the fit explains it all


def per_channel_affine(reference: np.ndarray, candidate: np.ndarray) -> ChannelFit | None:
    a, b = np.asarray(reference), np.asarray(candidate)
    if a.shape != b.shape or a.ndim < 2:
        return None
    x, y = _channels(a), _channels(b)
    if x.shape[1] < MIN_CHANNEL_ELEMENTS:
        return None
    x_mean, y_mean = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    variance = ((x - x_mean) ** 2).mean(axis=1)
    covariance = ((x - x_mean) * (y - y_mean)).mean(axis=1)
    scale = np.divide(covariance, variance, out=np.ones_like(variance), where=variance > 1e-20)
    shift = y_mean[:, 0] - scale * x_mean[:, 0]
    misfit = np.abs(y - (scale[:, None] * x + shift[:, None])).max(initial=0.0)
    difference = np.abs(y - x).max(initial=0.0)
    explained = 1.0 - misfit / difference if difference > 0 else 1.0
    return ChannelFit(scale, shift, float(explained))


AFFINE_EXPLAINED = 0.99  # a fit must explain 99% of the largest difference to count
# Fitted scales are exact to about float32 precision, far below any real mismatch
# (an eps of 1e-3 instead of 1e-5 moves them by ~1e-3 / var): spreads below this
# are "one scale", distances from 1 below it are "no scale".
UNIFORM_SCALE = 1e-5


def affine_cause(reference: np.ndarray, candidate: np.ndarray) -> Cause | None:
    """Name the pitfall behind a per-channel affine difference, from the scales alone."""
    fit = per_channel_affine(reference, candidate)
    if fit is None or fit.explained < AFFINE_EXPLAINED:
        return None
    scale, shift = fit.scale, fit.shift
    low, high = float(scale.min()), float(scale.max())
    numbers = {"scale_min": low, "scale_max": high, "shift_max": float(np.abs(shift).max(initial=0.0))}
    if high - low <= UNIFORM_SCALE * max(abs(high), 1e-12) and abs(high - 1) > UNIFORM_SCALE:
        return Cause(
            "preprocessing",
            f"the candidate is the reference times one factor ({high:.4g}) plus a per-channel offset: "
            "the input is scaled/shifted differently (preprocessing such as x*scale - mean is missing "
            "or applied twice); add it, or absorb it into the first layer",
            numbers,
        )
    if high - low <= UNIFORM_SCALE:
        return Cause(
            "offset",
            "the candidate differs from the reference by a constant per channel: a bias, a mean "
            "subtraction or a BatchNorm beta/mean is missing or different",
            numbers,
        )
    if 0.5 < low and high < 2.0 and (low >= 1 - UNIFORM_SCALE or high <= 1 + UNIFORM_SCALE):
        return Cause(
            "bn-eps",
            f"each channel is scaled by a slightly different factor ({low:.4g}–{high:.4g}), all on one "
            "side of 1: the pattern of a BatchNorm epsilon mismatch (error ∝ 1/sqrt(var+eps)); "
            "MXNet defaults to eps=1e-3, Caffe and PyTorch to 1e-5",
            numbers,
        )
    return Cause(
        "fix-gamma",
        f"each channel is scaled by an unrelated factor ({low:.4g}–{high:.4g}): a per-channel "
        "scale is applied on one side only — typically a BatchNorm gamma that should be treated "
        "as 1 (MXNet fix_gamma=True stores a gamma it never uses)",
        numbers,
    )


def affine_of(
    array: np.ndarray, source: np.ndarray, atol: float = DEFAULT_ATOL
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(scale, shift)`` per channel if ``array == scale * source + shift`` (same
    shape) and the map is not the identity; used to spot preprocessing layers."""
    fit = per_channel_affine(source, array)
    if fit is None:
        return None
    residual = np.abs(
        _channels(np.asarray(array)) - (fit.scale[:, None] * _channels(np.asarray(source)) + fit.shift[:, None])
    ).max(initial=0.0)
    identity = np.allclose(fit.scale, 1, atol=1e-6) and np.allclose(fit.shift, 0, atol=atol)
    if residual > atol + DEFAULT_RTOL * float(np.abs(array).max(initial=0.0)) or identity:
        return None
    return fit.scale, fit.shift
