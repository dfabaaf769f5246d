"""Why the first diverging layer differs: one finder per known conversion pitfall.

A finder is a function ``Evidence -> Cause | None``: it looks at the two tensors of
the first divergence, and at what each side's runner can show (a layer's constants,
a node re-run alone), and names the pitfall when its relation fits. ``FINDERS``
lists them in the order they are asked; the first cause found is reported. A new
cause is one more function in that list.

The order, most specific evidence first:

1. relations of the two tensors that name a pitfall alone (``compare_stats``):
   pooling rounding, concat order, layout;
2. ``preprocessing_layer``: on one side only, a layer before every compared one is an
   affine map of the input (``x * scale + shift``);
3. ``fix_gamma``: with the BatchNorm constants a side shows (``layer_constants``:
   ONNX initializers, Caffe blobs and params, MXNet params, a PyTorch state dict),
   ``this = gamma * (other - beta) + beta``;
4. ``batchnorm_epsilon``: both sides state their constants and only eps differs,
   and that eps reproduces the candidate; else the other side's eps recovered from
   one side's constants (3 and 4 are skipped when the tensors differ by one factor
   for all channels: preprocessing);
5. ``affine_pattern``: the per-channel affine relation of the tensors alone (eps,
   fix_gamma, a missing offset, preprocessing);
6. ``misused_weight``: the node re-run with its weight transposed, or with another
   weight of the model of the same shape, reproduces the other side's output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..runners import NodeEvaluation, Runner
from .compare_stats import Cause, affine_cause, axis_permutation, channel_permutation, pooling_rounding


@dataclass(frozen=True, kw_only=True)
class SideEvidence:
    """One side of the first divergence."""

    label: str  # "reference" or "candidate"
    runner: Runner
    output: str  # the diverging output's name on this side
    feed: list[np.ndarray]
    tensor: np.ndarray
    # layers before the first compared one that map the input affinely: name -> (scale, shift)
    preprocessing: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass(kw_only=True)
class Evidence:
    """What the finders look at: both sides, the tolerance, and the shapes of the
    layers that agreed before (a flattened tensor may be one of them reshaped)."""

    reference: SideEvidence
    candidate: SideEvidence
    atol: float
    rtol: float
    earlier_shapes: tuple[tuple[int, ...], ...] = ()

    @cached_property
    def affine(self) -> Cause | None:
        """The per-channel affine relation of the two tensors, named (computed once)."""
        return affine_cause(self.reference.tensor, self.candidate.tensor)

    @cached_property
    def _batchnorm(self) -> dict[str, BatchNormConstants | None]:
        return {
            "candidate": batchnorm_constants_of(self.candidate),
            "reference": batchnorm_constants_of(self.reference),
        }

    def constants(self, side: str) -> BatchNormConstants | None:
        """The BatchNorm constants the side's runner shows for its diverging output (asked once)."""
        return self._batchnorm[side]


Finder = Callable[[Evidence], Cause | None]


# ---------------------------------------------------------------- from the tensors alone


def pooling_mismatch(evidence: Evidence) -> Cause | None:
    return pooling_rounding(evidence.reference.tensor, evidence.candidate.tensor, evidence.atol)


def concat_order(evidence: Evidence) -> Cause | None:
    return channel_permutation(evidence.reference.tensor, evidence.candidate.tensor, evidence.atol, evidence.rtol)


def layout(evidence: Evidence) -> Cause | None:
    return axis_permutation(
        evidence.reference.tensor, evidence.candidate.tensor, evidence.atol, evidence.rtol, evidence.earlier_shapes
    )


def affine_pattern(evidence: Evidence) -> Cause | None:
    return evidence.affine


# ---------------------------------------------------------------- preprocessing layers


def _span(values: np.ndarray) -> str:
    low, high = float(values.min()), float(values.max())
    return f"{low:.4g}" if math.isclose(low, high, rel_tol=1e-6, abs_tol=1e-9) else f"[{low:.4g}…{high:.4g}]"


def preprocessing_layer(evidence: Evidence) -> Cause | None:
    """One side transforms its input in layers the other side does not have."""
    sides = [side for side in (evidence.reference, evidence.candidate) if side.preprocessing]
    if len(sides) != 1:
        return None
    side = sides[0]
    maps = "; ".join(
        f"{name} = x * {_span(scale)} + {_span(shift)}" for name, (scale, shift) in side.preprocessing.items()
    )
    return Cause(
        "preprocessing",
        f"the {side.label} transforms its input ({maps}) and the other side has no such layer: "
        "preprocessing (x * scale - mean) is missing on one side; add it, or absorb it into "
        "the first layer's weights",
        {"layers": list(side.preprocessing)},
    )


# ---------------------------------------------------------------- BatchNorm constants

BATCHNORM_ROLES = ("scale", "B", "input_mean", "input_var")  # ONNX BatchNormalization inputs 1..4
DEFAULT_BATCHNORM_EPS = 1e-5  # ONNX's default epsilon
SIDES = ("candidate", "reference")  # the order a side's constants are tried in


@dataclass(frozen=True)
class BatchNormConstants:
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float


