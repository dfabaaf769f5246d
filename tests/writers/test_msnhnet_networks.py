"""Whole networks to MsnhNet: PyTorch -> export -> simplify -> write_msnhnet -> the
MsnhNet executor, compared with PyTorch (final outputs) and onnxruntime (every layer
that equals a graph value); the bundled Caffe sample against OpenCV DNN and the
bundled MXNet samples against the outputs recorded with MXNet 1.9.1; every written
network read back (MsnhNet -> graph -> onnxruntime) and compared with the executor,
layer by layer; and `workbench convert --to msnhnet` from the command line.

The networks cover the families MsnhNet is used for: ResNet (residual route adds),
MobileNet-v2 (depthwise, ReLU6), SqueezeNet (ceil-mode pooling, concat), ShuffleNet
(channel split and shuffle: views and permutes), MTCNN (PReLU, ceil pooling, NWHC
permute before a Linear, two outputs), EfficientNet (SiLU, squeeze-excitation
broadcast), Inception (branches, counted-padding average pooling) and two
segmentation nets (nearest and bilinear upsampling, a per-pixel softmax over classes).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from workbench import cli, samples
from workbench.formats.msnhnet import read_net
from workbench.readers import export, load
from workbench.runners.msnhnet_runner import MsnhNetRunner
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.runners.opencv_runner import OpenCVCaffeRunner
from workbench.steps.compare import compare
from workbench.steps.simplify import simplify
from workbench.writers.msnhnet import write_msnhnet

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "data"


class BilinearSegmentation(nn.Module):
    """DeepLab-style head: strided encoder, bilinear upsampling back to the input size
    (align_corners False and True), a skip connection and a softmax over classes per pixel."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.enc1 = samples.conv_bn(3, 8, 3)
        self.enc2 = samples.conv_bn(8, 16, 3, 2)
        self.enc3 = samples.conv_bn(16, 16, 3, 2)
        self.fuse = samples.conv_bn(24, 8, 1)
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        skip = self.enc1(x)
        deep = self.enc3(self.enc2(skip))
        up = F.interpolate(deep, scale_factor=4, mode="bilinear", align_corners=False)
        fused = self.fuse(torch.cat([up, skip], 1))
        logits = F.interpolate(self.head(fused), size=x.shape[2:], mode="bilinear", align_corners=True)
        return torch.softmax(logits, 1)


def bilinear_segmentation() -> nn.Module:
    torch.manual_seed(8)
    return samples._randomize_batchnorm(BilinearSegmentation())


bilinear_segmentation.input_shape = (1, 3, 24, 32)  # type: ignore[attr-defined]

NETWORKS = {
    # factory, MsnhNet layer kinds (and keys) that must appear
    "resnet": (samples.resnet_tiny, {"conv", "route", "connect"}),
    "mobilenet-v2": (samples.mobilenet_tiny, {"conv", "route", "globalavgpool"}),
    "squeezenet": (samples.squeezenet_tiny, {"maxpool", "route"}),
    "shufflenet": (samples.shufflenet_tiny, {"view", "permute", "slice"}),
    "mtcnn": (samples.mtcnn_tiny, {"permute", "softmax", "connect"}),
    "efficientnet": (samples.efficientnet_tiny, {"upsample", "varop"}),
    "inception": (samples.inception_tiny, {"route", "localavgpool"}),
    "segmentation-nearest": (samples.segmentation_tiny, {"upsample", "deconv"}),
    "segmentation-bilinear": (bilinear_segmentation, {"upsample", "reduction"}),
}


@pytest.fixture(scope="module", params=NETWORKS.values(), ids=NETWORKS.keys())
def converted(request, tmp_path_factory):
    factory, kinds = request.param
    module = factory()
    x = np.random.default_rng(0).standard_normal(factory.input_shape).astype(np.float32)
    model = simplify(export(module, [x], name=factory.__name__))
    written = write_msnhnet(model, tmp_path_factory.mktemp(factory.__name__))
    runner = MsnhNetRunner(written.path(".msnhnet"), written.path(".msnhbin"), written.details)
    return module, model, written, runner, x, kinds


def test_final_outputs_match_pytorch(converted) -> None:
    module, model, written, runner, x, kinds = converted
    with torch.no_grad():
        expected = module(torch.from_numpy(x))
    expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
    actual = runner.run([x])
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual.values()):
        assert got.shape == want.shape
        # the MsnhNet executor against PyTorch, float32 through a whole network: atol 1e-4
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert kinds <= {layer["type"] for layer in written.details["layers"]}
    if "mtcnn" in model.name:
        assert "activation: prelu" in written.path(".msnhnet").read_text()


def test_the_weights_file_is_what_msnhnet_loads(converted) -> None:
    _, _, written, _, _, _ = converted
    # MsnhNet's loader takes exactly the floats the layers need ("need != given" otherwise)
    assert written.path(".msnhbin").stat().st_size == 4 * read_net(written.path(".msnhnet")).weight_count


