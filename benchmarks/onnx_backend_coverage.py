"""Coverage of ONNX's own backend test suite: which vision ops convert exactly to
PyTorch and to Caffe, measured case by case on data nobody on the project wrote.

Three measurements, everything read from the installed ``onnx`` package (no network):

1. **Node cases → PyTorch.** ``onnx.backend.test.case.node.collect_testcases()``,
   restricted to single-node graphs whose op is in ``VISION_OPS`` and whose inputs
   and outputs are all float32 tensors. Each case model, exactly as ONNX ships it
   (weights arrive as graph inputs), goes through ``workbench convert --to pytorch``
   (the CLI's entry function ``workbench.cli.main``); the written ``model.py`` is
   imported, ``Model()`` is given ``weights.pt`` (``torch.load(weights_only=True)``)
   and run on the case's inputs.
2. **Node cases → Caffe.** The same cases with every input but the first turned
   into an initializer holding the case's value (weights as constants, as in a
   converted network), through ``workbench convert --to caffe``; the written
   ``.prototxt`` + ``.caffemodel`` run in OpenCV DNN (``cv2.dnn.readNetFromCaffe``,
   default backend and fusion, as a user runs them).
3. **Light model zoo.** The nine graphs of ``onnx/backend/test/data/light`` (AlexNet,
   DenseNet-121, Inception v1/v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19,
   ZFNet-512) → PyTorch and → Caffe. They ship without an input: ONNX's runner
   feeds each one ``Runner.generate_dummy_data(input, random=False)``, i.e.
   ``arange(n).reshape(shape) / n`` as float32 (missing dimensions taken as 1),
   and compares with ``light_NAME_output_0.pb``; this script calls the same function.

**Verdict** of a case, as ONNX's own runner (``Runner.assert_similar_outputs``)
decides it: same number of outputs, same shapes and dtypes, and
``np.testing.assert_allclose(actual, expected, rtol, atol)`` (NaN equals NaN) with
the case's own ``rtol``/``atol``: 1e-3 / 1e-7 for every node case and light model
but DenseNet-121 (2e-3 / 1e-7).

**Classes** of a failure: ``check-error`` (the CLI refused with exit 2 and said why;
``names_op`` records whether the message names the op), ``mismatch`` (exit 1: the
CLI's own verification against onnxruntime differs, or the written files run but
miss the expected outputs), ``crash`` (a traceback in the converter, written files
that do not load or run, or a converter that kills or hangs its process). A
mismatch or a crash is a defect; a check error is a gap stated honestly.

Each conversion runs in a worker process (restarted when a converter kills it, so
the harness survives a segfault and attributes it to the case). The exit status is
0 whatever the pass rate (this is a measurement); it is 1 only when the harness
itself fails. Writes a Markdown report and the same data as JSON.

    python benchmarks/onnx_backend_coverage.py [--jobs 1] [--only REGEX]
        [--markdown benchmarks/COVERAGE.md] [--json benchmarks/coverage.json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]

# The ops a vision network is made of, by what they do in it. The node-case
# selection (float32 in and out, one node) gives 267 cases over these 55 ops.
# Left out on purpose: ops no float32 single-node case exists for (Reshape, Pad,
# Slice, Squeeze/Unsqueeze, Gather, Tile take int64 operands), detection
# post-processing (NonMaxSuppression, RoiAlign), recurrent and attention ops,
# trigonometry, integer and quantized ops, and Hardmax/ThresholdedRelu/Shrink,
# which vision architectures do not use.
VISION_OPS: dict[str, str] = {
    # convolution and fully connected layers (the classifier head is Gemm or MatMul)
    "Conv": "convolution",
    "ConvTranspose": "convolution",
    "Gemm": "convolution",
    "MatMul": "convolution",
    # pooling, local and global
    "MaxPool": "pooling",
    "AveragePool": "pooling",
    "GlobalAveragePool": "pooling",
    "GlobalMaxPool": "pooling",
    # normalization: BN in CNNs, LN in ViT/ConvNeXt, GN in detection heads and
    # UNets, IN in style transfer, LRN in AlexNet/GoogLeNet, Lp in embedding heads
    "BatchNormalization": "normalization",
    "InstanceNormalization": "normalization",
    "LayerNormalization": "normalization",
    "GroupNormalization": "normalization",
    "LRN": "normalization",
    "LpNormalization": "normalization",
    # activations (ReLU6 exports as Clip; hard-swish/sigmoid from MobileNetV3;
    # GELU as Gelu or through Erf; Mish from YOLOv4) and the classifier's softmax
    "Relu": "activation",
    "LeakyRelu": "activation",
    "PRelu": "activation",
    "Elu": "activation",
    "Selu": "activation",
    "Sigmoid": "activation",
    "HardSigmoid": "activation",
    "HardSwish": "activation",
    "Tanh": "activation",
    "Softplus": "activation",
    "Softsign": "activation",
    "Clip": "activation",
    "Gelu": "activation",
    "Mish": "activation",
    "Erf": "activation",
    "Softmax": "activation",
    "LogSoftmax": "activation",
    # element-wise arithmetic: residual sums, attention/SE gates, preprocessing
    "Add": "elementwise",
    "Sub": "elementwise",
    "Mul": "elementwise",
    "Div": "elementwise",
    "Max": "elementwise",
    "Min": "elementwise",
    "Sum": "elementwise",
    "Mean": "elementwise",
    "Abs": "elementwise",
    "Neg": "elementwise",
    "Exp": "elementwise",
    "Log": "elementwise",
    "Sqrt": "elementwise",
    "Reciprocal": "elementwise",
    # layout: concatenation (Inception, DenseNet), channel split (ShuffleNetV2),
    # flatten before the head, channel shuffle, pixel shuffle, pass-through ops
    "Concat": "layout",
    "Split": "layout",
    "Flatten": "layout",
    "Transpose": "layout",
    "DepthToSpace": "layout",
    "SpaceToDepth": "layout",
    "Identity": "layout",
    "Dropout": "layout",
    # resampling: FPN/segmentation upsampling
    "Resize": "resampling",
    "Upsample": "resampling",
}

TARGETS = ("pytorch", "caffe")
SUITES = {
    "node": "node cases as ONNX ships them (weights are graph inputs)",
    "node-constants": "node cases with every input but the first an initializer",
    "light": "light zoo graphs as shipped (IR 3: initializers also listed as inputs)",
    "light-ir4": "light zoo graphs in IR 4 form (initializers are not inputs)",
}
STATUSES = ("pass", "check-error", "mismatch", "crash")
NODE_TIMEOUT = 120.0  # seconds for one node case, far above the usual fraction of a second
LIGHT_TIMEOUT = 600.0  # one light model (224x224, up to VGG-19's compute)


@dataclass
class Task:
    """One conversion to measure: a model file, its inputs and expected outputs."""

    suite: str  # one of SUITES
    name: str
    op: str
    target: str
    model_path: str
    inputs: list[np.ndarray]
    expected: list[np.ndarray]
    rtol: float
    atol: float
    timeout: float
    workdir: str


@dataclass
class Result:
    suite: str
    name: str
    op: str
    target: str
    status: str
    reason: str = ""
    exit_code: int | None = None
    names_op: bool | None = None  # for check errors: does the message name the op?
    max_abs_error: float | None = None
    seconds: float = 0.0
    harness_error: str | None = None  # a failure of this script, not of the converter


# ---------------------------------------------------------------- case selection


def _array(item: Any) -> np.ndarray:
    """ONNX's case data sets hold arrays or TensorProtos (the runner normalizes them alike)."""
    return numpy_helper.to_array(item) if isinstance(item, onnx.TensorProto) else np.asarray(item)


