"""Large models, measured in one run: converting at disk speed, in bounded memory,
with a command that starts at once.

1. VGG-16 (138 M parameters, 553 MB of float32 weights; built here with random
   weights and exported by ``torch.onnx`` to one ONNX file, as users bring them):
   ``workbench convert vgg16.onnx --to T -o OUT`` for T = caffe, onnx, pytorch, the
   whole command in a fresh process, verification included, timed against the
   floor: a process that does ``onnx.load`` of the file and ``np.savez`` of its
   weights. The peak resident size of each command (its own ``ru_maxrss``) is set
   against the weights' size, and each step's seconds are read from its progress
   lines. Floor and commands alternate over ``--rounds`` rounds; the best round of
   each gives the ratio (the round least disturbed by the other work on the
   machine), the median and worst show the spread.
2. ``workbench --help``: wall time of the whole process, best of ``--rounds``.
3. A model above 2 GB (nine 8192×8192 fully connected layers, 2.4 GB; built
   here straight into ONNX external data): converted to ONNX and to PyTorch with
   time and peak memory. Caffe cannot hold it (a caffemodel is one protobuf
   message, at most 2 GB); what the command says about it is recorded.

Goals: convert to Caffe ≤ 3× the floor, peak RSS ≤ 2.5× the weights, ``--help``
≤ 0.5 s. Writes its section of ``benchmarks/RESULTS.md``; ``--code DIR`` measures
the workbench in another checkout (for before/after figures).

    python benchmarks/big_models.py [--rounds 3] [--code DIR] [--skip-large] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results import ROOT, Run, load_average, machine, python, run, spread, steps, write_section

TARGETS = ("caffe", "onnx", "pytorch")
LARGE_LAYERS, LARGE_WIDTH = 9, 8192
GOALS = {"caffe": 3.0, "rss": 2.5, "help": 0.5}
FLOOR = (
    "import sys, numpy as np, onnx\n"
    "from onnx import numpy_helper\n"
    "model = onnx.load(sys.argv[1])\n"
    "np.savez(sys.argv[2], **{t.name: numpy_helper.to_array(t) for t in model.graph.initializer})\n"
)


def export_vgg16(path: Path) -> int:
    """VGG-16 as torchvision defines it, random weights, exported to one file; returns
    the weights' bytes."""
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    channels = 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(width), 3, padding=1), nn.ReLU(inplace=True)]
            channels = int(width)

    class VGG16(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 1000),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(0)
    module = VGG16().eval()
    program = torch.onnx.export(module, (torch.randn(1, 3, 224, 224),), dynamo=True, verbose=False)
    program.save(path, external_data=False)
    return sum(parameter.numel() * 4 for parameter in module.parameters())


def build_large(path: Path) -> int:
    """Fully connected layers with ReLU, weights written layer by layer into
    ``NAME.onnx.data`` (never all in memory); returns the weights' bytes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    data_name = path.name + ".data"
    nodes, initializers, value, offset = [], [], "x", 0
    with open(path.with_name(data_name), "wb") as data:
        for index in range(LARGE_LAYERS):
            weight = (rng.standard_normal((LARGE_WIDTH, LARGE_WIDTH), np.float32) / np.sqrt(LARGE_WIDTH)).astype(
                np.float32
            )
            bias = rng.standard_normal(LARGE_WIDTH, np.float32) * np.float32(0.01)
            for name, array in ((f"fc{index}.weight", weight), (f"fc{index}.bias", bias)):
                data.write(array.tobytes())
                tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape)
                tensor.data_location = TensorProto.EXTERNAL
                for key, text in (("location", data_name), ("offset", offset), ("length", array.nbytes)):
                    tensor.external_data.add(key=key, value=str(text))
                initializers.append(tensor)
                offset += array.nbytes
            del weight
            output = f"fc{index}" if index == LARGE_LAYERS - 1 else f"relu{index}"
            nodes.append(
                helper.make_node(
                    "Gemm", [value, f"fc{index}.weight", f"fc{index}.bias"], [f"fc{index}"], name=f"fc{index}", transB=1
                )
            )
            if index < LARGE_LAYERS - 1:
                nodes.append(helper.make_node("Relu", [f"fc{index}"], [output], name=f"relu{index}"))
            value = output
    graph = helper.make_graph(
        nodes,
        "large",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, LARGE_WIDTH])],
        [helper.make_tensor_value_info(value, TensorProto.FLOAT, [1, LARGE_WIDTH])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    onnx.checker.check_model(str(path))
    return offset


def prepare(model: str, path: Path) -> int:
    """Build a model in a process of its own (this one stays small: a child's peak
    resident size counts what its parent held when it was started); returns the
    weights' bytes."""
    result = run(python(__file__, "--prepare", model, str(path)))
    if result.status != 0:
        raise SystemExit(f"building {model} failed:\n{result.stderr}")
    return int(json.loads(result.stdout.strip().splitlines()[-1]))


