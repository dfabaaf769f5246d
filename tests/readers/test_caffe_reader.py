"""Caffe reader: every layer type, the file-format variants and bad input.

Each net is built here (NetParameter messages with random blobs, or hand-written
prototxt), read with ``read_caffe``, run in onnxruntime and compared with OpenCV
DNN running the same files: the final outputs and, layer by layer, the output of
the last node each Caffe layer produced (found through provenance).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from google.protobuf import text_format

from workbench.errors import InputError, UnsupportedError, WorkbenchError
from workbench.formats import caffe_pb2
from workbench.graph import Model, provenance
from workbench.readers.caffe_reader import read_caffe
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner

# ---------------------------------------------------------------------------
# building nets and running them


class NetSpec:
    """A Caffe net built in code: header inputs, layers with text params, random blobs."""

    def __init__(self, name: str = "net", seed: int = 0) -> None:
        self.net = caffe_pb2.NetParameter(name=name)
        self.rng = np.random.default_rng(seed)
        self.inputs: dict[str, tuple[int, ...]] = {}

    def input(self, name: str, shape: Sequence[int]) -> NetSpec:
        self.net.input.append(name)
        self.net.input_shape.add().dim.extend(shape)
        self.inputs[name] = tuple(shape)
        return self

    def layer(
        self,
        kind: str,
        name: str,
        bottoms: Sequence[str],
        tops: Sequence[str] | None = None,
        params: str = "",
        blobs: Sequence[Sequence[int] | np.ndarray] = (),
    ) -> NetSpec:
        layer = self.net.layer.add(name=name, type=kind)
        layer.bottom.extend(bottoms)
        layer.top.extend([name] if tops is None else tops)
        text_format.Merge(params, layer)
        for blob in blobs:
            array = blob if isinstance(blob, np.ndarray) else self.rng.standard_normal(blob) * 0.5
            proto = layer.blobs.add()
            proto.shape.dim.extend(array.shape)
            proto.data.extend(np.asarray(array, np.float32).ravel())  # tiny test arrays only
        return self

    def save(self, folder: Path) -> tuple[Path, Path]:
        return save_net(self.net, folder)


def save_net(net: caffe_pb2.NetParameter, folder: Path, name: str = "net") -> tuple[Path, Path]:
    """The deploy prototxt (no blobs) and the caffemodel (with blobs)."""
    deploy = copy.deepcopy(net)
    for layer in [*deploy.layer, *deploy.layers]:
        del layer.blobs[:]
    prototxt, caffemodel = folder / f"{name}.prototxt", folder / f"{name}.caffemodel"
    prototxt.write_text(text_format.MessageToString(deploy))
    caffemodel.write_bytes(net.SerializeToString())
    return prototxt, caffemodel


def random_inputs(shapes: dict[str, tuple[int, ...]], seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def opencv_forward(
    prototxt: Path, caffemodel: Path, inputs: dict[str, np.ndarray], layers: Sequence[str]
) -> dict[str, np.ndarray]:
    """First output of each named layer in OpenCV DNN, every layer kept separate."""
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.enableFusion(False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, array in inputs.items():
        net.setInput(array, name)
    return dict(zip(layers, net.forward(list(layers))))


def graph_layer_outputs(model: Model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per Caffe layer, the first output of the last node it produced, by onnxruntime."""
    working = model.copy()
    last = {}
    for node in working.graph:
        for layer in provenance.sources(node):
            last[layer] = node.outputs[0]
    present = {value.name for value in working.graph.outputs}
    for value in last.values():
        if value.name not in present:
            working.graph.outputs.append(value)
            present.add(value.name)
    results = OnnxRuntimeRunner(working).run(inputs)
    return {layer: results[value.name] for layer, value in last.items()}


def assert_matches_opencv(
    prototxt: Path, caffemodel: Path, inputs: dict[str, np.ndarray], rtol: float, atol: float, **read_options
) -> Model:
    """Final outputs and every layer's output against OpenCV DNN."""
    model = read_caffe(prototxt, caffemodel, **read_options)
    ours = graph_layer_outputs(model, inputs)
    reference = opencv_forward(prototxt, caffemodel, inputs, list(ours))
    for layer, expected in reference.items():
        np.testing.assert_allclose(ours[layer], expected, rtol=rtol, atol=atol, err_msg=f"layer {layer}")
    finals = OnnxRuntimeRunner(model).run(inputs)
    for value in model.graph.outputs:
        (writer,) = provenance.sources(value.producer())
        np.testing.assert_allclose(
            finals[value.name], reference[writer], rtol=rtol, atol=atol, err_msg=f"output {value.name}"
        )
    return model


# ---------------------------------------------------------------------------
# one case per layer type and spelling

X = (2, 4, 8, 8)  # the usual input: batch 2, 4 channels, 8 x 8


def conv(params: str, weight: Sequence[int], outputs: int | None = None, shape=X, kind: str = "Convolution") -> NetSpec:
    """A convolution with a bias of ``outputs`` values (none when 0; default weight[0])."""
    outputs = weight[0] if outputs is None else outputs
    blobs = [weight, (outputs,)] if outputs else [weight]
    return NetSpec().input("data", shape).layer(kind, "layer", ["data"], params=params, blobs=blobs)


def single(kind: str, params: str = "", blobs=(), shape=X) -> NetSpec:
    return NetSpec().input("data", shape).layer(kind, "layer", ["data"], params=params, blobs=blobs)


def pooling(params: str, shape=X) -> NetSpec:
    return single("Pooling", f"pooling_param {{ {params} }}", shape=shape)