def _is_float32_tensor(value: onnx.ValueInfoProto) -> bool:
    return value.type.HasField("tensor_type") and value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def vision_node_cases(only: re.Pattern | None) -> list[Any]:
    """The backend node cases of ``VISION_OPS``: one node, float32 inputs and outputs."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators overflow casts on purpose
        cases = collect_testcases()
    selected = []
    for case in cases:
        graph = case.model.graph
        if len(graph.node) != 1 or graph.node[0].op_type not in VISION_OPS:
            continue
        if not all(_is_float32_tensor(value) for value in [*graph.input, *graph.output]):
            continue
        if only is None or only.search(case.name):
            selected.append(case)
    return sorted(selected, key=lambda case: (graph_op(case.model), case.name))


def graph_op(model: onnx.ModelProto) -> str:
    return model.graph.node[0].op_type


def weights_as_initializers(model: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> onnx.ModelProto:
    """The case model with every graph input but the first stored as an initializer
    holding the case's value: the weights of a converted network are constants."""
    constant = onnx.ModelProto()
    constant.CopyFrom(model)
    graph = constant.graph
    for value, array in zip(graph.input[1:], inputs[1:]):
        graph.initializer.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), value.name))
    del graph.input[1:]
    return constant


def node_tasks(cases: Sequence[Any], workdir: Path, targets: Sequence[str]) -> list[Task]:
    """The tasks of every case, each model saved under ``workdir``: suite ``node`` (the
    model as ONNX ships it) → PyTorch, and suite ``node-constants`` (every input but
    the first an initializer) → PyTorch and → Caffe. Caffe holds weights only as
    layer blobs, so it is measured on the second form alone; PyTorch on both, the
    second showing what the writer does once the weights are constants."""
    tasks = []
    for case in cases:
        (inputs, expected), *more = case.data_sets
        if more:
            raise RuntimeError(f"{case.name} has {len(more) + 1} data sets; the harness feeds only one")
        inputs, expected = [_array(a) for a in inputs], [_array(a) for a in expected]
        variants = [
            ("node", case.model, inputs, ["pytorch"]),
            ("node-constants", weights_as_initializers(case.model, inputs), inputs[:1], ["pytorch", "caffe"]),
        ]
        for suite, model, fed, suite_targets in variants:
            for target in (target for target in suite_targets if target in targets):
                folder = workdir / suite / target / case.name
                folder.mkdir(parents=True)
                model_path = folder / f"{case.name}.onnx"
                onnx.save(model, model_path)
                tasks.append(
                    Task(
                        suite,
                        case.name,
                        graph_op(case.model),
                        target,
                        str(model_path),
                        fed,
                        expected,
                        case.rtol,
                        case.atol,
                        NODE_TIMEOUT,
                        str(folder),
                    )
                )
    return tasks


