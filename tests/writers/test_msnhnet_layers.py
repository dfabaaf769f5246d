"""MsnhNet writer, one ONNX op family at a time: each small graph is written with
``write_msnhnet``, run by the project's MsnhNet executor and compared with onnxruntime
on the same graph; every written ``.msnhbin`` holds exactly the floats MsnhNet's
loader takes for the ``.msnhnet``. Unsupported cases are reported by ``find_problems``,
all at once, before any file is written.

The forms asserted here (a padding layer before a conv whose X and Y differ, an
explicit -FLT_MAX padding before a stride-1 max pooling, a copy before a view, ...)
are the ones MsnhNet 2.0 computes correctly; each was checked in the real runtime
while the writer was built.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from workbench import InputError, UnsupportedError
from workbench.formats.msnhnet import read_net
from workbench.graph import Model, SourceInfo, provenance
from workbench.readers import example_inputs
from workbench.readers.onnx_reader import annotate_provenance
from workbench.runners.msnhnet_runner import MsnhNetRunner
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.writers.msnhnet import find_problems, write_msnhnet

RNG = np.random.default_rng(0)


def weights(*shape: int, low: float | None = None) -> np.ndarray:
    data = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(data) + low if low is not None else data


def model_of(
    nodes: list[onnx.NodeProto],
    shape: tuple[int, ...],
    outputs: list[str],
    constants: dict[str, np.ndarray] | None = None,
    opset: int = 17,
) -> Model:
    """A graph of ``nodes`` reading input ``x`` of ``shape``; each node's name is its source layer."""
    graph = helper.make_graph(
        nodes,
        "msnhnet_case",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [onnx.numpy_helper.from_array(np.asarray(array), name) for name, array in (constants or {}).items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    model = ir.from_proto(proto)
    annotate_provenance(model)
    return Model(model, SourceInfo("onnx", (), "case"))


def op(op_type: str, shape: tuple[int, ...], constants: dict[str, np.ndarray] | None = None, **attributes) -> Model:
    """``y = op_type(x, *constants)``."""
    node = helper.make_node(op_type, ["x", *(constants or {})], ["y"], name=op_type.lower(), **attributes)
    return model_of([node], shape, ["y"], constants)


def from_one_module(model: Model, module: str, *nodes: str) -> Model:
    """Give ``nodes`` the one source layer ``module`` (a module exported as several nodes, or called twice)."""
    for node in model.graph:
        if node.name in nodes:
            provenance.set_sources(node, [module])
    return model


def kinds(written) -> list[str]:
    """The written layer kinds (without the identity batchnorm a weightless network starts with)."""
    return [layer["type"] for layer in written.details["layers"] if layer["role"] != "weights"]


def problem_kinds(model: Model) -> list[str]:
    return [p.kind for p in find_problems(model) if p.kind != "no-weights"]


def check_against_onnxruntime(model: Model, tmp_path, atol: float = 1e-5, inputs=None):
    """Write, check the .msnhbin length, run both; returns the written files."""
    written = write_msnhnet(model, tmp_path)
    net = read_net(written.path(".msnhnet"))
    # MsnhNet's loader takes exactly weight_count floats for these layers ("need != given" otherwise)
    assert written.path(".msnhbin").stat().st_size == 4 * net.weight_count
    feed = inputs if inputs is not None else example_inputs(model)
    expected = OnnxRuntimeRunner(model).run(feed)
    actual = MsnhNetRunner(written.path(".msnhnet"), written.path(".msnhbin"), written.details).run(feed)
    assert list(actual) == list(expected)
    for name, want in expected.items():
        assert actual[name].shape == want.shape, name
        # the NumPy MsnhNet executor against onnxruntime, float32: atol 1e-5 unless the case states more
        np.testing.assert_allclose(actual[name], want, rtol=1e-5, atol=atol, err_msg=name)
    return written


# ---- convolutions ----------------------------------------------------------------------------

CONVOLUTIONS = {
    # name: (attributes, weight shape, MsnhNet layer kinds)
    "3x3-pad1": ({"pads": [1, 1, 1, 1]}, (6, 4, 3, 3), ["conv"]),
    "stride2-no-bias": ({"strides": [2, 2], "pads": [1, 1, 1, 1]}, (6, 4, 3, 3), ["conv"]),
    "grouped": ({"group": 2, "pads": [1, 1, 1, 1]}, (6, 2, 3, 3), ["conv"]),
    "depthwise": ({"group": 4, "pads": [1, 1, 1, 1], "strides": [2, 2]}, (4, 1, 3, 3), ["conv"]),
    "dilated": ({"dilations": [2, 2], "pads": [2, 2, 2, 2]}, (6, 4, 3, 3), ["conv"]),
    "1x1": ({}, (6, 4, 1, 1), ["conv"]),
    # MsnhNet's im2col swaps X and Y: written as explicit padding + a square zero-embedded kernel
    "non-square-kernel": ({"pads": [1, 0, 1, 0]}, (6, 4, 3, 1), ["padding", "conv"]),
    "non-square-stride": ({"strides": [1, 2], "pads": [1, 1, 1, 1]}, (6, 4, 3, 3), ["padding", "conv", "slice"]),
    "non-square-dilation": ({"dilations": [1, 2], "pads": [1, 2, 1, 2]}, (6, 4, 3, 3), ["padding", "conv"]),
    "one-sided-pads": ({"pads": [0, 0, 1, 1]}, (6, 4, 2, 2), ["padding", "conv"]),
    "same-upper": ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (6, 4, 3, 3), ["padding", "conv"]),
    "k2-dilation2-pad1": ({"dilations": [2, 2], "pads": [1, 1, 1, 1]}, (6, 4, 2, 2), ["padding", "conv"]),
}


@pytest.mark.parametrize("attributes,shape,expected", CONVOLUTIONS.values(), ids=CONVOLUTIONS.keys())
def test_conv(attributes, shape, expected, tmp_path) -> None:
    constants = {"w": weights(*shape)} | ({} if "no-bias" in str(attributes) else {"b": weights(shape[0])})
    written = check_against_onnxruntime(op("Conv", (1, 4, 9, 8), constants, **attributes), tmp_path)
    assert kinds(written) == expected


def test_conv_1d_is_a_square_kernel_on_one_row(tmp_path) -> None:
    model = op("Conv", (1, 4, 11), {"w": weights(5, 4, 3), "b": weights(5)}, pads=[1, 1])
    written = check_against_onnxruntime(model, tmp_path)
    assert kinds(written) == ["padding", "conv"]


DECONVOLUTIONS = {
    # a deconv of a non-square input is never layer 0 (MsnhNet would count its input as W x W x C)
    "k2-s2": ({"strides": [2, 2]}, (4, 3, 2, 2), ["act", "deconv"]),
    "k3-s2-pad1": ({"strides": [2, 2], "pads": [1, 1, 1, 1]}, (4, 3, 3, 3), ["act", "deconv"]),
    "non-square": ({"strides": [1, 2]}, (4, 3, 2, 3), ["act", "deconv"]),
    # grouped deconv is wrong in MsnhNet: one group of block-diagonal weights
    "grouped": ({"strides": [2, 2], "group": 2}, (4, 2, 2, 2), ["act", "deconv"]),
    "output-padding": (
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
        (4, 3, 3, 3),
        ["act", "deconv", "padding"],
    ),
    "dilated": ({"dilations": [2, 2]}, (4, 3, 2, 2), ["act", "deconv"]),
}


@pytest.mark.parametrize("attributes,shape,expected", DECONVOLUTIONS.values(), ids=DECONVOLUTIONS.keys())
def test_conv_transpose(attributes, shape, expected, tmp_path) -> None:
    out_channels = shape[1] * attributes.get("group", 1)
    model = op("ConvTranspose", (1, 4, 5, 6), {"w": weights(*shape), "b": weights(out_channels)}, **attributes)
    assert kinds(check_against_onnxruntime(model, tmp_path)) == expected


def test_output_padding_past_every_tap_keeps_the_bias(tmp_path) -> None:
    """Rows no input reaches hold the bias alone: a crop cannot make them, a batchnorm adds the bias after."""
    model = op(
        "ConvTranspose",
        (1, 4, 5, 6),
        {"w": weights(4, 3, 2, 2), "b": weights(3)},
        strides=[3, 3],
        output_padding=[2, 2],
    )
    assert kinds(check_against_onnxruntime(model, tmp_path)) == ["act", "deconv", "padding", "batchnorm"]


# ---- normalisation -------------------------------------------------------------------------


def batch_norm_constants(channels: int) -> dict[str, np.ndarray]:
    return {
        "gamma": weights(channels, low=0.5),
        "beta": weights(channels),
        "mean": weights(channels),
        "var": weights(channels, low=0.5),
    }


@pytest.mark.parametrize("conv_bias", [True, False], ids=["conv-bias", "no-conv-bias"])
def test_batch_norm_after_conv_is_its_batch_norm(conv_bias, tmp_path) -> None:
    conv = helper.make_node("Conv", ["x", "w", *(["b"] if conv_bias else [])], ["c"], name="conv", pads=[1, 1, 1, 1])
    bn = helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], name="bn", epsilon=1e-3)
    constants = {"w": weights(5, 3, 3, 3), **({"b": weights(5)} if conv_bias else {}), **batch_norm_constants(5)}
    written = check_against_onnxruntime(model_of([conv, bn], (1, 3, 6, 6), ["y"], constants), tmp_path)
    assert kinds(written) == ["conv"]
    assert written.details["layers"][0]["sources"] == ["conv", "bn"]
    text = written.path(".msnhnet").read_text()
    assert "batchNorm: 1" in text and "eps: 0.001" in text and "useBias" not in text


