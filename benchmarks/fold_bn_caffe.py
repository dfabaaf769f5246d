"""Merging BatchNorm + Scale in a Caffe ResNet-50, measured in one run.

A ResNet-50 in the layout of the published Caffe deploy files (``samples_caffe``:
53 convolutions each followed by an in-place BatchNorm and Scale, 229 layers, input
1×3×224×224, random weights) goes through
``workbench convert deploy.prototxt net.caffemodel --to caffe --fold-bn``. Prints the
layer counts by type before and after, the caffemodel sizes, and the speed of both
files in OpenCV DNN (best of ``--rounds`` medians of ``--passes`` forward passes, one
thread, timed as that thread's CPU time: on a shared machine wall time also counts the
waits for a core, which swamp a 10 % difference), twice: with OpenCV's own layer fusion off (each Caffe layer runs as written,
as in Caffe itself) and on (OpenCV folds BatchNorm and Scale into the convolutions
itself, so the written files should gain nothing there).

    python benchmarks/fold_bn_caffe.py [--rounds 3] [--passes 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def layer_types(prototxt: Path) -> Counter[str]:
    from google.protobuf import text_format

    from workbench.formats import caffe_pb2

    net = caffe_pb2.NetParameter()
    text_format.Parse(prototxt.read_text(), net)
    return Counter(layer.type for layer in net.layer)


def median_ms(prototxt: Path, caffemodel: Path, x: np.ndarray, passes: int, fusion: bool) -> float:
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.enableFusion(fusion)
    net.setInput(x)
    net.forward()  # warm-up: allocations and weight packing
    times = []
    for _ in range(passes):
        start = time.thread_time()  # one OpenCV thread: the forward pass runs in this one
        net.forward()
        times.append(time.thread_time() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=10)
    args = parser.parse_args()

    import cv2

    from workbench import cli
    from workbench.samples_caffe import resnet50_caffe

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as folder:
        prototxt, caffemodel = resnet50_caffe(Path(folder) / "source")
        out = Path(folder) / "folded"
        if cli.main(["convert", str(prototxt), str(caffemodel), "--to", "caffe", "--fold-bn", "-o", str(out)]):
            raise SystemExit("the conversion failed")
        folded = out / prototxt.name, out / caffemodel.name
        before, after = layer_types(prototxt), layer_types(folded[0])
        print(f"\nlayers  {sum(before.values())} → {sum(after.values())}")
        for kind in sorted(set(before) | set(after)):
            print(f"  {kind:<14} {before[kind]:>4} → {after[kind]:>4}")
        print(f"caffemodel  {caffemodel.stat().st_size:,} → {folded[1].stat().st_size:,} bytes")
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        for fusion in (False, True):
            original = min(median_ms(prototxt, caffemodel, x, args.passes, fusion) for _ in range(args.rounds))
            merged = min(median_ms(*folded, x, args.passes, fusion) for _ in range(args.rounds))
            print(
                f"OpenCV DNN, fusion {'on ' if fusion else 'off'}: original {original:.1f} ms, "
                f"folded {merged:.1f} ms, speed-up {original / merged:.2f}×"
            )


if __name__ == "__main__":
    main()
