"""Inference time of the PyTorch writer's generated module against onnx2torch,
on the same ONNX graphs, measured in one run.

For each sample network: export it to ONNX at opset 17 (the newest onnx2torch
1.5 reads), simplify it, convert it with ``write_pytorch`` and with
``onnx2torch.convert``, check that both give onnxruntime's outputs, then time
forward passes. The two modules are timed in alternating rounds (the order
flipping each round) so that load from other processes on the machine falls on
both alike; each figure is the best round's mean time per forward (the round
least disturbed by other processes, as ``timeit`` advises).

Prints per network the milliseconds per forward of each and the ratio
generated / onnx2torch (below 1: the generated module is faster), then the
geometric mean of the ratios. The goal is a ratio of at most 1.

    python benchmarks/generated_vs_onnx2torch.py [--rounds 7] [--iterations 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import onnx_ir as ir
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench import samples
from workbench.readers import read_onnx
from workbench.runners import load_torch_folder
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.samples import SAMPLE_NAMES
from workbench.steps.simplify import simplify
from workbench.writers.pytorch import write_pytorch

NETWORKS = list(SAMPLE_NAMES)
OPSET = 17


def import_onnx2torch():
    """onnx2torch imports torchvision at load time only for its detection-op
    converters (NonMaxSuppression, RoiAlign), which these networks do not use; the
    venv has no torchvision (its wheels would replace the CPU torch build), so an
    empty stand-in module is registered first. It is registered only after every
    export, because torch.onnx looks for torchvision too."""
    placeholder = types.ModuleType("torchvision")
    placeholder.ops = types.ModuleType("torchvision.ops")
    placeholder.ops.roi_align = None
    sys.modules.setdefault("torchvision", placeholder)
    sys.modules.setdefault("torchvision.ops", placeholder.ops)
    import onnx2torch

    return onnx2torch


def export_onnx(name: str, folder: Path) -> tuple[Path, np.ndarray]:
    factory = getattr(samples, name)
    x = np.random.default_rng(0).standard_normal(factory.input_shape).astype(np.float32)
    path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(factory(), (torch.from_numpy(x),), str(path), dynamo=False, opset_version=OPSET)
    return path, x


def first_output(result) -> np.ndarray:
    return (result[0] if isinstance(result, (tuple, list)) else result).numpy()


def seconds_per_forward(module: torch.nn.Module, x: torch.Tensor, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        module(x)
    return (time.perf_counter() - start) / iterations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core each: the ratio, not the machine, is measured
    warnings.filterwarnings("ignore", category=UserWarning, module="onnx2torch")

    work = Path(tempfile.mkdtemp(prefix="bench-pytorch-"))
    prepared = []
    for name in NETWORKS:
        path, x = export_onnx(name, work)
        model = simplify(read_onnx(path))
        simplified_path = work / f"{name}-simplified.onnx"
        ir.save(model.ir, simplified_path)
        write_pytorch(model, work / name)
        prepared.append((name, model, simplified_path, x))

    onnx2torch = import_onnx2torch()
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} rounds x {args.iterations} forwards")
    print(f"{'network':<20}{'generated ms':>14}{'onnx2torch ms':>15}{'ratio':>8}")
    ratios = []
    for name, model, simplified_path, x in prepared:
        generated = load_torch_folder(work / name).eval()
        converted = onnx2torch.convert(str(simplified_path)).eval()
        tensor = torch.from_numpy(x)
        reference, *_ = OnnxRuntimeRunner(model).run([x]).values()
        with torch.inference_mode():
            for module in (generated, converted):
                # both must compute the network before their speed means anything
                np.testing.assert_allclose(first_output(module(tensor)), reference, rtol=0, atol=1e-4)
            for module in (generated, converted):
                seconds_per_forward(module, tensor, 10)  # warm-up
            times: dict[str, list[float]] = {"generated": [], "onnx2torch": []}
            for round_index in range(args.rounds):
                order = [("generated", generated), ("onnx2torch", converted)]
                for label, module in order if round_index % 2 == 0 else reversed(order):
                    times[label].append(seconds_per_forward(module, tensor, args.iterations))
        ours, theirs = min(times["generated"]), min(times["onnx2torch"])
        ratios.append(ours / theirs)
        print(f"{name:<20}{ours * 1e3:>14.3f}{theirs * 1e3:>15.3f}{ours / theirs:>8.2f}")
    mean = float(np.exp(np.mean(np.log(ratios))))
    print(f"{'geometric mean':<49}{mean:>8.2f}")
    print(f"goal (ratio <= 1.00): {'met' if mean <= 1.0 else 'missed'}; worst network {max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