def test_batch_norm_alone_is_a_batchnorm_layer(tmp_path) -> None:
    model = op("BatchNormalization", (1, 4, 5, 5), batch_norm_constants(4), epsilon=1e-3)
    assert kinds(check_against_onnxruntime(model, tmp_path)) == ["batchnorm"]


def test_batch_norm_after_gemm_is_the_connect_batch_norm(tmp_path) -> None:
    gemm = helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1)
    bn = helper.make_node("BatchNormalization", ["g", "gamma", "beta", "mean", "var"], ["y"], name="bn")
    constants = {"w": weights(6, 10), "b": weights(6), **batch_norm_constants(6)}
    written = check_against_onnxruntime(model_of([gemm, bn], (1, 10), ["y"], constants), tmp_path)
    assert kinds(written) == ["connect"] and "batchNorm: 1" in written.path(".msnhnet").read_text()


def test_lrn_is_exact_from_varop_and_a_banded_conv(tmp_path) -> None:
    model = op("LRN", (1, 7, 5, 5), size=3, alpha=1e-2, beta=0.75, bias=2.0)
    written = check_against_onnxruntime(
        model, tmp_path, inputs=[RNG.standard_normal((1, 7, 5, 5)).astype(np.float32) * 3]
    )
    assert kinds(written) == ["act", "varop", "conv", "varop", "varop"]


