"""ONNX files as older exporters write them (IR 3: every initializer also a graph
input), and graphs that take op parameters as inputs: what is fed at run time,
and with which values, checked by running onnxruntime and the CLI on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from workbench import WorkbenchError, example_inputs
from workbench.cli import main
from workbench.readers import read_onnx
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner

RNG = np.random.default_rng(0)


def _ir3_conv(path: Path) -> Path:
    """Conv + Relu in IR 3 form: the weight and bias listed among the graph inputs."""
    weight = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = RNG.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "ir3",
        [
            helper.make_tensor_value_info("w", TensorProto.FLOAT, weight.shape),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 6, 6)),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, bias.shape),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 4, 6, 6))],
        [onnx.numpy_helper.from_array(weight, "w"), onnx.numpy_helper.from_array(bias, "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    proto.ir_version = 3
    onnx.save(proto, path)
    return path


def test_initializers_listed_as_inputs_are_weights_not_run_time_inputs(tmp_path: Path) -> None:
    path = _ir3_conv(tmp_path / "ir3.onnx")
    model = read_onnx(path)
    assert [value.name for value in model.graph.inputs] == ["x"]
    assert model.ir.ir_version == 4
    inputs = example_inputs(model)
    assert list(inputs) == ["x"]
    # the file itself, run as it is: onnxruntime takes only the data input
    from_file = OnnxRuntimeRunner(path)
    assert from_file.input_names == ["x"]
    (expected,) = from_file.run(inputs).values()
    (got,) = OnnxRuntimeRunner(model).run(inputs).values()
    # the same graph in the same runtime: exact
    np.testing.assert_array_equal(got, expected)


def test_an_ir3_file_converts_and_verifies_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _ir3_conv(tmp_path / "ir3.onnx")
    code = main(["convert", str(path), "--to", "pytorch", "-o", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    assert "def forward(self, x):" in (tmp_path / "out" / "model.py").read_text()


def _one_node(path: Path, node: onnx.NodeProto, inputs: list[tuple[str, int, tuple[int, ...]]], opset: int) -> Path:
    graph = helper.make_graph(
        [node],
        "parameters",
        [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    onnx.save(proto, path)
    return path


def test_dropout_parameters_get_values_dropout_accepts(tmp_path: Path) -> None:
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y"])
    inputs = [("x", TensorProto.FLOAT, (3, 4)), ("ratio", TensorProto.FLOAT, ()), ("training", TensorProto.BOOL, ())]
    model = read_onnx(_one_node(tmp_path / "dropout.onnx", node, inputs, 13))
    fed = example_inputs(model)
    assert 0 <= float(fed["ratio"]) < 1
    assert fed["training"].dtype == np.bool_ and not fed["training"]
    (y,) = OnnxRuntimeRunner(model).run(fed).values()
    # inference-mode Dropout in onnxruntime is the identity
    np.testing.assert_array_equal(y, fed["x"])


def test_resize_and_batchnorm_parameters_are_valid(tmp_path: Path) -> None:
    resize = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="linear")
    inputs = [
        ("x", TensorProto.FLOAT, (1, 2, 3, 3)),
        ("roi", TensorProto.FLOAT, (8,)),
        ("scales", TensorProto.FLOAT, (4,)),
    ]
    fed = example_inputs(read_onnx(_one_node(tmp_path / "resize.onnx", resize, inputs, 19)))
    assert fed["scales"].tolist() == [1.0, 1.0, 2.0, 2.0]
    assert fed["roi"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    axes = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], axes=[3, 2])
    inputs = [("x", TensorProto.FLOAT, (1, 2, 3, 5)), ("sizes", TensorProto.INT64, (2,))]
    model = read_onnx(_one_node(tmp_path / "sizes.onnx", axes, inputs, 19))
    fed = example_inputs(model)
    assert fed["sizes"].dtype == np.int64 and fed["sizes"].tolist() == [10, 6]
    (y,) = OnnxRuntimeRunner(model).run(fed).values()
    assert y.shape == (1, 2, 6, 10)
    norm = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])
    inputs = [("x", TensorProto.FLOAT, (2, 3, 4)), *[(n, TensorProto.FLOAT, (3,)) for n in "sbmv"]]
    fed = example_inputs(read_onnx(_one_node(tmp_path / "bn.onnx", norm, inputs, 15)))
    assert (fed["v"] > 0).all()


def test_onnxruntime_refusing_inputs_is_a_workbench_error(tmp_path: Path) -> None:
    runner = OnnxRuntimeRunner(_ir3_conv(tmp_path / "ir3.onnx"))
    with pytest.raises(WorkbenchError, match="onnxruntime could not run the model"):
        runner.run({"x": np.zeros((1, 5, 6, 6), np.float32)})