def two_inputs(kind: str, params: str = "", second=X, tops=None) -> NetSpec:
    return NetSpec().input("a", X).input("b", second).layer(kind, "layer", ["a", "b"], tops=tops, params=params)


def batch_norm(factor: float) -> NetSpec:
    rng = np.random.default_rng(3)
    mean = rng.standard_normal(4) * factor
    variance = (rng.random(4) + 0.5) * factor
    return (
        NetSpec()
        .input("data", X)
        .layer(
            "BatchNorm",
            "layer",
            ["data"],
            params="batch_norm_param { eps: 0.001 }",
            blobs=[mean, variance, np.array([factor])],
        )
    )


LAYER_CASES = {
    "conv-3x3-pad": conv("convolution_param { num_output: 6 kernel_size: 3 pad: 1 }", (6, 4, 3, 3)),
    "conv-group-dilation-nobias": conv(
        "convolution_param { num_output: 6 kernel_size: 3 dilation: 2 group: 2 bias_term: false }",
        (6, 2, 3, 3),
        outputs=0,
    ),
    "conv-depthwise-stride": conv(
        "convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 4 }", (4, 1, 3, 3)
    ),
    "conv-h-w-fields": conv(
        "convolution_param { num_output: 3 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1 }",
        (3, 4, 3, 1),
    ),
    "conv-repeated-fields": conv(
        "convolution_param { num_output: 3 kernel_size: 3 kernel_size: 5 pad: 1 pad: 2 stride: 1 stride: 2 }",
        (3, 4, 3, 5),
    ),
    "deconv-stride2": conv(
        "convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 }",
        (4, 3, 4, 4),
        outputs=3,
        kind="Deconvolution",
    ),
    "deconv-group": conv(
        "convolution_param { num_output: 4 kernel_size: 3 stride: 2 group: 2 }",
        (4, 2, 3, 3),
        outputs=4,
        kind="Deconvolution",
    ),
    "pool-max-ceil": pooling("pool: MAX kernel_size: 3 stride: 2", shape=(1, 2, 6, 6)),
    "pool-max-pad-clip": pooling("pool: MAX kernel_size: 2 stride: 2 pad: 1", shape=(1, 2, 5, 5)),
    "pool-max-rect": pooling(
        "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0", shape=(1, 2, 7, 6)
    ),
    "pool-ave-rect-overhang": pooling(
        "pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0", shape=(1, 2, 8, 7)
    ),
    "pool-ave-exact": pooling("pool: AVE kernel_size: 3 stride: 1 pad: 1"),
    "pool-ave-ceil-overhang": pooling("pool: AVE kernel_size: 3 stride: 2", shape=(1, 2, 6, 6)),
    "pool-ave-pad-overhang": pooling("pool: AVE kernel_size: 3 stride: 2 pad: 1"),
    "pool-ave-pad-clip": pooling("pool: AVE kernel_size: 2 stride: 2 pad: 1", shape=(1, 2, 5, 5)),
    "pool-global-max": pooling("pool: MAX global_pooling: true"),
    "pool-global-ave": pooling("pool: AVE global_pooling: true"),
    "innerproduct-flatten": single("InnerProduct", "inner_product_param { num_output: 5 }", blobs=[(5, 256), (5,)]),
    "innerproduct-axis2-nobias": single(
        "InnerProduct", "inner_product_param { num_output: 3 axis: 2 bias_term: false }", blobs=[(3, 64)]
    ),
    "batchnorm-factor": batch_norm(7.5),
    "batchnorm-zero-factor": batch_norm(0.0),
    "scale-bias": single("Scale", "scale_param { bias_term: true }", blobs=[(4,), (4,)]),
    "scale-no-bias": single("Scale", "", blobs=[(4,)]),
    "scale-two-axes": single("Scale", "scale_param { axis: 1 num_axes: 2 }", blobs=[(4, 8)]),
    "scale-two-bottoms": two_inputs("Scale", "scale_param { axis: 0 }", second=(2, 4)),
    "relu": single("ReLU"),
    "relu6": single("ReLU6"),
    "relu-leaky": single("ReLU", "relu_param { negative_slope: 0.1 }"),
    "prelu": single("PReLU", blobs=[(4,)]),
    "prelu-shared": single("PReLU", "prelu_param { channel_shared: true }", blobs=[(1,)]),
    "elu": single("ELU", "elu_param { alpha: 0.5 }"),
    "sigmoid": single("Sigmoid"),
    "tanh": single("TanH"),
    "absval": single("AbsVal"),
    "power": single("Power", "power_param { power: 2 scale: 0.5 shift: 1.5 }"),
    "power-scale-only": single("Power", "power_param { scale: -2 }"),
    "eltwise-sum": two_inputs("Eltwise"),
    "eltwise-sum-coeff": two_inputs("Eltwise", "eltwise_param { operation: SUM coeff: 0.5 coeff: 2 }"),
    "eltwise-sub": two_inputs("Eltwise", "eltwise_param { operation: SUM coeff: 1 coeff: -1 }"),
    "eltwise-prod": two_inputs("Eltwise", "eltwise_param { operation: PROD }"),
    "eltwise-max": two_inputs("Eltwise", "eltwise_param { operation: MAX }"),
    "concat-channels": two_inputs("Concat", second=(2, 3, 8, 8)),
    "concat-axis2": two_inputs("Concat", "concat_param { axis: 2 }", second=(2, 4, 5, 8)),
    "slice-points": NetSpec()
    .input("data", X)
    .layer(
        "Slice",
        "layer",
        ["data"],
        tops=["s0", "s1", "s2"],
        params="slice_param { axis: 1 slice_point: 1 slice_point: 3 }",
    )
    .layer("Concat", "join", ["s2", "s0", "s1"]),
    "split": NetSpec()
    .input("data", X)
    .layer("Split", "layer", ["data"], tops=["c0", "c1"])
    .layer("ReLU", "relu", ["c0"])
    .layer("Eltwise", "join", ["relu", "c1"]),
    "flatten": single("Flatten"),
    "flatten-axes": single("Flatten", "flatten_param { axis: 2 end_axis: 3 }"),
    "reshape-zero-minus-one": single("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 4 } }"),
    "reshape-axis-num-axes": single("Reshape", "reshape_param { axis: 2 num_axes: 1 shape { dim: 2 dim: -1 } }"),
    "softmax": single("Softmax"),
    "softmax-axis": single("Softmax", "softmax_param { axis: 3 }"),
    "dropout": single("Dropout").layer("ReLU", "relu", ["layer"]),
    "silence": NetSpec()
    .input("data", X)
    .layer("Slice", "layer", ["data"], tops=["s0", "s1"], params="slice_param { axis: 1 }")
    .layer("Silence", "discard", ["s1"], tops=[])
    .layer("ReLU", "relu", ["s0"]),
    "lrn-across": single("LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 }"),
    "lrn-within": single("LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }"),
    "crop": two_inputs("Crop", "crop_param { axis: 2 offset: 1 offset: 2 }", second=(2, 4, 5, 4)),
    "permute": single("Permute", "permute_param { order: 0 order: 2 order: 3 order: 1 }"),
}