# ---- activations ----------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": ("Relu", {}, {}, ["act"]),
    "leaky-relu": ("LeakyRelu", {}, {"alpha": 0.2}, ["act"]),
    "elu": ("Elu", {}, {}, ["act"]),
    "sigmoid": ("Sigmoid", {}, {}, ["act"]),
    "softplus": ("Softplus", {}, {}, ["act"]),
    "hard-swish": ("HardSwish", {}, {}, ["act"]),
    "hard-sigmoid": ("HardSigmoid", {}, {"alpha": 0.3, "beta": 0.4}, ["act", "varop", "varop", "clip"]),
    "mish": ("Mish", {}, {}, ["act", "act", "act", "varop"]),
    "prelu-per-channel": ("PRelu", {"slope": weights(4, 1, 1)}, {}, ["act"]),
    "prelu-shared": ("PRelu", {"slope": np.array([0.3], np.float32)}, {}, ["act"]),
    "clip-relu6": ("Clip", {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}, {}, ["act"]),
    "clip": ("Clip", {"lo": np.array(-0.5, np.float32), "hi": np.array(1.5, np.float32)}, {}, ["clip"]),
    "clip-max-only": ("Clip", {"": None, "hi": np.array(0.5, np.float32)}, {}, ["clip"]),
}


@pytest.mark.parametrize("op_type,constants,attributes,expected", ACTIVATIONS.values(), ids=ACTIVATIONS.keys())
def test_activation(op_type, constants, attributes, expected, tmp_path) -> None:
    inputs = ["x", *constants]
    constants = {name: value for name, value in constants.items() if value is not None}
    node = helper.make_node(op_type, inputs, ["y"], name=op_type.lower(), **attributes)
    model = model_of([node], (1, 4, 5, 6), ["y"], constants, opset=18 if op_type == "Mish" else 17)
    feed = [RNG.standard_normal((1, 4, 5, 6)).astype(np.float32) * 4]
    # softplus and mish pass through exp and log: atol 1e-5 on values up to ~16
    assert kinds(check_against_onnxruntime(model, tmp_path, inputs=feed)) == expected


def test_tanh_input_is_clipped_where_msnhnet_would_overflow(tmp_path) -> None:
    """MsnhNet's scalar tanh tail gives NaN above 44; 30 values leave a tail of 6."""
    feed = [np.linspace(-60, 60, 30, dtype=np.float32).reshape(1, 30)]
    written = check_against_onnxruntime(op("Tanh", (1, 30)), tmp_path, inputs=feed)
    assert kinds(written) == ["clip", "act"]
    assert kinds(write_msnhnet(op("Tanh", (1, 32)), tmp_path / "multiple-of-8")) == ["act"]


def test_activation_merges_into_the_conv_before_it(tmp_path) -> None:
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1])
    prelu = helper.make_node("PRelu", ["c", "slope"], ["y"], name="prelu")
    constants = {"w": weights(5, 3, 3, 3), "b": weights(5), "slope": weights(5, 1, 1)}
    written = check_against_onnxruntime(model_of([conv, prelu], (1, 3, 6, 6), ["y"], constants), tmp_path)
    assert kinds(written) == ["conv"] and "activation: prelu" in written.path(".msnhnet").read_text()
    assert written.details["layers"][0]["weight_params"] == [["w"], ["b"], ["slope"]]


def test_silu_is_the_swish_activation_of_the_conv_before_it(tmp_path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["s"], name="silu_sigmoid"),
        helper.make_node("Mul", ["c", "s"], ["y"], name="silu_mul"),
    ]
    constants = {"w": weights(5, 3, 3, 3), "b": weights(5)}
    model = from_one_module(model_of(nodes, (1, 3, 6, 6), ["y"], constants), "silu", "silu_sigmoid", "silu_mul")
    written = check_against_onnxruntime(model, tmp_path)
    assert kinds(written) == ["conv"] and "activation: swish" in written.path(".msnhnet").read_text()


