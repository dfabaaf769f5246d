"""Caffe reader: every layer type, the file-format variants and bad input.

Each net is built here (NetParameter messages with random blobs, or hand-written
prototxt), read with ``read_caffe``, run in onnxruntime and compared with OpenCV
DNN running the same files: the final outputs and, layer by layer, the output of
the last node each Caffe layer produced (found through provenance).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pytest
from google.protobuf import text_format

from workbench.errors import InputError, WorkbenchError
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

    def input(self, name: str, shape: Sequence[int]) -> "NetSpec":
        self.net.input.append(name)
        self.net.input_shape.add().dim.extend(shape)
        self.inputs[name] = tuple(shape)
        return self

    def layer(self, kind: str, name: str, bottoms: Sequence[str], tops: Sequence[str] | None = None,
              params: str = "", blobs: Sequence[Sequence[int] | np.ndarray] = ()) -> "NetSpec":
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


def opencv_forward(prototxt: Path, caffemodel: Path, inputs: dict[str, np.ndarray],
                   layers: Sequence[str]) -> dict[str, np.ndarray]:
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


def assert_matches_opencv(prototxt: Path, caffemodel: Path, inputs: dict[str, np.ndarray],
                          rtol: float, atol: float, **read_options) -> Model:
    """Final outputs and every layer's output against OpenCV DNN."""
    model = read_caffe(prototxt, caffemodel, **read_options)
    ours = graph_layer_outputs(model, inputs)
    reference = opencv_forward(prototxt, caffemodel, inputs, list(ours))
    for layer, expected in reference.items():
        np.testing.assert_allclose(ours[layer], expected, rtol=rtol, atol=atol, err_msg=f"layer {layer}")
    finals = OnnxRuntimeRunner(model).run(inputs)
    for value in model.graph.outputs:
        (writer,) = provenance.sources(value.producer())
        np.testing.assert_allclose(finals[value.name], reference[writer], rtol=rtol, atol=atol,
                                   err_msg=f"output {value.name}")
    return model


# ---------------------------------------------------------------------------
# one case per layer type and spelling

X = (2, 4, 8, 8)  # the usual input: batch 2, 4 channels, 8 x 8


def conv(params: str, weight: Sequence[int], outputs: int | None = None, shape=X,
         kind: str = "Convolution") -> NetSpec:
    """A convolution with a bias of ``outputs`` values (none when 0; default weight[0])."""
    outputs = weight[0] if outputs is None else outputs
    blobs = [weight, (outputs,)] if outputs else [weight]
    return NetSpec().input("data", shape).layer(kind, "layer", ["data"], params=params, blobs=blobs)


def single(kind: str, params: str = "", blobs=(), shape=X) -> NetSpec:
    return NetSpec().input("data", shape).layer(kind, "layer", ["data"], params=params, blobs=blobs)


def pooling(params: str, shape=X) -> NetSpec:
    return single("Pooling", f"pooling_param {{ {params} }}", shape=shape)


def two_inputs(kind: str, params: str = "", second=X, tops=None) -> NetSpec:
    return (NetSpec().input("a", X).input("b", second)
            .layer(kind, "layer", ["a", "b"], tops=tops, params=params))


def batch_norm(factor: float) -> NetSpec:
    rng = np.random.default_rng(3)
    mean = rng.standard_normal(4) * factor
    variance = (rng.random(4) + 0.5) * factor
    return (NetSpec().input("data", X)
            .layer("BatchNorm", "layer", ["data"], params="batch_norm_param { eps: 0.001 }",
                   blobs=[mean, variance, np.array([factor])]))