@pytest.mark.parametrize("case", LAYER_CASES.values(), ids=LAYER_CASES.keys())
def test_layer_matches_opencv(case: NetSpec, tmp_path: Path) -> None:
    prototxt, caffemodel = case.save(tmp_path)
    # onnxruntime vs OpenCV DNN, float32, values of order 1: rtol 1e-4, atol 1e-4
    assert_matches_opencv(prototxt, caffemodel, random_inputs(case.inputs), rtol=1e-4, atol=1e-4)


def slice_net(params: str) -> NetSpec:
    return (
        NetSpec()
        .input("data", X)
        .layer("Slice", "layer", ["data"], tops=["s0", "s1"], params=params)
        .layer("Eltwise", "join", ["s1", "s0"], params="eltwise_param { operation: PROD }")
    )


# Spellings OpenCV DNN reads differently from Caffe, each with the spelling that
# means the same in both, which OpenCV then runs as the reference.
SPELLING_CASES = {
    "slice-dim": (slice_net("slice_param { slice_dim: 2 }"), slice_net("slice_param { axis: 2 }")),
    "concat-dim": (
        two_inputs("Concat", "concat_param { concat_dim: 2 }", second=(2, 4, 3, 8)),
        two_inputs("Concat", "concat_param { axis: 2 }", second=(2, 4, 3, 8)),
    ),
    "pool-pad-h-only": (
        pooling("pool: MAX kernel_size: 3 stride: 2 pad_h: 1", shape=(1, 2, 8, 7)),
        pooling("pool: MAX kernel_size: 3 stride: 2 pad_h: 1 pad_w: 0", shape=(1, 2, 8, 7)),
    ),
}


@pytest.mark.parametrize("case, reference", SPELLING_CASES.values(), ids=SPELLING_CASES.keys())
def test_spelling_matches_opencv_on_equivalent_net(case: NetSpec, reference: NetSpec, tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "reference").mkdir()
    prototxt, caffemodel = case.save(tmp_path / "ours")
    inputs = random_inputs(case.inputs)
    outputs = OnnxRuntimeRunner(read_caffe(prototxt, caffemodel)).run(inputs)
    expected = opencv_forward(*reference.save(tmp_path / "reference"), inputs, [reference.net.layer[-1].name])
    # onnxruntime vs OpenCV DNN, float32: rtol 1e-5, atol 1e-5 (no arithmetic beyond one product)
    np.testing.assert_allclose(
        outputs[case.net.layer[-1].top[0]], expected[reference.net.layer[-1].name], rtol=1e-5, atol=1e-5
    )


def blobs_of(case: NetSpec) -> list[np.ndarray]:
    """The blobs of the case's first layer, as stored."""
    return [np.asarray(blob.data, np.float32).reshape(tuple(blob.shape.dim)) for blob in case.net.layer[0].blobs]


# Layers OpenCV DNN lacks or reads differently from Caffe, each with the PyTorch
# expression of Caffe's definition: (net, f(inputs, blobs) -> expected output).
PYTORCH_CASES = {
    "bias": (single("Bias", "", blobs=[(4,)]), lambda x, b: x["data"] + b[0].view(4, 1, 1)),
    "bias-two-axes": (
        single("Bias", "bias_param { axis: 2 num_axes: 2 }", blobs=[(8, 8)]),
        lambda x, b: x["data"] + b[0],
    ),
    "bias-two-bottoms": (
        two_inputs("Bias", "bias_param { axis: 1 }", second=(4, 8)),
        lambda x, b: x["a"] + x["b"].view(1, 4, 8, 1),
    ),
    "clip": (single("Clip", "clip_param { min: -0.5 max: 0.25 }"), lambda x, b: x["data"].clamp(-0.5, 0.25)),
    # OpenCV DNN ignores k; torch's LocalResponseNorm is Caffe's formula
    "lrn-k": (
        single("LRN", "lrn_param { local_size: 5 alpha: 0.3 beta: 0.6 k: 2.5 }"),
        lambda x, b: torch.nn.LocalResponseNorm(5, alpha=0.3, beta=0.6, k=2.5)(x["data"]),
    ),
    # transpose: true stores the weight as (inputs, outputs); OpenCV DNN ignores the flag
    "innerproduct-transpose": (
        single("InnerProduct", "inner_product_param { num_output: 5 transpose: true }", blobs=[(256, 5), (5,)]),
        lambda x, b: x["data"].flatten(1) @ b[0] + b[1],
    ),
}


