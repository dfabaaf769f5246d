"""Caffe writer, one ONNX op family at a time: each small graph is written with
``write_caffe``, run in OpenCV DNN and compared with onnxruntime on the same graph.
Unsupported cases must be reported by ``find_problems``, all at once, before any file
is written."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from workbench import InputError, UnsupportedError
from workbench.formats import caffe_pb2
from workbench.graph import Model, SourceInfo
from workbench.readers import example_inputs, export
from workbench.readers.onnx_reader import annotate_provenance
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.runners.opencv_runner import OpenCVCaffeRunner
from workbench.steps.simplify import simplify
from workbench.writers.caffe import find_problems, write_caffe

RNG = np.random.default_rng(0)


def weights(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def graph(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, tuple[int, ...]],
    outputs: list[str],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
) -> Model:
    """A model of ``nodes``; each node's name is its source layer."""
    proto = helper.make_model(
        helper.make_graph(
            nodes,
            "layer_test",
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
            [onnx.numpy_helper.from_array(array, name) for name, array in (initializers or {}).items()],
        ),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    proto.ir_version = 8
    model = ir.from_proto(proto)
    annotate_provenance(model)
    return Model(model, SourceInfo("onnx", (), "layer_test"))


def one_node(op: str, shape: tuple[int, ...], initializers: dict[str, np.ndarray] | None = None, **attributes) -> Model:
    """``y = op(x, *initializers)``."""
    node = helper.make_node(op, ["x", *(initializers or {})], ["y"], name=op.lower(), **attributes)
    return graph([node], {"x": shape}, ["y"], initializers)


def fused_outputs(written, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The written files run as a user runs them: ``cv2.dnn.readNetFromCaffe`` with OpenCV's default
    layer fusion (the runner turns it off to keep every layer's output); outputs by graph value."""
    net = cv2.dnn.readNetFromCaffe(str(written.path(".prototxt")), str(written.path(".caffemodel")))
    for value, blob in written.details["inputs"].items():
        net.setInput(np.ascontiguousarray(inputs[value], np.float32), blob)
    producer = {
        top: (layer["name"], index) for layer in written.details["layers"] for index, top in enumerate(layer["top"])
    }
    found = {}
    for value, blob in written.details["outputs"].items():
        layer, index = producer[blob]
        found[value] = np.array(net.forwardAndRetrieve([layer])[0][index])
    return found


def written_against_onnxruntime(model: Model, tmp_path, dialect: str = "bvlc", inputs=None):
    """Write, run both (OpenCV with and without its layer fusion); returns (written files,
    [(onnxruntime output, OpenCV output)] with one pair per output and OpenCV mode)."""
    written = write_caffe(model, tmp_path, dialect=dialect)
    inputs = example_inputs(model) if inputs is None else inputs
    expected = OnnxRuntimeRunner(model).run(inputs)
    actual = OpenCVCaffeRunner(written.path(".prototxt"), written.path(".caffemodel")).run(inputs)
    pairs = [(expected[value], actual[blob]) for value, blob in written.details["outputs"].items()]
    fused = fused_outputs(written, inputs)
    pairs += [(expected[value], fused[value]) for value in written.details["outputs"]]
    return written, pairs


def layer_types(written) -> list[str]:
    return [layer["type"] for layer in written.details["layers"] if layer["type"] != "Input"]


def assert_matches_onnxruntime(model: Model, tmp_path, dialect: str = "bvlc", atol: float = 1e-5, inputs=None):
    written, pairs = written_against_onnxruntime(model, tmp_path, dialect, inputs)
    for expected, actual in pairs:
        assert actual.shape == expected.shape
        # OpenCV DNN vs onnxruntime, float32: atol 1e-5 unless the case states more
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=atol)
    return written


# --- convolution -------------------------------------------------------------------------

CONVOLUTIONS = {
    "3x3-pad1": ({"pads": [1, 1, 1, 1]}, (6, 4, 3, 3), True),
    "stride2-no-bias": ({"strides": [2, 2], "pads": [1, 1, 1, 1]}, (6, 4, 3, 3), False),
    "grouped": ({"group": 2, "pads": [1, 1, 1, 1]}, (6, 2, 3, 3), True),
    "depthwise": ({"group": 4, "pads": [1, 1, 1, 1]}, (4, 1, 3, 3), True),
    "dilated": ({"dilations": [2, 2], "pads": [2, 2, 2, 2]}, (6, 4, 3, 3), True),
    "dilated-hw": ({"dilations": [1, 2]}, (6, 4, 3, 3), True),
    "non-square": ({"pads": [1, 0, 1, 0], "strides": [1, 2]}, (6, 4, 3, 1), True),
}


@pytest.mark.parametrize("attributes,shape,bias", CONVOLUTIONS.values(), ids=CONVOLUTIONS.keys())
def test_conv(attributes, shape, bias, tmp_path) -> None:
    params = {"w": weights(*shape)} | ({"b": weights(shape[0])} if bias else {})
    model = one_node("Conv", (1, 4, 9, 8), params, **attributes)
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == ["Convolution"]


DECONVOLUTIONS = {
    "k2-s2": ({"strides": [2, 2]}, (4, 3, 2, 2)),
    "k3-s2-pad1": ({"strides": [2, 2], "pads": [1, 1, 1, 1]}, (4, 3, 3, 3)),
    "grouped": ({"strides": [2, 2], "group": 2}, (4, 2, 2, 2)),
}


@pytest.mark.parametrize("attributes,shape", DECONVOLUTIONS.values(), ids=DECONVOLUTIONS.keys())
def test_conv_transpose(attributes, shape, tmp_path) -> None:
    out_channels = shape[1] * attributes.get("group", 1)
    model = one_node("ConvTranspose", (1, 4, 5, 6), {"w": weights(*shape), "b": weights(out_channels)}, **attributes)
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == ["Deconvolution"]


def test_batch_norm_is_batchnorm_plus_scale(tmp_path) -> None:
    stats = {
        "gamma": weights(4) + 2,
        "beta": weights(4),
        "mean": weights(4),
        "var": np.abs(weights(4)) + 0.5,
    }
    model = one_node("BatchNormalization", (1, 4, 5, 5), stats, epsilon=1e-3)
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == ["BatchNorm", "Scale"]
    text = written.path(".prototxt").read_text()
    assert "eps: 0.001" in text and "use_global_stats: true" in text


# --- activations ------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": ("Relu", {}, {}, ["ReLU"]),
    "leaky-relu": ("LeakyRelu", {}, {"alpha": 0.2}, ["ReLU"]),
    "elu": ("Elu", {}, {"alpha": 0.7}, ["ELU"]),
    "sigmoid": ("Sigmoid", {}, {}, ["Sigmoid"]),
    "tanh": ("Tanh", {}, {}, ["TanH"]),
    "prelu-per-channel": ("PRelu", {"slope": weights(4, 1, 1)}, {}, ["PReLU"]),
    "prelu-shared": ("PRelu", {"slope": np.array([0.3], np.float32)}, {}, ["PReLU"]),
    "softmax-channels": ("Softmax", {}, {"axis": 1}, ["Softmax"]),
    "softmax-last-axis": ("Softmax", {}, {"axis": -1}, ["Softmax"]),
}


@pytest.mark.parametrize("op,params,attributes,types", ACTIVATIONS.values(), ids=ACTIVATIONS.keys())
def test_activation(op, params, attributes, types, tmp_path) -> None:
    written = assert_matches_onnxruntime(one_node(op, (1, 4, 3, 5), params, **attributes), tmp_path)
    assert layer_types(written) == types


def test_prelu_after_linear_is_per_feature(tmp_path) -> None:
    model = one_node("PRelu", (2, 6), {"slope": weights(6)})
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == ["PReLU"]


def _clip(low: float | None, high: float | None) -> Model:
    bounds = {name: np.array(v, np.float32) for name, v in (("low", low), ("high", high)) if v is not None}
    inputs = ["x", "low" if low is not None else "", "high" if high is not None else ""]
    node = helper.make_node("Clip", inputs, ["y"], name="clip")
    model = graph([node], {"x": (1, 3, 4, 4)}, ["y"], bounds)
    return model


CLIPS = {
    "relu6-bvlc": (0.0, 6.0, "bvlc", ["ReLU", "Power", "Power", "Eltwise", "Power"]),
    "relu6-opencv": (0.0, 6.0, "opencv", ["ReLU6"]),
    "minus1-to-1": (-1.0, 1.0, "bvlc", ["Power", "Eltwise", "Power", "Power", "Eltwise", "Power"]),
    "low-only": (0.5, None, "bvlc", ["Power", "Eltwise"]),
}


@pytest.mark.parametrize("low,high,dialect,types", CLIPS.values(), ids=CLIPS.keys())
def test_clip(low, high, dialect, types, tmp_path) -> None:
    model = _clip(low, high)
    inputs = {"x": example_inputs(model)["x"] * 8}  # values beyond both bounds
    written = write_caffe(model, tmp_path, dialect=dialect)
    (expected,) = OnnxRuntimeRunner(model).run(inputs).values()
    (actual,) = OpenCVCaffeRunner(written.path(".prototxt"), written.path(".caffemodel")).run(inputs).values()
    np.testing.assert_array_equal(actual, expected)  # OpenCV DNN vs onnxruntime: exact (every step rounds nothing)
    assert layer_types(written) == types
    assert ("clip-expanded" in {p.kind for p in find_problems(model, dialect=dialect)}) == (len(types) > 1)


# --- pooling ------------------------------------------------------------------------------

POOLS = {
    # (op, input size, attributes, Caffe layer types)
    "max-floor-even": (
        "MaxPool",
        8,
        {"kernel_shape": [3, 3], "strides": [2, 2]},
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
    ),
    "max-floor-pad": (
        "MaxPool",
        8,
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
    ),
    "max-floor-odd-equal": ("MaxPool", 7, {"kernel_shape": [3, 3], "strides": [2, 2]}, ["Pooling"]),
    "max-ceil-even": ("MaxPool", 8, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, ["Pooling"]),
    "max-ceil-pad": (
        "MaxPool",
        8,
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
        ["Pooling"],
    ),
    "max-ceil-last-window-in-pad": (
        "MaxPool",
        7,
        {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
        ["Pooling"],
    ),
    "max-rectangular": ("MaxPool", 10, {"kernel_shape": [3, 2], "strides": [2, 1]}, ["Pooling", "Slice", "Silence"]),
    "avg-floor-even": (
        "AveragePool",
        8,
        {"kernel_shape": [3, 3], "strides": [2, 2]},
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
    ),
    "avg-floor-pad-counted": (
        "AveragePool",
        8,
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
    ),
    "avg-ceil-even": ("AveragePool", 8, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, ["Pooling"]),
    "avg-2x2": ("AveragePool", 8, {"kernel_shape": [2, 2], "strides": [2, 2]}, ["Pooling"]),
}


@pytest.mark.parametrize("op,size,attributes,types", POOLS.values(), ids=POOLS.keys())
def test_pooling_rounding_is_reconciled(op, size, attributes, types, tmp_path) -> None:
    model = one_node(op, (1, 3, size, size), **attributes)
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == types
    floor = "pooling-floor" in {p.kind for p in find_problems(model)}
    assert floor == ("Slice" in types)


def test_average_pooling_that_ignores_padding_divides_by_a_fixed_map(tmp_path) -> None:
    """count_include_pad=0: Caffe's divisor counts the padding, a Scale by caffe/onnx divisor ratios corrects it."""
    model = one_node("AveragePool", (1, 3, 8, 8), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV DNN vs onnxruntime, float32: atol 1e-5
    assert layer_types(written)[:1] == ["Pooling"] and layer_types(written)[-1] == "Scale"
    assert "avgpool-divisor" in {p.kind for p in find_problems(model)}


# --- auto_pad, resolved by the pad normalisation every writer shares ---------------------------

SAME_PADS = {
    # (op, input shape, weights, attributes, Caffe layer types)
    "conv-same-upper-k3": ("Conv", (1, 4, 8, 8), weights(6, 4, 3, 3), {"auto_pad": "SAME_UPPER"}, ["Convolution"]),
    "conv-same-lower-k3": ("Conv", (1, 4, 7, 9), weights(6, 4, 3, 3), {"auto_pad": "SAME_LOWER"}, ["Convolution"]),
    "conv-valid": (
        "Conv",
        (1, 4, 8, 8),
        weights(6, 4, 3, 3),
        {"auto_pad": "VALID", "strides": [2, 2]},
        ["Convolution"],
    ),
    # total padding 1 at the end: Caffe's pad 0 and its rounded-up last window cover it
    "maxpool-same-upper-even": (
        "MaxPool",
        (1, 3, 8, 8),
        None,
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
        ["Pooling"],
    ),
    "maxpool-same-upper-odd": (
        "MaxPool",
        (1, 3, 7, 7),
        None,
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
        ["Pooling"],
    ),
    "maxpool-same-upper-rectangular": (
        "MaxPool",
        (1, 3, 8, 7),
        None,
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
        ["Pooling"],
    ),
    "avgpool-same-upper-excluding-pads": (
        "AveragePool",
        (1, 3, 8, 8),
        None,
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
        ["Pooling"],
    ),
    "maxpool-explicit-end-pads": (
        "MaxPool",
        (1, 3, 9, 9),
        None,
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 2, 2]},
        ["Pooling"],
    ),
}


@pytest.mark.parametrize("op,shape,weight,attributes,types", SAME_PADS.values(), ids=SAME_PADS.keys())
def test_auto_pad_is_written(op, shape, weight, attributes, types, tmp_path) -> None:
    model = one_node(op, shape, {"w": weight} if weight is not None else None, **attributes)
    # OpenCV DNN vs onnxruntime, float32: atol 1e-5 (the default of assert_matches_onnxruntime)
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == types


ALIGNED_PADS = {
    # pads Caffe cannot hold as they are, aligned by Caffe's pad b + m*s and a Slice (the
    # expected layers follow from spatial.align_axis): (model, Caffe layer types, warning kind)
    "conv-same-upper-k2": (
        one_node("Conv", (1, 2, 6, 6), {"w": weights(3, 2, 2, 2)}, auto_pad="SAME_UPPER"),
        ["Convolution", "Slice", "Silence", "Slice", "Silence"],
        "conv-pads",
    ),
    "maxpool-same-lower-even": (
        one_node("MaxPool", (1, 2, 8, 8), kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
        "pooling-pads",
    ),
    "maxpool-same-upper-stride1": (
        one_node("MaxPool", (1, 2, 6, 6), kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
        "pooling-pads",
    ),
    "avgpool-same-upper-counting-pads": (
        one_node(
            "AveragePool", (1, 2, 8, 8), kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER", count_include_pad=1
        ),
        ["Pooling", "Scale"],
        "avgpool-divisor",
    ),
}


@pytest.mark.parametrize("model,types,kind", ALIGNED_PADS.values(), ids=ALIGNED_PADS.keys())
def test_pads_caffe_cannot_hold_are_aligned_exactly(model, types, kind, tmp_path) -> None:
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV DNN vs onnxruntime, float32: atol 1e-5
    assert layer_types(written) == types
    problems = find_problems(model)
    assert all(p.severity == "warning" for p in problems) and kind in {p.kind for p in problems}


# --- parameters as older opsets keep them, read through the converter contract ---------------

OLD_OPSETS = {
    # (nodes, input shape, initializers, opset, Caffe layer types)
    "clip-opset6-attributes": (
        [helper.make_node("Clip", ["x"], ["y"], name="clip", min=0.0, max=6.0)],
        (1, 3, 4, 4),
        {},
        6,
        ["ReLU", "Power", "Power", "Eltwise", "Power"],
    ),
    "softmax-opset11-last-axis": (
        [helper.make_node("Softmax", ["x"], ["y"], name="softmax")],
        (2, 7),
        {},
        11,
        ["Softmax"],
    ),
    "softmax-opset11-unit-trailing-axes": (
        [helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=1)],
        (1, 5, 1, 1),
        {},
        11,
        ["Softmax"],
    ),
    "reduce-mean-opset13-attribute-axes": (
        [helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[2, 3], keepdims=0)],
        (1, 5, 6, 7),
        {},
        13,
        ["Pooling", "Flatten"],
    ),
    "slice-opset9-attributes": (
        [helper.make_node("Slice", ["x"], ["y"], name="slice", starts=[1], ends=[3], axes=[1])],
        (1, 4, 3, 3),
        {},
        9,
        ["Slice", "Silence"],
    ),
    "resize-opset10-nearest": (
        [helper.make_node("Resize", ["x", "scales"], ["y"], name="up", mode="nearest")],
        (1, 3, 4, 5),
        {"scales": np.array([1, 1, 2, 2], np.float32)},
        10,
        ["Deconvolution"],
    ),
    "upsample-opset9-nearest": (
        [helper.make_node("Upsample", ["x", "scales"], ["y"], name="up", mode="nearest")],
        (1, 3, 4, 5),
        {"scales": np.array([1, 1, 3, 2], np.float32)},
        9,
        ["Deconvolution"],
    ),
}


@pytest.mark.parametrize("nodes,shape,params,opset,types", OLD_OPSETS.values(), ids=OLD_OPSETS.keys())
def test_older_opset_forms(nodes, shape, params, opset, types, tmp_path) -> None:
    model = graph(nodes, {"x": shape}, ["y"], params, opset=opset)
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV DNN vs onnxruntime, float32: atol 1e-5
    assert layer_types(written) == types


def test_softmax_before_opset_13_over_several_axes_is_a_flattened_softmax(tmp_path) -> None:
    node = helper.make_node("Softmax", ["x"], ["y"], name="softmax")  # opset 11 default axis 1: C, H, W together
    written = assert_matches_onnxruntime(graph([node], {"x": (2, 3, 4, 4)}, ["y"], opset=11), tmp_path)
    assert layer_types(written) == ["Reshape", "Softmax", "Reshape"]


GLOBAL_POOLS = {
    "global-average": ("GlobalAveragePool", {}, {}, ["Pooling"]),
    "global-max": ("GlobalMaxPool", {}, {}, ["Pooling"]),
    "reduce-mean-keepdims": ("ReduceMean", {"axes": np.array([2, 3])}, {}, ["Pooling"]),
    "reduce-mean-flat": ("ReduceMean", {"axes": np.array([-2, -1])}, {"keepdims": 0}, ["Pooling", "Flatten"]),
    "reduce-max-flat": ("ReduceMax", {"axes": np.array([2, 3])}, {"keepdims": 0}, ["Pooling", "Flatten"]),
}


@pytest.mark.parametrize("op,params,attributes,types", GLOBAL_POOLS.values(), ids=GLOBAL_POOLS.keys())
def test_global_pooling(op, params, attributes, types, tmp_path) -> None:
    node = helper.make_node(op, ["x", *params], ["y"], name="pool", **attributes)
    model = graph([node], {"x": (1, 5, 6, 7)}, ["y"], params, opset=18)
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == types


# --- inner product ---------------------------------------------------------------------

INNER_PRODUCTS = {
    "linear": ("Gemm", (2, 6), {"w": weights(4, 6), "b": weights(4)}, {"transB": 1}),
    "gemm-alpha-beta": ("Gemm", (2, 6), {"w": weights(6, 4), "b": weights(1, 4)}, {"alpha": 0.5, "beta": 2.0}),
    "gemm-no-bias": ("Gemm", (2, 6), {"w": weights(4, 6)}, {"transB": 1}),
    "matmul-2d": ("MatMul", (2, 6), {"w": weights(6, 4)}, {}),
    "matmul-sequence": ("MatMul", (2, 3, 6), {"w": weights(6, 4)}, {}),
}


@pytest.mark.parametrize("op,shape,params,attributes", INNER_PRODUCTS.values(), ids=INNER_PRODUCTS.keys())
def test_inner_product(op, shape, params, attributes, tmp_path) -> None:
    written = assert_matches_onnxruntime(one_node(op, shape, params, **attributes), tmp_path)
    assert layer_types(written) == ["InnerProduct"]


def test_transpose_flatten_linear_moves_the_permutation_into_the_weights(tmp_path) -> None:
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="permute", perm=[0, 3, 2, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["flat"], name="view"),
        helper.make_node("Gemm", ["flat", "w", "b"], ["y"], name="fc", transB=1),
    ]
    params = {"shape": np.array([1, -1]), "w": weights(5, 24), "b": weights(5)}
    model = graph(nodes, {"x": (1, 2, 3, 4)}, ["y"], params)
    written = assert_matches_onnxruntime(model, tmp_path)
    (layer,) = [layer for layer in written.details["layers"] if layer["type"] != "Input"]
    assert layer["type"] == "InnerProduct"
    assert layer["nodes"] == ["permute", "view", "fc"]
    assert layer["sources"] == ["permute", "view", "fc"]


