"""The parts of compare on their own: alignment rules and their merge, the cause
finders and their order, the runner protocol's defaults, and plots from plain data."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pytest

from workbench.runners import Runner
from workbench.runners.base import Inputs, LayerConstants, LayerStream, only
from workbench.steps.compare_align import RULES, Entry, align, merge
from workbench.steps.compare_causes import FINDERS, Evidence, SideEvidence, find_cause
from workbench.steps.compare_stats import Cause
from workbench.steps.plots import LayerErrors, plot_layer_errors


def entries(*specs: tuple[str, tuple[str, ...]]) -> list[Entry]:
    seen: dict[str, int] = {}
    found = []
    for name, sources in specs:
        found.append(Entry(name, seen.get(name, 0), sources))
        seen[name] = seen.get(name, 0) + 1
    return found


# ---------------------------------------------------------------- alignment


def test_a_folded_layer_is_compared_after_its_last_source() -> None:
    reference = entries(("conv", ("conv",)), ("bn", ("bn",)), ("relu", ("relu",)))
    candidate = entries(("conv_out", ("conv", "bn")), ("relu_out", ("relu",)))
    assert align(reference, candidate) == [(1, 0), (2, 1)]


def test_the_last_candidate_entry_of_a_layer_is_its_boundary() -> None:
    reference = entries(("fc", ("fc",)))
    candidate = entries(("matmul", ("fc",)), ("add", ("fc",)))
    assert align(reference, candidate) == [(0, 1)]


def test_a_recording_without_provenance_is_matched_by_name() -> None:
    reference = entries(("conv0_output", ()), ("relu0_output", ()))
    candidate = entries(("conv0_output", ("conv0",)), ("relu0_output", ("relu0",)))
    assert align(reference, candidate) == [(0, 0), (1, 1)]


def test_anchored_pairs_may_cross_but_fill_ins_keep_the_order() -> None:
    # two branches that run in the other order on each side: provenance pairs them anyway
    reference = entries(("a", ("a",)), ("b", ("b",)), ("x", ()), ("y", ()))
    candidate = entries(("b", ("b",)), ("a", ("a",)), ("y", ()), ("x", ()))
    pairs = align(reference, candidate, [rule for rule in RULES if rule.anchors])
    assert pairs == [(0, 1), (1, 0), (2, 3), (3, 2)]
    fill_in = [rule for rule in RULES if not rule.anchors]
    shared = entries(("r1", ("p",)), ("r2", ("q",)))
    swapped = entries(("r2", ("q",)), ("r1", ("p",)))
    # the same-value rule alone: the second pair would cross the first, so it is left out
    assert merge([(rule, list(rule.propose(shared, swapped))) for rule in fill_in]) == [(0, 1)]


def test_rules_are_named_and_anchoring_rules_come_first() -> None:
    assert [rule.name for rule in RULES] == ["provenance", "recorded name", "shared name", "same value"]
    assert [rule.anchors for rule in RULES] == [True, True, True, False]


# ---------------------------------------------------------------- runners


class ListRunner(Runner):
    """A runner with nothing but the required members: every capability at its default."""

    name = "list"

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs
        self.input_names = ["x"]
        self.output_names = [next(reversed(outputs))]

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        return {name: self.outputs[name] for name in self.output_names}

    def run_layers(self, inputs: Inputs, names: Collection[str] | None = None) -> LayerStream:
        return only(self.outputs.items(), names)


def test_the_protocol_defaults_say_what_a_runtime_cannot() -> None:
    runner = ListRunner({"a": np.zeros(2), "b": np.ones(2)})
    assert runner.layer_names([]) == ["a", "b"]
    assert dict(runner.layer_sources) == {}
    assert runner.recorded_inputs() is None and runner.input_shapes() is None
    assert runner.layer_constants("a") is None and runner.node_evaluation("a", []) is None
    assert [name for name, _ in runner.run_layers([], {"b"})] == ["b"]


def test_compare_works_with_a_runner_that_has_no_capabilities() -> None:
    from workbench.steps.compare import compare

    a = {"a": np.arange(8.0).reshape(1, 2, 2, 2), "b": np.ones((1, 2))}
    b = {"a": a["a"] + 1.0, "b": np.ones((1, 2))}
    comparison = compare(ListRunner(a), ListRunner(b), [np.zeros(1)], per_layer=True)
    assert [pair.source for pair in comparison.layers] == ["a", "b"]
    assert comparison.first_divergence is not None and comparison.first_divergence.source == "a"
    assert comparison.first_divergence.cause is not None and comparison.first_divergence.cause.kind == "offset"


# ---------------------------------------------------------------- causes


def evidence(a: np.ndarray, b: np.ndarray, runners: dict | None = None, **sides: dict) -> Evidence:
    """The first divergence between reference ``a`` and candidate ``b``; ``runners`` and
    ``sides`` give a side (by label) its runner or other fields."""

    def side(label: str, tensor: np.ndarray) -> SideEvidence:
        runner = (runners or {}).get(label) or ListRunner({"out": tensor})
        return SideEvidence(label=label, runner=runner, output="out", feed=[], tensor=tensor, **sides.get(label, {}))

    return Evidence(reference=side("reference", a), candidate=side("candidate", b), atol=1e-4, rtol=1e-3)


def test_a_new_cause_is_one_function() -> None:
    def constant_output(found: Evidence) -> Cause | None:
        flat = found.candidate.tensor
        return Cause("constant-output", "the candidate is constant") if np.ptp(flat) == 0 else None

    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4))
    assert find_cause(evidence(x, np.zeros_like(x))).kind == "preprocessing"  # x * 0 + 0, as the finders see it
    assert find_cause(evidence(x, np.zeros_like(x)), [constant_output, *FINDERS]).kind == "constant-output"


def test_a_preprocessing_layer_explains_an_affine_difference_before_its_pattern() -> None:
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4))
    scaled = 0.5 * x - 1.0
    assert find_cause(evidence(x, scaled)).kind == "preprocessing"  # the pattern alone: one factor
    layer = {"preprocessing": {"minus_mean": (np.full(3, 0.5), np.full(3, -1.0))}}
    cause = find_cause(evidence(x, scaled, candidate=layer))
    assert cause.kind == "preprocessing" and "minus_mean" in cause.explanation


def test_batchnorm_constants_recover_the_other_sides_epsilon() -> None:
    """y = gamma (x - mean) / sqrt(var + eps) + beta with eps 1e-5 (reference, whose
    runner shows its constants) and 1e-3 (candidate): the candidate's eps is recovered
    as r^2 (var + 1e-5) - var from the per-channel ratio r of the centred outputs."""
    rng = np.random.default_rng(0)
    var, gamma, beta = rng.uniform(1e-4, 1e-2, 4), rng.uniform(0.5, 1.5, 4), rng.standard_normal(4) * 0.1
    x = rng.standard_normal((1, 4, 6, 6)) * np.sqrt(var).reshape(1, 4, 1, 1)

    def bn(eps: float) -> np.ndarray:
        shape = (1, 4, 1, 1)
        return gamma.reshape(shape) * x / np.sqrt(var.reshape(shape) + eps) + beta.reshape(shape)

    class BatchNormRunner(ListRunner):
        def layer_constants(self, name: str) -> LayerConstants | None:
            arrays = {"scale": gamma, "B": beta, "input_mean": np.zeros(4), "input_var": var}
            return LayerConstants("BatchNormalization", arrays, {"epsilon": 1e-5})

    reference, candidate = bn(1e-5), bn(1e-3)
    cause = find_cause(evidence(reference, candidate, {"reference": BatchNormRunner({"out": reference})}))
    assert cause.kind == "bn-eps"
    assert cause.numbers["reference_eps"] == pytest.approx(1e-5)
    # recovered from float64 tensors: within 1 % of the true 1e-3
    assert cause.numbers["candidate_eps"] == pytest.approx(1e-3, rel=0.01)
    # without the constants, the tensors alone (factors 0.47-0.93, far from 1) read as fix_gamma:
    # why the constants are asked before the pattern
    assert find_cause(evidence(reference, candidate)).kind == "fix-gamma"


def test_epsilons_stated_by_both_sides_are_reported_as_stated() -> None:
    """Caffe against Caffe: both runners show the same BatchNorm but for eps (1e-5 and 0.5);
    the stated values are the cause once they reproduce the candidate from the reference."""
    rng = np.random.default_rng(1)
    var, gamma, beta = rng.uniform(1e-3, 1e-1, 4), rng.uniform(0.5, 1.5, 4), rng.standard_normal(4) * 0.1
    x = rng.standard_normal((1, 4, 6, 6)) * np.sqrt(var).reshape(1, 4, 1, 1)
    shape = (1, 4, 1, 1)

    def bn(eps: float) -> np.ndarray:
        return gamma.reshape(shape) * x / np.sqrt(var.reshape(shape) + eps) + beta.reshape(shape)

    def stating(eps: float, output: np.ndarray) -> ListRunner:
        class Stating(ListRunner):
            def layer_constants(self, name: str) -> LayerConstants | None:
                arrays = {"scale": gamma, "B": beta, "input_mean": np.zeros(4), "input_var": var}
                return LayerConstants("BatchNormalization", arrays, {"epsilon": eps})

        return Stating({"out": output})

    reference, candidate = bn(1e-5), bn(0.5)
    runners = {"reference": stating(1e-5, reference), "candidate": stating(0.5, candidate)}
    cause = find_cause(evidence(reference, candidate, runners))
    assert cause.kind == "bn-eps" and cause.numbers["stated"] is True
    assert (cause.numbers["reference_eps"], cause.numbers["candidate_eps"]) == (1e-5, 0.5)
    # stated epsilons that do not reproduce the candidate (a gamma differs too) are not the cause alone
    runners["candidate"] = stating(0.5, candidate * 2)
    assert find_cause(evidence(reference, candidate * 2, runners)).kind != "bn-eps"


def test_nan_on_both_sides_agrees_and_on_one_side_differs() -> None:
    from workbench.steps.compare_stats import error_stats

    a = np.array([1.0, np.nan, np.inf, -2.0])
    same = error_stats(a, np.array([1.0, np.nan, np.inf, -2.0]))
    assert same.passes() and same.max_abs == 0 and same.reference_max == 2.0
    one_sided = error_stats(a, np.array([1.0, 0.5, np.inf, -2.0]))
    assert not one_sided.passes() and one_sided.max_abs == np.inf
    assert not error_stats(a, np.array([1.0, np.nan, -np.inf, -2.0])).passes()  # infinities of other signs


# ---------------------------------------------------------------- plots


def test_the_error_plot_takes_plain_numbers(tmp_path) -> None:
    errors = LayerErrors(
        max_abs=[1e-7, 2e-6, float("inf"), 0.5],
        mean_abs=[1e-8, 1e-7, float("inf"), 0.1],
        allowed=[1e-4, 1e-4, 1e-4, 1e-4],
        shape_mismatch=[2],
        divergence=3,
        divergence_label="first divergence: fc",
        title="a vs b",
    )
    figure = plot_layer_errors(errors, tmp_path / "errors.png")
    assert (tmp_path / "errors.png").read_bytes()[:4] == b"\x89PNG"
    assert figure.axes[0].get_title() == "a vs b"
