"""Benchmark: reading a ~100 MB caffemodel against ``np.load`` of the same arrays.

``read_caffe`` parses the caffemodel with protobuf and takes each blob's packed
floats with one copy (``np.array`` over the repeated field, which protobuf's upb
backend exposes as an array), then builds the graph around the arrays. Goal: at
most 3x the time ``np.load`` needs for the same arrays saved with ``np.save``.
For contrast the script times turning the blobs into arrays through Python
floats (``np.fromiter``), the way converters often do it. All ratios are measured
in this one run; absolute times depend on the machine.

The caffemodel is composed from packed bytes (``workbench.writers.caffe.blobs``).

Run: ``python benchmarks/read_caffemodel.py``
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from workbench.formats import caffe_pb2
from workbench.readers.caffe_reader import read_caffe
from workbench.writers.caffe.blobs import write_caffemodel

# a VGG-like head: three convolutions and two fully connected layers, 102.7 MB of float32
CONVOLUTIONS = [(256, 128), (256, 256), (512, 256)]  # (outputs, inputs), 3x3 kernels
FEATURE_SIZE = 512 * 4 * 4  # the last convolution's output, flattened
FULLY_CONNECTED = [(2304, FEATURE_SIZE), (2048, 2304)]  # (outputs, inputs)


def network() -> tuple[caffe_pb2.NetParameter, list[tuple[caffe_pb2.LayerParameter, list[np.ndarray]]]]:
    """The deploy net and its layers with random weights."""
    rng = np.random.default_rng(0)
    net = caffe_pb2.NetParameter(name="big", input=["data"])
    net.input_shape.add(dim=[1, 128, 4, 4])
    layers, bottom = [], "data"
    for index, (outputs, inputs) in enumerate(CONVOLUTIONS):
        layer = caffe_pb2.LayerParameter(name=f"conv{index}", type="Convolution", bottom=[bottom], top=[f"conv{index}"])
        layer.convolution_param.num_output = outputs
        layer.convolution_param.kernel_size.append(3)
        layer.convolution_param.pad.append(1)
        weights = [rng.standard_normal((outputs, inputs, 3, 3), np.float32), rng.standard_normal(outputs, np.float32)]
        layers.append((layer, weights))
        bottom = layer.top[0]
    for index, (outputs, inputs) in enumerate(FULLY_CONNECTED):
        layer = caffe_pb2.LayerParameter(name=f"fc{index}", type="InnerProduct", bottom=[bottom], top=[f"fc{index}"])
        layer.inner_product_param.num_output = outputs
        weights = [rng.standard_normal((outputs, inputs), np.float32), rng.standard_normal(outputs, np.float32)]
        layers.append((layer, weights))
        bottom = layer.top[0]
    return net, layers


def best_of(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    header, layers = network()
    arrays = [array for _, weights in layers for array in weights]
    megabytes = sum(a.nbytes for a in arrays) / 1e6
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        deploy = caffe_pb2.NetParameter()
        deploy.CopyFrom(header)
        deploy.layer.extend(layer for layer, _ in layers)
        prototxt, caffemodel, saved = folder / "big.prototxt", folder / "big.caffemodel", folder / "arrays.npy"
        prototxt.write_text(text_format.MessageToString(deploy))
        write_caffemodel(caffemodel, caffe_pb2.NetParameter(name="big"), layers)
        with open(saved, "wb") as stream:
            for array in arrays:
                np.save(stream, array)

        def load_numpy() -> list[np.ndarray]:
            with open(saved, "rb") as stream:
                return [np.load(stream) for _ in arrays]

        def through_python_floats() -> list[np.ndarray]:
            net = caffe_pb2.NetParameter.FromString(caffemodel.read_bytes())
            return [np.fromiter(blob.data, np.float32, len(blob.data)) for layer in net.layer for blob in layer.blobs]

        model = read_caffe(prototxt, caffemodel)
        read = [value.const_value.numpy() for value in model.graph.initializers.values()]
        assert sum(a.nbytes for a in read) == sum(a.nbytes for a in arrays), "every weight is read"

        numpy_seconds = best_of(5, load_numpy)
        reader_seconds = best_of(5, lambda: read_caffe(prototxt, caffemodel))
        floats_seconds = best_of(1, through_python_floats)
        size = caffemodel.stat().st_size / 1e6

    print(f"weights: {megabytes:.1f} MB in {len(arrays)} arrays; big.caffemodel: {size:.1f} MB")
    print(f"np.load of the arrays:                     {numpy_seconds:.3f} s  (1.00x)")
    print(
        f"read_caffe (prototxt + weights + graph):   {reader_seconds:.3f} s  "
        f"({reader_seconds / numpy_seconds:.2f}x, goal <= 3x)"
    )
    print(f"blobs to arrays through Python floats:     {floats_seconds:.3f} s  ({floats_seconds / numpy_seconds:.2f}x)")


if __name__ == "__main__":
    main()
