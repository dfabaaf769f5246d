"""Break a converted model on purpose in each known way and check that
``first_divergence`` names the broken layer and the cause.

References are independent runtimes: MXNet's own recorded outputs (the fixtures in
data/mxnet, made with MXNet 1.9.1) and PyTorch; where the broken node is a graph
detail PyTorch has no hook for (a concatenation), the unbroken graph in
onnxruntime. Candidates are the converted graph, edited with onnx_ir, in
onnxruntime. Tolerances are compare's defaults (atol 1e-4, rtol 1e-3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
import torch
from onnx_ir.passes.common import RemoveUnusedNodesPass
from torch import nn

import workbench as wb
from workbench.graph import provenance
from workbench.readers.mxnet_reader import read_params
from workbench.runners import RecordedRunner
from workbench.samples import inception_tiny, resnet_tiny
from workbench.steps.compare import compare

DATA = Path(__file__).resolve().parents[2] / "data" / "mxnet"


def mxnet_pair(name: str) -> tuple[RecordedRunner, wb.Model]:
    recording = RecordedRunner(DATA / f"{name}-reference.npz")
    model = wb.load(
        DATA / f"{name}-symbol.json", DATA / f"{name}-0000.params", input_shape=recording.inputs["data"].shape
    )
    return recording, model


def node_of(model: wb.Model, source: str, op_type: str) -> ir.Node:
    return next(n for n in model.graph if n.op_type == op_type and source in provenance.sources(n))


def set_constant(value: ir.Value, array: np.ndarray) -> None:
    value.const_value = ir.tensor(np.ascontiguousarray(array, dtype=np.float32), name=value.name)


def exported(module: nn.Module, shape: tuple[int, ...]) -> tuple[wb.Model, np.ndarray]:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return wb.export(module, x), x


class SmallVarianceNet(nn.Module):
    """Deep-layer BatchNorm statistics (variances 1e-4..1e-2), where eps matters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.conv.weight.mul_(0.05)
            self.bn.running_var.copy_(10 ** (-4 + 2 * torch.rand(8, generator=generator)))
            self.bn.weight.copy_(torch.rand(8, generator=generator) + 0.5)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))))


def bn_eps_case():
    torch.manual_seed(0)
    module = SmallVarianceNet().eval()
    model, x = exported(module, (1, 3, 8, 8))
    bn = node_of(model, "bn", "BatchNormalization")
    bn.attributes["epsilon"] = ir.AttrFloat32("epsilon", 1e-3)  # MXNet's default where PyTorch used 1e-5
    return module, model, x, "bn"


def fix_gamma_case():
    recording, model = mxnet_pair("mobilefacenet_tiny")
    broken = model.copy()
    bn = node_of(broken, "fc1", "BatchNormalization")  # fix_gamma=True in the symbol
    stored = read_params(DATA / "mobilefacenet_tiny-0000.params")["fc1_gamma"]
    set_constant(bn.inputs[1], stored)  # the stored gamma (0.0003) used instead of 1
    return recording, broken, None, "fc1_output"


def preprocessing_case():
    recording, model = mxnet_pair("mobilefacenet_tiny")
    broken = model.copy()
    conv = node_of(broken, "conv_1_conv2d", "Conv")
    conv.replace_input_with(0, broken.graph.inputs[0])  # x * scale - mean dropped
    RemoveUnusedNodesPass()(broken.ir)
    return recording, broken, None, "conv_1_conv2d_output"


class PoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.head(self.pool(self.conv(x)))


def pooling_case():
    torch.manual_seed(0)
    module = PoolNet().eval()
    model, x = exported(module, (1, 3, 16, 16))
    node_of(model, "pool", "MaxPool").attributes["ceil_mode"] = ir.AttrInt64("ceil_mode", 0)
    return module, model, x, "pool"


class SquareHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.fc1 = nn.Linear(32, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(self.conv(x), 1))))


