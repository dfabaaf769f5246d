"""ipywidgets panels for notebooks: a pipeline stepper, a name-map editor and a
comparison explorer.

What each panel shows is computed by plain functions (here and in
``pipeline.py``) that run without a browser: the rows of the tables, the status of
each step, which layer diverges first. The widget classes only lay those out and
call them when a button is clicked.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import ipywidgets as widgets

from ..graph import Model, provenance
from .pipeline import STEPS, Artifact, Pipeline

BUTTON_STYLES = {"pending": "", "skipped": "", "done": "success", "stale": "warning", "failed": "danger"}
DIVERGENCE_STYLE = "background:#ffd7d7;font-weight:bold"


def rich_html(value: Any) -> str:
    """A value as Jupyter would render it: its ``_repr_html_``, else its repr."""
    render = getattr(value, "_repr_html_", None)
    if callable(render):
        return render()
    return f"<pre>{html.escape(repr(value))}</pre>"


def artifact_html(artifact: Artifact) -> str:
    """One step's output: what it was made from, how long it took, its result or error."""
    made_from = f" from {html.escape(artifact.made_from)}" if artifact.made_from else ""
    header = f"<div><b>{html.escape(artifact.label)}</b>{made_from} <small>({artifact.seconds:.2f} s)</small></div>"
    if artifact.error is not None:
        return header + f"<pre style='color:#b00020;white-space:pre-wrap'>{html.escape(str(artifact.error))}</pre>"
    return header + rich_html(artifact.value)


def step_title(pipeline: Pipeline, step: str) -> str:
    """The accordion title of a step: its name, status and the artifact it shows."""
    artifact = pipeline.current.get(step)
    status = pipeline.status(step)
    if artifact is None or status == "skipped":
        return f"{step}: {status}"
    return f"{step}: {status} ({artifact.label}, {artifact.seconds:.2f} s)"


class PipelineStepper(widgets.VBox):
    """Buttons for load → simplify → fold_bn → check → write → compare, each step's
    report below, and a comparison of any two kept artifacts."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.step_buttons = {step: widgets.Button(description=step) for step in STEPS}
        for step, button in self.step_buttons.items():
            button.on_click(lambda _, step=step: self.run(step))
        self.run_all_button = widgets.Button(description="run all", icon="forward")
        self.run_all_button.on_click(lambda _: self.run_all())
        self.switches = {
            step: widgets.Checkbox(value=enabled, description=step, indent=False)
            for step, enabled in pipeline.enabled.items()
        }
        for step, switch in self.switches.items():
            switch.observe(lambda change, step=step: self._switch(step, change["new"]), names="value")
        self.step_views = {step: widgets.HTML() for step in STEPS}
        self.steps_view = widgets.Accordion(children=[self.step_views[step] for step in STEPS])
        self.reference_choice = widgets.Dropdown(description="reference")
        self.candidate_choice = widgets.Dropdown(description="candidate")
        self.compare_button = widgets.Button(description="compare")
        self.compare_button.on_click(lambda _: self.compare_chosen())
        self.comparison_view = widgets.HTML()
        source = " ".join(str(s) for s in pipeline.source)
        title = widgets.HTML(
            f"<b>{html.escape(source)}</b> → <b>{html.escape(pipeline.target)}</b> "
            f"<small>into {html.escape(str(pipeline.outdir))}</small>"
        )
        super().__init__(
            [
                title,
                widgets.HBox([widgets.Label("steps on:"), *self.switches.values()]),
                widgets.HBox([*self.step_buttons.values(), self.run_all_button]),
                self.steps_view,
                widgets.HBox([self.reference_choice, self.candidate_choice, self.compare_button]),
                self.comparison_view,
            ]
        )
        self.refresh()

    def run(self, step: str) -> Artifact:
        artifact = self.pipeline.run(step)
        self.refresh(opened=step)
        return artifact

    def run_all(self) -> list[Artifact]:
        ran = self.pipeline.run_all()
        self.refresh(opened=ran[-1].step if ran else None)
        return ran

    def compare_chosen(self) -> Any:
        """Compare the two artifacts chosen in the dropdowns and show the result."""
        reference, candidate = self.reference_choice.value, self.candidate_choice.value
        if not reference or not candidate:
            self.comparison_view.value = "<i>run at least one step that makes a model first</i>"
            return None
        comparison = self.pipeline.compare(reference, candidate)
        self.comparison_view.value = (
            f"<b>{html.escape(candidate)}</b> against <b>{html.escape(reference)}</b>" + rich_html(comparison)
        )
        return comparison

    def _switch(self, step: str, enabled: bool) -> None:
        self.pipeline.enabled[step] = enabled
        self.refresh()

    def refresh(self, opened: str | None = None) -> None:
        """Bring every widget in line with the pipeline's state."""
        pipeline = self.pipeline
        for index, step in enumerate(STEPS):
            status = pipeline.status(step)
            button = self.step_buttons[step]
            button.button_style = BUTTON_STYLES[status]
            button.disabled = status == "skipped" or pipeline.missing_before(step) is not None
            button.tooltip = step_title(pipeline, step)
            artifact = pipeline.current.get(step)
            self.step_views[step].value = artifact_html(artifact) if artifact else ""
            self.steps_view.set_title(index, step_title(pipeline, step))
        if opened is not None:
            self.steps_view.selected_index = STEPS.index(opened)
        labels = [artifact.label for artifact in pipeline.comparable()]
        if list(self.candidate_choice.options) != labels:
            # keep the chosen reference; the candidate follows the newest artifact
            reference = self.reference_choice.value if self.reference_choice.value in labels else None
            self.reference_choice.options = labels
            self.candidate_choice.options = labels
            self.reference_choice.value = reference or (labels[0] if labels else None)
            self.candidate_choice.value = labels[-1] if labels else None