# --- layout ------------------------------------------------------------------------------

LAYOUTS = {
    "flatten": ("Flatten", (1, 3, 4, 5), {}, {"axis": 1}, ["Flatten"]),
    "reshape-merge-hw": ("Reshape", (1, 3, 4, 5), {"shape": np.array([1, 3, 20])}, {}, ["Flatten"]),
    "reshape-general": ("Reshape", (1, 3, 4, 5), {"shape": np.array([1, 6, 10])}, {}, ["Reshape"]),
    "squeeze": ("Squeeze", (1, 3, 1, 1), {"axes": np.array([2, 3])}, {}, ["Flatten"]),
    "unsqueeze": ("Unsqueeze", (1, 6), {"axes": np.array([2])}, {}, ["Reshape"]),
    "split-unequal": ("Split", (1, 6, 3, 3), {"sizes": np.array([2, 4])}, {"axis": 1}, ["Slice"]),
}


@pytest.mark.parametrize("op,shape,params,attributes,types", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_layout(op, shape, params, attributes, types, tmp_path) -> None:
    outputs = ["y", "z"] if op == "Split" else ["y"]
    node = helper.make_node(op, ["x", *params], outputs, name=op.lower(), **attributes)
    written = assert_matches_onnxruntime(graph([node], {"x": shape}, outputs, params), tmp_path)
    assert layer_types(written) == types


@pytest.mark.parametrize("axis", [1, 2, 3], ids=["channels", "height", "width"])
def test_concat_keeps_input_order(axis, tmp_path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="left"),
        helper.make_node("Sigmoid", ["x"], ["b"], name="right"),
        helper.make_node("Concat", ["b", "a", "b"], ["y"], name="cat", axis=axis),
    ]
    written = assert_matches_onnxruntime(graph(nodes, {"x": (1, 2, 3, 4)}, ["y"]), tmp_path)
    (concat,) = [layer for layer in written.details["layers"] if layer["type"] == "Concat"]
    assert concat["bottom"] == ["right", "left", "right"]