def test_every_layer_matches_onnxruntime(converted) -> None:
    """Each layer whose output equals a graph value is compared with that value."""
    _, model, written, runner, x, _ = converted
    values = {layer["name"]: layer["value"] for layer in written.details["layers"] if layer["value"]}
    probe = model.copy()
    by_name = {v.name: v for node in probe.graph for v in node.outputs}
    probe.graph.outputs.extend(
        by_name[name] for name in set(values.values()) if name in by_name and not by_name[name].is_graph_output()
    )
    reference = OnnxRuntimeRunner(probe).run([x])
    compared = 0
    for name, actual in runner.run_layers([x]):
        want = reference.get(values.get(name, ""))
        if want is not None:
            # the MsnhNet executor against onnxruntime per layer, float32: atol 1e-4 relative to the layer's scale
            np.testing.assert_allclose(
                actual.reshape(want.shape), want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()), err_msg=name
            )
            compared += 1
    assert compared >= len(written.details["layers"]) // 2


def test_compare_aligns_every_layer_on_provenance(converted) -> None:
    """What a user runs: compare(graph, written files, per_layer=True) finds no divergence
    (a module called twice, such as one ReLU after every block, keeps layers of its own)."""
    _, model, written, _, x, _ = converted
    comparison = compare(model, written, [x], per_layer=True)
    assert comparison.ok and comparison.first_divergence is None, comparison
    weighted = [layer for layer in written.details["layers"] if layer["type"] in ("conv", "connect", "deconv")]
    assert len(comparison.layers) >= len(weighted)


def test_a_wrong_epsilon_in_the_msnhnet_file_is_named(tmp_path) -> None:
    model = simplify(load("workbench.samples:resnet_tiny"))
    written = write_msnhnet(model, tmp_path)
    text = written.path(".msnhnet").read_text()
    start = text.index("#2\n")
    at = text.index("eps: 1e-05", start)
    written.path(".msnhnet").write_text(text[:at] + "eps: 0.1" + text[at + len("eps: 1e-05") :])
    divergence = compare(model, written, per_layer=True).first_divergence
    assert divergence is not None and "epsilon" in str(divergence) and "layer1.0.bn1" in str(divergence)


def test_read_back_agrees_with_the_executor_layer_by_layer(converted, tmp_path) -> None:
    """MsnhNet -> graph -> onnxruntime against the MsnhNet executor, with the writer's
    record (source layers, output names) and without it (layers named index:kind)."""
    _, _, written, _, x, _ = converted
    files = (written.path(".msnhnet"), written.path(".msnhbin"))
    with_record = compare(load(*files), files, [x], per_layer=True)
    bare = [Path(shutil.copy(path, tmp_path)) for path in files]
    without_record = compare(load(*bare), tuple(bare), [x], per_layer=True)
    for comparison in (with_record, without_record):
        assert comparison.ok and comparison.first_divergence is None
        # every MsnhNet layer has its counterpart in the read graph
        assert not comparison.unmatched_candidate
        assert len(comparison.layers) == len(written.details["layers"])


def test_layer_names_come_from_the_pytorch_modules(converted) -> None:
    module, _, written, _, _, _ = converted
    convolutions = {name for name, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    sources = {s for layer in written.details["layers"] for s in layer["sources"]}
    assert convolutions <= sources


# ---- the bundled Caffe and MXNet samples ------------------------------------------------------


def test_caffe_sample_matches_opencv(tmp_path) -> None:
    prototxt, caffemodel = DATA / "caffe" / "zoo_tiny.prototxt", DATA / "caffe" / "zoo_tiny.caffemodel"
    model = simplify(load(prototxt, caffemodel))
    written = write_msnhnet(model, tmp_path)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    expected = OpenCVCaffeRunner(prototxt, caffemodel).run([x])
    actual = MsnhNetRunner(written.path(".msnhnet"), written.path(".msnhbin"), written.details).run([x])
    for want, got in zip(expected.values(), actual.values()):
        # OpenCV DNN against the MsnhNet executor: atol 1e-5 on probabilities
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-5)
    assert "conv" in {layer["type"] for layer in written.details["layers"]}  # LRN: a banded 1x1 conv


@pytest.mark.parametrize("name", ["mobilefacenet_tiny", "op_zoo"])
def test_mxnet_samples_match_the_outputs_recorded_with_mxnet(name, tmp_path) -> None:
    folder = DATA / "mxnet"
    x = np.load(folder / f"{name}-input.npy")
    model = simplify(load(folder / f"{name}-symbol.json", folder / f"{name}-0000.params", input_shape=x.shape))
    written = write_msnhnet(model, tmp_path)
    recorded = np.load(folder / f"{name}-reference.npz")
    actual = MsnhNetRunner(written.path(".msnhnet"), written.path(".msnhbin"), written.details).run([x])
    for output, got in actual.items():
        # MXNet 1.9.1's recorded output against the MsnhNet executor: atol 1e-4 relative to the output's scale
        want = recorded[output]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_convert_on_the_command_line(tmp_path, capsys) -> None:
    out = tmp_path / "mtcnn"
    code = cli.main(["convert", "workbench.samples:mtcnn_tiny", "--to", "msnhnet", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "mtcnn_tiny.msnhbin",
        "mtcnn_tiny.msnhnet",
        "mtcnn_tiny.provenance.json",
    ]
    assert "outputs match" in captured.out
