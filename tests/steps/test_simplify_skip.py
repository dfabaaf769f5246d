"""simplify skips onnxsim only when onnxsim would change nothing: for each graph the
result is the one onnxsim gives (compared with onnxsim forced to run), every kind of
rewrite onnxsim makes is seen as work, and large weights go through files."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench import load
from workbench.graph import Model, SourceInfo
from workbench.readers.onnx_reader import annotate_provenance
from workbench.steps import simplify as simplify_module
from workbench.steps.simplify import simplify
from workbench.steps.simplify_work import onnxsim_work

RNG = np.random.default_rng(0)


def _weights(name: str, shape: tuple[int, ...], fill: float | None = None) -> TensorProto:
    array = RNG.standard_normal(shape) if fill is None else np.full(shape, fill)
    return numpy_helper.from_array(array.astype(np.float32), name)


def _conv(x: str, y: str, weight: str = "w", bias: str | None = None) -> onnx.NodeProto:
    inputs = [x, weight] + ([bias] if bias else [])
    return helper.make_node("Conv", inputs, [y], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name=y)


W = _weights("w", (4, 3, 3, 3))
SHAPE = [1, 4, 8, 8]

# name -> (nodes, initializers, output shape, infer shapes first); each graph but the
# last three holds one rewrite among onnxsim's default passes
GRAPHS = {
    "bias-into-conv": (
        [_conv("x", "c"), helper.make_node("Add", ["c", "b"], ["y"])],
        [W, _weights("b", (1, 4, 1, 1))],
        SHAPE,
        True,
    ),
    "x-times-one": (
        [_conv("x", "c"), helper.make_node("Mul", ["c", "one"], ["y"])],
        [W, _weights("one", (1,), 1.0)],
        SHAPE,
        True,
    ),
    "relu-relu": (
        [_conv("x", "c"), helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
        [W],
        SHAPE,
        True,
    ),
    "concat-concat": (
        [
            _conv("x", "c"),
            helper.make_node("Concat", ["c", "x"], ["k"], axis=1),
            helper.make_node("Concat", ["k", "x"], ["y"], axis=1),
        ],
        [W],
        [1, 10, 8, 8],
        True,
    ),
    "flatten-flatten": (
        [
            helper.make_node("GlobalAveragePool", ["x"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Flatten", ["f"], ["y"]),
        ],
        [],
        [1, 3],
        True,
    ),
    "softmax-of-one": (
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Softmax", ["p"], ["y"], axis=2)],
        [],
        [1, 3, 1, 1],
        True,
    ),
    "mean-of-one": (
        [
            helper.make_node("GlobalAveragePool", ["x"], ["p"]),
            helper.make_node("ReduceMean", ["p", "axes"], ["y"], keepdims=1),
        ],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")],
        [1, 3, 1, 1],
        True,
    ),
    "same-node-twice": (
        [_conv("x", "c1"), _conv("x", "c2"), helper.make_node("Add", ["c1", "c2"], ["y"])],
        [W],
        SHAPE,
        True,
    ),
    "equal-weights": (
        [_conv("x", "c1"), _conv("x", "c2", "w2"), helper.make_node("Add", ["c1", "c2"], ["y"])],
        [W, numpy_helper.from_array(numpy_helper.to_array(W), "w2")],
        SHAPE,
        True,
    ),
    "open-batch": ([_conv("x", "c"), helper.make_node("Relu", ["c"], ["y"])], [W], ["N", 4, 8, 8], True),
    # nothing for onnxsim: shapes inferred by simplify itself; small equal biases merged
    "plain-cnn": (
        [
            _conv("x", "c", "w", "b"),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1),
            helper.make_node("Softmax", ["g"], ["y"], axis=1),
        ],
        [W, _weights("b", (4,)), _weights("fw", (10, 64)), _weights("fb", (10,))],
        [1, 10],
        False,
    ),
    "residual": (
        [
            _conv("x", "c", "w", "b"),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Conv", ["r", "w1", "b1"], ["c1"], kernel_shape=[1, 1]),
            helper.make_node("Add", ["c1", "c"], ["y"]),
        ],
        [W, _weights("b", (4,), 0.5), _weights("w1", (4, 4, 1, 1)), _weights("b1", (4,), 0.5)],
        SHAPE,
        True,
    ),
    "conv-only": ([_conv("x", "y")], [W], SHAPE, True),
}
SETTLED = ("plain-cnn", "residual", "conv-only")


def _model(name: str) -> Model:
    nodes, initializers, shape, infer = GRAPHS[name]
    for index, node in enumerate(nodes):
        node.name = node.name or f"{node.op_type}_{index}"
    batch = shape[0] if isinstance(shape[0], str) else 1
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model = ir.from_proto(onnx.shape_inference.infer_shapes(proto) if infer else proto)
    annotate_provenance(model)
    return Model(model, SourceInfo("onnx", (), name))


def _serialised(model: Model) -> bytes:
    """The simplified model as protobuf, without onnxsim's own records (model metadata
    saying what it did) and with node metadata in key order."""
    proto = ir.to_proto(model.ir)
    kept = [entry for entry in proto.metadata_props if not entry.key.startswith("onnxsim.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for node in proto.graph.node:
        entries = sorted((entry.key, entry.value) for entry in node.metadata_props)
        del node.metadata_props[:]
        for key, value in entries:
            node.metadata_props.add(key=key, value=value)
    return proto.SerializeToString(deterministic=True)


def _with_onnxsim(model: Model, monkeypatch: pytest.MonkeyPatch) -> Model:
    with monkeypatch.context() as patch:
        patch.setattr(simplify_module, "onnxsim_work", lambda graph: "forced")
        return simplify(model)


@pytest.mark.parametrize("name", list(GRAPHS))
def test_the_result_is_what_onnxsim_gives(name, monkeypatch) -> None:
    model = _model(name)
    simplified = simplify(model)
    assert (simplified.report.counts["onnxsim"] == "skipped: nothing to fold") == (name in SETTLED)
    assert _serialised(simplified) == _serialised(_with_onnxsim(model, monkeypatch))


@pytest.mark.parametrize("name", [name for name in GRAPHS if name not in SETTLED])
def test_each_rewrite_is_seen_as_work(name) -> None:
    model = _model(name)
    working = model.copy().ir
    # the graph as simplify asks about it: shapes known (the open batch stays open)
    assert onnxsim_work(working) is not None or name == "equal-weights"  # equal small weights: merged, then CSE


@pytest.mark.slow
@pytest.mark.parametrize("sample", ["resnet_tiny", "mobilenet_tiny", "efficientnet_tiny", "inception_tiny"])
def test_exported_samples_skip_onnxsim_with_the_same_result(sample, monkeypatch) -> None:
    model = load(f"workbench.samples:{sample}")
    simplified = simplify(model)
    assert simplified.report.counts["onnxsim"] == "skipped: nothing to fold"
    assert _serialised(simplified) == _serialised(_with_onnxsim(model, monkeypatch))


def test_large_weights_go_to_onnxsim_through_files(monkeypatch) -> None:
    model = load("workbench.samples:mtcnn_tiny")  # a Transpose: onnxsim has work
    in_memory = simplify(model)
    monkeypatch.setattr(simplify_module, "FILE_ONNXSIM_BYTES", 0)
    through_files = simplify(model)
    assert in_memory.report.counts["onnxsim"] == through_files.report.counts["onnxsim"] == "Transpose node(s)"
    assert _serialised(through_files) == _serialised(in_memory)
