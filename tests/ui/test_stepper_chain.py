"""The chain as the pipeline stepper drives it (fold_bn on, verify layer by layer):
step order, skipping, stale steps after a re-run or a changed setting, artifacts
kept for comparison, errors kept instead of raised."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from workbench import InputError
from workbench.chain import STEPS, Chain


@pytest.fixture
def source(conv_bn_relu_file) -> str:
    return str(conv_bn_relu_file)


@pytest.fixture
def pipeline(source, tmp_path) -> Chain:
    return Chain(source, "onnx", tmp_path / "out", fold_bn=True, per_layer=True)


def test_only_load_can_run_first(pipeline):
    assert [pipeline.missing_before(step) for step in ("load", "simplify", "write", "verify")] == [
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
    pipeline = Chain(str(tmp_path / "missing.onnx"), "onnx", tmp_path / "out")
    ran = pipeline.run_all()
    assert [a.label for a in ran] == ["load #1"]
    assert pipeline.status("load") == "failed"
    assert "no such file" in str(ran[0].error)
    assert pipeline.comparable() == []


def test_only_optional_steps_can_be_switched_off(source, tmp_path):
    with pytest.raises(InputError, match="check cannot be switched off"):
        Chain(source, "onnx", tmp_path).switch("check", False)


def run(pipeline: Chain, *steps: str) -> None:
    for step in steps:
        assert pipeline.run(step).ok, step


def statuses(pipeline: Chain) -> dict[str, str]:
    return {step: pipeline.status(step) for step in STEPS}


def test_verify_reads_the_loaded_source_and_the_written_files(pipeline):
    run(pipeline, "load", "simplify", "fold_bn", "check", "write", "verify")
    compared = pipeline.current["verify"]
    assert compared.inputs == ("load #1", "write #1")
    # the folded ONNX file in onnxruntime against the source graph in onnxruntime
    assert compared.value.ok and compared.value.layers
    assert set(statuses(pipeline).values()) == {"done"}


def test_verify_is_stale_after_write_runs_again_until_it_runs_again(pipeline):
    run(pipeline, "load", "simplify", "fold_bn", "check", "write", "verify")
    run(pipeline, "write")
    assert pipeline.status("verify") == "stale"
    assert "write #2" in pipeline.why_stale("verify")
    assert pipeline.run("verify").inputs == ("load #1", "write #2")
    assert pipeline.status("verify") == "done"


def test_an_earlier_rerun_makes_every_later_step_stale_and_running_verify_alone_does_not_fix_it(pipeline):
    run(pipeline, "load", "simplify", "fold_bn", "check", "write", "verify")
    run(pipeline, "simplify")
    assert statuses(pipeline) == {
        "load": "done",
        "simplify": "done",
        "fold_bn": "stale",
        "check": "stale",
        "write": "stale",
        "verify": "stale",
    }
    # verify would read the same (stale) written files: it stays stale
    run(pipeline, "verify")
    assert pipeline.status("verify") == "stale" and pipeline.why_stale("verify") == "write #1 is stale"
    run(pipeline, "fold_bn", "check", "write", "verify")
    assert set(statuses(pipeline).values()) == {"done"}


def test_switching_a_step_off_makes_the_steps_that_read_it_stale(pipeline):
    run(pipeline, "load", "simplify", "fold_bn", "check", "write")
    pipeline.enabled["fold_bn"] = False
    assert pipeline.status("check") == "stale" and pipeline.status("write") == "stale"
    assert pipeline.why_stale("write") == "made from fold_bn #1; would now read simplify #1"
    assert pipeline.run("write").made_from == "simplify #1"


def test_changing_the_options_makes_the_target_steps_stale(pipeline):
    run(pipeline, "load", "check", "write", "verify")
    pipeline.options = {"name": "renamed"}
    assert [pipeline.status(step) for step in ("load", "check", "write", "verify")] == [
        "done",
        "stale",
        "stale",
        "stale",
    ]
    assert pipeline.why_stale("check") == "the target or its options changed"


def test_a_changed_setting_of_verify_makes_verify_alone_stale(pipeline):
    run(pipeline, "load", "simplify", "fold_bn", "check", "write", "verify")
    pipeline.per_layer = False
    assert statuses(pipeline)["write"] == "done" and statuses(pipeline)["verify"] == "stale"
    assert pipeline.why_stale("verify") == "the per-layer setting changed"
    outputs_only = pipeline.run("verify").value
    assert outputs_only.ok and outputs_only.outputs and not outputs_only.layers
    pipeline.inputs = [np.ones((1, 3, 8, 8), np.float32)]
    assert pipeline.why_stale("verify") == "the inputs changed"
    pipeline.atol = 1e-3
    assert pipeline.why_stale("verify") == "the tolerances and the inputs changed"


def test_a_new_input_shape_makes_the_whole_chain_stale_and_verify_follows_it(tmp_path):
    chain = Chain("workbench.samples:sample_net", "onnx", tmp_path / "out", fold_bn=True, per_layer=True)
    assert all(run.ok for run in chain.run_all())
    chain.input_shape = (2, 3, 32, 32)  # the factory's own is (1, 3, 32, 32)
    assert set(statuses(chain).values()) == {"stale"}
    assert chain.why_stale("load") == "the source or its input shape changed"
    assert chain.why_stale("simplify") == "load #1 is stale"
    assert all(run.ok for run in chain.run_all())
    assert set(statuses(chain).values()) == {"done"}
    # verify ran on inputs of the new shape: the written file (batch 2) in onnxruntime
    # against the PyTorch module, every layer within atol 1e-4, rtol 1e-3
    assert chain.current["load"].value.input_shapes() == {"x": (2, 3, 32, 32)}
    assert chain.ok and chain.comparison.layers


def test_a_pytorch_source_is_verified_layer_by_layer_against_the_module_itself(tmp_path):
    chain = Chain("workbench.samples:sample_net", "caffe", tmp_path / "out", fold_bn=True, per_layer=True)
    assert all(run.ok for run in chain.run_all())
    comparison = chain.comparison
    # OpenCV DNN on the written Caffe files against PyTorch running the module (forward hooks),
    # every layer within the default tolerance (atol 1e-4, rtol 1e-3)
    assert comparison.reference == "workbench.samples:sample_net (pytorch)" and "(opencv)" in comparison.candidate
    assert comparison.ok and len(comparison.layers) >= 10 and comparison.first_divergence is None