def test_a_module_called_twice_keeps_a_layer_per_call(tmp_path) -> None:
    """One ReLU module after two convs: merged, the first conv's layer would stand for the
    module's last output too, and compare would pair it with the wrong output."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1"),
        helper.make_node("Relu", ["a"], ["ra"], name="relu_1"),
        helper.make_node("Conv", ["ra", "w2"], ["b"], name="conv2"),
        helper.make_node("Relu", ["b"], ["y"], name="relu_2"),
    ]
    constants = {"w1": weights(4, 3, 1, 1), "w2": weights(4, 4, 1, 1)}
    model = from_one_module(model_of(nodes, (1, 3, 5, 5), ["y"], constants), "relu", "relu_1", "relu_2")
    written = check_against_onnxruntime(model, tmp_path)
    assert kinds(written) == ["conv", "act", "conv", "act"]


def test_selu_is_written_with_a_warning(tmp_path) -> None:
    model = op("Selu", (1, 4, 5, 6))
    assert problem_kinds(model) == ["selu-constants"]
    written = write_msnhnet(model, tmp_path)
    feed = example_inputs(model)
    expected = OnnxRuntimeRunner(model).run(feed)["y"]
    actual = MsnhNetRunner(written.path(".msnhnet"), written.path(".msnhbin"), written.details).run(feed)["y"]
    # MsnhNet's rounded constants (1.0507, 1.6732): within 4e-5 relative, not exact
    np.testing.assert_allclose(actual, expected, rtol=4e-5, atol=1e-6)


# ---- softmax ----------------------------------------------------------------------------------

SOFTMAXES = {
    "features": ((1, 10), {"axis": 1}, 13, ["softmax"]),
    "last-axis": ((1, 3, 4, 5), {"axis": -1}, 13, ["softmax"]),
    # per pixel over channels: MsnhNet's softmax would normalise the whole sample
    # (the input, named by two varops, gets an identity layer 0)
    "channels": (
        (1, 5, 4, 3),
        {"axis": 1},
        13,
        ["act", "maxpool", "conv", "varop", "varop", "reduction", "conv", "varop"],
    ),
    "middle-axis": (
        (1, 3, 5, 4),
        {"axis": 2},
        13,
        ["permute", "maxpool", "conv", "varop", "varop", "reduction", "conv", "varop", "permute"],
    ),
    "flattening-opset-11": ((1, 3, 4, 5), {"axis": 1}, 11, ["softmax"]),
}


@pytest.mark.parametrize("shape,attributes,opset,expected", SOFTMAXES.values(), ids=SOFTMAXES.keys())
def test_softmax(shape, attributes, opset, expected, tmp_path) -> None:
    node = helper.make_node("Softmax", ["x"], ["y"], name="softmax", **attributes)
    model = model_of([node], shape, ["y"], opset=opset)
    feed = [RNG.standard_normal(shape).astype(np.float32) * 20]
    assert kinds(check_against_onnxruntime(model, tmp_path, atol=1e-6, inputs=feed)) == expected


def test_softmax_read_as_an_image_is_built_from_layers_with_dimensions(tmp_path) -> None:
    """A conv after it needs dimensions, which MsnhNet's softmax leaves at 0."""
    softmax = helper.make_node("Softmax", ["x"], ["s"], name="softmax", axis=-1)
    conv = helper.make_node("Conv", ["s", "w"], ["y"], name="conv")
    model = model_of([softmax, conv], (1, 3, 1, 6), ["y"], {"w": weights(2, 3, 1, 1)})
    written = check_against_onnxruntime(model, tmp_path)
    assert "softmax" not in kinds(written)


def test_log_softmax(tmp_path) -> None:
    model = op("LogSoftmax", (1, 6, 3, 2), axis=1)
    feed = [RNG.standard_normal((1, 6, 3, 2)).astype(np.float32) * 10]
    check_against_onnxruntime(model, tmp_path, atol=1e-5, inputs=feed)


# ---- pooling ----------------------------------------------------------------------------------