LAYER_CASES = {
    "conv-3x3-pad": conv("convolution_param { num_output: 6 kernel_size: 3 pad: 1 }", (6, 4, 3, 3)),
    "conv-group-dilation-nobias": conv(
        "convolution_param { num_output: 6 kernel_size: 3 dilation: 2 group: 2 bias_term: false }",
        (6, 2, 3, 3), outputs=0),
    "conv-depthwise-stride": conv(
        "convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 4 }", (4, 1, 3, 3)),
    "conv-h-w-fields": conv(
        "convolution_param { num_output: 3 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1 }",
        (3, 4, 3, 1)),
    "conv-repeated-fields": conv(
        "convolution_param { num_output: 3 kernel_size: 3 kernel_size: 5 pad: 1 pad: 2 stride: 1 stride: 2 }",
        (3, 4, 3, 5)),
    "deconv-stride2": conv(
        "convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 }", (4, 3, 4, 4), outputs=3,
        kind="Deconvolution"),
    "deconv-group": conv(
        "convolution_param { num_output: 4 kernel_size: 3 stride: 2 group: 2 }", (4, 2, 3, 3), outputs=4,
        kind="Deconvolution"),
    "pool-max-ceil": pooling("pool: MAX kernel_size: 3 stride: 2", shape=(1, 2, 6, 6)),
    "pool-max-pad-clip": pooling("pool: MAX kernel_size: 2 stride: 2 pad: 1", shape=(1, 2, 5, 5)),
    "pool-max-rect": pooling("pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0",
                             shape=(1, 2, 7, 6)),
    "pool-ave-rect-overhang": pooling(
        "pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0", shape=(1, 2, 8, 7)),
    "pool-ave-exact": pooling("pool: AVE kernel_size: 3 stride: 1 pad: 1"),
    "pool-ave-ceil-overhang": pooling("pool: AVE kernel_size: 3 stride: 2", shape=(1, 2, 6, 6)),
    "pool-ave-pad-overhang": pooling("pool: AVE kernel_size: 3 stride: 2 pad: 1"),
    "pool-ave-pad-clip": pooling("pool: AVE kernel_size: 2 stride: 2 pad: 1", shape=(1, 2, 5, 5)),
    "pool-global-max": pooling("pool: MAX global_pooling: true"),
    "pool-global-ave": pooling("pool: AVE global_pooling: true"),
    "innerproduct-flatten": single("InnerProduct", "inner_product_param { num_output: 5 }",
                                   blobs=[(5, 256), (5,)]),
    "innerproduct-axis2-nobias": single(
        "InnerProduct", "inner_product_param { num_output: 3 axis: 2 bias_term: false }", blobs=[(3, 64)]),
    "batchnorm-factor": batch_norm(7.5),
    "batchnorm-zero-factor": batch_norm(0.0),
    "scale-bias": single("Scale", "scale_param { bias_term: true }", blobs=[(4,), (4,)]),
    "scale-no-bias": single("Scale", "", blobs=[(4,)]),
    "scale-two-axes": single("Scale", "scale_param { axis: 1 num_axes: 2 }", blobs=[(4, 8)]),
    "scale-two-bottoms": two_inputs("Scale", "scale_param { axis: 0 }", second=(2, 4)),
    "relu": single("ReLU"),
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
    "slice-points": NetSpec().input("data", X).layer(
        "Slice", "layer", ["data"], tops=["s0", "s1", "s2"], params="slice_param { axis: 1 slice_point: 1 slice_point: 3 }"
    ).layer("Concat", "join", ["s2", "s0", "s1"]),
    "split": NetSpec().input("data", X).layer("Split", "layer", ["data"], tops=["c0", "c1"]).layer(
        "ReLU", "relu", ["c0"]).layer("Eltwise", "join", ["relu", "c1"]),
    "flatten": single("Flatten"),
    "flatten-axes": single("Flatten", "flatten_param { axis: 2 end_axis: 3 }"),
    "reshape-zero-minus-one": single("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 4 } }"),
    "reshape-axis-num-axes": single("Reshape", "reshape_param { axis: 2 num_axes: 1 shape { dim: 2 dim: -1 } }"),
    "softmax": single("Softmax"),
    "softmax-axis": single("Softmax", "softmax_param { axis: 3 }"),
    "dropout": single("Dropout").layer("ReLU", "relu", ["layer"]),
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
    return NetSpec().input("data", X).layer("Slice", "layer", ["data"], tops=["s0", "s1"], params=params).layer(
        "Eltwise", "join", ["s1", "s0"], params="eltwise_param { operation: PROD }")


# Spellings OpenCV DNN reads differently from Caffe, each with the spelling that
# means the same in both, which OpenCV then runs as the reference.
SPELLING_CASES = {
    "slice-dim": (slice_net("slice_param { slice_dim: 2 }"), slice_net("slice_param { axis: 2 }")),
    "concat-dim": (two_inputs("Concat", "concat_param { concat_dim: 2 }", second=(2, 4, 3, 8)),
                   two_inputs("Concat", "concat_param { axis: 2 }", second=(2, 4, 3, 8))),
    "pool-pad-h-only": (pooling("pool: MAX kernel_size: 3 stride: 2 pad_h: 1", shape=(1, 2, 8, 7)),
                        pooling("pool: MAX kernel_size: 3 stride: 2 pad_h: 1 pad_w: 0", shape=(1, 2, 8, 7))),
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
    np.testing.assert_allclose(outputs[case.net.layer[-1].top[0]], expected[reference.net.layer[-1].name],
                               rtol=1e-5, atol=1e-5)


def test_lrn_bias_k_matches_pytorch(tmp_path: Path) -> None:
    """OpenCV DNN ignores LRN's k; PyTorch's LocalResponseNorm is Caffe's formula."""
    torch = pytest.importorskip("torch")
    case = single("LRN", "lrn_param { local_size: 5 alpha: 0.3 beta: 0.6 k: 2.5 }")
    inputs = random_inputs(case.inputs)
    outputs = OnnxRuntimeRunner(read_caffe(*case.save(tmp_path))).run(inputs)
    expected = torch.nn.LocalResponseNorm(5, alpha=0.3, beta=0.6, k=2.5)(torch.from_numpy(inputs["data"]))
    # onnxruntime vs PyTorch, float32: rtol 1e-5, atol 1e-6
    np.testing.assert_allclose(outputs["layer"], expected.numpy(), rtol=1e-5, atol=1e-6)


def test_inner_product_transpose_matches_pytorch(tmp_path: Path) -> None:
    """``transpose: true`` stores the weight as (inputs, outputs); OpenCV DNN ignores the flag."""
    torch = pytest.importorskip("torch")
    weight, bias = np.random.default_rng(5).standard_normal((256, 5)), np.arange(5.0)
    case = single("InnerProduct", "inner_product_param { num_output: 5 transpose: true }", blobs=[weight, bias])
    inputs = random_inputs(case.inputs)
    outputs = OnnxRuntimeRunner(read_caffe(*case.save(tmp_path))).run(inputs)
    expected = torch.nn.functional.linear(
        torch.from_numpy(inputs["data"]).flatten(1),
        torch.from_numpy(weight.T.astype(np.float32)),
        torch.from_numpy(bias.astype(np.float32)),
    )
    # onnxruntime vs PyTorch, float32 sums of 256 products: rtol 1e-5, atol 1e-4
    np.testing.assert_allclose(outputs["layer"], expected.numpy(), rtol=1e-5, atol=1e-4)