def convert(source: Path, target: str, folder: Path, code: Path) -> Run:
    out = folder / f"out-{target}"
    result = run(python("-m", "workbench", "convert", str(source), "--to", target, "-o", str(out)), code=code)
    return result


def measure_vgg16(folder: Path, rounds: int, code: Path) -> dict:
    source = folder / "vgg16.onnx"
    start = time.perf_counter()
    weights = prepare("vgg16", source)
    print(f"VGG-16 exported: {source.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - start:.0f} s", flush=True)
    floors: list[Run] = []
    commands: dict[str, list[Run]] = {target: [] for target in TARGETS}
    for round_index in range(rounds):
        order = TARGETS if round_index % 2 == 0 else TARGETS[::-1]
        floors.append(run(python("-c", FLOOR, str(source), str(folder / "floor.npz")), code=code))
        for target in order:
            result = convert(source, target, folder, code)
            if result.status != 0:
                raise SystemExit(f"convert --to {target} failed ({result.status}):\n{result.stdout}\n{result.stderr}")
            commands[target].append(result)
            print(
                f"  round {round_index + 1}: {target} {result.seconds:.2f} s, peak {result.peak_rss / 2**20:.0f} MiB",
                flush=True,
            )
    floor = min(result.seconds for result in floors)
    floor_cpu = min(result.cpu_seconds for result in floors)
    report: dict = {
        "weights": weights,
        "floor": [r.seconds for r in floors],
        "floor_cpu": [r.cpu_seconds for r in floors],
        "targets": {},
    }
    for target, runs in commands.items():
        best = min(runs, key=lambda r: r.seconds)
        report["targets"][target] = {
            "seconds": [r.seconds for r in runs],
            "cpu_seconds": [r.cpu_seconds for r in runs],
            "peak_rss": [r.peak_rss for r in runs],
            "ratio": best.seconds / floor,
            "cpu_ratio": min(r.cpu_seconds for r in runs) / floor_cpu,
            "rss_ratio": min(r.peak_rss for r in runs) / weights,
            "steps": steps(best.stdout),
        }
    return report


def measure_help(rounds: int, code: Path) -> list[float]:
    times = []
    for _ in range(max(rounds, 5)):
        result = run(python("-m", "workbench", "--help"), code=code)
        if result.status != 0:
            raise SystemExit(f"workbench --help failed:\n{result.stderr}")
        times.append(result.seconds)
    return times