POOLS = {
    # name: (op, attributes, input shape, MsnhNet kinds)
    "max-k3-s2-p1": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, (1, 3, 9, 9), ["maxpool"]),
    # MsnhNet's AVX path gets stride-1 windows with X padding wrong: explicit -FLT_MAX padding
    "max-k3-s1-p1": ("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (1, 3, 20, 20), ["padding", "maxpool"]),
    "max-k2-s2-p1": ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1]}, (1, 3, 12, 12), ["padding", "maxpool"]),
    # PyTorch's ceil rule with padding differs from MsnhNet's: one window more, cropped
    "max-ceil-p1": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}, (1, 3, 8, 8), ["padding", "maxpool"]),
    "max-ceil-p1-crop": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 0, 0]}, (1, 3, 9, 9), ["maxpool", "padding"]),
    "max-ceil": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, (1, 3, 10, 10), ["maxpool"]),
    "max-non-square": ("MaxPool", {"kernel_shape": [2, 3], "strides": [2, 1], "pads": [0, 1, 0, 1]}, (1, 3, 7, 8), ["maxpool"]),
    "max-one-sided": ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1]}, (1, 3, 7, 7), ["maxpool"]),
    "avg-counted-pad": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}, (1, 3, 9, 9), ["padding", "localavgpool"]),
    "avg-uncounted-pad": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, (1, 3, 9, 9), ["localavgpool"]),
    "avg-ceil": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, (1, 3, 10, 10), ["localavgpool"]),
    "avg-ceil-counted": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1, "count_include_pad": 1}, (1, 3, 8, 8), ["padding", "localavgpool"]),
    # Inception v1's last pooling (ONNX zoo): k7 over 6x6 with an uncounted end pad is the mean
    "avg-one-window-past-the-end": (
        "AveragePool",
        {"kernel_shape": [7, 7], "pads": [0, 0, 1, 1]},
        (1, 3, 6, 6),
        ["globalavgpool"],
    ),
    "global-average": ("GlobalAveragePool", {}, (1, 3, 5, 7), ["globalavgpool"]),
    "global-max": ("GlobalMaxPool", {}, (1, 3, 5, 7), ["maxpool"]),
}  # fmt: skip


@pytest.mark.parametrize("op_type,attributes,shape,expected", POOLS.values(), ids=POOLS.keys())
def test_pooling(op_type, attributes, shape, expected, tmp_path) -> None:
    written = check_against_onnxruntime(op(op_type, shape, **attributes), tmp_path)
    assert kinds(written) == expected


REDUCTIONS = {
    "mean-hw": ("ReduceMean", [2, 3], 1, ["globalavgpool"]),
    "mean-hw-flat": ("ReduceMean", [2, 3], 0, ["globalavgpool"]),
    "sum-channels": ("ReduceSum", [1], 1, ["reduction"]),
    "mean-w": ("ReduceMean", [3], 1, ["reduction"]),
    "sum-hw": ("ReduceSum", [2, 3], 1, ["reduction", "reduction"]),
    "mean-all": ("ReduceMean", [1, 2, 3], 0, ["reduction"]),
    "max-channels": ("ReduceMax", [1], 1, ["maxpool"]),
    "max-hw": ("ReduceMax", [2, 3], 1, ["maxpool"]),
}


@pytest.mark.parametrize("op_type,axes,keepdims,expected", REDUCTIONS.values(), ids=REDUCTIONS.keys())
def test_reduction(op_type, axes, keepdims, expected, tmp_path) -> None:
    opset = 18
    node = helper.make_node(op_type, ["x", "axes"], ["y"], name="reduce", keepdims=keepdims)
    model = model_of([node], (1, 4, 5, 6), ["y"], {"axes": np.asarray(axes, np.int64)}, opset=opset)
    written = check_against_onnxruntime(model, tmp_path)
    assert kinds(written) == expected


# ---- linear layers --------------------------------------------------------------------------


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_is_a_connect(trans_b, tmp_path) -> None:
    matrix = weights(6, 10) if trans_b else weights(10, 6)
    model = op("Gemm", (1, 10), {"w": matrix, "b": weights(6)}, transB=trans_b, alpha=0.5, beta=2.0)
    assert kinds(check_against_onnxruntime(model, tmp_path)) == ["connect"]


def test_matmul_and_bias_are_one_connect(tmp_path) -> None:
    flatten = helper.make_node("Flatten", ["x"], ["f"], name="flatten")
    matmul = helper.make_node("MatMul", ["f", "w"], ["m"], name="fc")
    add = helper.make_node("Add", ["m", "b"], ["y"], name="fc_bias")
    model = model_of([flatten, matmul, add], (1, 2, 3, 4), ["y"], {"w": weights(24, 5), "b": weights(5)})
    written = check_against_onnxruntime(model, tmp_path)
    assert kinds(written) == ["connect"] and written.details["layers"][0]["sources"] == ["fc", "fc_bias"]


# ---- arithmetic -------------------------------------------------------------------------------


