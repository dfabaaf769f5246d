"""What a step did: a small record every step function returns with its result.

A ``StepReport`` renders as an HTML card in Jupyter and as a dict in JSON reports
(``workbench convert --report``).
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class StepReport:
    step: str
    summary: str = ""
    changes: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"{self.step}: {self.summary} ({self.seconds:.2f} s)"]
        lines += [f"  - {change}" for change in self.changes]
        lines += [f"  ! {warning}" for warning in self.warnings]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        def items(values: list[str], css: str) -> str:
            return "".join(f"<li style='{css}'>{html.escape(v)}</li>" for v in values)

        counts = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in self.counts.items()
        )
        return (
            "<div style='border:1px solid #ccc;padding:6px;margin:4px 0'>"
            f"<b>{html.escape(self.step)}</b> — {html.escape(self.summary)} "
            f"<small>({self.seconds:.2f} s)</small>"
            f"<ul>{items(self.changes, '')}{items(self.warnings, 'color:#b35900')}</ul>"
            + (f"<table>{counts}</table>" if counts else "")
            + "</div>"
        )


@contextmanager
def timed(report: StepReport) -> Iterator[StepReport]:
    """Fill ``report.seconds`` with the wall time of the block."""
    start = time.perf_counter()
    try:
        yield report
    finally:
        report.seconds = time.perf_counter() - start
