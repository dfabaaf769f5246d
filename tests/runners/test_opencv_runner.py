"""OpenCV DNN runner: final outputs by top name, every layer's output by layer name,
in-place layers and multi-top layers included, checked against onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from workbench import InputError, WorkbenchError
from workbench.formats import caffe_pb2
from workbench.graph import Model, SourceInfo
from workbench.readers.onnx_reader import annotate_provenance
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.runners.opencv_runner import OpenCVCaffeRunner
from workbench.writers.caffe import write_caffe

RNG = np.random.default_rng(0)
PARAMS = {
    "w1": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32),
    "b1": RNG.standard_normal(4).astype(np.float32),
    "w2": RNG.standard_normal((6, 4, 1, 1)).astype(np.float32),
    "w3": RNG.standard_normal((4, 2, 1, 1)).astype(np.float32),
    "sizes": np.array([2, 4]),
}


def _model(outputs: list[str]) -> Model:
    """conv1 -> relu1 -> conv2 -> split -> (a -> relu2 -> conv3, b -> sigmoid);
    ``outputs`` picks the graph outputs. ``b`` is free after the sigmoid, so OpenCV
    may reuse its memory for conv3."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("Conv", ["r", "w2"], ["c2"], name="conv2"),
        helper.make_node("Split", ["c2", "sizes"], ["a", "b"], name="split", axis=1),
        helper.make_node("Sigmoid", ["b"], ["sb"], name="sigmoid"),
        helper.make_node("Relu", ["a"], ["ra"], name="relu2"),
        helper.make_node("Conv", ["ra", "w3"], ["c3"], name="conv3"),
    ]
    proto = helper.make_model(
        helper.make_graph(
            nodes,
            "runner_test",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 5, 5))],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
            [onnx.numpy_helper.from_array(array, name) for name, array in PARAMS.items()],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    proto.ir_version = 8
    model = ir.from_proto(proto)
    annotate_provenance(model)
    return Model(model, SourceInfo("onnx", (), "runner_test"))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    model = _model(["sb", "c3"])
    files = write_caffe(model, tmp_path_factory.mktemp("caffe"))
    runner = OpenCVCaffeRunner(files.path(".prototxt"), files.path(".caffemodel"))
    x = RNG.standard_normal((1, 3, 5, 5)).astype(np.float32)
    # every intermediate value, from onnxruntime on the same graph with more outputs
    reference = OnnxRuntimeRunner(_model(["c", "r", "c2", "a", "b", "sb", "ra", "c3"])).run({"x": x})
    return files, runner, x, reference


def test_layers_run_in_place_and_keep_their_own_outputs(written) -> None:
    files, runner, x, reference = written
    layers = {layer["name"]: layer for layer in files.details["layers"]}
    assert layers["relu1"]["top"] == layers["relu1"]["bottom"] == ["conv1"]  # written in place
    outputs = list(runner.run_layers({"x": x}))
    names = ["conv1", "relu1", "conv2", "split_0", "split_1", "sigmoid", "relu2", "conv3"]
    assert [name for name, _ in outputs] == names
    assert runner.layer_names() == [name for name, _ in outputs]
    by_name = dict(outputs)
    for layer, value in zip(names, ["c", "r", "c2", "a", "b", "sb", "ra", "c3"]):
        # OpenCV DNN vs onnxruntime, float32: atol 1e-5
        np.testing.assert_allclose(by_name[layer], reference[value], rtol=1e-5, atol=1e-5, err_msg=layer)
    assert (by_name["conv1"] < 0).any()  # the convolution's output is from before the in-place ReLU


def test_run_gives_final_outputs_by_top_name(written) -> None:
    files, runner, x, reference = written
    assert runner.input_names == ["x"]
    assert sorted(runner.output_names) == sorted(files.details["outputs"].values())
    for outputs in (runner.run({"x": x}), runner.run([x])):
        for value, blob in files.details["outputs"].items():
            np.testing.assert_allclose(outputs[blob], reference[value], rtol=1e-5, atol=1e-5)  # OpenCV vs onnxruntime