@pytest.mark.parametrize("case, expression", PYTORCH_CASES.values(), ids=PYTORCH_CASES.keys())
def test_layer_matches_pytorch(case: NetSpec, expression, tmp_path: Path) -> None:
    inputs = random_inputs(case.inputs)
    outputs = OnnxRuntimeRunner(read_caffe(*case.save(tmp_path))).run(inputs)
    with torch.no_grad():
        expected = expression(
            {k: torch.from_numpy(v) for k, v in inputs.items()}, [torch.from_numpy(b) for b in blobs_of(case)]
        )
    # onnxruntime vs PyTorch, float32 (sums of up to 256 products): rtol 1e-5, atol 1e-5
    np.testing.assert_allclose(outputs["layer"], expected.numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# file-format variants, written as prototxt text


def net_from_text(text: str, blobs: dict[str, Sequence[Sequence[int]]], seed: int = 2) -> caffe_pb2.NetParameter:
    """A NetParameter from prototxt text, with random blobs of the given shapes per layer."""
    net = text_format.Parse(text, caffe_pb2.NetParameter())
    rng = np.random.default_rng(seed)
    for layer in [*net.layer, *net.layers]:
        for shape in blobs.get(layer.name, ()):
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend(rng.standard_normal(shape).astype(np.float32).ravel())  # tiny test arrays only
    return net


CONV_NET_BODY = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 3 } }
"""
CONV_NET_BLOBS = {"conv1": [(4, 3, 3, 3), (4,)], "fc": [(3, 4 * 6 * 6), (3,)]}

HEADERS = {
    "input-dim": 'input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8',
    "input-shape": 'input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }',
    "input-layer": 'layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }',
}


@pytest.mark.parametrize("header", HEADERS.values(), ids=HEADERS.keys())
def test_input_declarations(header: str, tmp_path: Path) -> None:
    prototxt, caffemodel = save_net(net_from_text(header + CONV_NET_BODY, CONV_NET_BLOBS), tmp_path)
    inputs = random_inputs({"data": (1, 3, 8, 8)})
    # onnxruntime vs OpenCV DNN, float32: rtol 1e-4, atol 1e-4
    model = assert_matches_opencv(prototxt, caffemodel, inputs, rtol=1e-4, atol=1e-4)
    assert model.input_shapes() == {"data": (1, 3, 8, 8)}
    assert model.output_names == ["fc"]


def test_input_layer_shape_shared_by_tops(tmp_path: Path) -> None:
    """One Input shape serves every top in Caffe; OpenCV DNN wants one per top."""
    text = """
    layer {{ name: "input" type: "Input" top: "a" top: "b" input_param {{ {shapes} }} }}
    layer {{ name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }}
    """
    shape = "shape { dim: 1 dim: 2 dim: 3 dim: 3 }"
    prototxt, caffemodel = save_net(net_from_text(text.format(shapes=shape), {}), tmp_path)
    (tmp_path / "reference").mkdir()
    reference = save_net(net_from_text(text.format(shapes=shape * 2), {}), tmp_path / "reference")
    model = read_caffe(prototxt, caffemodel)
    assert model.input_shapes() == {"a": (1, 2, 3, 3), "b": (1, 2, 3, 3)}
    inputs = random_inputs(model.input_shapes())
    # onnxruntime vs OpenCV DNN, float32: rtol 1e-6, atol 1e-6 (one addition)
    np.testing.assert_allclose(
        OnnxRuntimeRunner(model).run(inputs)["sum"],
        opencv_forward(*reference, inputs, ["sum"])["sum"],
        rtol=1e-6,
        atol=1e-6,
    )


def test_input_shape_given_by_caller(tmp_path: Path) -> None:
    prototxt, caffemodel = save_net(net_from_text('input: "data"' + CONV_NET_BODY, CONV_NET_BLOBS), tmp_path)
    with pytest.raises(InputError, match="input blob data has no usable shape"):
        read_caffe(prototxt, caffemodel)
    model = read_caffe(prototxt, caffemodel, input_shapes={"data": [1, 3, 8, 8]})
    assert model.input_shapes() == {"data": (1, 3, 8, 8)}
    with pytest.raises(InputError, match="not network inputs: image"):
        read_caffe(prototxt, caffemodel, input_shapes={"image": [1, 3, 8, 8]})


V1_NET = """
name: "v1net"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 10 input_dim: 10
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
         convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layers { name: "drop" type: DROPOUT bottom: "pool1" top: "pool1" }
