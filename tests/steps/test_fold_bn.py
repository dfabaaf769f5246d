"""fold_bn: BatchNormalization folded into Conv / ConvTranspose / Gemm / MatMul, or
turned into a per-channel scale; outputs checked against onnxruntime running the
unfolded graph and against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workbench import samples
from workbench.graph import Model, SourceInfo, provenance
from workbench.graph.builder import GraphBuilder
from workbench.readers import export
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
