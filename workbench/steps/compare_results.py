"""What ``compare`` returns: each compared pair with its error statistics, the first
divergence with its likely cause, and the whole comparison (JSON report, HTML, plot).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compare_stats import Cause, ErrorStats
from .plots import LayerErrors, plot_layer_errors


def _layer_names(pair: PairComparison) -> str:
    """The source layers a pair stands for, as the user knows them (module paths,
    layer names), else the reference's output name."""
    return ", ".join(pair.layers) or pair.source


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True, kw_only=True)
class PairComparison:
    """One aligned pair: a reference output and the candidate output it is compared with."""

    source: str
    target: str
    stats: ErrorStats
    ok: bool
    layers: tuple[str, ...] = ()  # the source layers (provenance) this pair stands for

    @property
    def label(self) -> str:
        """The source layers, with the output names when they say something else."""
        names = self.source if self.target == self.source else f"{self.source} → {self.target}"
        if not self.layers or self.layers == (self.source,):
            return names
        return f"{', '.join(self.layers)} ({names})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "max_abs": _finite(self.stats.max_abs),
            "mean_abs": _finite(self.stats.mean_abs),
            "max_rel": _finite(self.stats.max_rel),
            "cosine": self.stats.cosine,
        }


@dataclass(frozen=True, kw_only=True)
class Divergence:
    """The first layer whose error jumps past tolerance, and the likely cause."""

    pair: PairComparison
    previous: PairComparison | None
    cause: Cause | None

    @property
    def source(self) -> str:
        return self.pair.source

    @property
    def target(self) -> str:
        return self.pair.target

    @property
    def explanation(self) -> str:
        stats = self.pair.stats
        if not stats.shapes_match:
            where = f"shape {list(stats.shape_a)} in the reference, {list(stats.shape_b)} in the candidate"
        else:
            before = f" (the previous layer agreed to {self.previous.stats.max_abs:.2g})" if self.previous else ""
            where = f"max abs error {stats.max_abs:.3g}{before}"
        text = f"layer {self.pair.label} diverges: {where}."
        if self.cause is None:
            return f"{text} No known pitfall fits; inspect this layer's attributes and weights."
        return f"{text} Likely cause: {self.cause.explanation}."

    def __repr__(self) -> str:
        return f"<Divergence {self.explanation}>"

    def _repr_html_(self) -> str:
        return f"<p><b>First divergence:</b> {html.escape(self.explanation)}</p>"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **self.pair.to_dict(),
            "layers": list(self.pair.layers),
            "shape_reference": list(self.pair.stats.shape_a),
            "shape_candidate": list(self.pair.stats.shape_b),
            "cause": self.cause.kind if self.cause else None,
            "explanation": self.explanation,
            "previous": self.previous.to_dict() if self.previous else None,
        }
        if self.cause:
            data["cause_details"] = {k: v for k, v in self.cause.to_dict().items() if k not in ("kind", "explanation")}
        return data


