"""The conversion chain load → simplify → fold_bn → check → write → verify, as one API.

``convert(source, target, outdir, ...)`` runs the whole chain and returns the
``Chain``, which keeps every step's artifact and report. The CLI's ``convert`` and
``check`` are thin layers over it, and the pipeline stepper (``workbench.ui``)
drives the same ``Chain`` step by step:

* ``run(step)`` runs one step on the latest artifacts before it and keeps what it
  made, or the ``WorkbenchError`` that stopped it, as a ``StepRun`` (labelled
  ``"simplify #2"``: step and run number) that records the runs it read
  (``inputs``) and the settings it ran with;
* re-running a step keeps its earlier runs, so any two artifacts can still be
  compared (``Chain.compare``);
* ``simplify``, ``fold_bn`` and ``verify`` can be switched off (``switch``).

A step's status is derived, never remembered: a step is *stale* when the runs it
would read now are not the ones it read (an earlier step re-ran, a step was
switched on or off), when one of those is stale itself, or when a setting it
depends on changed (``settings``: the source and input shape for ``load``, the
target and its options for ``check`` and ``write``, the tolerances, inputs and
``per_layer`` for ``verify``). It stays stale until it runs again.

What each step reads: ``simplify``, ``fold_bn``, ``check`` and ``write`` the latest
model before them; ``write`` refuses a model its ``check`` found errors in, and
first makes sure the result can be verified (the inputs: given, or seeded random
inputs of the source's input shapes); ``verify`` compares the written files with
the source in its own runtime where this machine has it (the PyTorch module, the
Caffe files in OpenCV DNN), else with the source graph in onnxruntime, one runtime
after the other (the weights written are given back first, and each runtime is
released before the next loads), so a large model is held by one runtime at a time:
the final outputs, or with ``per_layer`` every layer too, with the first divergence
and its likely cause (the stepper verifies layer by layer; ``workbench convert``
checks the final outputs).

Steps never change the model they read, and the chain checks it rather than
trusting it (as onnx-ir's ``PassBase`` checks a pass's in-place contract): the
model is fingerprinted (its nodes, initializers' bytes and metadata) before and
after each step, and a step that changed it raises ``StepContractError``.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from .errors import InputError, WorkbenchError
from .graph import Model, StepReport
from .readers import example_inputs, load
from .readers.input_shapes import InputShapes
from .steps.check import CheckReport, check
from .steps.compare import Comparison, compare
from .steps.compare_stats import DEFAULT_ATOL, DEFAULT_RTOL
from .steps.fold_bn import fold_bn as fold_batchnorm
from .steps.simplify import simplify as simplify_model
from .writers import WrittenFiles, write

STEPS = ("load", "simplify", "fold_bn", "check", "write", "verify")
OPTIONAL_STEPS = ("simplify", "fold_bn", "verify")
MODEL_STEPS = ("load", "simplify", "fold_bn")


class StepContractError(RuntimeError):
    """A step changed the model it read: a bug in the step, never the user's input."""


@dataclass(kw_only=True)
class StepRun:
    """One run of a step: what it made (or the error that stopped it) and its reports."""

    label: str  # "simplify #2": step name and run number, unique in a chain
    step: str
    value: Any = None  # Model, CheckReport, WrittenFiles or Comparison
    reports: list[StepReport] = field(default_factory=list)
    error: WorkbenchError | None = None
    seconds: float = 0.0
    inputs: tuple[str, ...] = ()  # labels of the runs this step read, the one it was made from last
    settings: dict[str, Any] = field(default_factory=dict)  # Chain.settings(step) when it ran

    @property
    def made_from(self) -> str | None:
        """The label of the run whose artifact this step was made from (verify: the written files)."""
        return self.inputs[-1] if self.inputs else None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def report(self) -> StepReport | None:
        """The step's own report (the last of ``reports``)."""
        return self.reports[-1] if self.reports else None

    @property
    def comparable(self) -> bool:
        """A model or written files: something ``compare`` accepts."""
        return self.ok and (self.step in MODEL_STEPS or self.step == "write")

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error


