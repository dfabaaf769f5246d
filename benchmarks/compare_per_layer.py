"""Cost of a per-layer comparison of a ResNet-50-sized network, measured in one run.

A compact ResNet-50 (bottleneck blocks 3-4-6-3, 25.6 M parameters, random
weights and BatchNorm statistics) is exported to ONNX, simplified and its
BatchNorm folded; both graphs are saved. Then, in fresh processes so that peak
memory belongs to the comparison alone:

* time: ``compare(onnx, folded, per_layer=True)`` against two plain forward
  passes (one whole-graph onnxruntime session per side, sessions made beforehand).
  The best of ``--rounds`` runs of each is kept, so load from other processes
  on the machine weighs on neither; the first comparison, which makes the segment
  sessions (later ones reuse them), is shown too.
* memory: the rise of the resident size during the comparison (sampled every
  millisecond), after both graphs are loaded and their weights read once (large
  weights are mapped from the files, and a parsed model would hold them before the
  comparison too), against the weights of one graph plus its largest activation
  (what "statistics, not tensors" promises); and ``tracemalloc``'s peak of NumPy
  arrays held during the comparison, against the largest activation.

Prints the ratios (goal for the time: at most 3) and writes them to its section of
``benchmarks/RESULTS.md``.

    python benchmarks/compare_per_layer.py [--rounds 3] [--size 224]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Self

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results import load_average, machine, write_section


def resnet50():
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int) -> None:
            super().__init__()
            cout = width * 4
            self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class ResNet50(nn.Module):
        def __init__(self, classes: int = 1000) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            stages, cin = [], 64
            for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                layers = []
                for index in range(blocks):
                    layers.append(Bottleneck(cin, width, stride if index == 0 else 1))
                    cin = width * 4
                stages.append(nn.Sequential(*layers))
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    from workbench.samples import _randomize_batchnorm

    torch.manual_seed(0)
    return _randomize_batchnorm(ResNet50())


def prepare(folder: Path, size: int) -> None:
    import onnx_ir as ir

    import workbench as wb
    from workbench.steps.fold_bn import fold_bn
    from workbench.steps.simplify import simplify

    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = wb.export(resnet50(), x)
    ir.save(exported.ir, folder / "onnx.onnx")
    ir.save(fold_bn(simplify(exported)).ir, folder / "folded.onnx")
    np.save(folder / "input.npy", x)


def current_rss_bytes() -> int:
    """Resident size now, from /proc (Linux): the peak so far (``ru_maxrss``) may
    come from loading the graphs, so the comparison's own peak is sampled."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


class PeakSampler:
    """Sample the resident size every millisecond in a thread; keep the maximum."""

    def __init__(self) -> None:
        self.peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, current_rss_bytes())

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())


def measure_time(folder: Path, rounds: int) -> dict:
    from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
    from workbench.steps.compare import compare

    x = np.load(folder / "input.npy")
    reference, candidate = OnnxRuntimeRunner(folder / "onnx.onnx"), OnnxRuntimeRunner(folder / "folded.onnx")
    reference.run([x]), candidate.run([x])  # sessions made and warm
    plain, per_layer, layers = [], [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        reference.run([x])
        candidate.run([x])
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        comparison = compare(reference, candidate, x, per_layer=True)
        per_layer.append(time.perf_counter() - start)
        layers = len(comparison.layers)
        assert comparison.ok and comparison.first_divergence is None, comparison
    return {
        "plain": min(plain),
        "per_layer": min(per_layer),
        "layers": layers,
        "all_plain": plain,
        "all_per_layer": per_layer,
    }


def measure_memory(folder: Path) -> dict:
    from workbench.graph.shapes import static_shape
    from workbench.readers import read_onnx
    from workbench.steps.compare import compare

    x = np.load(folder / "input.npy")
    reference, candidate = read_onnx(folder / "onnx.onnx"), read_onnx(folder / "folded.onnx")
    weights = sum(v.const_value.nbytes for v in reference.graph.initializers.values() if v.const_value is not None)
    for model in (reference, candidate):
        for value in model.graph.initializers.values():
            if value.const_value is not None:
                value.const_value.numpy().sum()  # paged in now, as a parsed model's would be
    # from the shapes onnxsim recorded, so nothing runs before the measurement
    shapes = [static_shape(out) for node in candidate.graph for out in node.outputs]
    largest = 4 * max(int(np.prod(shape)) for shape in shapes if shape is not None)
    gc.collect()
    before = current_rss_bytes()
    tracemalloc.start()
    with PeakSampler() as sampler:
        comparison = compare(reference, candidate, x, per_layer=True)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rise = sampler.peak - before
    assert comparison.ok, comparison
    return {"weights": weights, "largest": largest, "rss_rise": rise, "traced_peak": traced_peak}


def child(mode: str, folder: Path, rounds: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--rounds", str(rounds)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--child", choices=["time", "memory"])
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        result = measure_time(args.folder, args.rounds) if args.child == "time" else measure_memory(args.folder)
        print(json.dumps(result))
        return
    before = load_average()
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        start = time.perf_counter()
        prepare(folder, args.size)
        print(
            f"ResNet-50 at {args.size}×{args.size}: exported, simplified, folded in {time.perf_counter() - start:.0f} s"
        )
        timing = child("time", folder, args.rounds)
        memory = child("memory", folder, args.rounds)
    loads = (before, load_average())
    mib = 1 / 2**20
    budget = memory["weights"] + memory["largest"]
    lines = [
        (
            f"ResNet-50 at {args.size}×{args.size} (25.6 M parameters): the export against the simplified, "
            f"BatchNorm-folded graph, {timing['layers']} layers compared, best of {args.rounds} rounds."
        ),
        "",
        f"- time: per-layer compare {timing['per_layer']:.2f} s, two plain forward passes "
        f"{timing['plain']:.3f} s -> ratio **{timing['per_layer'] / timing['plain']:.1f}** (goal ≤ 3); the "
        f"first round, which makes the segment sessions, {timing['all_per_layer'][0]:.2f} s -> "
        f"{timing['all_per_layer'][0] / timing['plain']:.1f}; every round, per-layer/plain s: "
        + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(timing["all_per_layer"], timing["all_plain"])),
        (
            f"- memory: peak RSS rise {memory['rss_rise'] * mib:.0f} MiB; weights {memory['weights'] * mib:.0f} MiB + "
            f"largest activation {memory['largest'] * mib:.1f} MiB = {budget * mib:.0f} MiB -> ratio "
            f"{memory['rss_rise'] / budget:.2f}"
        ),
        (
            f"- arrays held by compare at once (tracemalloc peak) {memory['traced_peak'] * mib:.1f} MiB "
            f"= {memory['traced_peak'] / memory['largest']:.1f} × the largest activation"
        ),
        "",
        f"Load average (1/5/15 min) before: {loads[0]}; after: {loads[1]}.",
    ]
    print("\n".join(lines))
    write_section("Per-layer compare (benchmarks/compare_per_layer.py)", "\n".join(lines), {"Machine": machine()})


if __name__ == "__main__":
    main()
