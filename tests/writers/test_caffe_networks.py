"""Whole sample networks: PyTorch -> export -> simplify -> write_caffe -> OpenCV DNN,
compared with PyTorch and onnxruntime, final outputs and every layer.

MTCNN's ``x.permute(0, 3, 2, 1).view(n, -1)`` before its Linear is written in the
bvlc dialect without a Permute layer: the writer moves the permutation into the
InnerProduct weights. MobileNet's ReLU6 is five exact layers in bvlc and one ReLU6
in the opencv dialect. EfficientNet's squeeze-excitation gate is a two-bottom
Scale; the segmentation net's nearest upsampling a fixed Deconvolution; ShuffleNet's
channel shuffle a 1x1 Convolution with a permutation matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench import samples
from workbench.readers import export
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.runners.opencv_runner import OpenCVCaffeRunner
from workbench.steps.simplify import simplify
from workbench.writers.caffe import OPENCV_ONLY_LAYERS, write_caffe

pytestmark = pytest.mark.slow

NETWORKS = {
    # factory, dialect, Caffe layer types that must appear
    "resnet_tiny": ("resnet_tiny", "bvlc", {"BatchNorm", "Scale", "Eltwise", "Slice", "InnerProduct"}),
    "mobilenet_tiny-bvlc": ("mobilenet_tiny", "bvlc", {"Power", "Eltwise"}),
    "mobilenet_tiny-opencv": ("mobilenet_tiny", "opencv", {"ReLU6"}),
    "squeezenet_tiny": ("squeezenet_tiny", "bvlc", {"Concat", "Pooling"}),
    "inception_tiny": ("inception_tiny", "bvlc", {"Concat"}),
    "mtcnn_tiny": ("mtcnn_tiny", "bvlc", {"PReLU", "Softmax", "InnerProduct"}),
    "efficientnet_tiny": ("efficientnet_tiny", "bvlc", {"Sigmoid", "Scale", "Reshape"}),
    "segmentation_tiny": ("segmentation_tiny", "bvlc", {"Deconvolution", "Slice"}),
    "shufflenet_tiny": ("shufflenet_tiny", "bvlc", {"Slice", "Concat", "Convolution"}),
}


@pytest.fixture(scope="module", params=NETWORKS.values(), ids=NETWORKS.keys())
def converted(request, tmp_path_factory):
    factory_name, dialect, types = request.param
    factory = getattr(samples, factory_name)
    module = factory()
    x = np.random.default_rng(0).standard_normal(factory.input_shape).astype(np.float32)
    model = simplify(export(module, [x], name=factory_name))
    written = write_caffe(model, tmp_path_factory.mktemp(factory_name), dialect=dialect)
    runner = OpenCVCaffeRunner(written.path(".prototxt"), written.path(".caffemodel"))
    return module, model, written, runner, x, types


def test_final_outputs_match_pytorch(converted) -> None:
    module, model, written, runner, x, types = converted
    with torch.no_grad():
        expected = module(torch.from_numpy(x))
    expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
    actual = runner.run([x])
    blobs = [written.details["outputs"][name] for name in model.output_names]
    for want, blob in zip(expected, blobs):
        assert actual[blob].shape == want.shape
        np.testing.assert_allclose(
            actual[blob], want, rtol=1e-4, atol=1e-4
        )  # OpenCV DNN vs PyTorch, float32: atol 1e-4
    written_types = {layer["type"] for layer in written.details["layers"]}
    assert types <= written_types
    if written.details["dialect"] == "bvlc":
        assert not written_types & OPENCV_ONLY_LAYERS


def test_every_layer_matches_onnxruntime(converted) -> None:
    """Each Caffe top that equals a graph value is compared with that value."""
    _, model, written, runner, x, _ = converted
    values = {}
    for layer in written.details["layers"]:
        for top, value in zip(layer["top"], layer["values"]):
            if value is not None and layer["type"] != "Input":
                values[layer["name"] if len(layer["top"]) == 1 else top] = value
    probe = model.copy()
    by_name = {v.name: v for node in probe.graph for v in node.outputs}
    probe.graph.outputs.extend(by_name[name] for name in set(values.values()) if not by_name[name].is_graph_output())
    reference = OnnxRuntimeRunner(probe).run([x])
    compared = 0
    for key, actual in runner.run_layers([x]):
        if key in values:
            want = reference[values[key]]
            # OpenCV DNN vs onnxruntime per layer, float32: atol 1e-4 relative to the layer's scale
            np.testing.assert_allclose(actual, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()), err_msg=key)
            compared += 1
    assert compared == len(values) >= len(model.graph) // 2


def test_layer_names_come_from_the_pytorch_modules(converted) -> None:
    module, _, written, _, _, _ = converted
    convolutions = {name for name, m in module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    layers = {layer["name"]: layer for layer in written.details["layers"]}
    assert convolutions <= set(layers)
    assert all(layers[name]["sources"][-1] == name for name in convolutions)


class BilinearSegmentation(torch.nn.Module):
    """An FCN/DeepLab-style head: a strided encoder, class scores, and bilinear upsampling back to
    the input size, once with PyTorch's default (align_corners=False, by an integer factor) and
    once with align_corners=True to a given size, as DeepLab exports."""

    input_shape = (1, 3, 32, 48)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 12, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )
        self.classifier = torch.nn.Conv2d(12, 5, 1)
        self.aux = torch.nn.Conv2d(12, 5, 1)

    def forward(self, x):
        features = self.encoder(x)
        scores = torch.nn.functional.interpolate(self.classifier(features), scale_factor=4, mode="bilinear")
        aux = torch.nn.functional.interpolate(self.aux(features), size=x.shape[2:], mode="bilinear", align_corners=True)
        return scores, aux


def test_bilinear_segmentation_head_matches_pytorch(tmp_path) -> None:
    module = BilinearSegmentation().eval()
    with torch.no_grad():  # statistics a trained network would have
        module.encoder[1].running_mean.uniform_(-0.5, 0.5)
        module.encoder[1].running_var.uniform_(0.5, 2.0)
    x = np.random.default_rng(1).standard_normal(BilinearSegmentation.input_shape).astype(np.float32)
    model = simplify(export(module, [x], name="segmentation"))
    written = write_caffe(model, tmp_path)
    actual = OpenCVCaffeRunner(written.path(".prototxt"), written.path(".caffemodel")).run([x])
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.from_numpy(x))]
    for want, name in zip(expected, model.output_names):
        got = actual[written.details["outputs"][name]]
        assert got.shape == want.shape == (1, 5, 32, 48)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)  # OpenCV DNN vs PyTorch, float32: atol 1e-4
    types = {layer["type"] for layer in written.details["layers"]}
    assert {"Deconvolution", "InnerProduct"} <= types and not types & OPENCV_ONLY_LAYERS