def fingerprint(model: Model) -> str:
    """A digest of everything a step must leave as it was: every node as ONNX
    serializes it (attributes, subgraphs, metadata such as provenance), the graph's
    inputs, outputs, opsets and functions, the model's metadata, the source, and each
    initializer's name, type, shape and bytes. The bytes go through CRC-32 read from
    the arrays in place, so a 100 MB network costs tens of milliseconds, not a copy;
    weights mapped read-only from a file (``onnx_ir.ExternalTensor``) cannot be written
    through the model, so their place in the file stands for their bytes."""
    graph = model.graph
    digest = hashlib.sha256()
    for node in graph:
        digest.update(ir.serde.serialize_node(node).SerializeToString(deterministic=True))
    for value in [*graph.inputs, *graph.outputs]:
        digest.update(ir.serde.serialize_value(value).SerializeToString(deterministic=True))
    for function in model.ir.functions.values():
        digest.update(ir.serde.serialize_function(function).SerializeToString(deterministic=True))
    for name, value in graph.initializers.items():
        content = _content_key(value.const_value)
        digest.update(repr((name, value.dtype, value.shape, dict(value.metadata_props), content)).encode())
    metadata = (dict(graph.opset_imports), dict(model.ir.metadata_props), dict(graph.metadata_props))
    digest.update(repr((metadata, model.source, len(model.reports))).encode())
    return digest.hexdigest()


