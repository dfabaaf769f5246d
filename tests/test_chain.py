"""The conversion chain: ``convert`` end to end, driven step by step, and the rule that
no step changes what it reads — checked on every step, not promised."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx_ir as ir
import pytest
import torch

import workbench as wb
from workbench.chain import STEPS, Chain, StepContractError, StepRun
from workbench.errors import InputError, UnsupportedError
from workbench.graph import provenance
from workbench.runners import OnnxRuntimeRunner
from workbench.samples import resnet_tiny
from workbench.steps.check import check
from workbench.steps.compare import compare
from workbench.steps.fold_bn import fold_bn
from workbench.steps.map_names import map_names
from workbench.steps.simplify import simplify
from workbench.writers import write


class ConvBnRelu(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.relu = torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def conv_bn_relu(path: Path, extra_op: str | None = None) -> Path:
    """Conv -> BatchNorm -> ReLU exported from PyTorch as an ONNX file, optionally
    followed by one more node of ``extra_op`` (an op no writer knows, say)."""
    torch.manual_seed(0)
    module = ConvBnRelu().eval()
    with torch.no_grad():
        module.bn.running_mean.uniform_(-0.1, 0.1)
        module.bn.running_var.uniform_(0.5, 1.5)
    model = wb.export(module, np.zeros((1, 3, 8, 8), np.float32)).ir
    if extra_op:
        node = ir.node(extra_op, [model.graph.outputs[0]], name="extra")
        node.outputs[0].name, node.outputs[0].shape = "extra_out", model.graph.outputs[0].shape
        node.outputs[0].type = model.graph.outputs[0].type
        provenance.set_sources(node, ["extra"])
        model.graph.append(node)
        model.graph.outputs[0] = node.outputs[0]
    ir.save(model, path)
    return path


def test_convert_writes_verified_caffe(tmp_path) -> None:
    source = conv_bn_relu(tmp_path / "net.onnx")
    chain = wb.convert(source, "caffe", tmp_path / "out", fold_bn=True)
    assert chain.ok and [run.step for run in chain.history] == list(STEPS)
    assert chain.model.census().get("BatchNormalization", 0) == 0
    assert chain.comparison.candidate == "net.prototxt + net.caffemodel (opencv)"
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    net = cv2.dnn.readNetFromCaffe(str(tmp_path / "out" / "net.prototxt"), str(tmp_path / "out" / "net.caffemodel"))
    net.setInput(x)
    (expected,) = OnnxRuntimeRunner(source).run([x]).values()
    # OpenCV DNN on the written, BatchNorm-folded files vs onnxruntime on the source: atol 1e-5
    np.testing.assert_allclose(net.forward(), expected, atol=1e-5)
    report = chain.to_report()
    assert [step["step"] for step in report["steps"]] == ["simplify", "fold_bn", "check", "write caffe"]
    assert report["name_map"]["conv"] == ["conv", "bn"] and report["comparison"]["ok"] is True


def test_convert_raises_the_first_error_and_writes_nothing(tmp_path) -> None:
    source = conv_bn_relu(tmp_path / "odd.onnx", extra_op="Frobnicate")
    with pytest.raises(UnsupportedError, match="Frobnicate"):
        wb.convert(source, "caffe", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_steps_run_one_at_a_time_and_a_rerun_makes_later_steps_stale(tmp_path) -> None:
    chain = Chain(conv_bn_relu(tmp_path / "net.onnx"), "onnx", tmp_path / "out", fold_bn=True)
    assert chain.missing_before("simplify") == "load" and chain.missing_before("verify") == "write"
    with pytest.raises(InputError, match="needs load"):
        chain.run("simplify")
    for step in ("load", "simplify", "fold_bn"):
        assert chain.run(step).ok, step
    again = chain.run("simplify")
    assert again.label == "simplify #2" and chain.status("fold_bn") == "stale"
    assert chain.run("fold_bn").made_from == "simplify #2"
    assert [run.label for run in chain.comparable()] == [
        "load #1",
        "simplify #1",
        "fold_bn #1",
        "simplify #2",
        "fold_bn #2",
    ]
    # any two kept artifacts compare: the folded model against the loaded one, layer by layer
    assert chain.compare("load #1", "fold_bn #2").ok
    assert chain.pending() == ["check", "write", "verify"]
    assert all(run.ok for run in chain.run_all())
    assert chain.current["verify"].made_from == "write #1" and chain.ok


def test_errors_are_kept_in_the_run_and_switched_off_steps_are_passed_over(tmp_path) -> None:
    chain = Chain(tmp_path / "missing.onnx", "onnx", tmp_path / "out")
    (run,) = chain.run_all()
    assert isinstance(run, StepRun) and chain.status("load") == "failed" and "no such file" in str(run.error)
    chain = Chain(conv_bn_relu(tmp_path / "odd.onnx", "Frobnicate"), "onnx", tmp_path / "out", simplify=False)
    assert chain.status("simplify") == "skipped"
    with pytest.raises(InputError, match="switched off"):
        chain.run("simplify")
    ran = chain.run_all()
    assert [run.step for run in ran] == ["load", "check", "write"]
    assert not ran[-1].ok and "Frobnicate" in str(ran[-1].error)  # write refuses what check found


def test_a_step_that_changes_its_input_is_caught(tmp_path) -> None:
    chain = Chain(conv_bn_relu(tmp_path / "net.onnx"), "onnx", tmp_path / "out")
    chain.run("load")

    def careless(read: StepRun):
        model = read.value
        next(iter(model.graph)).metadata_props["workbench.source"] = '["changed"]'
        return model, []

    def reweighting(read: StepRun):
        weight = read.value.graph.initializers["conv.weight"]
        weight.const_value = ir.tensor(weight.const_value.numpy() * 2, name=weight.name)
        return read.value, []

    for step in (careless, reweighting):
        chain._functions["simplify"] = step
        with pytest.raises(StepContractError, match="simplify changed the model it read"):
            chain.run("simplify")
        chain.run("load")  # a fresh, unchanged model for the next step


# ---------------------------------------------------------------- no step changes its input


def snapshot(model: wb.Model) -> dict:
    """What must not change: the graph as serialized, every initializer's bytes, every
    node's metadata, the model's metadata, source and reports."""
    return {
        "graph": ir.to_proto(model.ir).SerializeToString(deterministic=True),
        "initializers": {name: value.const_value.numpy().tobytes() for name, value in model.graph.initializers.items()},
        "node_metadata": [dict(node.metadata_props) for node in model.graph],
        "model_metadata": dict(model.ir.metadata_props),
        "source": model.source,
        "reports": list(model.reports),
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A PyTorch-exported network (BatchNorm, exporter metadata) as an ONNX file."""
    model = wb.export(resnet_tiny(), np.zeros(resnet_tiny.input_shape, np.float32))
    path = tmp_path_factory.mktemp("source") / "resnet_tiny.onnx"
    ir.save(model.ir, path)
    return path


