"""The converter contract: problems reported as values, parameters read where the
node's opset keeps them (the expected values are the ONNX operator spec's), and
registries keyed by since-version."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from workbench.errors import Problem
from workbench.graph.converter import (
    ConverterContext,
    OnnxNodeContext,
    constant_source,
    constant_value,
    slice_bounds,
)
from workbench.registry import Registry


def node_at(opset: int, op: str, inputs: list[str], constants: dict[str, np.ndarray] | None = None, **attributes):
    """The one node of a graph over input ``x`` (and computed input ``z``) at ``opset``."""
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], name="node", **attributes)],
        "contract",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 1, 4)),
            helper.make_tensor_value_info("z", TensorProto.INT64, (2,)),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(array, name) for name, array in (constants or {}).items()],
    )
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    (node,) = model.graph
    return node


def read(node: ir.Node) -> tuple[OnnxNodeContext, list[Problem]]:
    problems: list[Problem] = []
    return OnnxNodeContext(problems, node), problems


MOVED_PARAMETERS = {
    # (opset, op, inputs, constants, attributes, names asked for, value the spec gives)
    "squeeze-axes-attribute-11": (11, "Squeeze", ["x"], {}, {"axes": [0, 2]}, ("axes",), [0, 2]),
    "squeeze-axes-input-13": (13, "Squeeze", ["x", "a"], {"a": np.array([0, 2])}, {}, ("axes",), [0, 2]),
    "reduce-sum-axes-attribute-12": (12, "ReduceSum", ["x"], {}, {"axes": [1]}, ("axes",), [1]),
    "reduce-sum-axes-input-13": (13, "ReduceSum", ["x", "a"], {"a": np.array([1])}, {}, ("axes",), [1]),
    "reduce-mean-axes-attribute-17": (17, "ReduceMean", ["x"], {}, {"axes": [3]}, ("axes",), [3]),
    "reduce-mean-axes-input-18": (18, "ReduceMean", ["x", "a"], {"a": np.array([3])}, {}, ("axes",), [3]),
    "clip-max-attribute-6": (6, "Clip", ["x"], {}, {"max": 2.5}, ("max",), 2.5),
    "clip-max-input-11": (11, "Clip", ["x", "", "m"], {"m": np.array(2.5, np.float32)}, {}, ("max",), 2.5),
    "pad-value-attribute-2": (2, "Pad", ["x"], {}, {"pads": [0] * 8, "value": 1.5}, ("constant_value", "value"), 1.5),
    "pad-value-input-11": (
        11,
        "Pad",
        ["x", "p", "v"],
        {"p": np.zeros(8, np.int64), "v": np.array(1.5, np.float32)},
        {},
        ("constant_value", "value"),
        1.5,
    ),
    "upsample-scales-attribute-7": (
        7,
        "Upsample",
        ["x"],
        {},
        {"scales": [1.0, 1.0, 2.0, 2.0]},
        ("scales",),
        [1, 1, 2, 2],
    ),
    "resize-scales-input-1-at-10": (
        10,
        "Resize",
        ["x", "s"],
        {"s": np.array([1, 1, 2, 2], np.float32)},
        {},
        ("scales",),
        [1, 1, 2, 2],
    ),
    "resize-scales-input-2-at-11": (
        11,
        "Resize",
        ["x", "", "s"],
        {"s": np.array([1, 1, 2, 2], np.float32)},
        {},
        ("scales",),
        [1, 1, 2, 2],
    ),
    "split-sizes-attribute-11": (11, "Split", ["x"], {}, {"axis": 3, "split": [1, 3]}, ("split",), [1, 3]),
    "split-sizes-input-13": (13, "Split", ["x", "s"], {"s": np.array([1, 3])}, {"axis": 3}, ("split",), [1, 3]),
    "clip-min-left-out-11": (11, "Clip", ["x"], {}, {}, ("min",), None),
}


@pytest.mark.parametrize(
    "opset,op,inputs,constants,attributes,names,expected", MOVED_PARAMETERS.values(), ids=MOVED_PARAMETERS.keys()
)
def test_a_parameter_is_read_where_the_opset_keeps_it(opset, op, inputs, constants, attributes, names, expected):
    ctx, problems = read(node_at(opset, op, inputs, constants, **attributes))
    assert ctx.require_constants(*names)
    found = ctx.param(*names)
    if expected is None:
        assert found is None
    else:
        np.testing.assert_array_equal(found, expected)
    assert problems == []


@pytest.mark.parametrize("opset,axis", [(11, 1), (13, -1)], ids=["opset-11", "opset-13"])
def test_defaults_are_the_schemas_of_the_opset_in_force(opset, axis) -> None:
    ctx, _ = read(node_at(opset, "Softmax", ["x"]))
    assert ctx.attr("axis") == axis
    assert ctx.attr("axis", 7) == 7  # an explicit default wins over the schema's


def test_resize_defaults_are_decoded_strings() -> None:
    ctx, _ = read(node_at(13, "Resize", ["x", "", "s"], {"s": np.array([1, 1, 2, 2], np.float32)}))
    assert (ctx.attr("mode"), ctx.attr("coordinate_transformation_mode")) == ("nearest", "half_pixel")


def test_a_computed_parameter_is_one_problem_with_a_remedy() -> None:
    ctx, problems = read(node_at(13, "Squeeze", ["x", "z"]))
    assert not ctx.require_constants("axes")
    (problem,) = problems
    assert (problem.severity, problem.kind, problem.node, problem.op_type) == (
        "error",
        "dynamic-shape",
        "node",
        "Squeeze",
    )
    assert "input z" in problem.message and "simplify" in problem.remedy
    assert not ctx.ok


@pytest.mark.parametrize("opset", [9, 13])
def test_slice_bounds_from_attributes_or_inputs(opset) -> None:
    bounds = {"starts": np.array([1]), "ends": np.array([-1]), "axes": np.array([3])}
    if opset < 10:
        node = node_at(opset, "Slice", ["x"], starts=[1], ends=[-1], axes=[3])
    else:
        node = node_at(opset, "Slice", ["x", "starts", "ends", "axes"], bounds)
    ctx, _ = read(node)
    found = slice_bounds(ctx)
    assert found is not None
    assert (found.starts, found.ends, found.axes, found.steps) == ((1,), (-1,), (3,), (1,))


def test_an_op_without_converter_is_reported_not_raised() -> None:
    registry: Registry = Registry("test")
    ctx, problems = read(node_at(13, "Squeeze", ["x"]))
    assert ctx.converter(registry, "Test target") is None
    (problem,) = problems
    assert problem.kind == "unsupported-op" and problem.remedy and "Test target" in problem.message


def test_problems_name_what_they_are_about() -> None:
    problems: list[Problem] = []
    ctx = ConverterContext(problems, name="conv1", op_type="Convolution", source=("conv1",))
    ctx.problem("setting", "something odd", "do this", severity="warning")
    assert ctx.ok  # a warning does not stop the conversion
    ctx.unsupported("cannot")
    assert not ctx.ok
    assert [(p.node, p.op_type, p.source, p.severity) for p in problems] == [
        ("conv1", "Convolution", ("conv1",), "warning"),
        ("conv1", "Convolution", ("conv1",), "error"),
    ]
    assert problems[1].kind == "unsupported-attribute" and problems[1].remedy


def test_registry_picks_the_newest_converter_at_or_below_the_opset() -> None:
    registry: Registry = Registry("test")

    @registry.register("Softmax", since=13)
    def softmax() -> None:
        """normalises one axis"""

    @registry.register("Softmax", since=1)
    def flattening_softmax() -> None:
        """normalises the flattened input"""

    @registry.register("Resize", since=11)
    def resize() -> None:
        """samples"""

    assert registry.get("Softmax", 12) is flattening_softmax
    assert registry.get("Softmax", 13) is softmax and registry.get("Softmax", 18) is softmax
    assert registry.get("Softmax") is softmax
    assert registry.get("Resize", 10) is None
    assert registry.versions("Softmax") == [1, 13] and len(registry) == 2
    assert (
        dict(registry.rows())["Softmax"] == "opset 1–12: normalises the flattened input; opset 13+: normalises one axis"
    )
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("Softmax", since=13)(softmax)


def test_weights_are_constants_and_optional_ones_may_be_left_out() -> None:
    weight = np.ones((2, 3, 1, 1), np.float32)
    ctx, problems = read(node_at(13, "Conv", ["x", "w"], {"w": weight}))
    found = ctx.weights(1, 2)
    assert found is not None and list(found) == [1] and problems == []  # the bias B is optional
    np.testing.assert_array_equal(found[1], weight)
    ctx, problems = read(node_at(13, "Conv", ["x", "w", "z"], {"w": weight}))
    assert ctx.weights(1, 2) is None
    assert [(p.kind, p.severity) for p in problems] == [("dynamic-weights", "error")] and problems[0].remedy


def test_weights_passed_through_identity_chains_are_constants() -> None:
    """An unsimplified export (TorchScript's Identity on each parameter) gives its weights as a simplified one does."""
    weight = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1)
    nodes = [
        helper.make_node("Constant", [], ["b0"], value=onnx.numpy_helper.from_array(np.array([1.0, 2.0], np.float32))),
        helper.make_node("Identity", ["w"], ["w1"]),
        helper.make_node("Identity", ["w1"], ["w2"]),
        helper.make_node("Identity", ["b0"], ["b1"]),
        helper.make_node("Conv", ["x", "w2", "b1"], ["y"], name="node"),
    ]
    graph = helper.make_graph(
        nodes,
        "identity_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 1, 4))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    conv = next(node for node in model.graph if node.op_type == "Conv")
    ctx, problems = read(conv)
    found = ctx.weights(1, 2)
    assert found is not None and problems == []
    np.testing.assert_array_equal(found[1], weight)
    np.testing.assert_array_equal(found[2], [1.0, 2.0])
    assert constant_source(conv.inputs[1]) is model.graph.initializers["w"]
    assert constant_value(conv.inputs[0]) is None  # a graph input stays data