def two_branches(op_type: str, other_shape: tuple[int, ...]) -> Model:
    """``y = op(conv_a(x), conv_b(x) reduced to other_shape)``: two computed operands."""
    a = helper.make_node("Conv", ["x", "wa"], ["a"], name="a")
    b = helper.make_node("Conv", ["x", "wb"], ["b_full"], name="b")
    nodes = [a, b]
    b_name = "b_full"
    if other_shape[1] == 1:
        nodes.append(helper.make_node("ReduceMean", ["b_full", "channel_axis"], ["b_c"], name="b_c", keepdims=1))
        b_name = "b_c"
    if other_shape[2] == 1:
        nodes.append(helper.make_node("GlobalAveragePool", [b_name], ["b_hw"], name="b_hw"))
        b_name = "b_hw"
    nodes.append(helper.make_node(op_type, ["a", b_name], ["y"], name=op_type.lower()))
    # positive weights on b: with positive inputs the divisor stays above 0.15, whatever the draw
    constants = {
        "wa": weights(4, 3, 1, 1),
        "wb": weights(4, 3, 1, 1, low=0.1),
        "channel_axis": np.asarray([1], np.int64),
    }
    return model_of(nodes, (1, 3, 5, 6), ["y"], constants, opset=18)


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize(
    "other",
    [(1, 4, 5, 6), (1, 4, 1, 1), (1, 1, 5, 6), (1, 1, 1, 1)],
    ids=["same", "per-channel", "per-pixel", "scalar"],
)
def test_two_computed_operands(op_type, other, tmp_path) -> None:
    feed = [np.abs(RNG.standard_normal((1, 3, 5, 6)).astype(np.float32)) + 0.5]
    model = two_branches(op_type, other)
    # float32 against float32: the inputs are positive (and b's weights), the result checked to 1e-4
    check_against_onnxruntime(model, tmp_path, atol=1e-4, inputs=feed)


CONSTANT_OPERANDS = {
    # MsnhNet refuses a varop as layer 0: an identity act reads the input first
    "add-scalar": ("Add", np.array(0.5, np.float32), False, ["act", "varop"]),
    "scalar-minus-x": ("Sub", np.array(0.5, np.float32), True, ["act", "varop"]),
    "divide-scalar": ("Div", np.array(4.0, np.float32), False, ["act", "varop"]),
    "scalar-over-x": ("Div", np.array(2.0, np.float32), True, ["act", "varop"]),
    "add-per-channel": ("Add", weights(4, 1, 1), False, ["batchnorm"]),
    "per-channel-minus-x": ("Sub", weights(1, 4, 1, 1), True, ["batchnorm"]),
    "mul-per-channel": ("Mul", weights(4, 1, 1), False, ["batchnorm"]),
    "divide-per-channel": ("Div", weights(4, 1, 1, low=0.5), False, ["batchnorm"]),
    "per-channel-over-x": ("Div", weights(4, 1, 1, low=0.5), True, ["act", "varop", "batchnorm"]),
}


@pytest.mark.parametrize("op_type,constant,first,expected", CONSTANT_OPERANDS.values(), ids=CONSTANT_OPERANDS.keys())
def test_constant_operand(op_type, constant, first, expected, tmp_path) -> None:
    node = helper.make_node(op_type, ["c", "x"] if first else ["x", "c"], ["y"], name=op_type.lower())
    model = model_of([node], (1, 4, 5, 6), ["y"], {"c": constant})
    feed = [np.abs(RNG.standard_normal((1, 4, 5, 6)).astype(np.float32)) + 0.5]
    written = check_against_onnxruntime(model, tmp_path, inputs=feed)
    assert kinds(written) == expected


def test_bias_added_to_a_conv_without_one_becomes_its_bias(tmp_path) -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    add = helper.make_node("Add", ["c", "b"], ["y"], name="bias")
    written = check_against_onnxruntime(
        model_of([conv, add], (1, 3, 4, 4), ["y"], {"w": weights(5, 3, 1, 1), "b": weights(5, 1, 1)}), tmp_path
    )
    assert kinds(written) == ["conv"]


def test_sum_of_three_is_one_route(tmp_path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["x"], ["s"], name="sigmoid"),
    ]
    nodes.append(helper.make_node("Sum", ["x", "r", "s"], ["y"], name="sum"))
    written = check_against_onnxruntime(model_of(nodes, (1, 3, 4, 4), ["y"]), tmp_path)
    assert kinds(written)[-1] == "route" and "addModel: 1" in written.path(".msnhnet").read_text()


@pytest.mark.parametrize("op_type", ["Exp", "Log", "Sqrt", "Abs", "Sin", "Cos", "Atan", "Neg", "Reciprocal"])
def test_unary_math(op_type, tmp_path) -> None:
    feed = [np.abs(RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)) + 0.1]
    written = check_against_onnxruntime(op(op_type, (1, 3, 4, 4)), tmp_path, inputs=feed)
    assert kinds(written)[-1] == "varop"


def test_pow_by_a_constant(tmp_path) -> None:
    feed = [np.abs(RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)) + 0.1]
    model = op("Pow", (1, 3, 4, 4), {"e": np.array(2.5, np.float32)})
    check_against_onnxruntime(model, tmp_path, inputs=feed)


# ---- layout -----------------------------------------------------------------------------------


def test_channel_shuffle_is_a_view_and_a_permute(tmp_path) -> None:
    shape = np.asarray([1, 2, 3, 5, 4], np.int64)
    back = np.asarray([1, 6, 5, 4], np.int64)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "s5"], ["g"], name="groups"),
        helper.make_node("Transpose", ["g"], ["t"], name="shuffle", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "s4"], ["y"], name="back"),
    ]
    written = check_against_onnxruntime(model_of(nodes, (1, 6, 5, 4), ["y"], {"s5": shape, "s4": back}), tmp_path)
    assert kinds(written)[-2:] == ["view", "permute"]