SLICES = {
    "channels-middle": ({"starts": [1], "ends": [3], "axes": [1]}, ["Slice", "Silence"]),
    "height-tail": ({"starts": [2], "ends": [np.iinfo(np.int64).max], "axes": [2]}, ["Slice", "Silence"]),
    "negative-end": ({"starts": [0], "ends": [-1], "axes": [3]}, ["Slice", "Silence"]),
    "two-axes": ({"starts": [1, 1], "ends": [3, 4], "axes": [1, 3]}, ["Slice", "Silence", "Slice", "Silence"]),
}


@pytest.mark.parametrize("bounds,types", SLICES.values(), ids=SLICES.keys())
def test_slice(bounds, types, tmp_path) -> None:
    params = {name: np.array(values, np.int64) for name, values in bounds.items()}
    node = helper.make_node("Slice", ["x", *params], ["y"], name="slice")
    written = assert_matches_onnxruntime(graph([node], {"x": (1, 4, 5, 6)}, ["y"], params), tmp_path)
    assert layer_types(written) == types


def _shuffle(perm: list[int]) -> Model:
    nodes = [
        helper.make_node("Reshape", ["x", "split_shape"], ["groups"], name="view"),
        helper.make_node("Transpose", ["groups"], ["swapped"], name="transpose", perm=perm),
        helper.make_node("Reshape", ["swapped", "shape"], ["y"], name="reshape"),
    ]
    params = {"split_shape": np.array([2, 2, 3, 2, 2]), "shape": np.array([2, 6, 2, 2])}
    return graph(nodes, {"x": (2, 6, 2, 2)}, ["y"], params)


def test_channel_shuffle_is_an_exact_1x1_convolution(tmp_path) -> None:
    model = _shuffle([0, 2, 1, 3, 4])
    written = write_caffe(model, tmp_path)
    inputs = example_inputs(model)
    (expected,) = OnnxRuntimeRunner(model).run(inputs).values()
    (actual,) = OpenCVCaffeRunner(written.path(".prototxt"), written.path(".caffemodel")).run(inputs).values()
    np.testing.assert_array_equal(actual, expected)  # OpenCV DNN vs onnxruntime: exact (one 1, zeros elsewhere)
    (layer,) = [layer for layer in written.details["layers"] if layer["type"] != "Input"]
    assert (layer["type"], layer["nodes"]) == ("Convolution", ["view", "transpose", "reshape"])
    assert [p.kind for p in find_problems(model)] == ["channel-shuffle"]


def test_a_reshape_transpose_chain_that_moves_pixels_is_not_a_shuffle() -> None:
    problems = find_problems(_shuffle([0, 1, 2, 4, 3]))
    assert [(p.kind, p.node) for p in problems] == [("dialect", "transpose")]


def test_transpose_is_permute_in_the_opencv_dialect(tmp_path) -> None:
    model = one_node("Transpose", (1, 2, 3, 4), perm=[0, 2, 3, 1])
    written = assert_matches_onnxruntime(model, tmp_path, dialect="opencv")
    assert layer_types(written) == ["Permute"]
    assert written.details["dialect"] == "opencv"


