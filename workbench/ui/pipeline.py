"""The conversion chain load → simplify → fold_bn → check → write → compare, run step
by step for one source and one target, keeping every artifact.

This is the logic behind the pipeline stepper panel, with no widgets, so scripts
and tests can drive it. Each step takes the latest model of the steps before it;
re-running a step keeps its earlier artifacts (any two models can still be
compared) and marks the steps after it stale, since they were computed from the
artifact it replaced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import InputError, WorkbenchError
from ..graph import Model, StepReport
from ..readers import load
from ..steps.check import check
from ..steps.compare import Comparison, compare
from ..steps.fold_bn import fold_bn
from ..steps.simplify import simplify
from ..writers import write

STEPS = ("load", "simplify", "fold_bn", "check", "write", "compare")
OPTIONAL_STEPS = ("simplify", "fold_bn")
MODEL_STEPS = ("load", "simplify", "fold_bn")


@dataclass
class Artifact:
    """What one run of a step produced (or the error that stopped it)."""

    label: str  # "simplify #2": step name and run number, unique in a pipeline
    step: str
    value: Any = None  # Model, check report, WrittenFiles or Comparison
    error: WorkbenchError | None = None
    seconds: float = 0.0
    made_from: str | None = None  # label of the artifact this step read

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
    stale: set[str] = field(default_factory=set)

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
        return "stale" if step in self.stale else "done"

    def model_before(self, step: str) -> Artifact | None:
        """The artifact of the nearest earlier model step that ran, if any."""
        for earlier in reversed(STEPS[: STEPS.index(step)]):
            if earlier in MODEL_STEPS and self.status(earlier) in ("done", "stale"):
                return self.current[earlier]
        return None

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
        made_from = self.model_before(step) if step != "load" else None
        number = 1 + sum(1 for artifact in self.history if artifact.step == step)
        artifact = Artifact(f"{step} #{number}", step, made_from=made_from.label if made_from else None)
        start = time.perf_counter()
        try:
            artifact.value = self._step_function(step)(made_from.value if made_from else None)
        except WorkbenchError as error:
            artifact.error = error
        artifact.seconds = time.perf_counter() - start
        self.history.append(artifact)
        self.current[step] = artifact
        self.stale.discard(step)
        self.stale.update(later for later in STEPS[STEPS.index(step) + 1 :] if later in self.current)
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

    def _step_function(self, step: str) -> Callable[[Any], Any]:
        """The step as a function of the model before it."""
        if step == "load":
            return lambda _: load(*self.source, input_shape=self.input_shape)
        if step == "simplify":
            return simplify
        if step == "fold_bn":
            return fold_bn
        if step == "check":
            return lambda model: check(model, self.target, **self.options)
        if step == "write":
            return lambda model: write(model, self.outdir, self.target, **self.options)
        written = self.current["write"].value
        return lambda model: compare(model, written, per_layer=True)