@pytest.mark.parametrize(
    "perm,shape",
    [
        ([0, 2, 3, 1], (1, 3, 4, 5)),
        ([0, 3, 2, 1], (1, 3, 4, 5)),
        ([0, 2, 1], (1, 6, 7)),
        ([0, 4, 1, 3, 2], (1, 2, 3, 4, 5)),
    ],
    ids=["nhwc", "mtcnn-whc", "3-d", "5-d-several-permutes"],
)
def test_transpose(perm, shape, tmp_path) -> None:
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    transpose = helper.make_node("Transpose", ["r"], ["y"], name="transpose", perm=perm)
    written = check_against_onnxruntime(model_of([relu, transpose], shape, ["y"]), tmp_path)
    assert "permute" in kinds(written)


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
def test_depth_to_space_is_permutes_not_pixshf(mode, tmp_path) -> None:
    written = check_against_onnxruntime(op("DepthToSpace", (1, 8, 3, 5), blocksize=2, mode=mode), tmp_path)
    assert "pixshf" not in kinds(written) and "permute" in kinds(written)


def test_space_to_depth(tmp_path) -> None:
    check_against_onnxruntime(op("SpaceToDepth", (1, 2, 6, 4), blocksize=2), tmp_path)


@pytest.mark.parametrize("axis", [1, 2, 3, -1])
def test_concat(axis, tmp_path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["x"], ["b"], name="sigmoid"),
        helper.make_node("Concat", ["a", "b", "a"], ["y"], name="concat", axis=axis),
    ]
    written = check_against_onnxruntime(model_of(nodes, (1, 3, 4, 5), ["y"]), tmp_path)
    assert "route" in kinds(written)


SLICES = {
    "channels-head": ([0], [2], [1], [1]),
    "channels-middle": ([1], [3], [1], [1]),
    "channels-tail": ([2], [5], [1], [1]),
    "h-step": ([1], [6], [2], [2]),
    "w-head": ([0], [3], [3], [1]),
    "negative": ([-3], [-1], [3], [1]),
    "everything-hw": ([0, 1], [5, 4], [2, 3], [2, 2]),
    "channels-and-w": ([1, 0], [4, 4], [1, 3], [2, 1]),
}


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES.values(), ids=SLICES.keys())
def test_slice(starts, ends, axes, steps, tmp_path) -> None:
    constants = {name: np.asarray(v, np.int64) for name, v in zip(("s", "e", "a", "p"), (starts, ends, axes, steps))}
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    node = helper.make_node("Slice", ["r", "s", "e", "a", "p"], ["y"], name="slice")
    check_against_onnxruntime(model_of([relu, node], (1, 5, 6, 7), ["y"], constants), tmp_path)


@pytest.mark.parametrize("split", [None, [1, 4]], ids=["equal", "sizes"])
def test_split(split, tmp_path) -> None:
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    inputs = ["r", "sizes"] if split else ["r"]
    node = helper.make_node("Split", inputs, ["a", "b"], name="split", axis=1, **({} if split else {"num_outputs": 2}))
    constants = {"sizes": np.asarray(split, np.int64)} if split else {}
    model = model_of([relu, node], (1, 5 if split else 4, 3, 3), ["a", "b"], constants, opset=18)
    check_against_onnxruntime(model, tmp_path)


def test_gather_of_one_index(tmp_path) -> None:
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    node = helper.make_node("Gather", ["r", "i"], ["y"], name="gather", axis=1)
    check_against_onnxruntime(model_of([relu, node], (1, 5, 3, 4), ["y"], {"i": np.asarray(3, np.int64)}), tmp_path)


def test_flatten_moves_no_data(tmp_path) -> None:
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    flatten = helper.make_node("Flatten", ["r"], ["y"], name="flatten")
    assert kinds(check_against_onnxruntime(model_of([relu, flatten], (1, 3, 4, 5), ["y"]), tmp_path)) == ["act"]


def test_a_final_squeeze_may_drop_the_batch_axis(tmp_path) -> None:
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    squeeze = helper.make_node("Squeeze", ["r"], ["y"], name="squeeze")
    assert kinds(check_against_onnxruntime(model_of([relu, squeeze], (1, 6), ["y"]), tmp_path)) == ["act"]


