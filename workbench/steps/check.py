"""``check``: every unsupported op and pitfall of a model for a target, at once.

The target's writer knows what it cannot write (``find_problems``); ``check``
asks it, adds pitfalls that hurt any conversion (input shapes fixed only at run
time, shape arithmetic left in the graph, nodes whose source is unknown), and
returns one ``CheckReport`` listing them all, sorted, with a remedy each. An
error blocks writing; a warning is written around and reported.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem, UnsupportedError, errors_of, sort_problems
from ..graph import Model, StepReport, provenance
from ..graph.report import timed
from ..writers import call_with_options, writer_module

SHAPE_OPS = ("Shape", "Size")


@dataclass
class CheckReport:
    """The problems of one model for one target."""

    target: str
    model_name: str
    problems: list[Problem]
    report: StepReport = field(default_factory=lambda: StepReport("check"))

    @property
    def errors(self) -> list[Problem]:
        return errors_of(self.problems)

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        """True when nothing blocks writing the target."""
        return not self.errors

    def counts(self) -> dict[str, int]:
        """How many problems of each kind."""
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def raise_for_errors(self) -> None:
        """Raise one UnsupportedError listing every error, if there is any."""
        if self.errors:
            raise UnsupportedError(self.target, self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "model": self.model_name,
            "ok": self.ok,
            "counts": self.counts(),
            "problems": [p.to_dict() for p in self.problems],
        }

    def __str__(self) -> str:
        verdict = "ok" if self.ok else f"{len(self.errors)} error(s) block writing"
        head = f"check {self.model_name} for {self.target}: {verdict}, {len(self.warnings)} warning(s)"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])

    def _repr_html_(self) -> str:
        colour = {"error": "#b00020", "warning": "#b35900"}
        rows = "".join(
            f"<tr style='color:{colour.get(p.severity, 'inherit')}'>"
            f"<td>{html.escape(p.severity)}</td><td>{html.escape(p.node)}</td>"
            f"<td>{html.escape(p.op_type)}</td><td>{html.escape(', '.join(p.source))}</td>"
            f"<td>{html.escape(p.message)}</td><td>{html.escape(p.remedy)}</td></tr>"
            for p in self.problems
        )
        verdict = "ready to write" if self.ok else f"{len(self.errors)} error(s) block writing"
        counts = ", ".join(f"{kind}: {n}" for kind, n in self.counts().items()) or "no problems"
        table = (
            "<table><tr><th>severity</th><th>node</th><th>op</th><th>source layers</th>"
            f"<th>message</th><th>remedy</th></tr>{rows}</table>"
            if rows
            else ""
        )
        return (
            f"<div><b>check {html.escape(self.model_name)} → {html.escape(self.target)}</b>: "
            f"{html.escape(verdict)} <small>({html.escape(counts)})</small>{table}</div>"
        )


def general_pitfalls(model: Model) -> list[Problem]:
    """Pitfalls that hurt a conversion to any target."""
    problems = []
    for value in model.graph.inputs:
        dims = tuple(value.shape) if value.shape is not None else None
        if dims is None or not all(isinstance(d, int) for d in dims):
            problems.append(
                Problem(
                    "warning",
                    "dynamic-input-shape",
                    "",
                    "",
                    f"input {value.name} has no fixed shape ({list(dims) if dims is not None else 'unknown'})",
                    "give a fixed input shape (--input-shape 1,3,224,224) so shapes can be folded and verified",
                )
            )
    shape_nodes = [node for node in model.graph if node.op_type in SHAPE_OPS]
    if shape_nodes:
        problems.append(
            Problem(
                "warning",
                "shape-arithmetic",
                shape_nodes[0].name or "",
                shape_nodes[0].op_type,
                f"{len(shape_nodes)} node(s) compute shapes at run time (e.g. x.view(x.size(0), -1))",
                "simplify the model (the default of `workbench convert`) to fold them into constants",
                provenance.sources(shape_nodes[0]),
            )
        )
    untraced = [node for node in model.graph if not provenance.sources(node)]
    if untraced:
        problems.append(
            Problem(
                "warning",
                "no-provenance",
                untraced[0].name or "",
                untraced[0].op_type,
                f"{len(untraced)} node(s) have no source layer, so per-layer comparison cannot map them",
                "read the model with workbench.load so every node gets its source layer",
            )
        )
    return problems


def check(model: Model, target: str, **options: Any) -> CheckReport:
    """Everything that blocks or bends writing ``model`` as ``target``.

    ``options`` go to the target's ``find_problems`` (e.g. ``dialect="opencv"``
    for Caffe).
    """
    report = StepReport("check")
    with timed(report):
        writer = writer_module(target)
        found = call_with_options(writer.find_problems, target, model, **options)
        problems = sort_problems([*found, *general_pitfalls(model)])
        result = CheckReport(target, model.name, problems, report)
    report.summary = f"{target}: {len(result.errors)} error(s), {len(result.warnings)} warning(s)" + (
        "" if result.ok else f" in ops {', '.join(sorted({p.op_type for p in result.errors}))}"
    )
    report.counts = result.counts()
    report.warnings = [str(p) for p in result.warnings]
    return result
