"""Error statistics between a reference tensor and a candidate tensor.

For reference ``a`` and candidate ``b`` (flattened, float64):

* ``max_abs = max|a - b|``, ``mean_abs = mean|a - b|``
* ``max_rel = max(|a - b| / (|a| + eps))`` with ``eps = 1e-6 * max|a|`` (so exact
  zeros in the reference do not dominate)
* ``cosine = <a, b> / (|a| |b|)`` (1 when both are zero)

A pair passes when ``max_abs <= atol + rtol * max|a|``; ``needed_atol`` is the
smallest ``atol`` that would have passed with the given ``rtol``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True)
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


def error_stats(reference: np.ndarray, candidate: np.ndarray) -> ErrorStats:
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape:
        if a.size != b.size:
            inf = float("inf")
            return ErrorStats(inf, inf, inf, 0.0, float(np.abs(a).max(initial=0.0)), a.shape, b.shape)
        # same data in another layout (e.g. a flattened blob): compare values, report shapes
        b = b.reshape(a.shape)
        shapes = (a.shape, np.shape(candidate))
    else:
        shapes = (a.shape, b.shape)
    diff = np.abs(a - b)
    reference_max = float(np.abs(a).max(initial=0.0))
    eps = max(1e-6 * reference_max, 1e-12)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(np.dot(a.ravel(), b.ravel()) / norm) if norm > 0 else float(np.array_equal(a, b))
    return ErrorStats(
        max_abs=float(diff.max(initial=0.0)),
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        max_rel=float((diff / (np.abs(a) + eps)).max(initial=0.0)),
        cosine=cosine,
        reference_max=reference_max,
        shape_a=tuple(shapes[0]),
        shape_b=tuple(shapes[1]),
    )