def transposed_weight_case():
    torch.manual_seed(0)
    module = SquareHead().eval()
    model, x = exported(module, (1, 2, 4, 4))
    weight = next(v for v in model.graph.initializers.values() if tuple(v.shape) == (32, 32))
    set_constant(weight, weight.const_value.numpy().T)
    return module, model, x, "fc1"


def misbound_weight_case():
    module = resnet_tiny()
    model, x = exported(module, (1, 3, 32, 32))
    first = node_of(model, "layer1.0.conv1", "Conv").inputs[1]
    second = node_of(model, "layer1.0.conv2", "Conv").inputs[1]
    a, b = first.const_value.numpy().copy(), second.const_value.numpy().copy()
    set_constant(first, b)
    set_constant(second, a)
    return module, model, x, "layer1.0.conv1"


def concat_order_case():
    model, x = exported(inception_tiny(), (1, 3, 16, 16))
    broken = model.copy()
    concat = next(n for n in broken.graph if n.op_type == "Concat")
    first, second = concat.inputs[0], concat.inputs[1]
    concat.replace_input_with(0, second)
    concat.replace_input_with(1, first)
    return model, broken, x, concat.outputs[0].name


CASES = {
    "bn-eps": (bn_eps_case, ["eps"]),
    "fix-gamma": (fix_gamma_case, ["gamma were 1"]),
    "preprocessing": (preprocessing_case, ["_minusscalar0", "_mulscalar0"]),
    "pooling-rounding": (pooling_case, ["ceil"]),
    "transposed-weight": (transposed_weight_case, ["transposed"]),
    "misbound-weight": (misbound_weight_case, ["layer1.0.conv2"]),
    "concat-order": (concat_order_case, ["candidate 0:12 = reference 8:20"]),
}


@pytest.mark.parametrize("kind", list(CASES), ids=list(CASES))
def test_first_divergence_names_broken_layer_and_cause(kind: str) -> None:
    build, words = CASES[kind]
    reference, candidate, inputs, broken_layer = build()
    comparison = compare(reference, candidate, inputs, per_layer=True)
    divergence = comparison.first_divergence
    assert divergence is not None, comparison
    assert divergence.source == broken_layer, divergence.explanation
    assert divergence.cause is not None and divergence.cause.kind == kind, divergence.explanation
    # the plot marks it by the source layers the user knows, not a runtime's value name
    label = comparison.layer_errors().divergence_label
    assert label == f"first divergence: {', '.join(divergence.pair.layers) or broken_layer} ({kind})"
    for word in words:
        assert word in divergence.explanation
    earlier = [pair for pair in comparison.layers if pair is not divergence.pair][
        : comparison.layers.index(divergence.pair)
    ]
    assert all(pair.ok for pair in earlier)  # every layer before it agrees within atol 1e-4, rtol 1e-3


def test_the_plot_names_a_divergence_between_two_graphs_by_module_path() -> None:
    reference, candidate, inputs, _ = concat_order_case()  # both ONNX graphs in onnxruntime
    comparison = compare(reference, candidate, inputs, per_layer=True)
    # the exporter names the Concat's value "cat"; the module path is what the user wrote
    assert comparison.layer_errors().divergence_label == "first divergence: block.cat (concat-order)"


def test_bn_eps_cause_recovers_both_epsilons() -> None:
    reference, candidate, inputs, _ = bn_eps_case()
    cause = compare(reference, candidate, inputs, per_layer=True).first_divergence.cause
    # recovered from per-channel ratios of float32 outputs: within 20%
    assert cause.numbers["reference_eps"] == pytest.approx(1e-5, rel=0.2)
    assert cause.numbers["candidate_eps"] == pytest.approx(1e-3, rel=0.2)


def test_agreeing_models_have_no_divergence() -> None:
    recording, model = mxnet_pair("op_zoo")
    comparison = compare(recording, model, per_layer=True)
    assert comparison.ok and comparison.first_divergence is None