def batchnorm_constants_of(side: SideEvidence) -> BatchNormConstants | None:
    """The constants of the BatchNorm computing the side's output, if its runner shows
    them (ONNX initializers, Caffe blobs and params, MXNet params, a PyTorch state dict)."""
    constants = side.runner.layer_constants(side.output)
    if constants is None or constants.op_type != "BatchNormalization":
        return None
    if any(role not in constants.arrays for role in BATCHNORM_ROLES):
        return None
    gamma, beta, mean, var = (
        np.asarray(constants.arrays[role], dtype=np.float64).reshape(-1) for role in BATCHNORM_ROLES
    )
    return BatchNormConstants(gamma, beta, mean, var, float(constants.attributes.get("epsilon", DEFAULT_BATCHNORM_EPS)))


def _channel_shape(array: np.ndarray) -> tuple[int, ...]:
    return (1, array.shape[1]) + (1,) * (array.ndim - 2)


def _known_sides(
    evidence: Evidence,
) -> Iterator[tuple[str, BatchNormConstants, np.ndarray, np.ndarray, float]]:
    """``(side, constants, this, other, tolerance)`` for each side whose BatchNorm constants
    fit the diverging tensors (``this``: that side's output, ``other``: the other side's).
    Nothing when the tensors differ by one factor for all channels (preprocessing)."""
    if evidence.affine is not None and evidence.affine.kind == "preprocessing":
        return
    a = np.asarray(evidence.reference.tensor, dtype=np.float64)
    b = np.asarray(evidence.candidate.tensor, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        return
    for side in SIDES:
        known = evidence.constants(side)
        if known is None or known.gamma.shape != (a.shape[1],):
            continue
        this, other = (b, a) if side == "candidate" else (a, b)
        yield side, known, this, other, evidence.atol + evidence.rtol * float(np.abs(this).max(initial=0.0))


def fix_gamma(evidence: Evidence) -> Cause | None:
    """One side applies a stored gamma the other treats as 1: ``this = gamma * (other - beta) + beta``."""
    for side, known, this, other, tolerance in _known_sides(evidence):
        gamma, beta = known.gamma.reshape(_channel_shape(this)), known.beta.reshape(_channel_shape(this))
        if float(np.abs(this - (gamma * (other - beta) + beta)).max(initial=0.0)) > tolerance:
            continue
        return Cause(
            "fix-gamma",
            f"the outputs match if the {side}'s BatchNorm gamma were 1: the {side} applies a stored "
            f"gamma ({known.gamma.min():.3g}–{known.gamma.max():.3g}) that the other side treats as 1 "
            "(MXNet fix_gamma=True); set gamma to 1 when converting",
            {"gamma_min": float(known.gamma.min()), "gamma_max": float(known.gamma.max())},
        )
    return None


def _eps_cause(reference_eps: float, candidate_eps: float, how: str, stated: bool) -> Cause:
    return Cause(
        "bn-eps",
        f"BatchNorm epsilon differs: the reference {how} eps={reference_eps:.3g}, the candidate "
        f"eps={candidate_eps:.3g} (the error follows 1/sqrt(var+eps)); MXNet defaults to 1e-3, "
        "Caffe and PyTorch to 1e-5 — write the source's eps",
        {"reference_eps": reference_eps, "candidate_eps": candidate_eps, "stated": stated},
    )


def _stated_epsilons(evidence: Evidence) -> Cause | None:
    """Both sides state their constants: the same statistics with another eps, and that eps
    reproduces the candidate from the reference,
    ``candidate = beta + (reference - beta) * sqrt((var + eps_ref) / (var + eps_cand))``."""
    sides = {side: (known, this, tolerance) for side, known, this, _, tolerance in _known_sides(evidence)}
    if set(sides) != set(SIDES):
        return None
    (cand, cand_tensor, tolerance), (ref, ref_tensor, _) = sides["candidate"], sides["reference"]
    same = all(
        np.allclose(getattr(cand, name), getattr(ref, name), rtol=1e-5, atol=1e-7)
        for name in ("gamma", "beta", "mean", "var")
    )
    if not same or np.isclose(cand.eps, ref.eps, rtol=1e-3):
        return None
    shape = _channel_shape(ref_tensor)
    beta, var = cand.beta.reshape(shape), cand.var.reshape(shape)
    predicted = beta + (ref_tensor - beta) * np.sqrt((var + ref.eps) / (var + cand.eps))
    if float(np.abs(predicted - cand_tensor).max(initial=0.0)) > tolerance:
        return None
    return _eps_cause(ref.eps, cand.eps, "states", stated=True)


def _recovered_epsilon(this: np.ndarray, other: np.ndarray, known: BatchNormConstants, side: str) -> Cause | None:
    """From one side's constants: per channel ``(this - beta) / (other - beta) = r =
    sqrt((var + eps_other) / (var + eps_this))``, so ``eps_other = r^2 (var + eps_this) - var``
    must be one number for all channels."""
    channels = this.shape[1]
    beta = known.beta.reshape(_channel_shape(this))
    flat_this = np.moveaxis(this - beta, 1, 0).reshape(channels, -1)
    flat_other = np.moveaxis(other - beta, 1, 0).reshape(channels, -1)
    usable = np.abs(flat_other) > 1e-3 * float(np.abs(flat_other).max(initial=0.0))
    ratios = np.where(usable, flat_this / np.where(usable, flat_other, 1.0), np.nan)
    with np.errstate(all="ignore"):
        ratio = np.nanmedian(ratios, axis=1)
    valid = np.isfinite(ratio)
    if not valid.any():
        return None
    other_eps = ratio[valid] ** 2 * (known.var[valid] + known.eps) - known.var[valid]
    estimate = float(np.median(other_eps))
    agreeing = np.abs(other_eps - estimate) <= 0.2 * abs(estimate) + 1e-7
    if not (estimate > 0 and agreeing.mean() >= 0.8 and not np.isclose(estimate, known.eps, rtol=0.2)):
        return None
    if side == "candidate":
        return _eps_cause(estimate, known.eps, "behaves like", stated=False)
    return _eps_cause(known.eps, estimate, "behaves like", stated=False)


def batchnorm_epsilon(evidence: Evidence) -> Cause | None:
    """Another BatchNorm epsilon: stated by both sides, or recovered from the outputs with
    one side's constants."""
    stated = _stated_epsilons(evidence)
    if stated is not None:
        return stated
    for side, known, this, other, _ in _known_sides(evidence):
        cause = _recovered_epsilon(this, other, known, side)
        if cause is not None:
            return cause
    return None


# ---------------------------------------------------------------- weights

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
WEIGHT_INPUT = 1  # the weight's input index in every op of WEIGHTED_OPS


def transposed_variants(weight: np.ndarray) -> Iterator[tuple[np.ndarray, str]]:
    """The transpositions a layout mistake makes of a weight of this shape."""
    if weight.ndim == 2 and weight.shape[0] == weight.shape[1]:
        yield weight.T, "its weight transposed"
    if weight.ndim == 4 and weight.shape[2] == weight.shape[3] and weight.shape[2] > 1:
        yield weight.transpose(0, 1, 3, 2), "its kernels transposed (kh ↔ kw)"
    if weight.ndim == 4 and weight.shape[0] == weight.shape[1]:
        yield weight.transpose(1, 0, 2, 3), "its weight transposed (Cout ↔ Cin)"


def weight_variants(node: NodeEvaluation, weight: np.ndarray) -> Iterator[tuple[str, np.ndarray, str]]:
    """(kind, weight, description) to re-try the node with: its weight transposed,
    and every other weight of the same shape (a weight bound to the wrong layer)."""
    for variant, description in transposed_variants(weight):
        yield "transposed-weight", variant, description
    for owner, other in node.alternatives(WEIGHT_INPUT):
        yield "misbound-weight", other, f"the weight now bound to {owner}"


WEIGHT_MISTAKES = {
    "transposed-weight": "transposed weights (a layout mismatch of the weight)",
    "misbound-weight": "weights bound to the wrong layer (matched by name, or swapped)",
}


def weight_cause(side: SideEvidence, wanted: np.ndarray, atol: float, rtol: float) -> Cause | None:
    """Re-run the node that computes the side's output with other weights; a variant
    that reproduces ``wanted`` (the other side's output) names the mistake."""
    node = side.runner.node_evaluation(side.output, side.feed)
    if node is None or node.op_type not in WEIGHTED_OPS:
        return None
    weight = node.constant(WEIGHT_INPUT)
    if weight is None:
        return None
    tolerance = atol + rtol * float(np.abs(wanted).max(initial=0.0))
    for kind, variant, description in weight_variants(node, weight):
        result = node.evaluate({WEIGHT_INPUT: variant})[0]
        if result.shape == wanted.shape and float(np.abs(result - wanted).max(initial=0.0)) <= tolerance:
            return Cause(
                kind,
                f"the {side.label}'s {node.op_type} {node.label} reproduces the other side's output when given "
                f"{description}: {WEIGHT_MISTAKES[kind]}",
                {"node": node.name, "variant": description},
            )
    return None


def misused_weight(evidence: Evidence) -> Cause | None:
    """A weight transposed or bound to another layer, on the candidate side or the reference side."""
    return weight_cause(evidence.candidate, evidence.reference.tensor, evidence.atol, evidence.rtol) or weight_cause(
        evidence.reference, evidence.candidate.tensor, evidence.atol, evidence.rtol
    )


FINDERS: Sequence[Finder] = (
    pooling_mismatch,
    concat_order,
    layout,
    preprocessing_layer,
    fix_gamma,
    batchnorm_epsilon,
    affine_pattern,
    misused_weight,
)


def find_cause(evidence: Evidence, finders: Sequence[Finder] = FINDERS) -> Cause | None:
    """The first cause a finder names, in the order of ``finders``."""
    for finder in finders:
        cause = finder(evidence)
        if cause is not None:
            return cause
    return None


__all__ = ["FINDERS", "Evidence", "Finder", "SideEvidence", "find_cause", "weight_cause"]