def test_transpose_is_a_dialect_error_in_bvlc(tmp_path) -> None:
    model = one_node("Transpose", (1, 2, 3, 4), perm=[0, 2, 3, 1])
    (problem,) = find_problems(model)
    assert (problem.severity, problem.kind, problem.node) == ("error", "dialect", "transpose")
    assert "Permute" in problem.message and "opencv" in problem.remedy
    with pytest.raises(UnsupportedError, match="Transpose"):
        write_caffe(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_dropout_and_identity_are_removed_and_reported(tmp_path) -> None:
    nodes = [
        helper.make_node("Identity", ["x"], ["a"], name="identity"),
        helper.make_node("Dropout", ["a"], ["b"], name="dropout"),
        helper.make_node("Relu", ["b"], ["y"], name="relu"),
    ]
    model = graph(nodes, {"x": (1, 3)}, ["y"])
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == ["ReLU"]
    removed = sorted(p.node for p in find_problems(model) if p.kind == "removed")
    assert removed == ["dropout", "identity"]
    assert len(written.report.warnings) == 2


# --- arithmetic ----------------------------------------------------------------------------

ELTWISE = {"add": ("Add", 2), "sub": ("Sub", 2), "mul": ("Mul", 2), "max": ("Max", 3), "sum": ("Sum", 3)}


@pytest.mark.parametrize("op,count", ELTWISE.values(), ids=ELTWISE.keys())
def test_eltwise(op, count, tmp_path) -> None:
    names = [f"x{i}" for i in range(count)]
    node = helper.make_node(op, names, ["y"], name=op.lower())
    written = assert_matches_onnxruntime(graph([node], {n: (1, 3, 4, 4) for n in names}, ["y"]), tmp_path)
    assert layer_types(written) == ["Eltwise"]


WITH_CONSTANTS = {
    "mul-per-channel": ("Mul", weights(3, 1, 1), False, ["Scale"]),
    "add-per-channel": ("Add", weights(1, 3, 1, 1), False, ["Scale"]),
    "sub-per-channel": ("Sub", weights(3, 1, 1), False, ["Scale"]),
    "add-last-axis": ("Add", weights(4), False, ["Scale"]),
    "mul-scalar": ("Mul", np.array(1.5, np.float32), False, ["Power"]),
    "scalar-minus-x": ("Sub", np.array(2.0, np.float32), True, ["Power"]),
    "div-scalar": ("Div", np.array(4.0, np.float32), False, ["Power"]),
    "square": ("Pow", np.array(2.0, np.float32), False, ["Power"]),
}


@pytest.mark.parametrize("op,const,const_first,types", WITH_CONSTANTS.values(), ids=WITH_CONSTANTS.keys())
def test_arithmetic_with_a_constant(op, const, const_first, types, tmp_path) -> None:
    inputs = ["c", "x"] if const_first else ["x", "c"]
    node = helper.make_node(op, inputs, ["y"], name=op.lower())
    written = assert_matches_onnxruntime(graph([node], {"x": (1, 3, 5, 4)}, ["y"], {"c": const}), tmp_path)
    assert layer_types(written) == types


BROADCAST_PRODUCTS = {
    "squeeze-excitation": ((1, 4, 5, 3), (1, 4, 1, 1)),
    "per-channel-and-row": ((1, 4, 5, 3), (1, 4, 5, 1)),
    "batch-and-channel": ((2, 4, 5, 3), (2, 4, 1, 1)),
    "last-axis": ((1, 4, 5, 3), (3,)),
}


@pytest.mark.parametrize("data_shape,factor_shape", BROADCAST_PRODUCTS.values(), ids=BROADCAST_PRODUCTS.keys())
def test_product_with_a_broadcast_computed_factor(data_shape, factor_shape, tmp_path) -> None:
    """x * s where s is computed and smaller than x (the squeeze-excitation gate)."""
    model = graph(
        [helper.make_node("Mul", ["s", "x"], ["y"], name="gate")], {"x": data_shape, "s": factor_shape}, ["y"]
    )
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == (["Scale"] if len(factor_shape) == 1 else ["Reshape", "Scale"])


def test_sqrt_is_power(tmp_path) -> None:
    model = graph([helper.make_node("Sqrt", ["x"], ["y"], name="sqrt")], {"x": (1, 3, 2, 2)}, ["y"])
    inputs = {"x": np.abs(example_inputs(model)["x"])}
    written = write_caffe(model, tmp_path)
    (expected,) = OnnxRuntimeRunner(model).run(inputs).values()
    (actual,) = OpenCVCaffeRunner(written.path(".prototxt"), written.path(".caffemodel")).run(inputs).values()
    np.testing.assert_allclose(actual, expected, rtol=1e-6)  # OpenCV DNN vs onnxruntime, float32: rtol 1e-6
    assert layer_types(written) == ["Power"]


# --- upsampling ------------------------------------------------------------------------------

RESIZES = {
    "nearest-x2-asymmetric": (
        2,
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    ),
    "nearest-x3-half-pixel": (3, {"mode": "nearest"}),
}


@pytest.mark.parametrize("factor,attributes", RESIZES.values(), ids=RESIZES.keys())
def test_nearest_resize_is_fixed_deconvolution(factor, attributes, tmp_path) -> None:
    scales = np.array([1, 1, factor, factor], np.float32)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", **attributes)
    model = graph([node], {"x": (1, 3, 4, 5)}, ["y"], {"scales": scales})
    written = write_caffe(model, tmp_path)
    inputs = example_inputs(model)
    (expected,) = OnnxRuntimeRunner(model).run(inputs).values()
    (actual,) = OpenCVCaffeRunner(written.path(".prototxt"), written.path(".caffemodel")).run(inputs).values()
    np.testing.assert_array_equal(actual, expected)  # OpenCV DNN vs onnxruntime: exact (copies times 1)
    assert layer_types(written) == ["Deconvolution"]


# --- what PyTorch exports --------------------------------------------------------------------


class Head(nn.Module):
    """Permute + view before Linear (MTCNN), flatten, softmax over features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 4 * 5, 6)
        self.fc2 = nn.Linear(4 * 4 * 5, 3)

    def forward(self, x):
        x = self.conv(x)
        permuted = x.permute(0, 3, 2, 1).contiguous()
        a = torch.softmax(self.fc(permuted.view(x.size(0), -1)), dim=1)
        return a, self.fc2(torch.flatten(x, 1))


def test_pytorch_permute_view_flatten_softmax(tmp_path) -> None:
    module = Head().eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 7)).astype(np.float32)
    model = simplify(export(module, [x], name="head"))
    written = write_caffe(model, tmp_path)
    runner = OpenCVCaffeRunner(written.path(".prototxt"), written.path(".caffemodel"))
    actual = runner.run([x])
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.from_numpy(x))]
    for want, blob in zip(expected, written.details["outputs"].values()):
        np.testing.assert_allclose(actual[blob], want, rtol=1e-5, atol=1e-5)  # OpenCV DNN vs PyTorch, float32
    # both flattens end in an InnerProduct, which flattens from axis 1 itself: no Flatten layer
    assert sorted(layer_types(written)) == ["Convolution", "InnerProduct", "InnerProduct", "Softmax"]
    names = [layer["name"] for layer in written.details["layers"]]
    assert names[:2] == ["x", "conv"] and {"fc", "fc2"} <= set(names)


# --- problems, all at once, nothing written ----------------------------------------------------


def test_every_unsupported_op_is_listed_at_once_and_nothing_is_written(tmp_path) -> None:
    nodes = [
        helper.make_node("Erf", ["x"], ["a"], name="erf"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Gelu", ["b"], ["c"], name="gelu"),
        helper.make_node("Transpose", ["c"], ["d"], name="swap", perm=[0, 1, 3, 2]),
        helper.make_node("ThresholdedRelu", ["d"], ["y"], name="threshold"),
    ]
    model = graph(nodes, {"x": (1, 3, 4, 4)}, ["y"], opset=20)
    outdir = tmp_path / "out"
    with pytest.raises(UnsupportedError) as raised:
        write_caffe(model, outdir)
    assert sorted(p.node for p in raised.value.problems) == ["erf", "gelu", "swap", "threshold"]
    assert all(p.remedy for p in raised.value.problems)
    assert "Erf" in str(raised.value) and "ThresholdedRelu" in str(raised.value)
    assert not outdir.exists() or list(outdir.iterdir()) == []


def _shape_chain() -> Model:
    """x.view(x.size(0), -1) as exported without simplification."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="size"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"], name="unsqueeze"),
        helper.make_node("Concat", ["batch1", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="view"),
    ]
    params = {"zero": np.array(0), "axes": np.array([0]), "minus_one": np.array([-1])}
    return graph(nodes, {"x": (1, 3, 2, 2)}, ["y"], params)