def inputs_digest(inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | None) -> str | None:
    """A digest of given inputs (names, types, shapes and bytes), to tell when they changed."""
    if inputs is None:
        return None
    named = inputs.items() if isinstance(inputs, Mapping) else enumerate(inputs)
    digest = hashlib.sha256()
    for name, value in named:
        array = np.ascontiguousarray(value)
        digest.update(repr((name, array.dtype.str, array.shape)).encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def _content_key(tensor: ir.TensorProtocol | None) -> object:
    """What stands for a tensor's bytes in a fingerprint: where a mapped tensor lies
    in its file, else the CRC-32 of the bytes."""
    if isinstance(tensor, ir.ExternalTensor):
        return (tensor.path, tensor.offset, tensor.length)
    array = tensor.numpy() if tensor is not None else np.empty(0)
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def source_reference(source: Model) -> Any:
    """What written files are verified against: the source in its own runtime where
    this machine has it (the PyTorch module, the Caffe files in OpenCV DNN), else the
    source graph in onnxruntime (ONNX; MXNet, whose reader is checked against outputs
    recorded with MXNet itself). Files are handed on as paths, which ``compare``
    opens, so a report can tell two copies of one model apart by their folders."""
    if source.source.format in ("pytorch", "caffe") and source.source.paths:
        return tuple(source.source.paths)
    return source


def name_map_report(source: Model, written: WrittenFiles) -> dict[str, Any]:
    """``name_map`` (target layer -> source layers) and the full map with blobs and
    parameters. For files ``map_names`` cannot read back, the writer's own records
    (``details["layers"]`` or ``details["modules"]``: name and sources) give the map."""
    from .steps.map_names import map_names

    try:
        names = map_names(source, written)
    except WorkbenchError as error:
        records = written.details.get("layers") or written.details.get("modules") or []
        return {
            "name_map": {record["name"]: list(record.get("sources", ())) for record in records},
            "name_map_details": {"from": "writer records", "map_names": error.what},
        }
    return {
        "name_map": {entry.target: list(entry.sources) for entry in names if entry.kind == "layer"},
        "name_map_details": names.to_dict(),
    }


class Chain:
    """One source, one target, the options of the steps, and every run so far."""

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        target: str,
        outdir: str | Path | None = None,
        *,
        input_shape: InputShapes | None = None,
        weights: str | Path | None = None,
        name: str | None = None,
        simplify: bool = True,
        fold_bn: bool = False,
        verify: bool = True,
        per_layer: bool = False,
        options: Mapping[str, Any] | None = None,
        inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | None = None,
        atol: float = DEFAULT_ATOL,
        rtol: float = DEFAULT_RTOL,
    ) -> None:
        self.source = (source,) if isinstance(source, (str, Path)) else tuple(source)
        self.target = target
        self.outdir = outdir
        self.input_shape = input_shape
        self.weights = weights
        self.name = name
        self.options = dict(options or {})  # for check and write (e.g. dialect)
        self.inputs = inputs
        self.atol, self.rtol = atol, rtol
        self.per_layer = per_layer  # verify every layer, not only the final outputs
        self.enabled = {"simplify": simplify, "fold_bn": fold_bn, "verify": verify}
        self.history: list[StepRun] = []
        self.current: dict[str, StepRun] = {}
        # each step as a function of the runs it reads (inputs_of)
        self._functions: dict[str, Callable[..., tuple[Any, list[StepReport]]]] = {
            "load": self._load,
            "simplify": self._simplify,
            "fold_bn": self._fold_bn,
            "check": self._check,
            "write": self._write,
            "verify": self._verify,
        }

    # ------------------------------------------------------------ state

    def status(self, step: str) -> str:
        """ "pending", "skipped", "done", "failed" or "stale"."""
        if step in OPTIONAL_STEPS and not self.enabled.get(step, True):
            return "skipped"
        run = self.current.get(step)
        if run is None:
            return "pending"
        if not run.ok:
            return "failed"
        return "stale" if self.why_stale(step) else "done"

    def why_stale(self, step: str) -> str:
        """Why the step's current run no longer follows from the steps before it and the
        settings ("" if it does)."""
        run = self.current.get(step)
        if run is None or not run.ok:
            return ""
        expected = self.inputs_of(step)
        if run.inputs != expected:
            return f"made from {', '.join(run.inputs) or 'nothing'}; would now read {', '.join(expected) or 'nothing'}"
        settings = self.settings(step)
        changed = [what for what in settings if run.settings.get(what) != settings[what]]
        if changed:
            return f"{' and '.join(changed)} changed"
        for label in expected:
            if self.why_stale(self.artifact(label).step):
                return f"{label} is stale"
        return ""

    def settings(self, step: str) -> dict[str, Any]:
        """What the step's result depends on besides the runs it reads, named as the
        user knows it (a change names it in ``why_stale``)."""
        target = (self.target, sorted(self.options.items()))
        if step == "load":
            return {"the source or its input shape": (self.source, self.input_shape, self.weights)}
        if step == "check":
            return {"the target or its options": target}
        if step == "write":
            return {"the target or its options": target, "the output folder or name": (str(self.outdir), self.name)}
        if step == "verify":
            return {
                "the tolerances": (self.atol, self.rtol),
                "the inputs": inputs_digest(self.inputs),
                "the per-layer setting": self.per_layer,
            }
        return {}

    def switch(self, step: str, on: bool) -> None:
        """Switch an optional step on or off; the steps that read it turn stale."""
        if step not in OPTIONAL_STEPS:
            raise InputError(
                f"{step} cannot be switched off",
                expected=f"one of {', '.join(OPTIONAL_STEPS)}",
                found=step,
                remedy="every other step of the chain always runs",
            )
        self.enabled[step] = on

    def _has_run(self, step: str) -> bool:
        return self.status(step) in ("done", "stale")

    def model_before(self, step: str) -> StepRun | None:
        """The run of the nearest earlier model step (load, simplify, fold_bn), if any."""
        for earlier in reversed(STEPS[: STEPS.index(step)]):
            if earlier in MODEL_STEPS and self._has_run(earlier):
                return self.current[earlier]
        return None

    def inputs_of(self, step: str) -> tuple[str, ...]:
        """The labels of the runs the step would read if it ran now: the latest model
        before it, or for verify the source as loaded and the written files."""
        if step == "verify":
            return tuple(self.current[read].label for read in ("load", "write") if self._has_run(read))
        model = self.model_before(step) if step != "load" else None
        return (model.label,) if model is not None else ()

    def missing_before(self, step: str) -> str | None:
        """The earlier step that must run first, or None if ``step`` can run now."""
        if step == "verify" and not self._has_run("write"):
            return "write"
        if step != "load" and self.model_before(step) is None:
            return "load"
        return None

    def pending(self, until: str | None = None) -> list[str]:
        """The enabled steps not done yet, in order, up to ``until`` (inclusive)."""
        last = STEPS.index(until) if until is not None else len(STEPS) - 1
        return [step for step in STEPS[: last + 1] if self.status(step) not in ("done", "skipped")]

    def _value(self, step: str) -> Any:
        return self.current[step].value if self._has_run(step) else None

    @property
    def source_model(self) -> Model | None:
        return self._value("load")

    @property
    def model(self) -> Model | None:
        """The latest model of the chain."""
        run = self.model_before("check")
        return run.value if run is not None else None

    @property
    def check_report(self) -> CheckReport | None:
        return self._value("check")

    @property
    def written(self) -> WrittenFiles | None:
        return self._value("write")

    @property
    def comparison(self) -> Comparison | None:
        return self._value("verify")

    @property
    def ok(self) -> bool:
        """Written, and the written files compute what the source does."""
        return self.comparison is not None and self.comparison.ok

    # ------------------------------------------------------------ running

    def run(self, step: str) -> StepRun:
        """Run one step on the latest artifacts before it. A ``WorkbenchError`` is kept
        in the run (``StepRun.error``, ``raise_for_error``), not raised."""
        if step not in STEPS:
            raise InputError(f"unknown step {step!r}", expected=", ".join(STEPS), found=step)
        if self.status(step) == "skipped":
            raise InputError(f"{step} is switched off", remedy=f"enable {step} first")
        missing = self.missing_before(step)
        if missing:
            raise InputError(f"{step} needs {missing} to run first", remedy=f"run {missing}")
        inputs = self.inputs_of(step)
        number = 1 + sum(1 for run in self.history if run.step == step)
        run = StepRun(label=f"{step} #{number}", step=step, inputs=inputs, settings=self.settings(step))
        start = time.perf_counter()
        try:
            run.value, run.reports = self._guarded(step, [self.artifact(label) for label in inputs])
        except WorkbenchError as error:
            run.error = error
        run.seconds = time.perf_counter() - start
        self.history.append(run)
        self.current[step] = run
        return run

    def _guarded(self, step: str, reads: list[StepRun]) -> tuple[Any, list[StepReport]]:
        """Run the step, checking that the models it reads come out as they went in."""
        models = [read.value for read in reads if isinstance(read.value, Model)]
        before = [fingerprint(model) for model in models]
        result = self._functions[step](*reads)
        if [fingerprint(model) for model in models] != before:
            raise StepContractError(f"step {step} changed the model it read; steps must return a new model")
        return result

    @staticmethod
    def _model_of(run: StepRun | None) -> Model:
        """The model a step reads (``run`` checked that a model step ran before it)."""
        if run is None or not isinstance(run.value, Model):
            raise StepContractError("a model step must run before this one")
        return run.value

    def run_all(self, until: str | None = None) -> list[StepRun]:
        """Run every enabled step not done yet, in order (up to ``until``); stop at the
        first failure."""
        ran = []
        for step in self.pending(until):
            run = self.run(step)
            ran.append(run)
            if not run.ok:
                break
        return ran

    def comparable(self) -> list[StepRun]:
        """Every kept model or written files, oldest first."""
        return [run for run in self.history if run.comparable]

    def artifact(self, label: str) -> StepRun:
        for run in self.history:
            if run.label == label:
                return run
        raise InputError(
            f"no artifact {label!r}",
            expected=", ".join(run.label for run in self.history) or "a step to have run",
            found=label,
        )

    def compare(self, reference: str, candidate: str, *, per_layer: bool = True) -> Comparison:
        """Compare two kept artifacts (by label), layer by layer by default."""
        return compare(self.artifact(reference).value, self.artifact(candidate).value, per_layer=per_layer)

    # ------------------------------------------------------------ the steps

    def _load(self) -> tuple[Model, list[StepReport]]:
        start = time.perf_counter()
        model = load(*self.source, input_shape=self.input_shape, weights=self.weights)
        summary = (
            f"{model.name} from {model.source.format}: {len(model.graph)} nodes, "
            f"{model.parameter_count():,} parameters, inputs {model.input_shapes()}"
        )
        return model, [*model.reports, StepReport("load", summary, seconds=time.perf_counter() - start)]

    def _simplify(self, read: StepRun | None) -> tuple[Model, list[StepReport]]:
        """Simplify; when that fails, the usual cause is an op no runtime knows: the
        unsimplified model is checked so that every such op is listed at once."""
        model = self._model_of(read)
        try:
            simplified = simplify_model(model)
        except WorkbenchError as error:
            try:
                check(model, self.target, **self.options).raise_for_errors()
            except WorkbenchError as unsupported:
                raise unsupported from error
            raise
        return simplified, [simplified.reports[-1]]

    def _fold_bn(self, read: StepRun | None) -> tuple[Model, list[StepReport]]:
        model = self._model_of(read)
        folded = fold_batchnorm(model)
        return folded, [folded.reports[-1]]

    def _check(self, read: StepRun | None) -> tuple[CheckReport, list[StepReport]]:
        model = self._model_of(read)
        report = check(model, self.target, **self.options)
        return report, [report.report]

    def _write(self, read: StepRun | None) -> tuple[WrittenFiles, list[StepReport]]:
        model = self._model_of(read)
        checked = self.current.get("check")
        if checked is not None and checked.ok and read is not None and checked.made_from == read.label:
            checked.value.raise_for_errors()
        if self.outdir is None:
            raise InputError("write needs an output folder", remedy="give outdir (-o OUTDIR)")
        if self.enabled["verify"] and self.inputs is None:
            # before writing: a conversion that cannot be verified is bad input
            example_inputs(self.source_model or model)
        written = write(model, self.outdir, self.target, name=self.name, **self.options)
        return written, [written.report]

    def _verify(self, loaded: StepRun, written: StepRun) -> tuple[Comparison, list[StepReport]]:
        source = self._model_of(loaded)
        start = time.perf_counter()
        inputs = self.inputs if self.inputs is not None else example_inputs(source)
        # writing read every weight: give back the pages of those mapped from files, so
        # that each runtime in turn (compare releases one before the next) has the room
        for model in (source, self.model):
            if model is not None:
                model.release_weights()
        comparison = compare(
            source_reference(source), written.value, inputs, atol=self.atol, rtol=self.rtol, per_layer=self.per_layer
        )
        summary = f"{comparison.summary()}: {comparison.reference} against {comparison.candidate}"
        return comparison, [StepReport("verify", summary, seconds=time.perf_counter() - start)]

    # ------------------------------------------------------------ the record

    def to_report(self) -> dict[str, Any]:
        """The ``workbench convert --report`` JSON: source, target, files, the steps'
        reports, the check, the name map and the comparison."""
        source, model, checked, written = self.source_model, self.model, self.check_report, self.written
        if source is None or model is None or checked is None or written is None:
            raise InputError("the chain has not written anything yet", remedy="run it up to write first")
        report: dict[str, Any] = {
            "source": {"format": source.source.format, "paths": list(source.source.paths), "name": source.name},
            "target": self.target,
            "files": [str(path) for path in written.paths],
            "steps": [r.to_dict() for r in [*model.reports, checked.report, written.report]],
            "check": checked.to_dict(),
            **name_map_report(source, written),
        }
        if self.comparison is not None:
            report["comparison"] = self.comparison.to_report()
        return report

    def __repr__(self) -> str:
        states = ", ".join(f"{step} {self.status(step)}" for step in STEPS)
        return f"<Chain {' '.join(map(str, self.source))} → {self.target}: {states}>"


def convert(
    source: str | Path | Sequence[str | Path],
    target: str,
    outdir: str | Path,
    **options: Any,
) -> Chain:
    """Run the whole chain (load → simplify → fold_bn → check → write → verify) and
    return it; the first error stops it and is raised. ``options`` are ``Chain``'s
    (``input_shape``, ``weights``, ``name``, ``simplify``, ``fold_bn``, ``verify``,
    ``per_layer``, ``options`` for the target such as ``{"dialect": "opencv"}``,
    ``inputs``, ``atol``, ``rtol``); ``Chain.ok`` says whether the written files
    verified."""
    chain = Chain(source, target, outdir, **options)
    for run in chain.run_all():
        run.raise_for_error()
    return chain


__all__ = ["STEPS", "Chain", "StepContractError", "StepRun", "convert", "fingerprint", "source_reference"]