@dataclass(kw_only=True)
class Comparison:
    reference: str
    candidate: str
    atol: float
    rtol: float
    outputs: list[PairComparison] = field(default_factory=list)
    layers: list[PairComparison] = field(default_factory=list)
    first_divergence: Divergence | None = None
    unmatched_reference: list[str] = field(default_factory=list)
    unmatched_candidate: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def outputs_ok(self) -> bool:
        """Every final output within tolerance."""
        return bool(self.outputs) and all(pair.ok for pair in self.outputs)

    @property
    def failing_layers(self) -> list[PairComparison]:
        return [pair for pair in self.layers if not pair.ok]

    @property
    def layers_ok(self) -> bool:
        """Every compared layer within tolerance (True when no layer was compared)."""
        return not self.failing_layers

    @property
    def ok(self) -> bool:
        """Nothing beyond tolerance: the final outputs, and every layer when layers were
        compared (a final Softmax can hide a broken layer: its outputs still pass)."""
        return self.outputs_ok and self.layers_ok

    @property
    def verdict(self) -> str:
        """``outputs match``, ``outputs DIFFER``, or ``layers differ`` (outputs within
        tolerance, some layer beyond it)."""
        if not self.outputs_ok:
            return "outputs DIFFER"
        return "outputs match" if self.layers_ok else "layers differ"

    def summary(self) -> str:
        """The verdict with what it rests on, e.g. ``layers differ: outputs match, but 104
        of 228 layers are beyond tolerance``."""
        failing, compared = len(self.failing_layers), len(self.layers)
        if not compared:
            return self.verdict
        if not self.outputs_ok:
            return f"{self.verdict}, {failing} of {compared} layers beyond tolerance"
        if failing:
            return f"{self.verdict}: outputs match, but {failing} of {compared} layers are beyond tolerance"
        return f"{self.verdict}, all {compared} layers within tolerance"

    def to_report(self) -> dict[str, Any]:
        """The ``workbench compare --report`` JSON."""
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "outputs_ok": self.outputs_ok,
            "layers_ok": self.layers_ok,
            "outputs": [
                {**pair.to_dict(), "ok": pair.ok, "needed_atol": pair.stats.needed_atol(self.rtol)}
                for pair in self.outputs
            ],
            "layers": [pair.to_dict() for pair in self.layers],
            "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_report(), indent=2))

    def layer_errors(self) -> LayerErrors:
        """The per-layer errors as plain numbers, for ``plots.plot_layer_errors``."""
        divergence = self.first_divergence
        index = next((i for i, p in enumerate(self.layers) if divergence and p is divergence.pair), None)
        cause = f" ({divergence.cause.kind})" if divergence and divergence.cause else ""
        return LayerErrors(
            max_abs=[p.stats.max_abs for p in self.layers],
            mean_abs=[p.stats.mean_abs for p in self.layers],
            allowed=[self.atol + self.rtol * p.stats.reference_max for p in self.layers],
            shape_mismatch=[i for i, p in enumerate(self.layers) if not p.stats.shapes_match],
            divergence=index,
            divergence_label=f"first divergence: {_layer_names(divergence.pair)}{cause}" if divergence else "",
            title=f"{self.reference} vs {self.candidate}",
        )

    def plot(self, path: str | Path | None = None) -> Any:
        """Error per layer along depth (log scale), divergence marked; a matplotlib Figure."""
        return plot_layer_errors(self.layer_errors(), path)

    def __repr__(self) -> str:
        lines = [
            f"<Comparison {self.reference} vs {self.candidate}: {self.summary()} (atol {self.atol:g}, rtol {self.rtol:g})"
        ]
        lines += [f"  output {p.source} / {p.target}: max abs {p.stats.max_abs:.3g}" for p in self.outputs]
        if self.first_divergence:
            lines.append(f"  {self.first_divergence.explanation}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        def rows(pairs: Sequence[PairComparison]) -> str:
            return "".join(
                f"<tr style='{'' if p.ok else 'color:#b00'}'><td>{html.escape(', '.join(p.layers))}</td>"
                f"<td>{html.escape(p.source)}</td><td>{html.escape(p.target)}</td><td>{p.stats.max_abs:.3g}</td><td>{p.stats.mean_abs:.3g}</td>"
                f"<td>{p.stats.max_rel:.3g}</td><td>{p.stats.cosine:.6f}</td></tr>"
                for p in pairs
            )

        head = "<tr><th>source layers</th><th>reference</th><th>candidate</th><th>max abs</th><th>mean abs</th><th>max rel</th><th>cosine</th></tr>"
        colour = "#070" if self.ok else "#b00"
        divergence = (
            f"<p><b>First divergence:</b> {html.escape(self.first_divergence.explanation)}</p>"
            if self.first_divergence
            else ""
        )
        figure = ""
        if self.layers:
            buffer = io.BytesIO()
            self.plot().savefig(buffer, format="png", dpi=80)
            figure = f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
        layers = (
            f"<details><summary>{len(self.layers)} layers</summary><table>{head}{rows(self.layers)}</table></details>"
            if self.layers
            else ""
        )
        return (
            f"<div><b>{html.escape(self.reference)} vs {html.escape(self.candidate)}</b>: "
            f"<span style='color:{colour}'>{html.escape(self.summary())}</span> "
            f"<small>(atol {self.atol:g}, rtol {self.rtol:g}, {self.seconds:.2f} s)</small>"
            f"<table>{head}{rows(self.outputs)}</table>{divergence}{figure}{layers}</div>"
        )


__all__ = ["Comparison", "Divergence", "PairComparison"]
