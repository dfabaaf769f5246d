"""Caffe networks laid out as model-zoo deploy files are, written with protobuf.

``resnet_caffe`` writes a ResNet in the layout of the published Caffe ResNets
(``deploy.prototxt`` + ``.caffemodel``): an ``Input`` layer with a fixed shape,
convolutions without bias, each followed by a ``BatchNorm`` and a ``Scale`` with
``bias_term`` running in place on the convolution's blob, BatchNorm's third blob
holding the moving-average factor (the stored mean and variance are divided by
it, as Caffe trains them), in-place ReLUs, ``Eltwise`` SUM shortcuts with a
projection branch where the shape changes, global average pooling, an
``InnerProduct`` and a ``Softmax``. ``resnet50_caffe`` gives it ResNet-50's
layer counts (53 BatchNorm + Scale pairs, 229 layers with the Input layer).

Weights are seeded random values scaled so that activations stay near unit size
through any depth (He-scaled convolutions, BatchNorm statistics near the
activations', small gammas on the residual branches' last BatchNorm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from .formats import caffe_pb2
from .writers.caffe.blobs import write_caffemodel

MOVING_AVERAGE_FACTOR = 999.982  # what BVLC Caffe's BatchNorm accumulates to after long training


@dataclass
class _Net:
    """Layers (with their blobs) in order, and the random source for the blobs."""

    rng: np.random.Generator
    layers: list[tuple[caffe_pb2.LayerParameter, list[np.ndarray]]] = field(default_factory=list)

    def add(
        self,
        kind: str,
        name: str,
        bottoms: Sequence[str],
        tops: Sequence[str],
        params: str = "",
        blobs: Sequence[np.ndarray] = (),
    ) -> str:
        layer = caffe_pb2.LayerParameter(name=name, type=kind, bottom=list(bottoms), top=list(tops))
        text_format.Merge(params, layer)
        self.layers.append((layer, [np.asarray(blob, np.float32) for blob in blobs]))
        return tops[0]

    def conv_bn(
        self, bottom: str, name: str, bn: str, cin: int, cout: int, kernel: int, stride: int, gamma: float
    ) -> str:
        """Convolution (no bias) + in-place BatchNorm + in-place Scale with bias."""
        pad = kernel // 2
        weight = self.rng.standard_normal((cout, cin, kernel, kernel)) * np.sqrt(2.0 / (cin * kernel * kernel))
        params = (
            f"convolution_param {{ num_output: {cout} kernel_size: {kernel} stride: {stride} pad: {pad} "
            "bias_term: false }"
        )
        top = self.add("Convolution", name, [bottom], [name], params, [weight])
        mean = self.rng.uniform(-0.2, 0.2, cout)
        var = self.rng.uniform(0.5, 2.0, cout)
        factor = MOVING_AVERAGE_FACTOR
        self.add(
            "BatchNorm",
            f"bn{bn}",
            [top],
            [top],
            "batch_norm_param { use_global_stats: true eps: 1e-5 }",
            [mean * factor, var * factor, np.array([factor])],
        )
        gammas = self.rng.uniform(0.5, 1.5, cout) * gamma
        betas = self.rng.uniform(-0.1, 0.1, cout)
        self.add("Scale", f"scale{bn}", [top], [top], "scale_param { bias_term: true }", [gammas, betas])
        return top

    def relu(self, blob: str, name: str) -> None:
        self.add("ReLU", name, [blob], [blob])


def _block(net: _Net, bottom: str, cin: int, width: int, stride: int, tag: str, bottleneck: bool) -> tuple[str, int]:
    """One residual block ``res{tag}``: branch2 (a, b[, c]) plus the identity or a projection (branch1)."""
    cout = width * 4 if bottleneck else width
    kernels = (1, 3, 1) if bottleneck else (3, 3)
    widths = (width, width, cout) if bottleneck else (width, cout)
    strides = (stride, 1, 1) if bottleneck else (stride, 1)
    blob, channels = bottom, cin
    for index, (kernel, out, step) in enumerate(zip(kernels, widths, strides)):
        part = f"{tag}_branch2{'abc'[index]}"
        last = index == len(kernels) - 1
        blob = net.conv_bn(blob, f"res{part}", part, channels, out, kernel, step, 0.2 if last else 1.0)
        if not last:
            net.relu(blob, f"res{part}_relu")
        channels = out
    shortcut = bottom
    if stride != 1 or cin != cout:
        shortcut = net.conv_bn(bottom, f"res{tag}_branch1", f"{tag}_branch1", cin, cout, 1, stride, 1.0)
    top = net.add("Eltwise", f"res{tag}", [shortcut, blob], [f"res{tag}"], "eltwise_param { operation: SUM }")
    net.relu(top, f"res{tag}_relu")
    return top, cout


def resnet_caffe(
    folder: str | Path,
    name: str = "resnet_bn",
    *,
    blocks: Sequence[int] = (1, 1),
    widths: Sequence[int] = (8, 16),
    stem: int = 8,
    bottleneck: bool = False,
    input_shape: Sequence[int] = (1, 3, 32, 32),
    classes: int = 10,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``NAME.prototxt`` + ``NAME.caffemodel`` in ``folder``; returns both paths.

    ``blocks[i]`` residual blocks of width ``widths[i]`` per stage (stride 2 from the
    second stage on); ``bottleneck`` uses 1×1-3×3-1×1 blocks with expansion 4 (ResNet-50),
    else 3×3-3×3 blocks (ResNet-18). A 7×7 stride-2 stem and a max pool come first
    when the input is larger than 64 pixels, else a 3×3 stem alone."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net = _Net(np.random.default_rng(seed))
    dims = " ".join(f"dim: {int(d)}" for d in input_shape)
    blob = net.add("Input", "data", [], ["data"], f"input_param {{ shape {{ {dims} }} }}")
    large = input_shape[-1] > 64
    blob = net.conv_bn(blob, "conv1", "_conv1", int(input_shape[1]), stem, 7 if large else 3, 2 if large else 1, 1.0)
    net.relu(blob, "conv1_relu")
    if large:
        blob = net.add("Pooling", "pool1", [blob], ["pool1"], "pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
    channels = stem
    for stage, (count, width) in enumerate(zip(blocks, widths)):
        for index in range(count):
            tag = f"{stage + 2}{chr(ord('a') + index)}"
            stride = 2 if stage > 0 and index == 0 else 1
            blob, channels = _block(net, blob, channels, width, stride, tag, bottleneck)
    pooled = net.add("Pooling", "pool5", [blob], ["pool5"], "pooling_param { pool: AVE global_pooling: true }")
    weight = net.rng.standard_normal((classes, channels)) / np.sqrt(channels)
    fc = net.add(
        "InnerProduct",
        "fc",
        [pooled],
        ["fc"],
        f"inner_product_param {{ num_output: {classes} }}",
        [weight, net.rng.uniform(-0.1, 0.1, classes)],
    )
    net.add("Softmax", "prob", [fc], ["prob"])
    header = caffe_pb2.NetParameter(name=name)
    prototxt, caffemodel = folder / f"{name}.prototxt", folder / f"{name}.caffemodel"
    definition = caffe_pb2.NetParameter()
    definition.CopyFrom(header)
    definition.layer.extend(layer for layer, _ in net.layers)
    prototxt.write_text(text_format.MessageToString(definition))
    write_caffemodel(caffemodel, header, net.layers)
    return prototxt, caffemodel


def resnet50_caffe(folder: str | Path, name: str = "resnet50_bn", *, seed: int = 0) -> tuple[Path, Path]:
    """ResNet-50's layout at 1×3×224×224: 53 convolutions, each with an in-place
    BatchNorm + Scale pair, 16 bottleneck blocks, 229 layers."""
    return resnet_caffe(
        folder,
        name,
        blocks=(3, 4, 6, 3),
        widths=(64, 128, 256, 512),
        stem=64,
        bottleneck=True,
        input_shape=(1, 3, 224, 224),
        classes=1000,
        seed=seed,
    )


__all__ = ["resnet50_caffe", "resnet_caffe"]
