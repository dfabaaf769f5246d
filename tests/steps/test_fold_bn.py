"""fold_bn: BatchNormalization folded into Conv / ConvTranspose / Gemm / MatMul, or
turned into a per-channel scale; outputs checked against onnxruntime running the
unfolded graph and against PyTorch."""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench import samples
from workbench.graph import Model, SourceInfo, provenance
from workbench.graph.builder import GraphBuilder
from workbench.readers import export
from workbench.readers.mxnet_reader import read_params
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.steps.fold_bn import fold_bn
from workbench.steps.simplify import simplify

RNG = np.random.default_rng(0)


def _random(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _add_batchnorm(builder: GraphBuilder, x, channels: int, name: str = "bn", eps: float = 1e-3):
    gamma = builder.add_initializer(f"{name}.weight", RNG.uniform(0.5, 1.5, channels).astype(np.float32))
    beta = builder.add_initializer(f"{name}.bias", _random(channels))
    mean = builder.add_initializer(f"{name}.running_mean", _random(channels))
    var = builder.add_initializer(f"{name}.running_var", RNG.uniform(0.5, 1.5, channels).astype(np.float32))
    return builder.add_node(
        "BatchNormalization",
        [x, gamma, beta, mean, var],
        {"epsilon": eps},
        sources=[name],
        params={1: [f"{name}.weight"], 2: [f"{name}.bias"], 3: [f"{name}.running_mean"], 4: [f"{name}.running_var"]},
        outputs=["y"],
    )[0]


def _layer_then_batchnorm(kind: str) -> tuple[Model, dict[str, np.ndarray]]:
    """One weighted layer followed by a BatchNormalization, built node by node."""
    builder = GraphBuilder(kind)
    if kind in ("gemm", "gemm-transB", "matmul"):
        x = builder.add_input("x", [2, 6])
        channels = 5
    else:
        x = builder.add_input("x", [1, 4, 7, 7])
        channels = 6
    inputs = [x]
    attributes: dict = {}
    params = {1: ["layer.weight"]}
    if kind in ("conv", "conv-bias"):
        op = "Conv"
        inputs.append(builder.add_initializer("layer.weight", _random(channels, 4, 3, 3)))
        attributes = {"pads": [1, 1, 1, 1]}
    elif kind in ("conv-transpose", "conv-transpose-grouped"):
        op = "ConvTranspose"
        groups = 2 if kind.endswith("grouped") else 1
        inputs.append(builder.add_initializer("layer.weight", _random(4, channels // groups, 2, 2)))
        attributes = {"strides": [2, 2], "group": groups}
    elif kind == "gemm":
        op = "Gemm"
        inputs.append(builder.add_initializer("layer.weight", _random(6, channels)))
        inputs.append(builder.add_initializer("layer.bias", _random(1, channels)))
        attributes = {"alpha": 0.5, "beta": 2.0}
        params[2] = ["layer.bias"]
    elif kind == "gemm-transB":
        op = "Gemm"
        inputs.append(builder.add_initializer("layer.weight", _random(channels, 6)))
        inputs.append(builder.add_initializer("layer.bias", _random(channels)))
        attributes = {"transB": 1}
        params[2] = ["layer.bias"]
    else:
        op = "MatMul"
        inputs.append(builder.add_initializer("layer.weight", _random(6, channels)))
    if kind in ("conv-bias", "conv-transpose-grouped"):
        inputs.append(builder.add_initializer("layer.bias", _random(channels)))
        params[2] = ["layer.bias"]
    (hidden,) = builder.add_node(op, inputs, attributes, sources=["layer"], params=params, outputs=["hidden"])
    builder.set_outputs([_add_batchnorm(builder, hidden, channels)])
    model = builder.build()
    return Model(model, SourceInfo("onnx", (), kind)), {"x": _random(*x.shape)}


@pytest.mark.parametrize(
    ("kind", "folded_op"),
    [
        ("conv", "Conv"),
        ("conv-bias", "Conv"),
        ("conv-transpose", "ConvTranspose"),
        ("conv-transpose-grouped", "ConvTranspose"),
        ("gemm", "Gemm"),
        ("gemm-transB", "Gemm"),
        ("matmul", "Gemm"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_folds_batchnorm_into_the_layer_before(kind: str, folded_op: str) -> None:
    model, inputs = _layer_then_batchnorm(kind)
    folded = fold_bn(model)
    assert dict(folded.census()) == {folded_op: 1}
    assert folded.report.counts["folded"] == 1
    expected = OnnxRuntimeRunner(model).run(inputs)["y"]
    actual = OnnxRuntimeRunner(folded).run(inputs)["y"]
    # onnxruntime, folded float32 weights vs BatchNormalization computed at run time: atol 1e-5
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


def test_folded_node_carries_the_batchnorm_provenance() -> None:
    model, _ = _layer_then_batchnorm("conv-bias")
    (node,) = fold_bn(model).nodes()
    assert provenance.sources(node) == ("layer", "bn")
    params = provenance.params(node)
    assert set(params[1]) == {"layer.weight", "bn.weight", "bn.running_var"}
    assert set(params[2]) == {"layer.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}
    assert provenance.transforms(node) == ("folded BatchNormalization bn (eps=0.001)",)
    assert node.outputs[0].name == "y"


def test_input_model_is_left_unchanged() -> None:
    model, _ = _layer_then_batchnorm("conv")
    fold_bn(model)
    assert dict(model.census()) == {"Conv": 1, "BatchNormalization": 1}


def test_batchnorm_after_a_layer_without_weights_becomes_a_channel_scale() -> None:
    builder = GraphBuilder("relu-bn")
    x = builder.add_input("x", [1, 3, 5, 5])
    (hidden,) = builder.add_node("Relu", [x], sources=["relu"], outputs=["hidden"])
    builder.set_outputs([_add_batchnorm(builder, hidden, 3)])
    model = Model(builder.build(), SourceInfo("onnx", (), "relu-bn"))
    inputs = {"x": _random(1, 3, 5, 5)}

    folded = fold_bn(model)

    assert dict(folded.census()) == {"Relu": 1, "Mul": 1, "Add": 1}
    mul = next(n for n in folded.nodes() if n.op_type == "Mul")
    assert mul.inputs[1].const_value.shape == (3, 1, 1)
    assert all(provenance.sources(n) == ("bn",) for n in folded.nodes() if n.op_type in ("Mul", "Add"))
    assert (folded.report.counts["folded"], folded.report.counts["as_scale"]) == (0, 1)
    assert any("bn not folded" in w and "Relu" in w for w in folded.report.warnings)
    # onnxruntime, Mul + Add in float32 vs BatchNormalization: atol 1e-5
    np.testing.assert_allclose(
        OnnxRuntimeRunner(folded).run(inputs)["y"], OnnxRuntimeRunner(model).run(inputs)["y"], atol=1e-5
    )


def test_conv_whose_output_has_another_consumer_is_not_folded() -> None:
    builder = GraphBuilder("shared")
    x = builder.add_input("x", [1, 2, 4, 4])
    weight = builder.add_initializer("conv.weight", _random(3, 2, 1, 1))
    (hidden,) = builder.add_node("Conv", [x, weight], sources=["conv"], outputs=["hidden"])
    (other,) = builder.add_node("Relu", [hidden], sources=["relu"], outputs=["other"])
    builder.set_outputs([_add_batchnorm(builder, hidden, 3), other])
    model = Model(builder.build(), SourceInfo("onnx", (), "shared"))
    inputs = {"x": _random(1, 2, 4, 4)}

    folded = fold_bn(model)

    conv = next(n for n in folded.nodes() if n.op_type == "Conv")
    assert conv.inputs[1].name == "conv.weight"
    assert folded.report.counts["as_scale"] == 1
    assert any("1 other consumer" in w for w in folded.report.warnings)
    expected, actual = OnnxRuntimeRunner(model).run(inputs), OnnxRuntimeRunner(folded).run(inputs)
    for name in ("y", "other"):
        # onnxruntime, float32: atol 1e-5
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-5)


def test_batchnorm_with_statistics_from_the_graph_is_kept_with_the_reason() -> None:
    builder = GraphBuilder("dynamic-stats")
    x = builder.add_input("x", [1, 2, 3, 3])
    mean = builder.add_input("mean", [2])
    constants = [builder.add_initializer(n, np.ones(2, np.float32)) for n in ("gamma", "beta", "var")]
    (y,) = builder.add_node(
        "BatchNormalization", [x, constants[0], constants[1], mean, constants[2]], sources=["bn"], outputs=["y"]
    )
    builder.set_outputs([y])
    folded = fold_bn(Model(builder.build(), SourceInfo("onnx", (), "dynamic-stats")))
    assert dict(folded.census()) == {"BatchNormalization": 1}
    assert folded.report.counts["kept"] == 1
    assert any("not a constant" in w for w in folded.report.warnings)


class ConvTransposeBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(8, 6, 2, 2, groups=2)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x):
        return self.bn(self.up(x))


class LinearBatchNorm(nn.Module):
    def __init__(self, bias: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 7, bias=bias)
        self.bn = nn.BatchNorm1d(7)

    def forward(self, x):
        return torch.relu(self.bn(self.fc(x)))


@pytest.mark.parametrize(
    ("module", "shape", "folded_op"),
    [
        (ConvTransposeBatchNorm(), (1, 8, 5, 5), "ConvTranspose"),
        (LinearBatchNorm(bias=True), (3, 12), "Gemm"),
        (LinearBatchNorm(bias=False), (3, 12), "Gemm"),
    ],
    ids=["convtranspose-bn2d", "linear-bn1d", "linear-nobias-bn1d"],
)
def test_pytorch_layers_fold_and_match_pytorch(module: nn.Module, shape: tuple, folded_op: str) -> None:
    module = samples._randomize_batchnorm(module)
    x = _random(*shape)
    folded = fold_bn(simplify(export(module, [x])))
    assert "BatchNormalization" not in folded.census()
    assert folded.report.changes == [f"bn folded into {folded_op} {'up' if folded_op == 'ConvTranspose' else 'fc'}"]
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    (actual,) = OnnxRuntimeRunner(folded).run([x]).values()
    # onnxruntime (folded, float32) vs PyTorch eval: atol 1e-5
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("factory", "batchnorms"),
    [
        (samples.resnet_tiny, 10),
        (samples.mobilenet_tiny, 10),
        (samples.inception_tiny, 7),
        (samples.segmentation_tiny, 3),
    ],
    ids=["resnet_tiny", "mobilenet_tiny", "inception_tiny", "segmentation_tiny"],
)
def test_sample_networks_fold_completely_and_match_pytorch(factory, batchnorms: int) -> None:
    module = factory()
    x = _random(*factory.input_shape)
    folded = fold_bn(simplify(export(module, [x])))
    assert "BatchNormalization" not in folded.census()
    assert folded.report.counts["folded"] == batchnorms
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    (actual,) = OnnxRuntimeRunner(folded).run([x]).values()
    # onnxruntime (folded, float32) vs PyTorch eval: atol 1e-4 (whole network)
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- per-channel affine chains

CHANNELS = 6


def _per_channel(builder: GraphBuilder, x, op: str, name: str, constant_first: bool = False, shape=None):
    """``op(x, c)`` (``op(c, x)`` with ``constant_first``) with a per-channel constant ``c``."""
    values = RNG.uniform(0.5, 1.5, shape or (1, CHANNELS, 1, 1)).astype(np.float32)
    c = builder.add_initializer(f"{name}.c", values)
    inputs = [c, x] if constant_first else [x, c]
    index = 0 if constant_first else 1
    return builder.add_node(op, inputs, sources=[name], params={index: [f"{name}.c"]}, outputs=[f"{name}.out"])[0]


CHAINS = {
    "caffe-batchnorm-scale": [("bn", "BatchNormalization"), ("scale", "Mul"), ("scale", "Add")],
    "scale-then-batchnorm": [("scale", "Mul"), ("scale", "Add"), ("bn", "BatchNormalization")],
    "bias-batchnorm-scale": [("bias", "Add"), ("bn", "BatchNormalization"), ("scale", "Mul")],
    "sub-div-and-reversed-sub": [("shift", "Sub"), ("norm", "Div"), ("flip", "Sub-reversed"), ("gain", "Mul")],
}


def _conv_then(chain: list[tuple[str, str]]) -> tuple[Model, dict[str, np.ndarray]]:
    """A Conv followed by the chain of per-channel affine nodes."""
    builder = GraphBuilder("chain")
    x = builder.add_input("x", [1, 4, 7, 7])
    weight = builder.add_initializer("conv.weight", _random(CHANNELS, 4, 3, 3))
    (value,) = builder.add_node(
        "Conv", [x, weight], {"pads": [1, 1, 1, 1]}, sources=["conv"], params={1: ["conv.weight"]}, outputs=["h"]
    )
    for index, (name, op) in enumerate(chain):
        if op == "BatchNormalization":
            value = _add_batchnorm(builder, value, CHANNELS, name)
            value.name = f"{name}.out{index}"
        else:
            reversed_sub = op == "Sub-reversed"
            value = _per_channel(builder, value, op.split("-")[0], f"{name}{index}", constant_first=reversed_sub)
    builder.set_outputs([value])
    return Model(builder.build(), SourceInfo("onnx", (), "chain")), {"x": _random(1, 4, 7, 7)}


@pytest.mark.parametrize("chain", list(CHAINS), ids=list(CHAINS))
def test_per_channel_chains_after_a_conv_fold_into_it(chain: str) -> None:
    model, inputs = _conv_then(CHAINS[chain])
    folded = fold_bn(model)
    assert dict(folded.census()) == {"Conv": 1}
    assert folded.report.counts["folded_nodes"] == Counter(op.split("-")[0] for _, op in CHAINS[chain])
    assert folded.report.counts["folded_by_op"] == {"Conv": 1}
    (expected,) = OnnxRuntimeRunner(model).run(inputs).values()
    (actual,) = OnnxRuntimeRunner(folded).run(inputs).values()
    # onnxruntime, folded float32 weights vs the chain computed at run time: atol 1e-5
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


def test_folded_chain_keeps_every_source_parameter() -> None:
    model, _ = _conv_then(CHAINS["caffe-batchnorm-scale"])
    (node,) = fold_bn(model).nodes()
    assert provenance.sources(node) == ("conv", "bn", "scale1", "scale2")
    params = provenance.params(node)
    # the weight is scaled by gamma / sqrt(var + eps) and the Mul's constant; the bias gets everything
    assert set(params[1]) == {"conv.weight", "bn.weight", "bn.running_var", "scale1.c"}
    assert set(params[2]) == {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "scale1.c", "scale2.c"}
    assert provenance.transforms(node) == (
        "folded BatchNormalization bn (eps=0.001)",
        "folded Mul scale1 (per-channel scale)",
        "folded Add scale2 (per-channel shift)",
    )


def test_gemm_then_batchnorm_then_per_feature_scale() -> None:
    builder = GraphBuilder("gemm-chain")
    x = builder.add_input("x", [3, 5])
    weight = builder.add_initializer("fc.weight", _random(CHANNELS, 5))
    bias = builder.add_initializer("fc.bias", _random(CHANNELS))
    (value,) = builder.add_node("Gemm", [x, weight, bias], {"transB": 1}, sources=["fc"], outputs=["h"])
    value = _add_batchnorm(builder, value, CHANNELS)
    value = _per_channel(builder, value, "Mul", "scale", shape=(CHANNELS,))  # [C] against [N, C]: per feature
    builder.set_outputs([value])
    model = Model(builder.build(), SourceInfo("onnx", (), "gemm-chain"))
    inputs = {"x": _random(3, 5)}
    folded = fold_bn(model)
    assert dict(folded.census()) == {"Gemm": 1}
    # onnxruntime, float32: atol 1e-5
    np.testing.assert_allclose(
        OnnxRuntimeRunner(folded).run(inputs)["scale.out"], OnnxRuntimeRunner(model).run(inputs)["scale.out"], atol=1e-5
    )


def test_a_constant_that_varies_over_space_is_not_folded_and_says_why() -> None:
    builder = GraphBuilder("spatial")
    x = builder.add_input("x", [1, 4, 7, 7])
    weight = builder.add_initializer("conv.weight", _random(CHANNELS, 4, 3, 3))
    (value,) = builder.add_node("Conv", [x, weight], {"pads": [1, 1, 1, 1]}, sources=["conv"], outputs=["h"])
    value = _per_channel(builder, value, "Mul", "mask", shape=(1, CHANNELS, 7, 7))
    builder.set_outputs([value])
    folded = fold_bn(Model(builder.build(), SourceInfo("onnx", (), "spatial")))
    assert dict(folded.census()) == {"Conv": 1, "Mul": 1}
    assert folded.report.counts["not_folded"] == 1
    assert any("Mul mask not folded" in w and "varies along axis 2" in w for w in folded.report.warnings)


def test_batchnorm_after_relu_and_the_scale_after_it_become_one_channel_scale() -> None:
    builder = GraphBuilder("relu-bn-scale")
    x = builder.add_input("x", [1, CHANNELS, 5, 5])
    (hidden,) = builder.add_node("Relu", [x], sources=["relu"], outputs=["hidden"])
    value = _add_batchnorm(builder, hidden, CHANNELS)
    value = _per_channel(builder, value, "Mul", "scale_w")
    value = _per_channel(builder, value, "Add", "scale_b")
    builder.set_outputs([value])
    model = Model(builder.build(), SourceInfo("onnx", (), "relu-bn-scale"))
    inputs = {"x": _random(1, CHANNELS, 5, 5)}
    folded = fold_bn(model)
    assert dict(folded.census()) == {"Relu": 1, "Mul": 1, "Add": 1}
    assert (folded.report.counts["folded"], folded.report.counts["as_scale"]) == (0, 1)
    assert folded.report.changes == ["bn, scale_w, scale_b became one per-channel scale (Mul + Add)"]
    # onnxruntime, one Mul + Add in float32 vs BatchNormalization, Mul, Add: atol 1e-5
    np.testing.assert_allclose(
        OnnxRuntimeRunner(folded).run(inputs)["scale_b.out"],
        OnnxRuntimeRunner(model).run(inputs)["scale_b.out"],
        atol=1e-5,
    )


class ConvBatchNormChannelScale(nn.Module):
    """conv → BatchNorm → a learnt per-channel scale and shift (as SE-free ResNet variants and
    converted Caffe models hold them)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.scale = nn.Parameter(torch.rand(1, 8, 1, 1) + 0.5)
        self.shift = nn.Parameter(torch.randn(1, 8, 1, 1))

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) * self.scale + self.shift)


def test_pytorch_conv_batchnorm_channel_scale_folds_to_one_conv() -> None:
    torch.manual_seed(0)
    module = samples._randomize_batchnorm(ConvBatchNormChannelScale()).eval()
    x = _random(1, 3, 9, 9)
    folded = fold_bn(simplify(export(module, [x])))
    assert dict(folded.census()) == {"Conv": 1, "Relu": 1}
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    (actual,) = OnnxRuntimeRunner(folded).run([x]).values()
    # onnxruntime (folded, float32) vs PyTorch eval: atol 1e-5
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


def _save_mxnet_params(path, params: dict[str, np.ndarray]) -> None:
    """MXNet's NDArray list format (v2 arrays, float32), as ``mx.nd.save`` writes it."""
    chunks = [struct.pack("<QQQ", 0x112, 0, len(params))]
    for array in params.values():
        array = np.ascontiguousarray(array, dtype="<f4")
        chunks.append(struct.pack("<Iii", 0xF993FAC9, 0, array.ndim) + struct.pack(f"<{array.ndim}q", *array.shape))
        chunks.append(struct.pack("<iii", 1, 0, 0) + array.tobytes())
    chunks.append(struct.pack("<Q", len(params)))
    for name in params:
        key = f"arg:{name}".encode()
        chunks.append(struct.pack("<Q", len(key)) + key)
    path.write_bytes(b"".join(chunks))


def test_mxnet_conv_batchnorm_broadcast_mul_folds_and_matches_mxnet(tmp_path) -> None:
    """mobilefacenet_tiny with a per-channel ``broadcast_mul`` by a parameter inserted after
    its first BatchNorm; MXNet's recorded BatchNorm output times the scale is the reference."""
    data = Path(__file__).resolve().parents[2] / "data" / "mxnet"
    symbol = json.loads((data / "mobilefacenet_tiny-symbol.json").read_text())
    params = dict(read_params(data / "mobilefacenet_tiny-0000.params"))
    nodes = symbol["nodes"]
    bn = next(i for i, node in enumerate(nodes) if node["name"] == "conv_1_batchnorm")
    channels = params["conv_1_batchnorm_gamma"].shape[0]
    params["conv_1_scale"] = RNG.uniform(0.5, 1.5, (1, channels, 1, 1)).astype(np.float32)

    # two nodes inserted after the BatchNorm (nodes are in topological order): the parameter
    # and the product, which every former reader of the BatchNorm reads instead
    def moved(ref: list[int]) -> list[int]:
        index = ref[0] + 2 if ref[0] > bn else ref[0]
        return [bn + 2 if ref[0] == bn else index, *ref[1:]]

    for node in nodes:
        node["inputs"] = [moved(ref) for ref in node["inputs"]]
    nodes[bn + 1 : bn + 1] = [
        {"op": "null", "name": "conv_1_scale", "inputs": []},
        {"op": "broadcast_mul", "name": "conv_1_scaled", "inputs": [[bn, 0, 0], [bn + 1, 0, 0]]},
    ]
    symbol["heads"] = [moved(ref) for ref in symbol["heads"]]
    symbol["arg_nodes"] = sorted([*(i + 2 if i > bn else i for i in symbol["arg_nodes"]), bn + 1])
    symbol.pop("node_row_ptr", None)
    (tmp_path / "net-symbol.json").write_text(json.dumps(symbol))
    _save_mxnet_params(tmp_path / "net-0000.params", params)

    x = np.load(data / "mobilefacenet_tiny-input.npy")
    model = wb.load(tmp_path / "net-symbol.json", tmp_path / "net-0000.params", input_shape=x.shape)
    folded = fold_bn(simplify(model))
    conv = next(n for n in folded.graph if "conv_1_conv2d" in provenance.sources(n))
    assert provenance.sources(conv) == ("conv_1_conv2d", "conv_1_batchnorm", "conv_1_scaled")
    assert "BatchNormalization" not in folded.census() and "Mul" not in {
        n.op_type for n in folded.graph if "conv_1_scaled" in provenance.sources(n) and n is not conv
    }
    recorded = np.load(data / "mobilefacenet_tiny-reference.npz")["conv_1_batchnorm_output"]
    actual = OnnxRuntimeRunner(folded).value("conv_1_scaled_output", {"data": x})
    # folded conv in onnxruntime vs MXNet 1.9.1's recorded BatchNorm output times the scale: atol 1e-5 + rtol 1e-4
    np.testing.assert_allclose(actual, recorded * params["conv_1_scale"], atol=1e-5, rtol=1e-4)
