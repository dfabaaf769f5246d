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
    "3x3-pad1": (dict(pads=[1, 1, 1, 1]), (6, 4, 3, 3), True),
    "stride2-no-bias": (dict(strides=[2, 2], pads=[1, 1, 1, 1]), (6, 4, 3, 3), False),
    "grouped": (dict(group=2, pads=[1, 1, 1, 1]), (6, 2, 3, 3), True),
    "depthwise": (dict(group=4, pads=[1, 1, 1, 1]), (4, 1, 3, 3), True),
    "dilated": (dict(dilations=[2, 2], pads=[2, 2, 2, 2]), (6, 4, 3, 3), True),
    "dilated-hw": (dict(dilations=[1, 2]), (6, 4, 3, 3), True),
    "non-square": (dict(pads=[1, 0, 1, 0], strides=[1, 2]), (6, 4, 3, 1), True),
}


@pytest.mark.parametrize("attributes,shape,bias", CONVOLUTIONS.values(), ids=CONVOLUTIONS.keys())
def test_conv(attributes, shape, bias, tmp_path) -> None:
    params = {"w": weights(*shape)} | ({"b": weights(shape[0])} if bias else {})
    model = one_node("Conv", (1, 4, 9, 8), params, **attributes)
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == ["Convolution"]


DECONVOLUTIONS = {
    "k2-s2": (dict(strides=[2, 2]), (4, 3, 2, 2)),
    "k3-s2-pad1": (dict(strides=[2, 2], pads=[1, 1, 1, 1]), (4, 3, 3, 3)),
    "grouped": (dict(strides=[2, 2], group=2), (4, 2, 2, 2)),
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
    "leaky-relu": ("LeakyRelu", {}, dict(alpha=0.2), ["ReLU"]),
    "elu": ("Elu", {}, dict(alpha=0.7), ["ELU"]),
    "sigmoid": ("Sigmoid", {}, {}, ["Sigmoid"]),
    "tanh": ("Tanh", {}, {}, ["TanH"]),
    "prelu-per-channel": ("PRelu", {"slope": weights(4, 1, 1)}, {}, ["PReLU"]),
    "prelu-shared": ("PRelu", {"slope": np.array([0.3], np.float32)}, {}, ["PReLU"]),
    "softmax-channels": ("Softmax", {}, dict(axis=1), ["Softmax"]),
    "softmax-last-axis": ("Softmax", {}, dict(axis=-1), ["Softmax"]),
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
        dict(kernel_shape=[3, 3], strides=[2, 2]),
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
    ),
    "max-floor-pad": (
        "MaxPool",
        8,
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
    ),
    "max-floor-odd-equal": ("MaxPool", 7, dict(kernel_shape=[3, 3], strides=[2, 2]), ["Pooling"]),
    "max-ceil-even": ("MaxPool", 8, dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), ["Pooling"]),
    "max-ceil-pad": (
        "MaxPool",
        8,
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
        ["Pooling"],
    ),
    "max-ceil-last-window-in-pad": (
        "MaxPool",
        7,
        dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
        ["Pooling"],
    ),
    "max-rectangular": ("MaxPool", 10, dict(kernel_shape=[3, 2], strides=[2, 1]), ["Pooling", "Slice", "Silence"]),
    "avg-floor-even": (
        "AveragePool",
        8,
        dict(kernel_shape=[3, 3], strides=[2, 2]),
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
    ),
    "avg-floor-pad-counted": (
        "AveragePool",
        8,
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        ["Pooling", "Slice", "Silence", "Slice", "Silence"],
    ),
    "avg-ceil-even": ("AveragePool", 8, dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), ["Pooling"]),
    "avg-2x2": ("AveragePool", 8, dict(kernel_shape=[2, 2], strides=[2, 2]), ["Pooling"]),
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
    "conv-same-upper-k3": ("Conv", (1, 4, 8, 8), weights(6, 4, 3, 3), dict(auto_pad="SAME_UPPER"), ["Convolution"]),
    "conv-same-lower-k3": ("Conv", (1, 4, 7, 9), weights(6, 4, 3, 3), dict(auto_pad="SAME_LOWER"), ["Convolution"]),
    "conv-valid": ("Conv", (1, 4, 8, 8), weights(6, 4, 3, 3), dict(auto_pad="VALID", strides=[2, 2]), ["Convolution"]),
    # total padding 1 at the end: Caffe's pad 0 and its rounded-up last window cover it
    "maxpool-same-upper-even": (
        "MaxPool",
        (1, 3, 8, 8),
        None,
        dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        ["Pooling"],
    ),
    "maxpool-same-upper-odd": (
        "MaxPool",
        (1, 3, 7, 7),
        None,
        dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        ["Pooling"],
    ),
    "maxpool-same-upper-rectangular": (
        "MaxPool",
        (1, 3, 8, 7),
        None,
        dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        ["Pooling"],
    ),
    "avgpool-same-upper-excluding-pads": (
        "AveragePool",
        (1, 3, 8, 8),
        None,
        dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        ["Pooling"],
    ),
    "maxpool-explicit-end-pads": (
        "MaxPool",
        (1, 3, 9, 9),
        None,
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 2, 2]),
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
    "reduce-mean-flat": ("ReduceMean", {"axes": np.array([-2, -1])}, dict(keepdims=0), ["Pooling", "Flatten"]),
    "reduce-max-flat": ("ReduceMax", {"axes": np.array([2, 3])}, dict(keepdims=0), ["Pooling", "Flatten"]),
}


@pytest.mark.parametrize("op,params,attributes,types", GLOBAL_POOLS.values(), ids=GLOBAL_POOLS.keys())
def test_global_pooling(op, params, attributes, types, tmp_path) -> None:
    node = helper.make_node(op, ["x", *params], ["y"], name="pool", **attributes)
    model = graph([node], {"x": (1, 5, 6, 7)}, ["y"], params, opset=18)
    written = assert_matches_onnxruntime(model, tmp_path)
    assert layer_types(written) == types


# --- inner product ---------------------------------------------------------------------

INNER_PRODUCTS = {
    "linear": ("Gemm", (2, 6), {"w": weights(4, 6), "b": weights(4)}, dict(transB=1)),
    "gemm-alpha-beta": ("Gemm", (2, 6), {"w": weights(6, 4), "b": weights(1, 4)}, dict(alpha=0.5, beta=2.0)),
    "gemm-no-bias": ("Gemm", (2, 6), {"w": weights(4, 6)}, dict(transB=1)),
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
    "flatten": ("Flatten", (1, 3, 4, 5), {}, dict(axis=1), ["Flatten"]),
    "reshape-merge-hw": ("Reshape", (1, 3, 4, 5), {"shape": np.array([1, 3, 20])}, {}, ["Flatten"]),
    "reshape-general": ("Reshape", (1, 3, 4, 5), {"shape": np.array([1, 6, 10])}, {}, ["Reshape"]),
    "squeeze": ("Squeeze", (1, 3, 1, 1), {"axes": np.array([2, 3])}, {}, ["Flatten"]),
    "unsqueeze": ("Unsqueeze", (1, 6), {"axes": np.array([2])}, {}, ["Reshape"]),
    "split-unequal": ("Split", (1, 6, 3, 3), {"sizes": np.array([2, 4])}, dict(axis=1), ["Slice"]),
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
        dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    ),
    "nearest-x3-half-pixel": (3, dict(mode="nearest")),
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
    assert sorted(layer_types(written)) == ["Convolution", "Flatten", "InnerProduct", "InnerProduct", "Softmax"]
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