PROBLEMS = {
    "prelu-computed-slope": (
        graph([helper.make_node("PRelu", ["x", "s"], ["y"], name="prelu")], {"x": (1, 2, 3, 4), "s": (2, 1, 1)}, ["y"]),
        "prelu-slope",
    ),
    "gemm-transA": (one_node("Gemm", (6, 2), {"w": weights(4, 6)}, transA=1, transB=1), "inner-product"),
    "matmul-two-tensors": (
        graph([helper.make_node("MatMul", ["x", "z"], ["y"], name="mm")], {"x": (2, 3), "z": (3, 4)}, ["y"]),
        "inner-product",
    ),
    "gelu-through-erf": (one_node("Gelu", (1, 2, 3, 3)), "no-caffe-form"),
    "resize-align-corners-fractional-length": (
        graph(
            [
                helper.make_node(
                    "Resize",
                    ["x", "", "s"],
                    ["y"],
                    name="down",
                    mode="linear",
                    coordinate_transformation_mode="align_corners",
                )
            ],
            {"x": (1, 2, 4, 4)},
            ["y"],
            {"s": np.array([1, 1, 0.6, 0.6], np.float32)},
        ),
        "resize-ambiguous",
    ),
    "dilated-max-pooling-with-pads": (
        one_node("MaxPool", (1, 2, 8, 8), kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1]),
        "pool-dilation",
    ),
    "slice-step-on-batch": (
        graph(
            [helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="every-other")],
            {"x": (4, 2, 3, 3)},
            ["y"],
            {"s": np.array([0]), "e": np.array([4]), "a": np.array([0]), "st": np.array([2])},
        ),
        "slice",
    ),
    "pooling-window-larger-than-input": (
        one_node("MaxPool", (1, 2, 2, 9), kernel_shape=[4, 3], pads=[0, 1, 1, 1]),
        "pool-window",
    ),
    "resize-to-nothing": (
        graph(
            [helper.make_node("Resize", ["x", "", "s"], ["y"], name="down")],
            {"x": (1, 2, 4, 1)},
            ["y"],
            {"s": np.array([1, 1, 1, 0.5], np.float32)},
        ),
        "resize-empty",
    ),
    "rank-1-output": (
        graph(
            [helper.make_node("Squeeze", ["x", "axes"], ["y"], name="squeeze")],
            {"x": (1, 5)},
            ["y"],
            {"axes": np.array([0])},
        ),
        "rank",
    ),
}


@pytest.mark.parametrize("model,kind", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_pitfalls_are_errors_with_a_remedy(model, kind) -> None:
    problems = find_problems(model)
    assert [p.kind for p in problems] == [kind]
    (problem,) = problems
    assert problem.severity == "error" and problem.remedy and problem.source


def test_an_unsimplified_flatten_chain_asks_for_simplify() -> None:
    problems = find_problems(_shape_chain())
    assert {p.kind for p in problems} == {"needs-simplify"}
    assert {p.node for p in problems} == {"size", "gather", "unsqueeze", "concat", "view"}
    assert all("simplify" in p.remedy for p in problems)


def test_unknown_dialect_is_an_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="dialect"):
        write_caffe(one_node("Relu", (1, 3)), tmp_path, dialect="caffe2")


# --- the files ------------------------------------------------------------------------------------


def test_files_names_and_provenance(tmp_path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="features.0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="features.1"),
        helper.make_node("Relu", ["r"], ["y"], name="features.1_again"),
    ]
    model = graph(nodes, {"x": (1, 2, 4, 4)}, ["y"], {"w": weights(3, 2, 3, 3), "b": weights(3)})
    written = write_caffe(model, tmp_path, name="net")
    assert sorted(p.name for p in written.paths) == ["net.caffemodel", "net.prototxt", "net.provenance.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.caffemodel", "net.prototxt", "net.provenance.json"]
    layers = written.details["layers"]
    assert [(l["name"], l["type"], l["bottom"], l["top"]) for l in layers] == [
        ("x", "Input", [], ["x"]),
        ("features.0", "Convolution", ["x"], ["features.0"]),
        ("features.1", "ReLU", ["features.0"], ["features.0"]),
        ("features.1_again", "ReLU", ["features.0"], ["features.0"]),
    ]
    assert [l["sources"] for l in layers[1:]] == [["features.0"], ["features.1"], ["features.1_again"]]
    assert written.details["outputs"] == {"y": "features.0"} and written.details["inputs"] == {"x": "x"}
    assert json.loads(written.path(".provenance.json").read_text())["layers"] == layers
    assert written.report.counts["layers_by_type"] == {"Convolution": 1, "Input": 1, "ReLU": 2}


def test_caffemodel_blobs_hold_the_weights_bit_exact(tmp_path) -> None:
    stats = {"gamma": weights(4), "beta": weights(4), "mean": weights(4), "var": np.abs(weights(4))}
    model = one_node("BatchNormalization", (1, 4, 2, 2), stats)
    written = write_caffe(model, tmp_path)
    net = caffe_pb2.NetParameter.FromString(written.path(".caffemodel").read_bytes())
    blobs = {
        layer.name: [np.asarray(b.data, np.float32).reshape(b.shape.dim) for b in layer.blobs] for layer in net.layer
    }
    mean, var, factor = blobs["batchnormalization"]
    gamma, beta = blobs["batchnormalization/scale"]
    for actual, expected in ((mean, "mean"), (var, "var"), (gamma, "gamma"), (beta, "beta")):
        np.testing.assert_array_equal(actual, stats[expected])  # protobuf's own parser: bit-exact
    np.testing.assert_array_equal(factor, [1.0])


def test_a_name_with_folders_is_refused(tmp_path) -> None:
    with pytest.raises(InputError, match="plain file name"):
        write_caffe(one_node("Relu", (1, 3)), tmp_path, name="../escape")


# --- exact forms of ops without a Caffe layer of their own ------------------------------------
# Every case below: written, run in OpenCV DNN (with and without OpenCV's layer fusion) and
# compared with onnxruntime on the same graph; the tolerance is stated at each assertion.