def pipeline_stepper(
    *source: str | Path,
    target: str,
    outdir: str | Path,
    input_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> PipelineStepper:
    """A stepper panel for converting ``source`` to ``target`` into ``outdir``;
    ``options`` go to check and write (e.g. ``dialect="bvlc"``)."""
    return PipelineStepper(Pipeline(source, target, outdir, input_shape=input_shape, options=options))


@dataclass(frozen=True)
class LayerRow:
    """One compared layer, in graph order."""

    position: int  # index of the layer's first node in the reference graph; -1 if unknown
    source: str
    target: str
    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    first_divergence: bool


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def graph_positions(model: Model) -> dict[str, int]:
    """Graph index of the first node carrying each source layer name, node name or
    output value name: the topological position of what a comparison row names."""
    positions: dict[str, int] = {}
    for index, node in enumerate(model.graph):
        for name in (*provenance.sources(node), node.name, *(o.name for o in node.outputs)):
            if name:
                positions.setdefault(name, index)
    return positions


def layer_rows(report: Mapping[str, Any], positions: Mapping[str, int] | None = None) -> list[LayerRow]:
    """The rows of a comparison report (``Comparison.to_report()``), in topological
    order when ``positions`` (from ``graph_positions``) are given, else as reported;
    the first divergence flagged. A row naming several layers (a fused layer) sits
    at the latest of them, where its output is."""
    divergence = report.get("first_divergence") or {}
    diverging = (_names(divergence.get("source")), _names(divergence.get("target")))
    rows = []
    for layer in report.get("layers", []):
        names = [*_names(layer.get("source")), *_names(layer.get("target"))]
        known = [positions[n] for n in names if positions and n in positions]
        rows.append(
            LayerRow(
                position=max(known) if known else -1,
                source=", ".join(_names(layer.get("source"))),
                target=", ".join(_names(layer.get("target"))),
                max_abs=float(layer["max_abs"]),
                mean_abs=float(layer["mean_abs"]),
                max_rel=float(layer["max_rel"]),
                cosine=float(layer["cosine"]),
                first_divergence=bool(divergence)
                and (_names(layer.get("source")), _names(layer.get("target"))) == diverging,
            )
        )
    if positions:
        # unknown positions go last; sorted() is stable, so ties keep the reported order
        rows = sorted(rows, key=lambda row: row.position if row.position >= 0 else len(positions))
    return rows


def first_divergence_index(rows: Sequence[LayerRow]) -> int | None:
    return next((index for index, row in enumerate(rows) if row.first_divergence), None)


def layer_table_html(rows: Sequence[LayerRow]) -> str:
    """The per-layer table, the first divergence highlighted."""
    body = "".join(
        f"<tr style='{DIVERGENCE_STYLE if row.first_divergence else ''}'>"
        f"<td>{index}</td><td>{html.escape(row.source)}</td><td>{html.escape(row.target)}</td>"
        f"<td>{row.max_abs:.3g}</td><td>{row.mean_abs:.3g}</td><td>{row.max_rel:.3g}</td>"
        f"<td>{row.cosine:.6f}</td></tr>"
        for index, row in enumerate(rows)
    )
    return (
        "<table><tr><th>#</th><th>source</th><th>target</th><th>max abs</th><th>mean abs</th>"
        f"<th>max rel</th><th>cosine</th></tr>{body}</table>"
    )