def test_view_after_a_layer_with_its_own_buffer_is_preceded_by_a_copy(tmp_path) -> None:
    """A view without a buffer does nothing in MsnhNet: after a layer that a later route
    names (so with a buffer of its own) the next layer would read stale data; an
    identity act copies the data where the view passes it on."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "s3"], ["v"], name="view"),
        helper.make_node("Transpose", ["v"], ["t"], name="transpose", perm=[0, 2, 1]),
        helper.make_node("Reshape", ["t", "flat"], ["tf"], name="flat_t"),
        helper.make_node("Reshape", ["r", "flat"], ["rf"], name="flat_r"),
        helper.make_node("Concat", ["tf", "rf"], ["y"], name="concat", axis=1),
    ]
    constants = {"s3": np.asarray([1, 3, 20], np.int64), "flat": np.asarray([1, 60], np.int64)}
    written = check_against_onnxruntime(model_of(nodes, (1, 3, 4, 5), ["y"], constants), tmp_path)
    roles = [(layer["type"], layer["role"]) for layer in written.details["layers"] if layer["role"] != "weights"]
    assert roles[:4] == [("act", None), ("act", "copy"), ("view", "view"), ("permute", None)]


# ---- padding and resizing --------------------------------------------------------------------


@pytest.mark.parametrize(
    "pads,value", [([0, 0, 1, 2, 0, 0, 3, 0], 0.0), ([0, 0, -1, 1, 0, 0, 2, -2], 1.5)], ids=["pad", "crop-and-value"]
)
def test_pad(pads, value, tmp_path) -> None:
    constants = {"p": np.asarray(pads, np.int64), "v": np.asarray(value, np.float32)}
    node = helper.make_node("Pad", ["x", "p", "v"], ["y"], name="pad")
    written = check_against_onnxruntime(model_of([node], (1, 3, 5, 6), ["y"], constants), tmp_path)
    assert "padding" in kinds(written)


RESIZES = {
    "nearest-x2": ({"mode": "nearest"}, [1, 1, 2, 2], (1, 3, 4, 5), "nearest"),
    "nearest-x3-x2": ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, [1, 1, 3, 2], (1, 3, 4, 5), "nearest"),
    "bilinear-x2": ({"mode": "linear"}, [1, 1, 2, 2], (1, 3, 4, 5), "bilinear"),
    "bilinear-pytorch": ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, [1, 1, 2.5, 1.5], (1, 3, 4, 6), "bilinear"),
    "bilinear-corners": ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 2, 3], (1, 3, 4, 5), "bilinear"),
    "bilinear-down": ({"mode": "linear"}, [1, 1, 0.5, 0.5], (1, 3, 8, 6), "bilinear"),
}  # fmt: skip


@pytest.mark.parametrize("attributes,scales,shape,kind", RESIZES.values(), ids=RESIZES.keys())
def test_resize(attributes, scales, shape, kind, tmp_path) -> None:
    constants = {"roi": np.zeros(0, np.float32), "scales": np.asarray(scales, np.float32)}
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="resize", **attributes)
    written = check_against_onnxruntime(model_of([node], shape, ["y"], constants), tmp_path)
    assert f"type: {kind}" in written.path(".msnhnet").read_text()


def test_upsample_opset_9(tmp_path) -> None:
    node = helper.make_node("Upsample", ["x", "s"], ["y"], name="upsample", mode="nearest")
    model = model_of([node], (1, 2, 3, 4), ["y"], {"s": np.asarray([1, 1, 2, 2], np.float32)}, opset=9)
    check_against_onnxruntime(model, tmp_path)


# ---- what cannot be written ------------------------------------------------------------------


def test_every_problem_is_listed_before_anything_is_written(tmp_path) -> None:
    nodes = [
        helper.make_node("Elu", ["x"], ["e"], name="elu", alpha=0.5),
        helper.make_node("InstanceNormalization", ["e", "s", "b"], ["n"], name="norm"),
        helper.make_node("Pad", ["n", "p"], ["p2"], name="pad", mode="reflect"),
        helper.make_node("CumSum", ["p2", "axis"], ["y"], name="cumsum"),
    ]
    constants = {"s": weights(3), "b": weights(3), "p": np.asarray([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}
    constants["axis"] = np.asarray(1, np.int64)
    model = model_of(nodes, (1, 3, 4, 4), ["y"], constants)
    problems = find_problems(model)
    assert {p.op_type for p in problems if p.severity == "error"} == {"Elu", "InstanceNormalization", "Pad", "CumSum"}
    assert all(p.remedy for p in problems)
    with pytest.raises(UnsupportedError):
        write_msnhnet(model, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_batch_other_than_one_is_reported(tmp_path) -> None:
    problems = find_problems(op("Relu", (2, 3, 4, 4)))
    assert [p.kind for p in problems if p.severity == "error"] == ["batch"]


def test_several_outputs_are_a_warning_naming_the_layers(tmp_path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["x"], ["b"], name="sigmoid"),
    ]
    model = model_of(nodes, (1, 3, 4, 4), ["a", "b"])
    assert problem_kinds(model) == ["several-outputs"]
    written = check_against_onnxruntime(model, tmp_path)
    assert [item["name"] for item in written.details["outputs"]] == ["a", "b"]
    assert written.details["outputs"][-1]["layer"] == len(written.details["layers"]) - 1


def test_plain_file_names_only(tmp_path) -> None:
    with pytest.raises(InputError):
        write_msnhnet(op("Relu", (1, 3, 4, 4)), tmp_path, name="sub/dir")
