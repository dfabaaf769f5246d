"""The one pad normalisation (``workbench.graph.pads``) against onnxruntime: a node that
states its padding implicitly (``auto_pad``, a ConvTranspose's ``output_shape``) and
the same node with the explicit pads ``read_window`` resolves give the same output."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from workbench.graph.pads import Window, WindowProblem, pooled_size, read_window

RNG = np.random.default_rng(3)

IMPLICIT = {
    # (op, input shape, weight shape or None, attributes)
    "conv-same-upper-s2-even": ("Conv", (1, 2, 8, 8), (3, 2, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "conv-same-lower-s2-even": ("Conv", (1, 2, 8, 8), (3, 2, 3, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    "conv-same-upper-k2": ("Conv", (1, 2, 7, 6), (3, 2, 2, 2), {"auto_pad": "SAME_UPPER"}),
    "conv-same-upper-k4-s3": ("Conv", (1, 2, 10, 11), (3, 2, 4, 4), {"auto_pad": "SAME_UPPER", "strides": [3, 3]}),
    "conv-valid": ("Conv", (1, 2, 8, 8), (3, 2, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
    "conv-1d-same-lower": ("Conv", (1, 2, 9), (3, 2, 4), {"auto_pad": "SAME_LOWER", "strides": [2]}),
    "maxpool-same-upper": (
        "MaxPool",
        (1, 2, 8, 8),
        None,
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    ),
    "maxpool-same-lower": (
        "MaxPool",
        (1, 2, 7, 8),
        None,
        {"kernel_shape": [2, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    ),
    "avgpool-same-upper-excluded": (
        "AveragePool",
        (1, 2, 8, 8),
        None,
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    ),
    "avgpool-same-lower-counted": (
        "AveragePool",
        (1, 2, 7, 7),
        None,
        {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER", "count_include_pad": 1},
    ),
    "convtranspose-same-upper": (
        "ConvTranspose",
        (1, 2, 5, 5),
        (2, 3, 3, 3),
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    ),
    "convtranspose-same-lower": (
        "ConvTranspose",
        (1, 2, 5, 6),
        (2, 3, 4, 4),
        {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
    ),
    "convtranspose-output-shape": (
        "ConvTranspose",
        (1, 2, 5, 5),
        (2, 3, 3, 3),
        {"strides": [2, 2], "output_shape": [10, 9]},
    ),
    # rows past the full 11 x 11 output: no padding, the rest is output_padding
    "convtranspose-output-shape-past-full": (
        "ConvTranspose",
        (1, 2, 5, 5),
        (2, 3, 3, 3),
        {"strides": [2, 2], "output_shape": [12, 12]},
    ),
}


def _model(op: str, shape: tuple[int, ...], weight: np.ndarray | None, attributes: dict) -> onnx.ModelProto:
    inputs = ["x"] if weight is None else ["x", "w"]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], name="node", **attributes)],
        "window",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [] if weight is None else [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _explicit(attributes: dict, window: Window) -> dict:
    kept = {k: v for k, v in attributes.items() if k not in ("auto_pad", "output_shape")}
    padding = {"output_padding": list(window.output_padding)} if any(window.output_padding) else {}
    return kept | {"pads": list(window.pads)} | padding


@pytest.mark.parametrize("op,shape,weight_shape,attributes", IMPLICIT.values(), ids=IMPLICIT.keys())
def test_resolved_pads_give_onnxruntime_the_same_output(op, shape, weight_shape, attributes) -> None:
    weight = RNG.standard_normal(weight_shape).astype(np.float32) if weight_shape else None
    implicit = _model(op, shape, weight, attributes)
    (node,) = ir.from_proto(implicit).graph
    window = read_window(node, shape, weight.shape[2:] if weight is not None else None)
    assert isinstance(window, Window)
    x = RNG.standard_normal(shape).astype(np.float32)
    expected = _run(implicit, x)
    actual = _run(_model(op, shape, weight, _explicit(attributes, window)), x)
    assert actual.shape == expected.shape
    # onnxruntime vs onnxruntime on the same arithmetic, float32: atol 1e-6
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_same_pads_need_the_input_size() -> None:
    model = _model("MaxPool", (1, 2, 8, 8), None, {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"})
    (node,) = ir.from_proto(model).graph
    found = read_window(node, (1, 2, None, 8))
    assert isinstance(found, WindowProblem) and found.kind == "dynamic-shape" and "--input-shape" in found.remedy


def test_pads_without_a_begin_and_an_end_per_axis_are_malformed() -> None:
    model = _model("MaxPool", (1, 2, 8, 8), None, {"kernel_shape": [3, 3], "pads": [1, 1]})
    (node,) = ir.from_proto(model).graph
    found = read_window(node, (1, 2, 8, 8))
    assert isinstance(found, WindowProblem) and found.kind == "malformed-node"


POOLED_SIZES = {
    # (input, kernel, stride, begin, end, ceil): ONNX (onnxruntime) agrees with the rule
    "floor": (8, 3, 2, 0, 0, False),
    "ceil": (8, 3, 2, 0, 0, True),
    "ceil-last-window-in-pad": (7, 2, 2, 1, 1, True),
    "ceil-end-heavy": (9, 3, 2, 0, 2, True),
    "floor-end-heavy": (9, 3, 2, 1, 2, False),
}


@pytest.mark.parametrize("size,kernel,stride,begin,end,ceil", POOLED_SIZES.values(), ids=POOLED_SIZES.keys())
def test_pooled_size_is_onnxruntimes(size, kernel, stride, begin, end, ceil) -> None:
    attributes = {"kernel_shape": [kernel], "strides": [stride], "pads": [begin, end], "ceil_mode": int(ceil)}
    out = _run(_model("MaxPool", (1, 1, size), None, attributes), np.zeros((1, 1, size), np.float32))
    assert out.shape[-1] == pooled_size(size, kernel, stride, begin, end, ceil=ceil, padded=begin > 0 or end > 0)