def measure_large(folder: Path, code: Path) -> dict:
    source = folder / "large" / "large.onnx"
    source.parent.mkdir(exist_ok=True)
    start = time.perf_counter()
    weights = prepare("large", source)
    print(f"large model built: {weights / 1e9:.2f} GB of weights in {time.perf_counter() - start:.0f} s", flush=True)
    report: dict = {"weights": weights, "targets": {}}
    for target in ("onnx", "pytorch", "caffe"):
        result = convert(source, target, folder / "large", code)
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        # the first problem the command names, else its first line
        said = next((line.strip() for line in lines if line.strip().startswith("[error]")), lines[0] if lines else "")
        report["targets"][target] = {
            "seconds": result.seconds,
            "peak_rss": result.peak_rss,
            "status": result.status,
            "steps": steps(result.stdout),
            "said": said,
        }
        print(
            f"  {target}: exit {result.status}, {result.seconds:.1f} s, peak {result.peak_rss / 2**30:.2f} GiB",
            flush=True,
        )
    return report


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def markdown(vgg: dict, help_times: list[float], large: dict | None, loads: tuple[str, str]) -> str:
    lines = [
        (
            f"VGG-16: {vgg['weights'] / 1e6:.0f} MB of float32 weights (138 M parameters), one ONNX file. "
            f"Floor (`onnx.load` + `np.savez` of the weights, own process): wall {spread(vgg['floor'])} s, "
            f"CPU {spread(vgg['floor_cpu'])} s."
        ),
        "",
        (
            "| command | wall s: best (median, worst) | × floor | goal | CPU s: best | × floor CPU "
            "| peak RSS (best) | × weights | goal |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for target, result in vgg["targets"].items():
        goal = f"≤ {GOALS['caffe']:.0f}" if target == "caffe" else ""
        lines.append(
            f"| convert --to {target} | {spread(result['seconds'])} | {result['ratio']:.2f} | {goal} | "
            f"{min(result['cpu_seconds']):.2f} | {result['cpu_ratio']:.2f} | "
            f"{_mib(min(result['peak_rss']))} (worst {_mib(max(result['peak_rss']))}) | {result['rss_ratio']:.2f} | "
            f"≤ {GOALS['rss']} |"
        )
    step_names = list(dict.fromkeys(name for result in vgg["targets"].values() for name in result["steps"]))
    lines += ["", "Steps of the best run of each, seconds (as the command prints them):", ""]
    lines += ["| step | " + " | ".join(vgg["targets"]) + " |", "|---" * (len(vgg["targets"]) + 1) + "|"]
    for name in step_names:
        cells = [
            f"{result['steps'].get(name, 0.0):.2f}" if name in result["steps"] else ""
            for result in vgg["targets"].values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"`workbench --help`: best {spread(help_times)} s (goal ≤ {GOALS['help']} s).",
    ]
    if large is not None:
        lines += [
            "",
            (
                f"Model above 2 GB: {LARGE_LAYERS} Gemm layers {LARGE_WIDTH}×{LARGE_WIDTH}, "
                f"{large['weights'] / 1e9:.2f} GB of float32 weights in external data."
            ),
            "",
            "| command | exit | s | peak RSS | × weights | steps (s) |",
            "|---|---|---|---|---|---|",
        ]
        for target, result in large["targets"].items():
            detail = ", ".join(f"{name} {seconds:.1f}" for name, seconds in result["steps"].items())
            if result["status"] != 0:
                detail = f"{detail}; then: {result['said']}"
            lines.append(
                f"| convert --to {target} | {result['status']} | {result['seconds']:.1f} | {_mib(result['peak_rss'])} | "
                f"{result['peak_rss'] / large['weights']:.2f} | {detail} |"
            )
    lines += ["", f"Load average (1/5/15 min) before: {loads[0]}; after: {loads[1]}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose workbench is measured")
    parser.add_argument("--skip-large", action="store_true", help="leave out the model above 2 GB")
    parser.add_argument("--folder", type=Path, help="keep the models and outputs here")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--prepare", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        model, path = args.prepare
        print(json.dumps(export_vgg16(Path(path)) if model == "vgg16" else build_large(Path(path))))
        return
    before = load_average()
    with tempfile.TemporaryDirectory(dir=args.folder) as directory:
        folder = Path(directory)
        help_times = measure_help(args.rounds, args.code)
        vgg = measure_vgg16(folder, args.rounds, args.code)
        large = None if args.skip_large else measure_large(folder, args.code)
    loads = (before, load_average())
    body = markdown(vgg, help_times, large, loads)
    print(body)
    if args.json:
        args.json.write_text(json.dumps({"vgg16": vgg, "help": help_times, "large": large, "load": loads}, indent=2))
    if args.code.resolve() == ROOT:
        write_section("Large models (benchmarks/big_models.py)", body, {"Machine": machine()})
    caffe = vgg["targets"]["caffe"]
    met = (
        caffe["ratio"] <= GOALS["caffe"]
        and max(result["rss_ratio"] for result in vgg["targets"].values()) <= GOALS["rss"]
        and min(help_times) <= GOALS["help"]
    )
    print("goals met" if met else "goals NOT met", f"(median help {statistics.median(help_times):.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