def initializers_not_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model in IR 4 form: initializers no longer listed as graph inputs.

    IR 3 (every light model) lists each initializer among the graph inputs as a
    default value a caller may override; from IR 4 on they are plain constants."""
    constant = onnx.ModelProto()
    constant.CopyFrom(model)
    initializers = {tensor.name for tensor in constant.graph.initializer}
    kept = [value for value in constant.graph.input if value.name not in initializers]
    del constant.graph.input[:]
    constant.graph.input.extend(kept)
    constant.ir_version = max(constant.ir_version, 4)
    return constant


def light_tasks(workdir: Path, targets: Sequence[str], only: re.Pattern | None) -> list[Task]:
    """The light model-zoo graphs, fed the way ONNX's backend runner feeds them: once
    as shipped (suite ``light``) and once in IR 4 form (suite ``light-ir4``), so that
    what the writers make of the network shows even when the IR 3 form is refused."""
    from onnx.backend.test.case.model import collect_testcases
    from onnx.backend.test.runner import Runner

    data = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    tasks = []
    for case in collect_testcases():
        if case.kind != "real" or (only is not None and not only.search(case.name)):
            continue
        source = data / f"light_{case.model_name}.onnx"
        model = onnx.load(source)
        initializers = {tensor.name for tensor in model.graph.initializer}
        inputs = [
            Runner.generate_dummy_data(value, seed=0, name=case.model_name, random=False)
            for value in model.graph.input
            if value.name not in initializers
        ]
        expected = []
        for index in range(len(model.graph.output)):
            tensor = onnx.TensorProto()
            tensor.ParseFromString((data / f"light_{case.model_name}_output_{index}.pb").read_bytes())
            expected.append(numpy_helper.to_array(tensor))
        variants = {"light": model}
        if any(value.name in initializers for value in model.graph.input):
            variants["light-ir4"] = initializers_not_inputs(model)
        for suite, variant in variants.items():
            for target in targets:
                folder = workdir / suite / target / case.model_name
                folder.mkdir(parents=True)
                model_path = folder / source.name
                onnx.save(variant, model_path)
                tasks.append(
                    Task(
                        suite,
                        case.model_name,
                        "model",
                        target,
                        str(model_path),
                        inputs,
                        expected,
                        case.rtol,
                        case.atol,
                        LIGHT_TIMEOUT,
                        str(folder),
                    )
                )
    return tasks


# ---------------------------------------------------------------- one conversion (in a worker)


def _innermost_frame(error: BaseException) -> str:
    """``file:line in function`` of the deepest frame in the project (else the deepest frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [frame for frame in frames if f"{os.sep}workbench{os.sep}" in frame.filename]
    frame = (ours or frames)[-1]
    path = Path(frame.filename)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return f"{shown}:{frame.lineno} in {frame.name}"


def _crash_reason(where: str, error: BaseException) -> str:
    message = str(error).strip().splitlines()
    return f"{where}: {type(error).__name__}: {message[-1] if message else ''} ({_innermost_frame(error)})"


def _error_lines(stderr: str) -> list[str]:
    """The ``[error] node (Op): message`` lines of a refusal, without their remedies."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith("[error]")]
    lines = [re.sub(r"^\[error\]\s*", "", line).split(" Remedy:")[0] for line in lines]
    if lines:
        return lines
    first = next((line for line in stderr.splitlines() if line.strip()), "exit 2 without a message")
    return [first.removeprefix("error: ").strip()]


def _comparison_reason(report_path: Path) -> str:
    """What the CLI's own verification found, from its --report."""
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return "the CLI's verification differs (no readable report)"
    failing = [output for output in report.get("comparison", {}).get("outputs", []) if not output.get("ok")]
    found = [
        f"{output.get('source')}: max abs {output['max_abs']:.3g}"
        if isinstance(output.get("max_abs"), (int, float))
        else f"{output.get('source')}: no finite difference (shapes differ, or NaN/inf)"
        for output in failing
    ]
    return f"the CLI's own verification against onnxruntime differs ({', '.join(found) or 'no output named'})"


def convert(task: Task, outdir: Path) -> tuple[int | None, str, str | None]:
    """Run ``workbench convert`` in this process: (exit code, stderr, crash reason)."""
    from workbench.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    arguments = ["convert", task.model_path, "--to", task.target, "-o", str(outdir)]
    arguments += ["--report", str(outdir.parent / f"{task.target}-report.json")]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(arguments)
    except Exception as error:  # noqa: BLE001 - any traceback out of the CLI is the converter's crash
        return None, stderr.getvalue(), _crash_reason("convert raised", error)
    return code, stderr.getvalue(), None


def run_pytorch(outdir: Path, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Import the written ``model.py``, load ``weights.pt`` and run ``forward(*inputs)``."""
    import torch

    spec = importlib.util.spec_from_file_location(
        f"converted_{outdir.parent.name}_{time.monotonic_ns()}", outdir / "model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    network = module.Model()
    network.load_state_dict(torch.load(outdir / "weights.pt", weights_only=True))
    network.eval()
    with torch.no_grad():
        result = network(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    return [tensor.numpy() for tensor in results]


def run_opencv(outdir: Path, model: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the written Caffe files in OpenCV DNN; outputs in the ONNX graph's order.

    The Caffe blob of each graph input and output is read from the writer's
    ``NAME.provenance.json``; each output is taken from the last layer whose top it is."""
    import cv2
    from google.protobuf import text_format

    from workbench.formats import caffe_pb2  # the Caffe schema only

    (prototxt,) = outdir.glob("*.prototxt")
    caffemodel = prototxt.with_suffix(".caffemodel")
    blobs = json.loads(prototxt.with_suffix(".provenance.json").read_text())
    definition = text_format.Parse(prototxt.read_text(), caffe_pb2.NetParameter())
    producer = {top: (layer.name, index) for layer in definition.layer for index, top in enumerate(layer.top)}
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    graph_inputs = [
        value.name for value in model.graph.input if value.name not in {t.name for t in model.graph.initializer}
    ]
    for name, array in zip(graph_inputs, inputs):
        net.setInput(np.ascontiguousarray(array, dtype=np.float32), blobs["inputs"][name])
    outputs = []
    for value in model.graph.output:
        layer, index = producer[blobs["outputs"][value.name]]
        # one pass per output: OpenCV may reuse the memory of a layer's other tops
        outputs.append(np.array(net.forwardAndRetrieve([layer])[0][index]))
    return outputs


def verdict(
    actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], rtol: float, atol: float
) -> tuple[bool, str, float | None]:
    """ONNX's runner's test (count, shape, dtype, assert_allclose): (ok, reason, max abs error)."""
    if len(actual) != len(expected):
        return False, f"{len(actual)} outputs, expected {len(expected)}", None
    worst = 0.0
    for index, (out, ref) in enumerate(zip(actual, expected)):
        if out.shape != ref.shape:
            same = out.size == ref.size and np.allclose(
                out.reshape(ref.shape), ref, rtol=rtol, atol=atol, equal_nan=True
            )
            values = " (the values match once reshaped)" if same else ""
            return False, f"output {index} has shape {list(out.shape)}, expected {list(ref.shape)}{values}", None
        if out.dtype != ref.dtype:
            return False, f"output {index} has dtype {out.dtype}, expected {ref.dtype}", None
        difference = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        finite = np.isfinite(difference)
        worst = max(worst, float(difference[finite].max(initial=0.0)))
        try:
            np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)
        except AssertionError:
            nonfinite = int((~finite & ~(np.isnan(out) & np.isnan(ref))).sum())
            extra = f", {nonfinite} non-finite where the expected value is not" if nonfinite else ""
            return False, f"output {index} off by up to {worst:.3g}{extra} (rtol {rtol:g}, atol {atol:g})", worst
    return True, "", worst


