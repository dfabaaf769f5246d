"""One error hierarchy for the workbench.

Every error a user can cause (bad files, unsupported ops, wrong arguments) is a
``WorkbenchError`` whose message says what was expected, what was found and what
to do. The CLI turns these into exit status 2 without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class WorkbenchError(Exception):
    """A problem with the user's input or request, explained for the user."""

    def __init__(
        self,
        what: str,
        *,
        expected: str | None = None,
        found: str | None = None,
        remedy: str | None = None,
    ) -> None:
        self.what = what
        self.expected = expected
        self.found = found
        self.remedy = remedy
        parts = [what]
        if expected:
            parts.append(f"expected: {expected}")
        if found:
            parts.append(f"found: {found}")
        if remedy:
            parts.append(f"what to do: {remedy}")
        super().__init__("\n  ".join(parts))


class InputError(WorkbenchError):
    """A source file, path or argument that cannot be used as given."""


@dataclass(frozen=True)
class Problem:
    """One unsupported op or pitfall found in a model, with a remedy."""

    severity: str  # "error" blocks writing; "warning" is reported and written around
    kind: str  # short machine-readable tag, e.g. "unsupported-op", "pooling-ceil"
    node: str  # graph node name ("" for model-wide problems)
    op_type: str
    message: str
    remedy: str = ""
    source: tuple[str, ...] = ()  # provenance of the node

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "kind": self.kind,
            "node": self.node,
            "op_type": self.op_type,
            "message": self.message,
            "remedy": self.remedy,
            "source": list(self.source),
        }

    def __str__(self) -> str:
        where = f"{self.node} ({self.op_type})" if self.node else self.op_type or "model"
        text = f"[{self.severity}] {where}: {self.message}"
        return f"{text} Remedy: {self.remedy}" if self.remedy else text


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Errors first, then by op type, node and kind: the order every report lists them in."""
    return sorted(problems, key=lambda p: (p.severity != "error", p.op_type, p.node, p.kind))


def errors_of(problems: Iterable[Problem]) -> list[Problem]:
    """The problems that block a conversion (severity "error")."""
    return [p for p in problems if p.severity == "error"]


class UnsupportedError(WorkbenchError):
    """Raised once with every blocking problem of a model for a target, sorted."""

    def __init__(self, target: str, problems: Iterable[Problem]) -> None:
        self.target = target
        self.problems = sorted(problems, key=lambda p: (p.op_type, p.node, p.kind))
        ops = sorted({p.op_type for p in self.problems})
        listing = "\n    ".join(str(p) for p in self.problems)
        super().__init__(
            f"{len(self.problems)} problem(s) prevent writing {target}: ops {', '.join(ops)}",
            found=f"\n    {listing}",
            remedy="apply the remedies listed, or run `workbench check` for the full report",
        )


class UnsupportedLayersError(UnsupportedError):
    """Raised once by a reader with every source layer it cannot convert, sorted by type and name."""

    def __init__(self, source_format: str, problems: Iterable[Problem], *, remedy: str) -> None:
        self.target = f"the workbench graph ({source_format} reader)"
        self.problems = sorted(problems, key=lambda p: (p.op_type, p.node, p.kind))
        types = sorted({p.op_type for p in self.problems})
        listing = "\n    ".join(
            f"{p.node} ({p.op_type}): {p.message}" + (f". Remedy: {p.remedy}" if p.remedy else "")
            for p in self.problems
        )
        WorkbenchError.__init__(
            self,
            f"{len(self.problems)} {source_format} layer(s) cannot be converted: types {', '.join(types)}",
            found=f"\n    {listing}",
            remedy=remedy,
        )
