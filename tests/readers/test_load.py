"""load() recognises sources by their files and explains what it cannot read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench import InputError, WorkbenchError, example_inputs, export, load
from workbench.readers import detect_format
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner


@pytest.mark.parametrize(
    "files, expected",
    [
        (["m.onnx"], "onnx"),
        (["deploy.prototxt", "net.caffemodel"], "caffe"),
        (["net.caffemodel", "deploy.prototxt"], "caffe"),
        (["r50-symbol.json", "r50-0000.params"], "mxnet"),
        (["a.msnhnet", "a.msnhbin"], "msnhnet"),
        (["workbench.samples:resnet_tiny"], "pytorch"),
    ],
    ids=["onnx", "caffe", "caffe-reversed", "mxnet", "msnhnet", "pytorch"],
)
def test_detect_format(files, expected):
    assert detect_format(files) == expected


@pytest.mark.parametrize(
    "files",
    [["model.pb"], ["deploy.prototxt"], ["a.onnx", "b.onnx"], []],
    ids=["pb", "lone-prototxt", "two-onnx", "none"],
)
def test_unrecognised_sources_say_what_fits(files):
    with pytest.raises(InputError) as error:
        detect_format(files)
    assert "expected" in str(error.value) and "prototxt" in str(error.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load(tmp_path / "absent.onnx")


def test_corrupt_onnx_is_an_input_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07this is not a model")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        load(path)
    assert path.read_bytes() == b"\x08\x07this is not a model"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nomodule_xyz:factory", "cannot import"),
        ("workbench.samples:absent", "cannot import"),
        ("workbench.samples", "cannot tell"),
    ],
    ids=["no-module", "no-factory", "no-colon"],
)
def test_bad_pytorch_specs(spec, message):
    with pytest.raises(WorkbenchError, match=message):
        load(spec, input_shape=(1, 3, 8, 8))


def test_weights_are_loaded_without_executing_pickles(tmp_path):
    from workbench import samples

    module = samples.mtcnn_tiny()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.01)
    weights = tmp_path / "w.pt"
    torch.save(module.state_dict(), weights)
    model = load("workbench.samples:mtcnn_tiny", weights=weights)
    inputs = example_inputs(model)
    with torch.no_grad():
        expected = module(torch.from_numpy(inputs["x"]))[1].numpy()
    got = list(OnnxRuntimeRunner(model).run(inputs).values())[1]
    # exported graph in onnxruntime vs the PyTorch module with the same weights: atol 1e-5, rtol 1e-5
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert not np.allclose(got, samples.mtcnn_tiny()(torch.from_numpy(inputs["x"]))[1].detach().numpy())

    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, evil)
    with pytest.raises(InputError, match="cannot read weights"):
        load("workbench.samples:mtcnn_tiny", weights=evil)


def test_export_multi_input_module():
    class TwoInputs(torch.nn.Module):
        def forward(self, a, b):
            return torch.relu(a) * b, a - b

    a = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    model = export(TwoInputs(), [a, b], input_names=["a", "b"])
    assert model.input_names == ["a", "b"]
    outputs = list(OnnxRuntimeRunner(model).run({"a": a, "b": b}).values())
    # onnxruntime vs NumPy, float32: atol 1e-6
    np.testing.assert_allclose(outputs[0], np.maximum(a, 0) * b, atol=1e-6)
    np.testing.assert_allclose(outputs[1], a - b, atol=1e-6)