def uniform(shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    return RNG.uniform(low, high, shape).astype(np.float32)


ELEMENTWISE_FORMS = {
    # (op, attributes, input values (None: standard normal), Caffe layer types)
    "abs": ("Abs", {}, None, ["AbsVal"]),
    "exp": ("Exp", {}, None, ["Exp"]),
    "log": ("Log", {}, uniform((1, 3, 4, 5), 0.01, 10.0), ["Log"]),
    "softplus": ("Softplus", {}, uniform((1, 3, 4, 5), -30.0, 30.0), ["BNLL"]),
    "selu": ("Selu", {"alpha": 1.7, "gamma": 1.1}, None, ["ELU", "Power"]),
    "hard-sigmoid": (
        "HardSigmoid",
        {"alpha": 0.3, "beta": 0.4},
        uniform((1, 3, 4, 5), -6.0, 6.0),
        ["Power", "ReLU", "Power", "Power", "Eltwise", "Power"],
    ),
    "hard-swish": (
        "HardSwish",
        {},
        uniform((1, 3, 4, 5), -6.0, 6.0),
        ["Power", "ReLU", "Power", "Power", "Eltwise", "Power", "Eltwise"],
    ),
    "softsign": ("Softsign", {}, None, ["AbsVal", "Power", "Eltwise"]),
    "mish": ("Mish", {}, uniform((1, 3, 4, 5), -8.0, 8.0), ["BNLL", "TanH", "Eltwise"]),
    "gelu-tanh": ("Gelu", {"approximate": "tanh"}, None, ["Eltwise", "Eltwise", "TanH", "Power", "Eltwise"]),
}


@pytest.mark.parametrize("op,attributes,values,types", ELEMENTWISE_FORMS.values(), ids=ELEMENTWISE_FORMS.keys())
def test_elementwise_functions(op, attributes, values, types, tmp_path) -> None:
    model = graph(
        [helper.make_node(op, ["x"], ["y"], name=op.lower(), **attributes)], {"x": (1, 3, 4, 5)}, ["y"], opset=20
    )
    inputs = None if values is None else {"x": values}
    # OpenCV DNN vs onnxruntime, float32: rtol 1e-5, atol 1e-5 (transcendental functions differ in the last bits)
    written = assert_matches_onnxruntime(model, tmp_path, inputs=inputs)
    assert layer_types(written) == types


def test_prelu_with_a_slope_along_width_is_relu_minus_slope_relu(tmp_path) -> None:
    written = assert_matches_onnxruntime(one_node("PRelu", (1, 2, 3, 4), {"s": weights(1, 1, 4)}), tmp_path)
    assert layer_types(written) == ["ReLU", "Power", "ReLU", "Scale", "Eltwise"]  # OpenCV vs onnxruntime: atol 1e-5


LRNS = {
    # (size, alpha, beta, bias, Caffe layer types)
    "alexnet": (5, 1e-4, 0.75, 1.0, ["LRN"]),
    "bias-2": (3, 2e-4, 0.5, 2.0, ["LRN", "Power"]),
    "strong": (5, 0.5, 0.75, 1.5, ["LRN", "Power"]),
}


@pytest.mark.parametrize("size,alpha,beta,bias,types", LRNS.values(), ids=LRNS.keys())
def test_lrn(size, alpha, beta, bias, types, tmp_path) -> None:
    model = one_node("LRN", (1, 7, 5, 6), size=size, alpha=alpha, beta=beta, bias=bias)
    inputs = {"x": example_inputs(model)["x"] * 3}
    written = assert_matches_onnxruntime(model, tmp_path, inputs=inputs)  # OpenCV vs onnxruntime: atol 1e-5
    assert layer_types(written) == types


def test_lrn_of_even_size_against_the_spec_formula(tmp_path) -> None:
    """onnxruntime refuses an even size and ONNX's reference implementation loops over the batch
    instead of the channels, so the spec's formula is written out here in NumPy (float64)."""
    size, alpha, beta, bias = 4, 0.3, 0.75, 1.5
    model = one_node("LRN", (1, 7, 5, 6), size=size, alpha=alpha, beta=beta, bias=bias)
    x = example_inputs(model)["x"] * 3
    squares = x.astype(np.float64) ** 2
    window = [(max(0, c - (size - 1) // 2), c + (size - 1) - (size - 1) // 2 + 1) for c in range(7)]
    sums = np.stack([squares[:, begin:end].sum(1) for begin, end in window], axis=1)
    expected = x / (bias + alpha / size * sums) ** beta
    written = write_caffe(model, tmp_path)
    actual = fused_outputs(written, {"x": x})["y"]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)  # OpenCV DNN vs the spec in float64
    assert layer_types(written) == ["Eltwise", "Convolution", "Power", "Eltwise"]


def test_log_softmax_subtracts_the_maximum_so_nothing_underflows(tmp_path) -> None:
    node = helper.make_node("LogSoftmax", ["x"], ["y"], name="log_softmax", axis=1)
    model = graph([node], {"x": (2, 5, 3)}, ["y"])
    x = example_inputs(model)["x"] * 100  # logit gaps of hundreds: log(softmax(x)) would be -inf
    written, pairs = written_against_onnxruntime(model, tmp_path, inputs={"x": x})
    for expected, actual in pairs:
        assert np.isfinite(actual).all()
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)  # OpenCV vs onnxruntime, values ~ 1e2
    assert "Exp" in layer_types(written) and "Log" in layer_types(written)


def test_log_softmax_before_opset_13_normalizes_the_flattened_axes(tmp_path) -> None:
    node = helper.make_node("LogSoftmax", ["x"], ["y"], name="log_softmax", axis=1)
    assert_matches_onnxruntime(graph([node], {"x": (2, 3, 4)}, ["y"], opset=11), tmp_path)  # atol 1e-5


NORMALIZATIONS = {
    # (op, input shape, initializers, attributes, opset)
    "instance": ("InstanceNormalization", (2, 3, 4, 5), {"s": weights(3), "b": weights(3)}, {"epsilon": 1e-3}, 17),
    "layer-last-axis": ("LayerNormalization", (2, 3, 8), {"s": weights(8), "b": weights(8)}, {"axis": -1}, 17),
    "layer-chw": ("LayerNormalization", (2, 3, 4, 5), {"s": weights(3, 4, 5)}, {"axis": 1, "epsilon": 1e-2}, 17),
    "group-per-channel": (
        "GroupNormalization",
        (2, 6, 3, 3),
        {"s": weights(6), "b": weights(6)},
        {"num_groups": 3, "epsilon": 1e-4},
        21,
    ),
    "l2": ("LpNormalization", (2, 3, 4, 5), {}, {"axis": 1, "p": 2}, 17),
    "l1-last-axis": ("LpNormalization", (2, 3, 4, 5), {}, {"axis": -1, "p": 1}, 17),
}


@pytest.mark.parametrize("op,shape,params,attributes,opset", NORMALIZATIONS.values(), ids=NORMALIZATIONS.keys())
def test_normalizations_by_statistics(op, shape, params, attributes, opset, tmp_path) -> None:
    node = helper.make_node(op, ["x", *params], ["y"], name=op.lower(), **attributes)
    model = graph([node], {"x": shape}, ["y"], params, opset=opset)
    written = assert_matches_onnxruntime(model, tmp_path, atol=2e-5)  # OpenCV vs onnxruntime: atol 2e-5 (sums)
    assert "MVN" in layer_types(written) or op == "LpNormalization"


def test_layer_normalization_statistics_outputs(tmp_path) -> None:
    node = helper.make_node(
        "LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv_std"], name="norm", axis=2, epsilon=1e-3
    )
    model = graph([node], {"x": (2, 3, 4, 5)}, ["y", "mean", "inv_std"], {"s": weights(4, 5), "b": weights(4, 5)})
    written = assert_matches_onnxruntime(model, tmp_path, atol=2e-5)  # OpenCV vs onnxruntime: atol 2e-5
    assert sorted(written.details["outputs"]) == ["inv_std", "mean", "y"]


def test_lp_normalization_of_a_zero_vector_is_zero(tmp_path) -> None:
    model = one_node("LpNormalization", (2, 3, 2), axis=0, p=2)
    x = example_inputs(model)["x"]
    x[:, 1, 0] = 0.0
    _written, pairs = written_against_onnxruntime(model, tmp_path, inputs={"x": x})
    for expected, actual in pairs:
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)  # OpenCV vs onnxruntime: zeros, not NaN


ARITHMETIC_FORMS = {
    # (op, inputs in order, computed input shapes, constants, Caffe layer types)
    "min-two": ("Min", ["a", "b"], {"a": (1, 3, 4, 4), "b": (1, 3, 4, 4)}, {}, ["Power", "Power", "Eltwise", "Power"]),
    "mean-three": (
        "Mean",
        ["a", "b", "c"],
        {"a": (1, 3, 4, 4), "b": (1, 3, 4, 4), "c": (1, 3, 4, 4)},
        {},
        ["Eltwise", "Power"],
    ),
    "div-computed": ("Div", ["a", "b"], {"a": (1, 3, 4, 4), "b": (1, 3, 4, 4)}, {}, ["Power", "Eltwise"]),
    "add-broadcast-computed": (
        "Add",
        ["a", "b"],
        {"a": (1, 3, 4, 4), "b": (1, 3, 1, 1)},
        {},
        ["Concat", "Concat", "Eltwise"],
    ),
    "sub-two-way-broadcast": (
        "Sub",
        ["a", "b"],
        {"a": (1, 3, 4, 1), "b": (1, 1, 1, 5)},
        {},
        ["Concat", "Concat", "Concat", "Eltwise"],
    ),
    "div-per-channel-constant": (
        "Div",
        ["a", "c"],
        {"a": (1, 3, 4, 4)},
        {"c": uniform((3, 1, 1), 1.0, 2.0)},
        ["Scale"],
    ),
    "constant-over-x": ("Div", ["c", "a"], {"a": (1, 3, 4, 4)}, {"c": weights(1, 3, 1, 1)}, ["Power", "Scale"]),
    "constant-minus-x": ("Sub", ["c", "a"], {"a": (1, 3, 4, 4)}, {"c": weights(4)}, ["Scale"]),
    "max-scalar": ("Max", ["a", "c"], {"a": (1, 3, 4, 4)}, {"c": np.array(0.25, np.float32)}, ["Power", "Eltwise"]),
    "min-scalar": (
        "Min",
        ["a", "c"],
        {"a": (1, 3, 4, 4)},
        {"c": np.array(0.25, np.float32)},
        ["Power", "Power", "Eltwise", "Power"],
    ),
    "mul-repeating-inside-its-run": (
        "Mul",
        ["a", "b"],
        {"a": (2, 1, 4, 5), "b": (2, 3, 4, 5)},
        {},
        ["Concat", "Eltwise"],
    ),
    "constant-onto-a-vector-input": ("Add", ["a", "c"], {"a": (5,)}, {"c": weights(3, 5)}, ["Reshape", "Concat"]),
    "max-full-constant": ("Max", ["a", "c"], {"a": (2, 3, 4)}, {"c": weights(2, 3, 4)}, ["Slice", "Silence"]),
}