def measure(task: Task) -> Result:
    """Convert one task through the CLI, run what it wrote, and classify the outcome."""
    start = time.perf_counter()
    result = Result(task.suite, task.name, task.op, task.target, "pass")
    outdir = Path(task.workdir) / "out"
    code, stderr, crash = convert(task, outdir)
    result.exit_code = code
    if crash is not None:
        result.status, result.reason = "crash", crash
    elif code == 2:
        lines = _error_lines(stderr)
        result.status, result.reason = "check-error", "; ".join(lines)
        result.names_op = task.op in stderr if task.suite.startswith("node") else None
    elif code not in (0, 1):
        result.status, result.reason = "crash", f"convert exited with {code}: {stderr.strip()[-200:]}"
    else:
        model = onnx.load(task.model_path)
        try:
            if task.target == "pytorch":
                actual = run_pytorch(outdir, task.inputs)
            else:
                actual = run_opencv(outdir, model, task.inputs)
        except Exception as error:  # noqa: BLE001 - the written files do not load or run: the converter's defect
            result.status, result.reason = "crash", _crash_reason(f"running the written {task.target} files", error)
        else:
            ok, reason, worst = verdict(actual, task.expected, task.rtol, task.atol)
            result.max_abs_error = worst
            if code == 1:
                cli = _comparison_reason(outdir.parent / f"{task.target}-report.json")
                result.status = "mismatch"
                result.reason = cli + (f"; on the case's data: {reason}" if not ok else "; the case's data match")
            elif not ok:
                result.status, result.reason = "mismatch", reason
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def worker_main(connection: Any, log_path: str) -> None:
    """Measure tasks sent over ``connection`` until ``None`` arrives.

    Native libraries print to the process's own stdout/stderr; those go to a log."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    warnings.simplefilter("ignore")
    while (task := connection.recv()) is not None:
        try:
            result = measure(task)
        except Exception:  # noqa: BLE001 - a bug of this script: reported, and the run ends with status 1
            result = Result(task.suite, task.name, task.op, task.target, "crash", harness_error=traceback.format_exc())
        connection.send(result)


# ---------------------------------------------------------------- scheduling


class Worker:
    """A process measuring one task at a time, replaced when a converter kills it."""

    def __init__(self, context: Any, log_path: Path) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, str(log_path)), daemon=True)
        self.process.start()
        child.close()
        self.task: Task | None = None
        self.started = 0.0

    def assign(self, task: Task) -> None:
        self.task, self.started = task, time.monotonic()
        self.connection.send(task)

    def collect(self) -> Result | None:
        """The finished task's result, a crash result if the process died or hung, else None."""
        assert self.task is not None
        task = self.task
        if self.connection.poll():
            try:
                result = self.connection.recv()
            except EOFError:
                result = None
            if result is not None:
                self.task = None
                return result
        elapsed = time.monotonic() - self.started
        if self.process.is_alive() and elapsed < task.timeout:
            return None
        if self.process.is_alive():
            self.process.kill()
            self.process.join()  # dead before the scheduler looks at it again, so it is replaced
            reason = f"no result after {task.timeout:g} s: the worker was stopped"
        else:
            self.process.join()
            reason = f"the process died during the conversion or the run (exit code {self.process.exitcode})"
        self.task = None
        return Result(task.suite, task.name, task.op, task.target, "crash", reason=reason, seconds=elapsed)

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, BrokenPipeError):
                self.connection.send(None)
            self.process.join(timeout=10)
            if self.process.is_alive():
                self.process.kill()


