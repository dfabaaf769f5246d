"""The conversion chain load → simplify → fold_bn → check → write → compare, run step
by step for one source and one target, keeping every artifact.

This is the logic behind the pipeline stepper panel, with no widgets, so scripts
and tests can drive it. Each step reads the latest model of the enabled steps
before it (``compare`` reads the source as loaded and the written files). Every
artifact records what it was made from and with which settings, so its status is
derived, never remembered: a step is *stale* when the artifacts it would read now
are not the ones it read (an earlier step re-ran, a step was switched on or off),
when one of those is stale itself, or when the target or options changed. A stale
step stays stale until it runs again. Re-running a step keeps its earlier artifacts,
so any two models can still be compared.

The step functions are called in one place, ``Pipeline._step_function``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, WorkbenchError
from ..graph import StepReport
from ..readers import load
from ..steps.check import check
from ..steps.compare import Comparison, compare
from ..steps.fold_bn import fold_bn
from ..steps.simplify import simplify
from ..writers import write

STEPS = ("load", "simplify", "fold_bn", "check", "write", "compare")
OPTIONAL_STEPS = ("simplify", "fold_bn")
MODEL_STEPS = ("load", "simplify", "fold_bn")
TARGET_STEPS = ("check", "write", "compare")  # their result depends on the target and its options


@dataclass
class Artifact:
    """What one run of a step produced (or the error that stopped it)."""

    label: str  # "simplify #2": step name and run number, unique in a pipeline
    step: str
    value: Any = None  # Model, check report, WrittenFiles or Comparison
    error: WorkbenchError | None = None
    seconds: float = 0.0
    inputs: tuple[str, ...] = ()  # labels of the artifacts this step read
    settings: tuple = ()  # target and options, for the steps that depend on them

    @property
    def made_from(self) -> str | None:
        """The label of the model this step read (None for load)."""
        return self.inputs[0] if self.inputs else None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def report(self) -> StepReport | None:
        report = getattr(self.value, "report", None)
        return report if isinstance(report, StepReport) else None

    @property
    def comparable(self) -> bool:
        """A model or written files: something ``compare`` accepts."""
        return self.ok and (self.step in MODEL_STEPS or self.step == "write")


@dataclass
class Pipeline:
    """One source, one target, the options of the steps, and every artifact so far."""

    source: Sequence[str | Path]
    target: str
    outdir: str | Path
    input_shape: Sequence[int] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # for check and write (e.g. dialect)
    enabled: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(OPTIONAL_STEPS, True))
    history: list[Artifact] = field(default_factory=list)
    current: dict[str, Artifact] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.source, (str, Path)):
            self.source = (self.source,)
        unknown = sorted(set(self.enabled) - set(OPTIONAL_STEPS))
        if unknown:
            raise InputError(
                f"steps {', '.join(unknown)} cannot be switched off",
                expected=f"some of {', '.join(OPTIONAL_STEPS)}",
                found=", ".join(unknown),
                remedy="every other step of the chain always runs",
            )

    def status(self, step: str) -> str:
        """ "pending", "skipped", "done", "failed" or "stale"."""
        if step in OPTIONAL_STEPS and not self.enabled.get(step, True):
            return "skipped"
        artifact = self.current.get(step)
        if artifact is None:
            return "pending"
        if not artifact.ok:
            return "failed"
        return "stale" if self.why_stale(step) else "done"

    def why_stale(self, step: str) -> str:
        """Why the step's current artifact no longer follows from the steps before it ("" if it does)."""
        artifact = self.current.get(step)
        if artifact is None or not artifact.ok:
            return ""
        expected = self.inputs_of(step)
        if artifact.inputs != expected:
            was = ", ".join(artifact.inputs) or "nothing"
            return f"made from {was}; would now read {', '.join(expected) or 'nothing'}"
        if artifact.settings != self._settings(step):
            return "the target or its options changed"
        for label in expected:
            earlier = self.artifact(label).step
            if self.why_stale(earlier):
                return f"{label} is stale"
        return ""

    def model_before(self, step: str) -> Artifact | None:
        """The artifact of the nearest earlier enabled model step that ran, if any."""
        for earlier in reversed(STEPS[: STEPS.index(step)]):
            if earlier in MODEL_STEPS and self.status(earlier) in ("done", "stale"):
                return self.current[earlier]
        return None

    def inputs_of(self, step: str) -> tuple[str, ...]:
        """The labels of the artifacts the step would read if it ran now."""
        if step == "load":
            return ()
        if step == "compare":
            sources = [self.current.get(s) for s in ("load", "write")]
            return tuple(a.label for a in sources if a is not None and a.ok)
        model = self.model_before(step)
        return (model.label,) if model else ()

    def missing_before(self, step: str) -> str | None:
        """The earlier step that must run first, or None if ``step`` can run now."""
        needed = {"compare": "write"}.get(step)
        if needed and self.status(needed) not in ("done", "stale"):
            return needed
        if step != "load" and self.model_before(step) is None:
            return "load"
        return None

    def run(self, step: str) -> Artifact:
        """Run one step on the latest artifacts before it; a WorkbenchError is kept
        in the artifact (and shown by the panel), not raised."""
        if step not in STEPS:
            raise InputError(f"unknown step {step!r}", expected=", ".join(STEPS), found=step)
        if self.status(step) == "skipped":
            raise InputError(f"{step} is switched off", remedy=f"enable {step} first")
        missing = self.missing_before(step)
        if missing:
            raise InputError(f"{step} needs {missing} to run first", remedy=f"run {missing}")
        inputs = self.inputs_of(step)
        number = 1 + sum(1 for artifact in self.history if artifact.step == step)
        artifact = Artifact(f"{step} #{number}", step, inputs=inputs, settings=self._settings(step))
        start = time.perf_counter()
        try:
            artifact.value = self._step_function(step)(*(self.artifact(label).value for label in inputs))
        except WorkbenchError as error:
            artifact.error = error
        artifact.seconds = time.perf_counter() - start
        self.history.append(artifact)
        self.current[step] = artifact
        return artifact

    def run_all(self) -> list[Artifact]:
        """Run every enabled step that is not done, in order; stop at the first failure."""
        ran = []
        for step in STEPS:
            if self.status(step) in ("done", "skipped"):
                continue
            artifact = self.run(step)
            ran.append(artifact)
            if not artifact.ok:
                break
        return ran

    def comparable(self) -> list[Artifact]:
        """Every kept model or written files, oldest first."""
        return [artifact for artifact in self.history if artifact.comparable]

    def artifact(self, label: str) -> Artifact:
        for artifact in self.history:
            if artifact.label == label:
                return artifact
        raise InputError(
            f"no artifact {label!r}",
            expected=", ".join(a.label for a in self.history) or "a step to have run",
            found=label,
        )

    def compare(self, reference: str, candidate: str, *, per_layer: bool = True) -> Comparison:
        """Compare two kept artifacts (by label), layer by layer by default."""
        return compare(self.artifact(reference).value, self.artifact(candidate).value, per_layer=per_layer)

    def _settings(self, step: str) -> tuple:
        return (self.target, tuple(sorted(self.options.items()))) if step in TARGET_STEPS else ()

    def _step_function(self, step: str) -> Callable[..., Any]:
        """The step as a function of the artifacts it reads (``inputs_of``)."""
        if step == "load":
            return lambda: load(*self.source, input_shape=self.input_shape)
        if step == "simplify":
            return simplify
        if step == "fold_bn":
            return fold_bn
        if step == "check":
            return lambda model: check(model, self.target, **self.options)
        if step == "write":
            return lambda model: write(model, self.outdir, self.target, **self.options)
        # the source as loaded against the written files, layer by layer
        return lambda source, written: compare(source, written, per_layer=True)