@pytest.mark.parametrize("op,names,shapes,constants,types", ARITHMETIC_FORMS.values(), ids=ARITHMETIC_FORMS.keys())
def test_arithmetic_forms(op, names, shapes, constants, types, tmp_path) -> None:
    model = graph([helper.make_node(op, names, ["y"], name=op.lower())], shapes, ["y"], constants)
    inputs = example_inputs(model)
    for name in inputs:
        if op == "Div" and names.index(name) == 1:
            inputs[name] = uniform(shapes[name], 0.5, 2.0)  # a divisor away from zero
    written = assert_matches_onnxruntime(model, tmp_path, inputs=inputs)  # OpenCV vs onnxruntime: atol 1e-5
    assert layer_types(written)[: len(types)] == types


def test_a_constant_used_as_data_gets_a_blob(tmp_path) -> None:
    piece = weights(1, 2, 3, 4)
    node = helper.make_node("Concat", ["x", "c"], ["y"], name="cat", axis=1)
    model = graph([node], {"x": (1, 3, 3, 4)}, ["y"], {"c": piece})
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV vs onnxruntime: atol 1e-5
    assert "InnerProduct" in layer_types(written) and layer_types(written)[-1] == "Concat"
    np.testing.assert_array_equal(fused_outputs(written, example_inputs(model))["y"][:, 3:], piece)  # bit-exact


def test_a_scale_over_height_and_width_after_a_convolution_survives_opencv_fusion(tmp_path) -> None:
    """OpenCV folds a Scale after a Convolution into its weights, one value per channel; a map over H, W
    is therefore a two-bottom Scale, which it leaves alone."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "m"], ["y"], name="mask"),
    ]
    model = graph(nodes, {"x": (1, 2, 4, 5)}, ["y"], {"w": weights(3, 2, 3, 3), "m": weights(1, 1, 4, 5)})
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV (fused and not) vs onnxruntime: atol 1e-5
    (scale,) = [layer for layer in written.details["layers"] if layer["type"] == "Scale"]
    assert len(scale["bottom"]) == 2


POOLING_FORMS = {
    # (op, input size, attributes)
    "avg-asymmetric-not-counted": ("AveragePool", 7, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]}),
    "avg-asymmetric-counted": (
        "AveragePool",
        7,
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 0, 1], "count_include_pad": 1},
    ),
    "avg-ceil-not-counted": (
        "AveragePool",
        8,
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    ),
    "max-begin-heavy": ("MaxPool", 8, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 0, 0]}),
    "max-end-heavy-stride1": ("MaxPool", 6, {"kernel_shape": [3, 3], "pads": [0, 0, 2, 2]}),
    "max-ceil-without-pads-reduce-by-one": ("MaxPool", 2, {"kernel_shape": [1, 1], "strides": [2, 2], "ceil_mode": 1}),
    "avg-dilated": ("AveragePool", 7, {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]}),
    "avg-dilated-ceil": ("AveragePool", 4, {"kernel_shape": [2, 2], "dilations": [2, 2], "ceil_mode": 1}),
    "max-dilated-strided": ("MaxPool", 9, {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [2, 3]}),
}


def test_a_pooling_bvlc_and_opencv_would_size_differently_is_written_one_axis_at_a_time(tmp_path) -> None:
    """Padded along W only: BVLC Caffe drops H's last window (it starts past the input) because some
    axis is padded, OpenCV because H is not padded keeps it; one Pooling per axis sizes alike in both."""
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[3, 1], pads=[0, 1, 1, 1], ceil_mode=1
    )
    written = assert_matches_onnxruntime(graph([node], {"x": (1, 2, 6, 8)}, ["y"]), tmp_path)  # atol 1e-5
    assert layer_types(written)[:2] == ["Pooling", "Pooling"]


@pytest.mark.parametrize("op,size,attributes", POOLING_FORMS.values(), ids=POOLING_FORMS.keys())
def test_pooling_forms(op, size, attributes, tmp_path) -> None:
    node = helper.make_node(op, ["x"], ["y"], name=op.lower(), **attributes)
    model = graph([node], {"x": (1, 3, size, size)}, ["y"], opset=19)  # AveragePool has dilations from opset 19
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV vs onnxruntime, float32: atol 1e-5
    assert all(p.severity == "warning" for p in find_problems(model))
    assert "Pooling" in layer_types(written) or "Convolution" in layer_types(written)


CONVOLUTION_FORMS = {
    # (op, input shape, weight shape, attributes)
    "conv-same-lower-stride2": ("Conv", (1, 2, 7, 8), (3, 2, 3, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    "conv-pads-0011-stride2": ("Conv", (1, 2, 8, 8), (3, 2, 3, 3), {"pads": [0, 0, 1, 1], "strides": [2, 2]}),
    "conv-dilated-asymmetric": ("Conv", (1, 2, 9, 9), (3, 2, 3, 3), {"pads": [2, 1, 0, 1], "dilations": [2, 2]}),
    "deconv-output-padding": (
        "ConvTranspose",
        (1, 2, 4, 5),
        (2, 3, 3, 3),
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
    ),
    "deconv-dilated": ("ConvTranspose", (1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2], "dilations": [2, 2]}),
    "deconv-same-upper": ("ConvTranspose", (1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "deconv-output-shape-past-full": (
        "ConvTranspose",
        (1, 2, 3, 3),
        (2, 3, 3, 3),
        {"strides": [3, 2], "output_shape": [10, 8]},
    ),
    "deconv-asymmetric-pads-grouped": (
        "ConvTranspose",
        (1, 4, 4, 4),
        (4, 2, 4, 4),
        {"strides": [2, 2], "pads": [2, 1, 0, 1], "group": 2},
    ),
}


@pytest.mark.parametrize("op,shape,weight_shape,attributes", CONVOLUTION_FORMS.values(), ids=CONVOLUTION_FORMS.keys())
def test_convolution_forms(op, shape, weight_shape, attributes, tmp_path) -> None:
    out_channels = weight_shape[0] if op == "Conv" else weight_shape[1] * attributes.get("group", 1)
    model = one_node(op, shape, {"w": weights(*weight_shape), "b": weights(out_channels)}, **attributes)
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV vs onnxruntime, float32: atol 1e-5
    assert layer_types(written)[0] in ("Convolution", "Deconvolution")


def test_deconvolution_dilation_is_written_as_zero_taps(tmp_path) -> None:
    """OpenCV DNN ignores a Deconvolution's dilation (its output would be 9x11 here, not 11x13)."""
    model = one_node("ConvTranspose", (1, 2, 4, 5), {"w": weights(2, 3, 3, 3)}, strides=[2, 2], dilations=[2, 2])
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV vs onnxruntime: atol 1e-5
    text = written.path(".prototxt").read_text()
    assert "dilation" not in text and "kernel_size: 5" in text