def test_tops_consumed_by_silence_are_not_outputs(tmp_path) -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2])
    proto = helper.make_model(
        helper.make_graph(
            [node],
            "pool",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 2, 8, 8))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    proto.ir_version = 8
    model = ir.from_proto(proto)
    annotate_provenance(model)
    files = write_caffe(Model(model, SourceInfo("onnx", (), "pool")), tmp_path)
    runner = OpenCVCaffeRunner(files.path(".prototxt"), files.path(".caffemodel"))
    assert runner.output_names == [files.details["outputs"]["y"]]
    (result,) = runner.run([np.ones((1, 2, 8, 8), np.float32)]).values()
    assert result.shape == (1, 2, 3, 3)


def test_missing_inputs_and_files_are_input_errors(written, tmp_path) -> None:
    files, runner, _, _ = written
    with pytest.raises(InputError, match="inputs missing"):
        runner.run({"data": np.zeros((1, 3, 5, 5), np.float32)})
    with pytest.raises(InputError, match="no such file"):
        OpenCVCaffeRunner(tmp_path / "absent.prototxt", files.path(".caffemodel"))
    broken = tmp_path / "broken.prototxt"
    broken.write_text("layer { name: ")
    with pytest.raises(InputError, match="not a readable Caffe prototxt"):
        OpenCVCaffeRunner(broken, files.path(".caffemodel"))


def test_an_input_opencv_cannot_run_is_one_workbench_error(written) -> None:
    _, runner, _, _ = written
    with pytest.raises(WorkbenchError, match="OpenCV DNN cannot run") as raised:
        runner.run({"x": np.zeros((1, 5, 5, 5), np.float32)})  # 5 channels into a 3-channel convolution
    assert raised.value.found and raised.value.remedy


ZOO = Path(__file__).resolve().parents[2] / "data" / "caffe"


def _blobs(caffemodel: Path, layer: str) -> list[np.ndarray]:
    """A layer's blobs as protobuf parses them (independent of the workbench's reader)."""
    net = caffe_pb2.NetParameter()
    net.ParseFromString(caffemodel.read_bytes())
    entry = next(entry for entry in net.layer if entry.name == layer)
    return [np.array(blob.data, np.float64).reshape(tuple(blob.shape.dim) or (-1,)) for blob in entry.blobs]


@pytest.mark.parametrize(
    ("header", "shapes"),
    [
        ('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n', [(1, 3, 8, 8)]),
        ('input: "data"\ninput_shape { dim: 2 dim: 3 dim: 8 dim: 8 }\n', [(2, 3, 8, 8)]),
        (
            'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n',
            [(1, 3, 4, 4)],
        ),
        ('input: "data"\n', None),
    ],
    ids=["input_dim", "input_shape", "Input layer", "no shape"],
)
def test_input_shapes_declared_in_the_prototxt(header: str, shapes, tmp_path) -> None:
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(header + 'layer { name: "relu" type: "ReLU" bottom: "data" top: "out" }\n')
    caffemodel = tmp_path / "net.caffemodel"
    caffemodel.write_bytes(caffe_pb2.NetParameter(name="net").SerializeToString())
    assert OpenCVCaffeRunner(prototxt, caffemodel).input_shapes() == shapes


def test_layer_constants_from_blobs_and_params() -> None:
    prototxt, caffemodel = ZOO / "zoo_tiny.prototxt", ZOO / "zoo_tiny.caffemodel"
    runner = OpenCVCaffeRunner(prototxt, caffemodel)
    mean, var, factor = _blobs(caffemodel, "conv1/bn")
    gamma, beta = _blobs(caffemodel, "conv1/scale")
    bn = runner.layer_constants("conv1/bn")
    assert bn.op_type == "BatchNormalization" and bn.attributes["epsilon"] == pytest.approx(1e-5)
    # Caffe stores the statistics times the moving-average factor (blob 2)
    np.testing.assert_allclose(bn.arrays["input_mean"], mean / factor[0], rtol=1e-6)
    np.testing.assert_allclose(bn.arrays["input_var"], var / factor[0], rtol=1e-6)
    assert np.all(bn.arrays["scale"] == 1) and np.all(bn.arrays["B"] == 0)  # BatchNorm only normalises
    pair = runner.layer_constants("conv1/scale")  # the Scale after it: the pair as one BatchNormalization
    np.testing.assert_allclose(pair.arrays["scale"], gamma.reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(pair.arrays["B"], beta.reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(pair.arrays["input_var"], bn.arrays["input_var"])
    conv = runner.layer_constants("conv1")
    assert conv.op_type == "Conv"
    np.testing.assert_array_equal(conv.arrays["W"], _blobs(caffemodel, "conv1")[0])
    assert runner.layer_constants("no such layer") is None