layers { name: "fc" type: INNER_PRODUCT bottom: "pool1" top: "fc" inner_product_param { num_output: 3 } }
layers { name: "prob" type: SOFTMAX bottom: "fc" top: "prob" }
"""


def test_v1_layers_format(tmp_path: Path) -> None:
    """Old model zoo nets: ``layers { type: CONVOLUTION }``, blobs as num/channels/height/width."""
    net = text_format.Parse(V1_NET, caffe_pb2.NetParameter())
    rng = np.random.default_rng(4)
    for layer in net.layers:
        for dims in {"conv1": [(4, 3, 3, 3), (1, 1, 1, 4)], "fc": [(1, 1, 3, 64), (1, 1, 1, 3)]}.get(layer.name, ()):
            blob = layer.blobs.add()
            blob.num, blob.channels, blob.height, blob.width = dims
            blob.data.extend(rng.standard_normal(dims).astype(np.float32).ravel())  # tiny test arrays only
    prototxt, caffemodel = save_net(net, tmp_path)
    inputs = random_inputs({"data": (1, 3, 10, 10)})
    # onnxruntime vs OpenCV DNN, float32: rtol 1e-5, atol 1e-6 (softmax outputs below 1)
    model = assert_matches_opencv(prototxt, caffemodel, inputs, rtol=1e-5, atol=1e-6)
    assert model.name == "v1net"
    assert model.census() == {"Conv": 1, "Relu": 1, "MaxPool": 1, "Gemm": 1, "Flatten": 1, "Softmax": 1}


TRAIN_VAL = (
    """
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN } }
layer { name: "data" type: "Input" top: "data" include { phase: TEST } input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
"""
    + CONV_NET_BODY
    + """
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" exclude { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" include { phase: TRAIN } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" include { phase: TEST stage: "deploy" } }
"""
)


def test_layers_outside_the_test_phase_are_skipped(tmp_path: Path) -> None:
    prototxt, caffemodel = save_net(net_from_text(TRAIN_VAL, CONV_NET_BLOBS), tmp_path)
    model = read_caffe(prototxt, caffemodel)
    assert model.output_names == ["fc"]  # prob needs the "deploy" stage, which the net's state does not set
    assert "skipped 4 layer(s) outside the TEST phase: data, drop, loss, prob" in model.report.changes
    (tmp_path / "deploy").mkdir()
    reference = save_net(net_from_text(HEADERS["input-layer"] + CONV_NET_BODY, CONV_NET_BLOBS), tmp_path / "deploy")
    inputs = random_inputs({"data": (1, 3, 8, 8)})
    # onnxruntime vs OpenCV DNN on the net without the training layers, float32: rtol 1e-4, atol 1e-4
    np.testing.assert_allclose(
        OnnxRuntimeRunner(model).run(inputs)["fc"],
        opencv_forward(*reference, inputs, ["fc"])["fc"],
        rtol=1e-4,
        atol=1e-4,
    )


IN_PLACE_NET = """
input: "data" input_shape { dim: 1 dim: 3 dim: 6 dim: 6 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc7" type: "InnerProduct" bottom: "conv1" top: "fc7" inner_product_param { num_output: 5 } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "drop7" type: "Dropout" bottom: "fc7" top: "fc7" }
"""
IN_PLACE_BLOBS = {
    "conv1": [(4, 3, 1, 1), (4,)],
    "bn1": [(4,), (4,), (1,)],
    "scale1": [(4,), (4,)],
    "fc7": [(5, 144), (5,)],
}


def in_place_net() -> caffe_pb2.NetParameter:
    net = net_from_text(IN_PLACE_NET, IN_PLACE_BLOBS)
    variance, factor = net.layer[1].blobs[1], net.layer[1].blobs[2]
    variance.data[:] = np.abs(np.asarray(variance.data)) + 0.1  # a variance is positive
    factor.data[:] = [2.0]
    return net


def test_in_place_layers_get_values_of_their_own(tmp_path: Path) -> None:
    prototxt, caffemodel = save_net(in_place_net(), tmp_path)
    inputs = random_inputs({"data": (1, 3, 6, 6)})
    # onnxruntime vs OpenCV DNN layer by layer (each in-place layer's own output), float32: rtol 1e-4, atol 1e-4
    model = assert_matches_opencv(prototxt, caffemodel, inputs, rtol=1e-4, atol=1e-4)
    produced = {provenance.sources(node)[0]: node.outputs[0].name for node in model.graph}
    assert produced == {
        "conv1": "conv1",
        "bn1": "bn1",
        "scale1": "scale1",
        "relu1": "relu1",
        "fc7": "fc7_1",
        "relu7": "relu7",
        "drop7": "fc7",
    }
    assert model.output_names == ["fc7"]


POOL_NET = """
input: "data" input_shape {{ dim: 1 dim: 2 dim: 6 dim: 6 }}
layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param {{ pool: {pool} kernel_size: 3 stride: 2 {rounding} }} }}
"""
ROUNDING = {  # ours -> the spelling OpenCV DNN reads with the same meaning
    "round-mode-floor": ("round_mode: FLOOR", "ceil_mode: false", 2),
    "round-mode-ceil": ("round_mode: CEIL", "ceil_mode: true", 3),
    "ceil-mode-false": ("ceil_mode: false", "ceil_mode: false", 2),
    "ceil-mode-true": ("ceil_mode: true", "ceil_mode: true", 3),
    "default-ceil": ("", "", 3),
}


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("ours, opencv, size", ROUNDING.values(), ids=ROUNDING.keys())
def test_pooling_round_mode_and_ceil_mode(pool: str, ours: str, opencv: str, size: int, tmp_path: Path) -> None:
    (tmp_path / "ours.prototxt").write_text(POOL_NET.format(pool=pool, rounding=ours))
    (tmp_path / "opencv.prototxt").write_text(POOL_NET.format(pool=pool, rounding=opencv))
    (tmp_path / "net.caffemodel").write_bytes(b"")  # no layer has weights
    model = read_caffe(tmp_path / "ours.prototxt", tmp_path / "net.caffemodel")
    inputs = random_inputs({"data": (1, 2, 6, 6)})
    outputs = OnnxRuntimeRunner(model).run(inputs)["pool"]
    expected = opencv_forward(tmp_path / "opencv.prototxt", tmp_path / "net.caffemodel", inputs, ["pool"])["pool"]
    assert outputs.shape == (1, 2, size, size)
    # onnxruntime vs OpenCV DNN, float32 averages of 9 values: rtol 1e-6, atol 1e-6
    np.testing.assert_allclose(outputs, expected, rtol=1e-6, atol=1e-6)


def unpacked_caffemodel(net: caffe_pb2.NetParameter) -> bytes:
    """The caffemodel with every float written unpacked (one record per value), which
    protobuf readers must accept although Caffe writes them packed."""
    from workbench.writers.caffe.blobs import record_header

    payload = bytearray()
    for layer in net.layer:
        header = caffe_pb2.LayerParameter()
        header.CopyFrom(layer)
        del header.blobs[:]
        layer_bytes = bytearray(header.SerializeToString())
        for blob in layer.blobs:
            blob_bytes = caffe_pb2.BlobProto(shape=blob.shape).SerializeToString()
            blob_bytes += b"".join(b"\x2d" + value.tobytes() for value in np.asarray(blob.data, "<f4"))
            layer_bytes += record_header(7, len(blob_bytes)) + blob_bytes
        payload += record_header(100, len(layer_bytes)) + layer_bytes
    return bytes(payload)


def as_doubles(blob: caffe_pb2.BlobProto) -> None:
    blob.double_data.extend(blob.data)
    del blob.data[:]


def as_legacy_dims(blob: caffe_pb2.BlobProto) -> None:
    dims = [1] * (4 - len(blob.shape.dim)) + list(blob.shape.dim)
    blob.ClearField("shape")
    blob.num, blob.channels, blob.height, blob.width = dims


@pytest.mark.parametrize("encoding", ["double-data", "legacy-dims", "unpacked"])
def test_blob_encodings_read_as_float(encoding: str, tmp_path: Path) -> None:
    """Blobs as double_data, as num/channels/height/width, or unpacked read like packed floats."""
    net = net_from_text(HEADERS["input-shape"] + CONV_NET_BODY, CONV_NET_BLOBS)
    (tmp_path / "reference").mkdir()
    reference = save_net(net, tmp_path / "reference")
    blobs = [blob for layer in net.layer for blob in layer.blobs]
    if encoding == "double-data":
        for blob in blobs:
            as_doubles(blob)
    if encoding == "legacy-dims":
        for blob in blobs:
            as_legacy_dims(blob)
    prototxt, caffemodel = save_net(net, tmp_path)
    if encoding == "unpacked":
        caffemodel.write_bytes(unpacked_caffemodel(net))
    inputs = random_inputs({"data": (1, 3, 8, 8)})
    outputs = OnnxRuntimeRunner(read_caffe(prototxt, caffemodel)).run(inputs)["fc"]
    # onnxruntime vs OpenCV DNN on the packed-float caffemodel, float32: rtol 1e-4, atol 1e-4
    np.testing.assert_allclose(outputs, opencv_forward(*reference, inputs, ["fc"])["fc"], rtol=1e-4, atol=1e-4)


def test_provenance_names_layers_and_blobs(tmp_path: Path) -> None:
    model = read_caffe(*save_net(in_place_net(), tmp_path))
    assert model.source.format == "caffe"
    params = {node.name: provenance.params(node) for node in model.graph}
    assert params["conv1/Conv"] == {1: ("conv1/0",), 2: ("conv1/1",)}
    assert params["bn1/BatchNormalization"] == {3: ("bn1/0", "bn1/2"), 4: ("bn1/1", "bn1/2")}
    assert params["scale1/Mul"] == {1: ("scale1/0",)} and params["scale1/Add"] == {1: ("scale1/1",)}
    assert params["fc7/Gemm"] == {1: ("fc7/0",), 2: ("fc7/1",)}
    assert all(provenance.sources(node) for node in model.graph)


def test_load_recognises_caffe_files(tmp_path: Path) -> None:
    from workbench.readers import load

    prototxt, caffemodel = save_net(in_place_net(), tmp_path)
    model = load(caffemodel, prototxt)
    assert model.source.paths == (str(prototxt), str(caffemodel))


# ---------------------------------------------------------------------------
# bad input


def test_missing_files(tmp_path: Path) -> None:
    prototxt, caffemodel = save_net(in_place_net(), tmp_path)
    with pytest.raises(InputError, match="no such prototxt"):
        read_caffe(tmp_path / "absent.prototxt", caffemodel)
    with pytest.raises(InputError, match="no such caffemodel"):
        read_caffe(prototxt, tmp_path / "absent.caffemodel")


def test_truncated_caffemodel(tmp_path: Path) -> None:
    prototxt, caffemodel = save_net(in_place_net(), tmp_path)
    caffemodel.write_bytes(caffemodel.read_bytes()[:-7])
    with pytest.raises(InputError, match="is not a readable caffemodel[\\s\\S]*runs past the end"):
        read_caffe(prototxt, caffemodel)


def test_caffemodel_that_is_text(tmp_path: Path) -> None:
    prototxt, _caffemodel = save_net(in_place_net(), tmp_path)
    with pytest.raises(InputError, match="is not a readable caffemodel"):
        read_caffe(prototxt, prototxt)
    with pytest.raises(InputError, match="cannot read the caffemodel"):
        read_caffe(prototxt, tmp_path)


def test_blob_whose_values_do_not_fill_its_shape(tmp_path: Path) -> None:
    net = in_place_net()
    net.layer[0].blobs[0].shape.dim[0] = 5
    with pytest.raises(InputError, match=r"layer conv1: a blob of shape \[5, 3, 1, 1\] holds 12 values"):
        read_caffe(*save_net(net, tmp_path))


def test_prototxt_syntax_error_names_the_line(tmp_path: Path) -> None:
    prototxt, caffemodel = save_net(in_place_net(), tmp_path)
    prototxt.write_text(prototxt.read_text().replace("num_output: 4", "num_outputs: 4"))
    with pytest.raises(InputError, match=r"not a readable Caffe prototxt[\s\S]*num_outputs"):
        read_caffe(prototxt, caffemodel)


def test_layer_names_that_do_not_match_are_named(tmp_path: Path) -> None:
    net = in_place_net()
    prototxt, _ = save_net(net, tmp_path)
    net.layer[0].name = "conv_1"
    net.layer[4].name = "fc_7"
    _, caffemodel = save_net(net, tmp_path, name="renamed")
    with pytest.raises(InputError) as caught:
        read_caffe(prototxt, caffemodel)
    message = str(caught.value)
    assert "conv1: has no weights in the caffemodel" in message
    assert "fc7: has no weights in the caffemodel" in message
    assert "layers with weights that the prototxt does not have: conv_1, fc_7" in message


def test_blob_of_the_wrong_size(tmp_path: Path) -> None:
    net = in_place_net()
    del net.layer[4].blobs[1].data[-1]
    net.layer[4].blobs[1].shape.dim[:] = [4]
    with pytest.raises(InputError, match=r"fc7: blob 1 has shape \[4\] \(4 values\), expected \[5\]"):
        read_caffe(*save_net(net, tmp_path))


def test_every_unsupported_layer_is_listed_once(tmp_path: Path) -> None:
    text = """
    input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }
    layer { name: "zeta" type: "BNLL" bottom: "data" top: "zeta" }
    layer { name: "alpha" type: "Threshold" bottom: "zeta" top: "alpha" }
    layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { pool: STOCHASTIC kernel_size: 2 } }
    layer { name: "mvn" type: "MVN" bottom: "pool" top: "mvn" }
    layer { name: "relu" type: "ReLU" bottom: "data" top: "relu" }
    """
    with pytest.raises(WorkbenchError) as caught:
        read_caffe(*save_net(net_from_text(text, {}), tmp_path))
    message = str(caught.value)
    assert "4 Caffe layer(s) cannot be converted: types BNLL, MVN, Pooling, Threshold" in message
    listed = [line.strip().split(" ")[0] for line in message.splitlines() if "): " in line]
    assert listed == ["zeta", "mvn", "pool", "alpha"]  # sorted by type, then name
    assert "STOCHASTIC" in message


def test_unknown_bottom_blob(tmp_path: Path) -> None:
    text = 'input: "data" input_shape { dim: 1 dim: 2 }\nlayer { name: "relu" type: "ReLU" bottom: "date" top: "relu" }'
    with pytest.raises(InputError, match="layer relu \\(ReLU\\) reads blob\\(s\\) date that no earlier layer makes"):
        read_caffe(*save_net(net_from_text(text, {}), tmp_path))


# ---------------------------------------------------------------------------
# round trips through the Caffe writer

# Layer cases the Caffe writer expresses with one network output (it has no Abs
# or LRN layer, no two-bottom Scale, and writes Caffe's AVE pooling with a
# hanging last window as ONNX asymmetric pads, which it refuses).
ROUND_TRIP_CASES = [
    name
    for name in LAYER_CASES
    if name
    not in {
        "pool-ave-ceil-overhang",
        "pool-ave-pad-overhang",
        "pool-ave-rect-overhang",
        "scale-two-bottoms",
        "absval",
        "lrn-across",
        "silence",
        "crop",
    }
]


def assert_same_after_caffe_round_trip(model: Model, tmp_path: Path, rtol: float, atol: float) -> Model:
    from workbench.writers.caffe import write_caffe

    written = write_caffe(model, tmp_path / "written", dialect="opencv")
    again = read_caffe(written.path(".prototxt"), written.path(".caffemodel"))
    inputs = random_inputs(model.input_shapes())
    before, after = OnnxRuntimeRunner(model).run(inputs), OnnxRuntimeRunner(again).run(inputs)
    blob_of = written.details["outputs"]
    assert [blob_of[name] for name in before] == list(after)
    for name, value in before.items():
        np.testing.assert_allclose(after[blob_of[name]], value, rtol=rtol, atol=atol, err_msg=name)
    return again


@pytest.mark.parametrize("name", ROUND_TRIP_CASES)
def test_layer_round_trip_through_caffe_writer(name: str, tmp_path: Path) -> None:
    model = read_caffe(*LAYER_CASES[name].save(tmp_path))
    # onnxruntime vs onnxruntime, float32, the same arithmetic re-read: rtol 1e-6, atol 1e-6
    assert_same_after_caffe_round_trip(model, tmp_path, rtol=1e-6, atol=1e-6)


def test_in_place_net_round_trip_through_caffe_writer(tmp_path: Path) -> None:
    model = read_caffe(*save_net(in_place_net(), tmp_path))
    # onnxruntime vs onnxruntime, float32 (BatchNorm may be rewritten as a scale): rtol 1e-5, atol 1e-5
    again = assert_same_after_caffe_round_trip(model, tmp_path, rtol=1e-5, atol=1e-5)
    assert {"conv1", "bn1", "scale1", "relu1", "fc7", "relu7"} <= {
        layer for node in again.graph for layer in provenance.sources(node)
    }


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["resnet_tiny", "mobilenet_tiny", "squeezenet_tiny", "inception_tiny"])
def test_sample_network_round_trip_through_caffe(factory: str, tmp_path: Path) -> None:
    """PyTorch sample -> graph -> Caffe files -> graph: the same outputs in onnxruntime."""
    from workbench import samples
    from workbench.readers import export
    from workbench.steps.simplify import simplify

    build = getattr(samples, factory)
    model = simplify(export(build(), [np.zeros(build.input_shape, np.float32)], name=factory))
    # onnxruntime vs onnxruntime, float32 through a whole network: rtol 1e-4, atol 1e-5
    assert_same_after_caffe_round_trip(model, tmp_path, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# a whole Caffe network to ONNX and to PyTorch


def zoo_net() -> NetSpec:
    """GoogLeNet/ResNet-style: in-place BatchNorm/Scale/ReLU, ceil pooling, LRN, an
    inception block, a residual sum, global pooling, dropout, classifier."""
    rng = np.random.default_rng(7)
    spec = NetSpec("zoo", seed=7).input("data", (1, 3, 32, 32))
    spec.layer(
        "Convolution",
        "conv1",
        ["data"],
        blobs=[(16, 3, 3, 3), (16,)],
        params="convolution_param { num_output: 16 kernel_size: 3 stride: 2 pad: 1 }",
    )
    spec.layer(
        "BatchNorm",
        "bn1",
        ["conv1"],
        ["conv1"],
        blobs=[rng.standard_normal(16) * 3, (rng.random(16) + 0.5) * 3, np.array([3.0])],
    )
    spec.layer("Scale", "scale1", ["conv1"], ["conv1"], "scale_param { bias_term: true }", blobs=[(16,), (16,)])
    spec.layer("ReLU", "relu1", ["conv1"], ["conv1"])
    spec.layer("Pooling", "pool1", ["conv1"], params="pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
    spec.layer("LRN", "norm1", ["pool1"], params="lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")
    spec.layer(
        "Convolution",
        "branch_a",
        ["norm1"],
        params="convolution_param { num_output: 8 kernel_size: 1 }",
        blobs=[(8, 16, 1, 1), (8,)],
    )
    spec.layer("ReLU", "branch_a_relu", ["branch_a"], ["branch_a"])
    spec.layer(
        "Convolution",
        "branch_b",
        ["norm1"],
        params="convolution_param { num_output: 8 kernel_size: 3 pad: 1 }",
        blobs=[(8, 16, 3, 3), (8,)],
    )
    spec.layer("PReLU", "branch_b_prelu", ["branch_b"], ["branch_b"], blobs=[(8,)])
    spec.layer(
        "Pooling", "branch_c_pool", ["norm1"], params="pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 }"
    )
    spec.layer(
        "Convolution",
        "branch_c",
        ["branch_c_pool"],
        blobs=[(8, 16, 1, 1), (8,)],
        params="convolution_param { num_output: 8 kernel_size: 1 }",
    )
    spec.layer("Concat", "mixed", ["branch_a", "branch_b", "branch_c"])
    spec.layer(
        "Convolution",
        "res",
        ["mixed"],
        params="convolution_param { num_output: 24 kernel_size: 3 pad: 1 }",
        blobs=[(24, 24, 3, 3), (24,)],
    )
    spec.layer("Eltwise", "sum", ["res", "mixed"])
    spec.layer("ReLU", "sum_relu", ["sum"], ["sum"])
    spec.layer("Pooling", "pool2", ["sum"], params="pooling_param { pool: AVE global_pooling: true }")
    spec.layer("Dropout", "drop", ["pool2"], ["pool2"])
    spec.layer(
        "InnerProduct", "fc", ["pool2"], params="inner_product_param { num_output: 10 }", blobs=[(10, 24), (10,)]
    )
    spec.layer("Softmax", "prob", ["fc"])
    return spec


@pytest.mark.slow
def test_caffe_network_to_onnx_and_pytorch_matches_opencv(tmp_path: Path) -> None:
    from workbench.runners import open_runner
    from workbench.writers.pytorch import write_pytorch

    spec = zoo_net()
    prototxt, caffemodel = spec.save(tmp_path)
    inputs = random_inputs(spec.inputs)
    # onnxruntime vs OpenCV DNN, layer by layer, float32: rtol 1e-4, atol 1e-5
    model = assert_matches_opencv(prototxt, caffemodel, inputs, rtol=1e-4, atol=1e-5)
    assert model.output_names == ["prob"]
    outputs = open_runner(write_pytorch(model, tmp_path / "pytorch")).run(inputs)
    expected = opencv_forward(prototxt, caffemodel, inputs, ["prob"])["prob"]
    # PyTorch (generated model.py) vs OpenCV DNN, float32 softmax outputs: rtol 1e-4, atol 1e-6
    np.testing.assert_allclose(next(iter(outputs.values())), expected, rtol=1e-4, atol=1e-6)


def test_layers_that_cannot_be_converted_are_problems_with_a_remedy(tmp_path: Path) -> None:
    text = """
    input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }
    layer { name: "zeta" type: "BNLL" bottom: "data" top: "zeta" }
    layer { name: "soft" type: "Softmax" bottom: "data" top: "soft" softmax_param { axis: 5 } }
    layer { name: "cat" type: "Concat" bottom: "data" bottom: "soft" top: "cat" concat_param { axis: 9 } }
    layer { name: "relu" type: "ReLU" bottom: "data" bottom: "data" top: "relu" }
    """
    with pytest.raises(UnsupportedError) as caught:
        read_caffe(*save_net(net_from_text(text, {}), tmp_path))
    problems = caught.value.problems
    # "cat" reads "soft", which was refused: it is not converted and adds no problem of its own
    assert [(p.node, p.op_type, p.kind) for p in problems] == [  # sorted by type
        ("zeta", "BNLL", "unsupported-layer"),
        ("relu", "ReLU", "bottoms"),
        ("soft", "Softmax", "axis"),
    ]
    assert all(p.severity == "error" and p.remedy and p.source == (p.node,) for p in problems)