RESIZE_FORMS = {
    # (scales, attributes, the form: "tent" = edge rows + a bilinear Deconvolution, "maps" = a linear map per axis)
    "linear-x2-half-pixel": ([2, 2], {"mode": "linear"}, "tent"),
    "linear-x3-pytorch-half-pixel": (
        [3, 3],
        {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
        "tent",
    ),
    "linear-x2-asymmetric": ([2, 2], {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, "tent"),
    "linear-x4-height-only": ([4, 1], {"mode": "linear"}, "tent"),
    "linear-x2-align-corners": ([2, 2], {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, "maps"),
    "linear-downsample": ([0.5, 0.5], {"mode": "linear"}, "maps"),
    "cubic-x2": ([2, 2], {"mode": "cubic"}, "maps"),
    "nearest-x1.5": ([1.5, 1.5], {"mode": "nearest"}, "maps"),
}


@pytest.mark.parametrize("factors,attributes,form", RESIZE_FORMS.values(), ids=RESIZE_FORMS.keys())
def test_resize_forms(factors, attributes, form, tmp_path) -> None:
    scales = np.array([1, 1, *factors], np.float32)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", **attributes)
    model = graph([node], {"x": (1, 3, 4, 6)}, ["y"], {"scales": scales})
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV vs onnxruntime, float32: atol 1e-5
    types = set(layer_types(written))
    assert (
        ("Deconvolution" in types and "Concat" in types) if form == "tent" else {"InnerProduct", "Convolution"} <= types
    )


def test_resize_by_sizes_crop_and_resize_extrapolates(tmp_path) -> None:
    node = helper.make_node(
        "Resize",
        ["x", "roi", "", "sizes"],
        ["y"],
        name="crop_resize",
        mode="linear",
        coordinate_transformation_mode="tf_crop_and_resize",
        extrapolation_value=-2.5,
    )
    roi = np.array([0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3], np.float32)
    model = graph([node], {"x": (1, 2, 5, 6)}, ["y"], {"roi": roi, "sizes": np.array([1, 2, 7, 4])})
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV vs onnxruntime, float32: atol 1e-5
    assert layer_types(written)[-1] == "Scale"


SPACE_FORMS = {
    "space-to-depth": ("SpaceToDepth", {}, (1, 3, 4, 6), 13, ["Convolution"]),
    "space-to-depth-crd": ("SpaceToDepth", {"mode": "CRD"}, (1, 3, 4, 6), 28, ["Convolution"]),
    "depth-to-space-dcr": ("DepthToSpace", {"mode": "DCR"}, (1, 12, 2, 3), 13, ["Deconvolution"]),
    "depth-to-space-crd": ("DepthToSpace", {"mode": "CRD"}, (1, 12, 2, 3), 13, ["Deconvolution"]),
}


@pytest.mark.parametrize("op,attributes,shape,opset,types", SPACE_FORMS.values(), ids=SPACE_FORMS.keys())
def test_space_and_depth(op, attributes, shape, opset, types, tmp_path) -> None:
    node = helper.make_node(op, ["x"], ["y"], name=op.lower(), blocksize=2, **attributes)
    model = graph([node], {"x": shape}, ["y"], opset=opset)
    written, pairs = written_against_onnxruntime(model, tmp_path)
    for expected, actual in pairs:
        np.testing.assert_array_equal(actual, expected)  # OpenCV vs onnxruntime: exact (1 * x, plus zeros)
    assert layer_types(written) == types


STRIDED_SLICES = {
    # (starts, ends, axes, steps, Caffe layer types)
    "height-and-width-step-2": ([1, 0], [9, 7], [2, 3], [2, 3], ["Slice", "Silence", "Slice", "Silence", "Pooling"]),
    "channels-step-2": ([0], [5], [1], [2], ["Reshape", "Convolution", "Reshape"]),
    "width-reversed": ([-1], [-(2**63)], [3], [-1], ["InnerProduct"]),
    "height-reversed-step-2": ([6], [0], [2], [-2], ["Reshape", "Convolution", "Reshape"]),
}


@pytest.mark.parametrize("starts,ends,axes,steps,types", STRIDED_SLICES.values(), ids=STRIDED_SLICES.keys())
def test_strided_slices(starts, ends, axes, steps, types, tmp_path) -> None:
    params = {n: np.array(v, np.int64) for n, v in zip(("s", "e", "a", "st"), (starts, ends, axes, steps))}
    node = helper.make_node("Slice", ["x", *params], ["y"], name="slice")
    written, pairs = written_against_onnxruntime(graph([node], {"x": (1, 5, 9, 8)}, ["y"], params), tmp_path)
    for expected, actual in pairs:
        assert actual.shape == expected.shape
        np.testing.assert_array_equal(actual, expected)  # OpenCV vs onnxruntime: exact (copies, 1 * x)
    assert layer_types(written) == types


def test_batched_and_vector_matmul_with_constants(tmp_path) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "batched"], ["y"], name="per_item"),
        helper.make_node("MatMul", ["x", "vector"], ["z"], name="vector"),
    ]
    params = {"batched": weights(2, 3, 4, 5), "vector": weights(4)}
    written = assert_matches_onnxruntime(graph(nodes, {"x": (2, 3, 6, 4)}, ["y", "z"], params), tmp_path)
    assert layer_types(written).count("InnerProduct") == 6 + 1  # OpenCV vs onnxruntime above: atol 1e-5


def test_gemm_bias_per_row_and_column(tmp_path) -> None:
    model = one_node("Gemm", (3, 6), {"w": weights(6, 4), "c": weights(3, 4)}, beta=0.5)
    written = assert_matches_onnxruntime(model, tmp_path)  # OpenCV vs onnxruntime: atol 1e-5
    assert layer_types(written) == ["InnerProduct", "Scale"]


PASS_THROUGH = {
    "identity": ("Identity", {}),
    "dropout": ("Dropout", {}),
    "max-of-one": ("Max", {}),
    "clip-without-bounds": ("Clip", {}),
}


@pytest.mark.parametrize("op,attributes", PASS_THROUGH.values(), ids=PASS_THROUGH.keys())
def test_an_output_that_is_the_input_is_copied(op, attributes, tmp_path) -> None:
    """A net whose output is its input blob has no layer computing it; OpenCV DNN refuses to run one."""
    model = graph([helper.make_node(op, ["x"], ["y"], name="pass", **attributes)], {"x": (1, 3, 2, 2)}, ["y"])
    written, pairs = written_against_onnxruntime(model, tmp_path)
    for expected, actual in pairs:
        np.testing.assert_array_equal(actual, expected)  # OpenCV vs onnxruntime: a copy
    assert layer_types(written) == ["Split"]


def test_weights_behind_identity_nodes_without_simplify(tmp_path) -> None:
    """What an unsimplified TorchScript export gives: each parameter through an Identity."""
    nodes = [
        helper.make_node("Identity", ["features.0.weight"], ["w"], name="identity_w"),
        helper.make_node("Identity", ["features.0.bias"], ["b"], name="identity_b"),
        helper.make_node("Conv", ["x", "w", "b"], ["y"], name="features.0", pads=[1, 1, 1, 1]),
    ]
    params = {"features.0.weight": weights(4, 3, 3, 3), "features.0.bias": weights(4)}
    written = assert_matches_onnxruntime(graph(nodes, {"x": (1, 3, 5, 5)}, ["y"], params), tmp_path)  # atol 1e-5
    assert layer_types(written) == ["Convolution"]


def test_a_blob_with_another_reader_is_not_written_in_place(tmp_path) -> None:
    """BVLC Caffe gives a blob read by several layers a Split; a reader writing it in place would
    then produce it a second time ("Top blob produced by multiple sources"), earlier readers too."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Sigmoid", ["c"], ["a"], name="first_reader"),
        helper.make_node("Relu", ["c"], ["b"], name="second_reader"),
        helper.make_node("Add", ["a", "b"], ["y"], name="add"),
    ]
    written = assert_matches_onnxruntime(graph(nodes, {"x": (1, 2, 4, 4)}, ["y"], {"w": weights(3, 2, 1, 1)}), tmp_path)
    layers = {layer["name"]: layer for layer in written.details["layers"]}
    assert layers["second_reader"]["top"] != layers["second_reader"]["bottom"]  # OpenCV vs onnxruntime above: 1e-5


def test_lrn_within_channels_round_trips_as_one_layer(tmp_path) -> None:
    """ONNX has no LRN within channels; the Caffe reader writes it out as x * x, AveragePool, Mul, Add,
    Pow, Mul, and the writer recognises that chain and writes Caffe's one layer back."""
    from google.protobuf import text_format

    from workbench.readers import load

    source = caffe_pb2.NetParameter(name="within")
    text_format_net = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 7 dim: 6 } } }
    layer { name: "norm" type: "LRN" bottom: "data" top: "norm"
            lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }
    """
    text_format.Parse(text_format_net, source)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "within.prototxt").write_text(text_format.MessageToString(source))
    (tmp_path / "src" / "within.caffemodel").write_bytes(source.SerializeToString())
    original = OpenCVCaffeRunner(tmp_path / "src" / "within.prototxt", tmp_path / "src" / "within.caffemodel")
    model = load(tmp_path / "src" / "within.prototxt", tmp_path / "src" / "within.caffemodel")
    assert {node.op_type for node in model.ir.graph} >= {"AveragePool", "Pow"}  # written out by the reader
    written = write_caffe(model, tmp_path / "out")
    x = (example_inputs(model)["data"] * 2).astype(np.float32)
    rewritten = OpenCVCaffeRunner(written.path(".prototxt"), written.path(".caffemodel"))
    np.testing.assert_array_equal(rewritten.run([x])["norm"], original.run([x])["norm"])  # OpenCV, same layer: exact
    assert layer_types(written) == ["LRN"] and "WITHIN_CHANNEL" in written.path(".prototxt").read_text()
    assert written.details["layers"][1]["sources"] == ["norm"]


def test_dropout_in_training_mode_is_reported() -> None:
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y"], name="dropout")
    params = {"ratio": np.array(0.5, np.float32), "training": np.array(True)}
    (problem,) = find_problems(graph([node], {"x": (1, 3, 2, 2)}, ["y"], params))
    assert (problem.severity, problem.kind) == ("error", "training-mode") and problem.remedy