# each step called on a loaded model (simplify, fold_bn) or on a simplified one (the rest)
STEP_CALLS = {
    "simplify": (False, lambda model, out: simplify(model)),
    "fold_bn": (False, lambda model, out: fold_bn(model)),
    "check": (True, lambda model, out: check(model, "caffe")),
    "write-caffe": (True, lambda model, out: write(model, out, "caffe")),
    "write-pytorch": (True, lambda model, out: write(model, out, "pytorch")),
    "compare": (True, lambda model, out: compare(model, model.copy(), per_layer=True)),
    "map_names": (True, lambda model, out: map_names(model, model.copy())),
}


@pytest.mark.parametrize("step", list(STEP_CALLS), ids=list(STEP_CALLS))
def test_no_step_changes_its_input(step, source, tmp_path) -> None:
    simplified, call = STEP_CALLS[step]
    model = simplify(wb.load(source)) if simplified else wb.load(source)
    before = snapshot(model)
    call(model, tmp_path)
    assert snapshot(model) == before


def test_no_step_of_the_chain_changes_what_it_reads(source, tmp_path) -> None:
    """Every step of a whole chain, each one's input snapshotted before it runs: the
    loaded files, then each model."""
    files_before = source.read_bytes()
    chain = Chain(source, "caffe", tmp_path / "out", fold_bn=True)
    for step in STEPS:
        read = chain.current["write"] if step == "verify" else chain.model_before(step)
        model = chain.source_model if step == "verify" else read.value if read is not None else None
        before = snapshot(model) if model is not None else None
        assert chain.run(step).ok, step
        assert model is None or snapshot(model) == before, step
    assert source.read_bytes() == files_before
    assert chain.ok
