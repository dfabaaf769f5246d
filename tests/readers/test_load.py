"""load() recognises sources by their files and explains what it cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
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


def _open_batch_onnx(path) -> None:
    """x[batch, 3, 8, 8] -> Conv -> Relu, the batch left symbolic."""
    from workbench.graph.builder import GraphBuilder

    rng = np.random.default_rng(0)
    builder = GraphBuilder("open_batch")
    x = builder.add_input("x", ["batch", 3, 8, 8])
    weight = builder.add_initializer("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    (conv,) = builder.add_node("Conv", [x, weight], {"pads": [1, 1, 1, 1]}, sources=["conv"])
    (out,) = builder.add_node("Relu", [conv], sources=["relu"])
    out.type, out.shape = ir.TensorType(ir.DataType.FLOAT), ir.Shape(["batch", 4, 8, 8])
    builder.set_outputs([out])
    ir.save(builder.build(), path)


def test_input_shape_fixes_an_onnx_batch(tmp_path):
    path = tmp_path / "open_batch.onnx"
    _open_batch_onnx(path)
    assert not isinstance(load(path).input_shapes()["x"][0], int)  # the batch stays open without input_shape
    model = load(path, input_shape=(2, 3, 8, 8))
    assert model.input_shapes() == {"x": (2, 3, 8, 8)}
    assert load(path, input_shape={"x": (5, 3, 8, 8)}).input_shapes() == {"x": (5, 3, 8, 8)}
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(path).run([x]).values()
    (actual,) = OnnxRuntimeRunner(model).run([x]).values()
    # onnxruntime on the file as it is vs the loaded model with its batch fixed: atol 1e-6
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    with pytest.raises(InputError, match="does not fit input x"):
        load(path, input_shape=(2, 3, 9, 9))
    with pytest.raises(InputError, match="does not have"):
        load(path, input_shape={"y": (1, 3, 8, 8)})


def _opencv_caffe(prototxt, caffemodel, x: np.ndarray) -> np.ndarray:
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(x)
    return net.forward()


def test_input_shape_sets_a_caffe_input(tmp_path):
    """A Caffe-zoo net read with another batch, and a prototxt that declares its input
    without a shape, both against the original files in OpenCV DNN."""
    data = Path(__file__).resolve().parents[2] / "data" / "caffe"
    prototxt, caffemodel = data / "zoo_tiny.prototxt", data / "zoo_tiny.caffemodel"
    model = load(prototxt, caffemodel, input_shape=(2, 3, 32, 32))
    assert model.input_shapes() == {"data": (2, 3, 32, 32)}
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    (actual,) = OnnxRuntimeRunner(model).run([x]).values()
    # the graph in onnxruntime vs OpenCV DNN on the original files, float32: atol 1e-4 + rtol 1e-4
    np.testing.assert_allclose(actual, _opencv_caffe(prototxt, caffemodel, x), atol=1e-4, rtol=1e-4)

    shapeless = tmp_path / "shapeless.prototxt"
    shapeless.write_text("\n".join(line for line in prototxt.read_text().splitlines() if "input_dim" not in line))
    with pytest.raises(InputError):
        load(shapeless, caffemodel)
    model = load(shapeless, caffemodel, input_shape=(1, 3, 32, 32))
    assert model.input_shapes() == {"data": (1, 3, 32, 32)}
    (actual,) = OnnxRuntimeRunner(model).run([x[:1]]).values()
    np.testing.assert_allclose(actual, _opencv_caffe(prototxt, caffemodel, x[:1]), atol=1e-4, rtol=1e-4)


def test_input_shape_sets_an_mxnet_input():
    from workbench.runners import RecordedRunner

    data = Path(__file__).resolve().parents[2] / "data" / "mxnet"
    recording = RecordedRunner(data / "op_zoo-reference.npz")
    shape = recording.inputs["data"].shape
    model = load(data / "op_zoo-symbol.json", data / "op_zoo-0000.params", input_shape=shape)
    assert model.input_shapes() == {"data": tuple(shape)}
    (actual,) = OnnxRuntimeRunner(model).run([recording.inputs["data"]]).values()
    (expected,) = recording.run().values()
    # onnxruntime vs the outputs recorded with MXNet 1.9.1, float32: atol 1e-4 + rtol 1e-3
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-3)


def test_an_input_shape_the_weights_cannot_take_names_the_node():
    """mobilefacenet_tiny flattens 28x28 features into its first FullyConnected layer:
    at 112x112 that layer's weights no longer fit, and the error names it at load,
    not later as a writer's or onnxsim's complaint. Its open batch still changes."""
    data = Path(__file__).resolve().parents[2] / "data" / "mxnet"
    files = (data / "mobilefacenet_tiny-symbol.json", data / "mobilefacenet_tiny-0000.params")
    with pytest.raises(InputError, match="does not fit the model's weights") as raised:
        load(*files, input_shape=(1, 3, 112, 112))
    assert "pre_fc1" in str(raised.value.found)
    assert load(*files, input_shape=(2, 3, 28, 28)).input_shapes() == {"data": (2, 3, 28, 28)}


def test_weights_belong_to_pytorch_factories_only(tmp_path):
    path = tmp_path / "open_batch.onnx"
    _open_batch_onnx(path)
    with pytest.raises(InputError, match="not a PyTorch factory"):
        load(path, weights=tmp_path / "w.pt")
