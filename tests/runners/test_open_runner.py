"""open_runner: one runner for every kind of artifact a chain produces."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
import torch

import workbench as wb
from workbench.errors import InputError
from workbench.runners import OnnxRuntimeRunner, RecordedRunner, SourcedRunner, TorchRunner, open_runner
from workbench.samples import resnet_tiny

DATA = Path(__file__).resolve().parents[2] / "data" / "mxnet"


@pytest.fixture(scope="module")
def exported():
    module = resnet_tiny()
    x = np.random.default_rng(0).standard_normal(resnet_tiny.input_shape).astype(np.float32)
    return module, wb.export(module, x), x


def test_model_file_and_recording(exported, tmp_path) -> None:
    _, model, _ = exported
    assert isinstance(open_runner(model), OnnxRuntimeRunner)
    ir.save(model.ir, tmp_path / "net.onnx")
    assert isinstance(open_runner(tmp_path / "net.onnx"), OnnxRuntimeRunner)
    assert isinstance(open_runner(str(DATA / "op_zoo-reference.npz")), RecordedRunner)
    runner = open_runner(model)
    assert open_runner(runner) is runner


def test_factory_with_weights(exported, tmp_path) -> None:
    module, _, x = exported
    weights = tmp_path / "w.pt"
    torch.save(module.state_dict(), weights)
    runner = open_runner("workbench.samples:resnet_tiny", str(weights))
    assert isinstance(runner, TorchRunner)
    np.testing.assert_array_equal(
        runner.run([x])["output"], TorchRunner(module).run([x])["output"]
    )  # same module: exact


def test_generated_pytorch_folder(tmp_path) -> None:
    (tmp_path / "model.py").write_text(
        textwrap.dedent(
            """
            import torch

            class Model(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = torch.nn.Linear(4, 2)

                def forward(self, x):
                    return self.fc(x)
            """
        )
    )
    torch.manual_seed(0)
    state = {"fc.weight": torch.randn(2, 4), "fc.bias": torch.randn(2)}
    torch.save(state, tmp_path / "weights.pt")
    runner = open_runner(tmp_path)
    x = np.ones((1, 4), np.float32)
    expected = (state["fc.weight"] @ torch.ones(4) + state["fc.bias"]).numpy()
    np.testing.assert_allclose(runner.run([x])["output"][0], expected, atol=1e-6)  # PyTorch vs PyTorch: atol 1e-6


def test_caffe_files_carry_the_writer_provenance(exported, tmp_path) -> None:
    from workbench.steps.fold_bn import fold_bn
    from workbench.steps.simplify import simplify
    from workbench.writers.caffe import write_caffe

    _, model, x = exported
    written = write_caffe(fold_bn(simplify(model)), tmp_path)
    for runner in (open_runner(written), open_runner(written.path(".prototxt"), written.path(".caffemodel"))):
        assert isinstance(runner, SourcedRunner) and runner.name == "opencv"
        assert runner.layer_sources["stem.0"] == ("stem.0", "stem.1")
        assert runner.layer_names([x])[:2] == ["x", "stem.0"]


@pytest.mark.parametrize(
    "sources",
    [("model.tflite",), ("a.prototxt",), ("no_such_module:factory",)],
    ids=["unknown-suffix", "prototxt-alone", "bad-factory"],
)
def test_bad_sources_raise_input_error(sources) -> None:
    with pytest.raises(InputError):
        open_runner(*sources)
