"""The stepper's logic: step order, skipping, stale steps after a re-run, artifacts
kept for comparison, errors kept instead of raised."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from workbench import InputError
from workbench.ui.pipeline import STEPS, Pipeline


@pytest.fixture
def source(conv_bn_relu_file) -> str:
    return str(conv_bn_relu_file)


@pytest.fixture
def pipeline(source, tmp_path) -> Pipeline:
    return Pipeline(source, "onnx", tmp_path / "out")


def test_only_load_can_run_first(pipeline):
    assert [pipeline.missing_before(step) for step in ("load", "simplify", "write", "compare")] == [
        None,
        "load",
        "load",
        "write",
    ]
    with pytest.raises(InputError, match="needs load"):
        pipeline.run("simplify")


def test_each_step_reads_the_latest_model_and_every_model_is_kept(pipeline, source):
    for step in ("load", "simplify", "fold_bn", "check", "write"):
        assert pipeline.run(step).ok, step
    assert pipeline.current["fold_bn"].made_from == "simplify #1"
    assert pipeline.current["write"].made_from == "fold_bn #1"
    assert [a.label for a in pipeline.comparable()] == ["load #1", "simplify #1", "fold_bn #1", "write #1"]
    assert pipeline.current["fold_bn"].value.census().get("BatchNormalization", 0) == 0
    written = pipeline.current["write"].value.paths[0]
    session = ort.InferenceSession(str(written), providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    # the written (BatchNorm-folded) file against the source file, both in onnxruntime: atol 1e-5
    np.testing.assert_allclose(session.run(None, {"x": x})[0], reference.run(None, {"x": x})[0], atol=1e-5)


def test_a_skipped_step_is_passed_over(pipeline):
    pipeline.enabled["fold_bn"] = False
    pipeline.run("load")
    pipeline.run("simplify")
    assert pipeline.status("fold_bn") == "skipped"
    assert pipeline.run("check").made_from == "simplify #1"
    with pytest.raises(InputError, match="switched off"):
        pipeline.run("fold_bn")


def test_rerunning_a_step_marks_later_steps_stale_and_keeps_old_artifacts(pipeline):
    for step in ("load", "simplify", "fold_bn"):
        pipeline.run(step)
    again = pipeline.run("simplify")
    assert again.label == "simplify #2"
    assert pipeline.status("fold_bn") == "stale" and pipeline.status("simplify") == "done"
    assert "simplify #1" in [a.label for a in pipeline.comparable()]
    assert pipeline.run("fold_bn").made_from == "simplify #2"
    assert pipeline.status("fold_bn") == "done"


def test_a_bad_source_is_kept_as_a_failed_step(tmp_path):
    pipeline = Pipeline(str(tmp_path / "missing.onnx"), "onnx", tmp_path / "out")
    ran = pipeline.run_all()
    assert [a.label for a in ran] == ["load #1"]
    assert pipeline.status("load") == "failed"
    assert "no such file" in str(ran[0].error)
    assert pipeline.comparable() == []


def test_only_optional_steps_can_be_switched_off(source, tmp_path):
    with pytest.raises(InputError, match="check cannot be switched off"):
        Pipeline(source, "onnx", tmp_path, enabled={"check": False})


def run(pipeline: Pipeline, *steps: str) -> None:
    for step in steps:
        assert pipeline.run(step).ok, step


def statuses(pipeline: Pipeline) -> dict[str, str]:
    return {step: pipeline.status(step) for step in STEPS}


def test_compare_reads_the_loaded_source_and_the_written_files(pipeline):
    run(pipeline, "load", "simplify", "fold_bn", "check", "write", "compare")
    compared = pipeline.current["compare"]
    assert compared.inputs == ("load #1", "write #1")
    # the folded ONNX file in onnxruntime against the source graph in onnxruntime
    assert compared.value.ok and compared.value.layers
    assert set(statuses(pipeline).values()) == {"done"}


def test_compare_is_stale_after_write_runs_again_until_it_runs_again(pipeline):
    run(pipeline, "load", "simplify", "fold_bn", "check", "write", "compare")
    run(pipeline, "write")
    assert pipeline.status("compare") == "stale"
    assert "write #2" in pipeline.why_stale("compare")
    assert pipeline.run("compare").inputs == ("load #1", "write #2")
    assert pipeline.status("compare") == "done"


def test_an_earlier_rerun_makes_every_later_step_stale_and_running_compare_alone_does_not_fix_it(pipeline):
    run(pipeline, "load", "simplify", "fold_bn", "check", "write", "compare")
    run(pipeline, "simplify")
    assert statuses(pipeline) == {
        "load": "done",
        "simplify": "done",
        "fold_bn": "stale",
        "check": "stale",
        "write": "stale",
        "compare": "stale",
    }
    # compare would read the same (stale) written files: it stays stale
    run(pipeline, "compare")
    assert pipeline.status("compare") == "stale" and pipeline.why_stale("compare") == "write #1 is stale"
    run(pipeline, "fold_bn", "check", "write", "compare")
    assert set(statuses(pipeline).values()) == {"done"}


def test_switching_a_step_off_makes_the_steps_that_read_it_stale(pipeline):
    run(pipeline, "load", "simplify", "fold_bn", "check", "write")
    pipeline.enabled["fold_bn"] = False
    assert pipeline.status("check") == "stale" and pipeline.status("write") == "stale"
    assert pipeline.why_stale("write") == "made from fold_bn #1; would now read simplify #1"
    assert pipeline.run("write").made_from == "simplify #1"


def test_changing_the_options_makes_the_target_steps_stale(pipeline):
    run(pipeline, "load", "check", "write", "compare")
    pipeline.options = {"name": "renamed"}
    assert [pipeline.status(step) for step in ("load", "check", "write", "compare")] == [
        "done",
        "stale",
        "stale",
        "stale",
    ]
    assert pipeline.why_stale("check") == "the target or its options changed"
