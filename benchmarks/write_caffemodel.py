"""Benchmark: writing a ~100 MB caffemodel against ``np.save`` of the same arrays.

Weights go into the caffemodel as packed bytes (``workbench.writers.caffe.blobs``),
so writing it should cost about as much as saving the raw arrays (goal: at most 3x
``np.save``). For contrast the script also times filling the ``BlobProto.data``
repeated fields from Python lists, the way converters often do it. All ratios are
measured in this one run; absolute times depend on the machine.

Run: ``python benchmarks/write_caffemodel.py``
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from workbench.formats import caffe_pb2
from workbench.graph import Model, SourceInfo
from workbench.graph.builder import GraphBuilder
from workbench.writers.caffe import write_caffe
from workbench.writers.caffe.blobs import write_caffemodel

# two Linear layers: 4096*4096 + 2048*4096 float32 weights = 100.7 MB
LAYER_SIZES = [(4096, 4096), (2048, 4096)]


def big_model() -> Model:
    rng = np.random.default_rng(0)
    builder = GraphBuilder("big")
    value = builder.add_input("x", [1, LAYER_SIZES[0][1]])
    for index, (outputs, inputs) in enumerate(LAYER_SIZES):
        weight = builder.add_initializer(f"fc{index}.weight", rng.standard_normal((outputs, inputs), np.float32))
        bias = builder.add_initializer(f"fc{index}.bias", rng.standard_normal(outputs, np.float32))
        (value,) = builder.add_node("Gemm", [value, weight, bias], {"transB": 1}, sources=[f"fc{index}"])
    builder.set_outputs([value])
    return Model(builder.build(), SourceInfo("onnx", (), "big"))


def best_of(runs: int, action) -> float:
    """Shortest wall time of ``action(folder)``, each run writing into a fresh folder."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            action(Path(folder))
            times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    model = big_model()
    arrays = [value.const_value.numpy() for value in model.graph.initializers.values()]
    megabytes = sum(a.nbytes for a in arrays) / 1e6

    def save_numpy(out: Path) -> None:
        for index, array in enumerate(arrays):
            np.save(out / f"array{index}.npy", array)

    def write_weights_only(out: Path) -> None:
        layers = [(caffe_pb2.LayerParameter(name=f"layer{i}", type="InnerProduct"), [a]) for i, a in enumerate(arrays)]
        write_caffemodel(out / "weights.caffemodel", caffe_pb2.NetParameter(name="big"), layers)

    def write_from_lists(out: Path) -> None:
        net = caffe_pb2.NetParameter(name="big")
        for index, array in enumerate(arrays):
            blob = net.layer.add(name=f"layer{index}", type="InnerProduct").blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel().tolist())
        (out / "lists.caffemodel").write_bytes(net.SerializeToString())

    sizes = []

    def write_with_writer(out: Path) -> None:
        written = write_caffe(model, out, name="big")
        sizes.append(written.path(".caffemodel").stat().st_size / 1e6)

    numpy_seconds = best_of(5, save_numpy)
    weights_seconds = best_of(5, write_weights_only)
    writer_seconds = best_of(5, write_with_writer)
    lists_seconds = best_of(1, write_from_lists)

    print(f"weights: {megabytes:.1f} MB in {len(arrays)} arrays; big.caffemodel: {sizes[0]:.1f} MB")
    print(f"np.save of the arrays:                      {numpy_seconds:.3f} s  (1.00x)")
    print(
        f"caffemodel composed from packed bytes:      {weights_seconds:.3f} s  ({weights_seconds / numpy_seconds:.2f}x)"
    )
    print(
        f"write_caffe (convert + prototxt + weights): {writer_seconds:.3f} s  ({writer_seconds / numpy_seconds:.2f}x, goal <= 3x)"
    )
    print(f"repeated fields filled from Python lists:   {lists_seconds:.3f} s  ({lists_seconds / numpy_seconds:.2f}x)")


if __name__ == "__main__":
    main()
