"""Make zoo_tiny.prototxt + zoo_tiny.caffemodel: a small Caffe-zoo-style network.

It has what deploy files from Caffe model zoos have: a legacy ``input:`` header,
in-place BatchNorm/Scale/ReLU on convolution blobs, BatchNorm's moving-average
factor blob, ceil-rounded pooling, LRN, an inception-style concat, a residual
Eltwise, PReLU, global pooling, Dropout and a Softmax. Weights are random (seeded).
Run from the repository root: ``python data/caffe/make_zoo_tiny.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format

from workbench.formats import caffe_pb2

HERE = Path(__file__).parent
rng = np.random.default_rng(7)


def blob(layer: caffe_pb2.LayerParameter, array: np.ndarray) -> None:
    proto = layer.blobs.add()
    proto.shape.dim.extend(array.shape)
    # packed floats straight from the array's bytes: field 5, wire type 2
    data = np.asarray(array, "<f4").tobytes()
    proto.MergeFromString(b"\x2a" + _varint(len(data)) + data)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def layer(net, kind, name, bottoms, tops=None, params="", blobs=()):
    entry = net.layer.add(name=name, type=kind)
    entry.bottom.extend(bottoms)
    entry.top.extend(tops or [name])
    text_format.Merge(params, entry)
    for array in blobs:
        blob(entry, np.asarray(array, np.float32))


def weights(*shape):
    return rng.standard_normal(shape) * 0.3


net = caffe_pb2.NetParameter(name="zoo_tiny")
net.input.append("data")
net.input_dim.extend([1, 3, 32, 32])
layer(
    net,
    "Convolution",
    "conv1",
    ["data"],
    params="convolution_param { num_output: 16 kernel_size: 3 stride: 2 pad: 1 }",
    blobs=[weights(16, 3, 3, 3), weights(16)],
)
layer(
    net,
    "BatchNorm",
    "conv1/bn",
    ["conv1"],
    ["conv1"],
    blobs=[rng.standard_normal(16) * 3, (rng.random(16) + 0.5) * 3, [3.0]],
)
layer(
    net,
    "Scale",
    "conv1/scale",
    ["conv1"],
    ["conv1"],
    "scale_param { bias_term: true }",
    blobs=[rng.random(16) + 0.5, weights(16)],
)
layer(net, "ReLU", "conv1/relu", ["conv1"], ["conv1"])
layer(net, "Pooling", "pool1", ["conv1"], params="pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
layer(net, "LRN", "norm1", ["pool1"], params="lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")
layer(
    net,
    "Convolution",
    "inception/1x1",
    ["norm1"],
    params="convolution_param { num_output: 8 kernel_size: 1 }",
    blobs=[weights(8, 16, 1, 1), weights(8)],
)
layer(net, "ReLU", "inception/relu_1x1", ["inception/1x1"], ["inception/1x1"])
layer(
    net,
    "Convolution",
    "inception/3x3",
    ["norm1"],
    params="convolution_param { num_output: 8 kernel_size: 3 pad: 1 }",
    blobs=[weights(8, 16, 3, 3), weights(8)],
)
layer(net, "PReLU", "inception/prelu_3x3", ["inception/3x3"], ["inception/3x3"], blobs=[rng.random(8) * 0.3])
layer(net, "Pooling", "inception/pool", ["norm1"], params="pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 }")
layer(
    net,
    "Convolution",
    "inception/pool_proj",
    ["inception/pool"],
    params="convolution_param { num_output: 8 kernel_size: 1 }",
    blobs=[weights(8, 16, 1, 1), weights(8)],
)
layer(net, "Concat", "inception/output", ["inception/1x1", "inception/3x3", "inception/pool_proj"])
layer(
    net,
    "Convolution",
    "res",
    ["inception/output"],
    params="convolution_param { num_output: 24 kernel_size: 3 pad: 1 }",
    blobs=[weights(24, 24, 3, 3) * 0.3, weights(24)],
)
layer(net, "Eltwise", "res/sum", ["res", "inception/output"])
layer(net, "ReLU", "res/relu", ["res/sum"], ["res/sum"])
layer(net, "Pooling", "pool2", ["res/sum"], params="pooling_param { pool: AVE global_pooling: true }")
layer(net, "Dropout", "drop", ["pool2"], ["pool2"], "dropout_param { dropout_ratio: 0.4 }")
layer(
    net,
    "InnerProduct",
    "fc",
    ["pool2"],
    params="inner_product_param { num_output: 10 }",
    blobs=[weights(10, 24), weights(10)],
)
layer(net, "Softmax", "prob", ["fc"])

(HERE / "zoo_tiny.caffemodel").write_bytes(net.SerializeToString())
for entry in net.layer:
    del entry.blobs[:]
(HERE / "zoo_tiny.prototxt").write_text(text_format.MessageToString(net))