def run_tasks(tasks: Sequence[Task], jobs: int, log_path: Path) -> list[Result]:
    """Every task's result, in task order, measured by ``jobs`` worker processes."""
    context = multiprocessing.get_context("spawn")
    workers = [Worker(context, log_path) for _ in range(jobs)]
    pending = deque(range(len(tasks)))
    slot: dict[int, int] = {}  # id(worker) -> task index
    results: list[Result | None] = [None] * len(tasks)
    done, start = 0, time.monotonic()
    try:
        while pending or slot:
            for position, worker in enumerate(workers):
                if worker.task is None and pending:
                    if not worker.process.is_alive():
                        worker = workers[position] = Worker(context, log_path)
                    slot[id(worker)] = pending.popleft()
                    worker.assign(tasks[slot[id(worker)]])
            busy = [worker for worker in workers if worker.task is not None]
            wait([w.connection for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
            for worker in busy:
                result = worker.collect()
                if result is None:
                    continue
                results[slot.pop(id(worker))] = result
                done += 1
                if done % 50 == 0 or done == len(tasks):
                    print(f"{done}/{len(tasks)} measured ({time.monotonic() - start:.0f} s)", flush=True)
    finally:
        for worker in workers:
            worker.stop()
    return [result for result in results if result is not None]


# ---------------------------------------------------------------- report


def _count(results: Sequence[Result], **where: str) -> Counter:
    return Counter(r.status for r in results if all(getattr(r, key) == value for key, value in where.items()))


def summarize(results: Sequence[Result], ops: Sequence[str]) -> dict[str, Any]:
    """Counts per suite and target, and per op for the node cases."""
    summary: dict[str, Any] = {}
    for suite in SUITES:
        for target in TARGETS:
            counts = _count(results, suite=suite, target=target)
            if not counts:
                continue
            entry = {"total": sum(counts.values()), **{status: counts.get(status, 0) for status in STATUSES}}
            if suite.startswith("node"):
                per_op = {}
                for op in ops:
                    op_counts = _count(results, suite=suite, target=target, op=op)
                    if op_counts:
                        per_op[op] = {"total": sum(op_counts.values()), **{s: op_counts.get(s, 0) for s in STATUSES}}
                entry["ops"] = len(per_op)
                entry["ops_fully_passing"] = sum(c["pass"] == c["total"] for c in per_op.values())
                entry["per_op"] = per_op
            summary[f"{suite} → {target}"] = entry
    return summary


def _cell(counts: dict[str, int] | None) -> str:
    if not counts:
        return "–"
    failures = ", ".join(f"{counts[s]} {s}" for s in STATUSES[1:] if counts[s])
    return f"{counts['pass']}/{counts['total']}" + (f" ({failures})" if failures else "")


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def render_markdown(meta: dict[str, Any], summary: dict[str, Any], results: Sequence[Result]) -> str:
    versions = meta["versions"]
    lines = [
        "# Coverage: ONNX's backend test suite through the workbench",
        "",
        "Generated by `make coverage` (`benchmarks/onnx_backend_coverage.py`); do not edit by hand.",
        "",
        (
            f"Measured on commit `{meta['commit']}` with onnx {versions['onnx']}, torch {versions['torch']}, "
            f"OpenCV {versions['opencv']}, onnxruntime {versions['onnxruntime']}; {meta['seconds']:.0f} s "
            f"on {meta['jobs']} worker(s)."
        ),
        "",
        (
            "Suites (each conversion is `workbench convert SRC --to TARGET`; the written files run in PyTorch or "
            "OpenCV DNN):"
        ),
        "",
        *(f"- `{suite}`: {text}" for suite, text in SUITES.items()),
        "",
        (
            f"Node cases: `onnx.backend.test.case.node.collect_testcases()`, single-node graphs of {len(meta['ops'])} "
            "vision ops with float32 inputs and outputs. Light zoo: `onnx/backend/test/data/light`, fed "
            "`arange(n)/n` as ONNX's runner does. A case passes when ONNX's own test holds: same shapes and "
            "dtypes, `assert_allclose` with the case's rtol/atol (1e-3/1e-7; DenseNet-121 2e-3/1e-7)."
        ),
        "",
        (
            "Failure classes: **check-error**: `convert` refused with exit 2 and said why; **mismatch**: exit 1 "
            "(the CLI's own verification differs) or the written model misses the expected outputs; **crash**: "
            "a traceback in the converter, or written files that do not load or run."
        ),
        "",
        "## Counts",
        "",
    ]
    rows = []
    for key, entry in summary.items():
        ops = f"{entry['ops_fully_passing']}/{entry['ops']}" if "ops" in entry else "–"
        counts = [str(entry[status]) for status in STATUSES[1:]]
        rows.append([key, f"**{entry['pass']}/{entry['total']}**", *counts, ops])
    lines += _table(["suite → target", "pass", *STATUSES[1:], "ops fully passing"], rows)
    unnamed = [f"{r.suite} → {r.target} {r.name}" for r in results if r.names_op is False]
    lines += ["", f"Node-case check errors that do not name the op: {', '.join(unnamed) or 'none'}."]

    columns = [
        key for key in ("node → pytorch", "node-constants → pytorch", "node-constants → caffe") if key in summary
    ]
    if columns:
        per_op = {key: summary[key]["per_op"] for key in columns}
        rows = [
            [op, VISION_OPS[op], *(_cell(per_op[key].get(op)) for key in columns)]
            for op in meta["ops"]
            if any(op in per_op[key] for key in columns)
        ]
        lines += ["", "## Node cases per op", "", *_table(["op", "group", *columns], rows)]

    light = [r for r in results if r.suite.startswith("light")]
    if light:
        columns = [f"{suite} → {target}" for suite in ("light", "light-ir4") for target in TARGETS]
        columns = [key for key in columns if key in summary]
        found = {(f"{r.suite} → {r.target}", r.name): r for r in light}
        rows = []
        for name in dict.fromkeys(r.name for r in light):
            cells = []
            for key in columns:
                result = found[key, name]
                if result.status == "pass":
                    cells.append(f"pass (max abs {result.max_abs_error:.2g})")
                else:
                    cells.append(f"**{result.status}**: {_one_line(result.reason, 100)}")
            rows.append([name, *cells])
        lines += ["", "## Light model zoo", "", *_table(["model", *columns], rows)]

    for suite in SUITES:
        for target in TARGETS:
            failures = [r for r in results if (r.suite, r.target) == (suite, target) and r.status != "pass"]
            if failures:
                rows = [[r.name, r.op, r.status, _one_line(r.reason)] for r in failures]
                lines += ["", f"## Failures: {suite} → {target}", "", *_table(["case", "op", "class", "reason"], rows)]
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    names = {"onnx": "onnx", "torch": "torch", "opencv": "opencv-python-headless", "onnxruntime": "onnxruntime"}
    return {key: version(package) for key, package in names.items()} | {"python": platform.python_version()}


def _commit() -> str:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
    except OSError:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "workbench"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return (found.stdout.strip() or "unknown") + ("+changes" if dirty.stdout.strip() else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1: the machine is shared)")
    parser.add_argument("--only", help="measure only cases whose name matches this regular expression")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--no-light", action="store_true", help="skip the light model zoo")
    parser.add_argument("--markdown", type=Path, default=ROOT / "benchmarks" / "COVERAGE.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "coverage.json")
    parser.add_argument("--keep", type=Path, help="keep the case models and converted files in this (new) folder")
    args = parser.parse_args(argv)
    only = re.compile(args.only) if args.only else None

    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True)
            workdir = args.keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="onnx-coverage-")))
        cases = vision_node_cases(only)
        tasks = node_tasks(cases, workdir, args.targets)
        if not args.no_light:
            tasks += light_tasks(workdir, args.targets, only)
        ops = [op for op in VISION_OPS if any(task.op == op for task in tasks)]
        print(f"{len(cases)} node cases over {len(ops)} ops, {len(tasks)} conversions", flush=True)
        results = run_tasks(tasks, args.jobs, workdir / "native-output.log")

    broken = [r for r in results if r.harness_error]
    measured = [r for r in results if not r.harness_error]
    meta = {
        "commit": _commit(),
        "versions": _versions(),
        "jobs": args.jobs,
        "seconds": time.monotonic() - start,
        "ops": list(VISION_OPS),
        "node_cases": len(cases),
        "tolerance": "the case's rtol/atol, as onnx.backend.test.runner.Runner.assert_similar_outputs",
    }
    summary = summarize(measured, list(VISION_OPS))
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(render_markdown(meta, summary, measured))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "summary": summary, "results": [asdict(r) for r in results]}
    args.json.write_text(json.dumps(data, indent=1, default=str) + "\n")
    for key, entry in summary.items():
        print(
            f"{key:<26} {entry['pass']}/{entry['total']} pass, {entry['check-error']} check-error, "
            f"{entry['mismatch']} mismatch, {entry['crash']} crash"
        )
    print(f"report: {args.markdown}, {args.json} ({meta['seconds']:.0f} s)")
    for result in broken:
        print(f"harness error on {result.target} {result.name}:\n{result.harness_error}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
