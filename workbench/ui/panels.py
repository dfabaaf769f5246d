"""ipywidgets panels for notebooks: a pipeline stepper, a name-map editor and a
comparison explorer.

What each panel shows is computed by plain functions that run without a browser:
the rows of the tables, which layer diverges first, and for the pipeline stepper
the conversion chain itself (``workbench.chain.Chain``: its steps, runs, statuses
and why a step is stale; the stepper has no step logic of its own). The widget
classes only lay those out and call them when a button is clicked.

Every panel also leaves a static snapshot of its last state in the notebook. A
widget lives only as long as its kernel: an untrusted notebook does not render
widgets, an HTML export has no widget state, and a widget whose kernel is gone
shows an error. So a panel displays one output that holds both the widget view and
the snapshot as HTML (``text/html``); whatever cannot render the widget renders the
snapshot. After each action the panel replaces that output's data
(``update_display``), so the saved notebook keeps the state the user last saw.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from IPython.display import DisplayHandle, display
from matplotlib.figure import Figure

from ..chain import STEPS, Chain, StepRun
from ..errors import InputError, WorkbenchError
from ..graph import Model, provenance
from ..readers.input_shapes import InputShapes
from ..steps.compare import Comparison, layer_tensors
from ..steps.map_names import AMBIGUOUS, CORRECTED, UNMATCHED, NameEntry, NameMap, source_layers
from ..steps.plots import plot_difference, plot_layer_errors

BUTTON_STYLES = {"pending": "", "skipped": "", "done": "success", "stale": "warning", "failed": "danger"}
STATUS_TEXT_COLOURS = {"done": "#070", "stale": "#b35900", "failed": "#b00", "pending": "#777", "skipped": "#777"}
DIVERGENCE_STYLE = "background:#ffd7d7;font-weight:bold"
STATUS_COLOURS = {UNMATCHED: "#b00", AMBIGUOUS: "#b35900", CORRECTED: "#06c"}
EDITABLE_KINDS = ("layer", "parameter")  # a layer's blobs follow it (NameMap.set)
MAX_EDITOR_ROWS = 300  # one row is five widgets; more than this slows the browser
SNAPSHOT_NOTE = "snapshot of the panel as last shown; interactive while its kernel runs"


def rich_html(value: Any) -> str:
    """A value as Jupyter would render it: its ``_repr_html_``, else its repr."""
    render = getattr(value, "_repr_html_", None)
    if callable(render):
        return render()
    return f"<pre>{html.escape(repr(value))}</pre>"


def error_html(error: WorkbenchError) -> str:
    return f"<pre style='color:#b00020;white-space:pre-wrap'>{html.escape(str(error))}</pre>"


def figure_html(figure: Figure) -> str:
    """A figure as an ``<img>`` that HTML sanitizers keep (a data URI, no script)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"<img src='data:image/png;base64,{encoded}' style='max-width:100%;height:auto'>"


class SnapshotPanel:
    """A widget displayed together with an HTML snapshot of its state (see the module
    docstring). Subclasses are ipywidgets and define ``snapshot_html`` and ``summary``."""

    _display: DisplayHandle | None = None
    _listeners: list[Callable[[], None]]

    def snapshot_html(self) -> str:
        raise NotImplementedError

    def summary(self) -> str:
        """One line for text-only renderers."""
        raise NotImplementedError

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after the panel changes (a panel showing this one refreshes its snapshot)."""
        self._listeners.append(listener)

    def mimebundle(self) -> dict[str, Any]:
        data = widgets.Widget._repr_mimebundle_(self)
        data["text/plain"] = self.summary()
        data["text/html"] = (
            f"<div class='workbench-snapshot'><small style='color:#777'>{SNAPSHOT_NOTE}</small>"
            f"{self.snapshot_html()}</div>"
        )
        return data

    def _ipython_display_(self) -> None:
        self._display = display(self.mimebundle(), raw=True, display_id=True)

    def publish(self) -> None:
        """Bring the displayed snapshot in line with the panel's state."""
        if self._display is not None:
            self._display.update(self.mimebundle(), raw=True)
        for listener in self._listeners:
            listener()


# ---------------------------------------------------------------- pipeline stepper


def artifact_html(run: StepRun) -> str:
    """One step's output: what it was made from, how long it took, its result or error."""
    made_from = f" from {html.escape(', '.join(run.inputs))}" if run.inputs else ""
    header = f"<div><b>{html.escape(run.label)}</b>{made_from} <small>({run.seconds:.2f} s)</small></div>"
    if run.error is not None:
        return header + error_html(run.error)
    return header + rich_html(run.value)


def artifact_summary(run: StepRun | None) -> str:
    """One line: the error, or the step's report summary (verify: the comparison's verdict)."""
    if run is None:
        return ""
    if run.error is not None:
        return run.error.what
    if isinstance(run.value, Comparison):
        return run.value.summary()
    return run.report.summary if run.report is not None else ""


def step_title(chain: Chain, step: str) -> str:
    """The accordion title of a step: its name, status and the artifact it shows."""
    run = chain.current.get(step)
    status = chain.status(step)
    if run is None or status == "skipped":
        return f"{step}: {status}"
    return f"{step}: {status} ({run.label}, {run.seconds:.2f} s)"


NO_WRAP = "white-space: nowrap"  # short cells stay on one line beside a long summary


def steps_table_html(chain: Chain) -> str:
    """Every step with its status, the artifact it shows, what that was made from and why it is stale."""
    rows = []
    for step in STEPS:
        status = chain.status(step)
        run = chain.current.get(step)
        note = chain.why_stale(step) if status == "stale" else artifact_summary(run)
        rows.append(
            f"<tr><td>{step}</td><td style='color:{STATUS_TEXT_COLOURS[status]}'>{status}</td>"
            f"<td style='{NO_WRAP}'>{html.escape(run.label) if run else ''}</td>"
            f"<td style='{NO_WRAP}'>{html.escape(', '.join(run.inputs)) if run else ''}</td>"
            f"<td style='{NO_WRAP}'>{f'{run.seconds:.2f} s' if run else ''}</td><td>{html.escape(note)}</td></tr>"
        )
    return (
        "<table><tr><th>step</th><th>status</th><th>artifact</th><th>made from</th><th>time</th>"
        f"<th>summary</th></tr>{''.join(rows)}</table>"
    )


class PipelineStepper(SnapshotPanel, widgets.VBox):
    """A ``Chain`` step by step: buttons for load → simplify → fold_bn → check → write
    → verify that run the chain's steps, switches for its optional steps and for
    verifying layer by layer, each run's report below, and a comparison of any two
    kept artifacts. Statuses, staleness and what each run was made from are the
    chain's own."""

    def __init__(self, chain: Chain) -> None:
        self._listeners = []
        self.chain = chain
        self.explorer: ComparisonExplorer | None = None
        self.step_buttons = {step: widgets.Button(description=step) for step in STEPS}
        for step, button in self.step_buttons.items():
            button.on_click(lambda _, step=step: self.run(step))
        self.run_all_button = widgets.Button(description="run all", icon="forward")
        self.run_all_button.on_click(lambda _: self.run_all())
        self.switches = {
            step: widgets.Checkbox(value=enabled, description=step, indent=False, layout=widgets.Layout(width="auto"))
            for step, enabled in chain.enabled.items()
        }
        for step, switch in self.switches.items():
            switch.observe(lambda change, step=step: self._switch(step, change["new"]), names="value")
        self.per_layer_switch = widgets.Checkbox(
            value=chain.per_layer,
            description="verify layer by layer",
            indent=False,
            layout=widgets.Layout(width="auto"),
        )
        self.per_layer_switch.observe(lambda change: self._verify_per_layer(change["new"]), names="value")
        self.step_views = {step: widgets.HTML() for step in STEPS}
        self.steps_view = widgets.Accordion(children=[self.step_views[step] for step in STEPS])
        self.reference_choice = widgets.Dropdown(description="reference")
        self.candidate_choice = widgets.Dropdown(description="candidate")
        self.compare_button = widgets.Button(description="compare")
        self.compare_button.on_click(lambda _: self.compare_chosen())
        self.comparison_view = widgets.VBox()
        super().__init__(
            [
                widgets.HTML(self.title_html()),
                widgets.HBox([widgets.Label("steps on:"), *self.switches.values(), self.per_layer_switch]),
                widgets.HBox([*self.step_buttons.values(), self.run_all_button]),
                self.steps_view,
                widgets.HBox([self.reference_choice, self.candidate_choice, self.compare_button]),
                self.comparison_view,
            ]
        )
        self.add_class("workbench-panel")
        self.refresh()

    def title_html(self) -> str:
        chain = self.chain
        source = " ".join(str(s) for s in chain.source)
        return (
            f"<b>{html.escape(source)}</b> → <b>{html.escape(chain.target)}</b> "
            f"<small>into {html.escape(str(chain.outdir))}</small>"
        )

    def run(self, step: str) -> StepRun:
        run = self.chain.run(step)
        self.refresh(opened=step)
        return run

    def run_all(self) -> list[StepRun]:
        ran = self.chain.run_all()
        self.refresh(opened=ran[-1].step if ran else None)
        return ran

    def compare_chosen(self) -> ComparisonExplorer | None:
        """Compare the two artifacts chosen in the dropdowns, layer by layer, and
        show the comparison explorer for them."""
        reference, candidate = self.reference_choice.value, self.candidate_choice.value
        self.explorer = None
        if not reference or not candidate:
            self.comparison_view.children = [widgets.HTML("<i>run a step that makes a model first</i>")]
        else:
            try:
                comparison = self.chain.compare(reference, candidate)
            except WorkbenchError as error:
                self.comparison_view.children = [widgets.HTML(error_html(error))]
            else:
                self.explorer = ComparisonExplorer(
                    comparison,
                    reference=self.chain.artifact(reference).value,
                    candidate=self.chain.artifact(candidate).value,
                )
                self.explorer.on_change(self.publish)
                self.comparison_view.children = [self.explorer]
        self.publish()
        return self.explorer

    def _switch(self, step: str, enabled: bool) -> None:
        self.chain.switch(step, enabled)
        self.refresh()

    def _verify_per_layer(self, per_layer: bool) -> None:
        self.chain.per_layer = per_layer
        self.refresh()

    def refresh(self, opened: str | None = None) -> None:
        """Bring every widget, and the snapshot, in line with the chain's state."""
        chain = self.chain
        for index, step in enumerate(STEPS):
            status = chain.status(step)
            stale = chain.why_stale(step)
            button = self.step_buttons[step]
            button.button_style = BUTTON_STYLES[status]
            button.disabled = status == "skipped" or chain.missing_before(step) is not None
            button.tooltip = stale or step_title(chain, step)
            run = chain.current.get(step)
            warning = f"<p style='color:#b35900'>stale: {html.escape(stale)}; run it again</p>" if stale else ""
            self.step_views[step].value = warning + artifact_html(run) if run else ""
            self.steps_view.set_title(index, step_title(chain, step))
        if opened is not None:
            self.steps_view.selected_index = STEPS.index(opened)
        labels = [run.label for run in chain.comparable()]
        if list(self.candidate_choice.options) != labels:
            # keep the chosen reference; the candidate follows the newest artifact
            reference = self.reference_choice.value if self.reference_choice.value in labels else None
            self.reference_choice.options = labels
            self.candidate_choice.options = labels
            self.reference_choice.value = reference or (labels[0] if labels else None)
            self.candidate_choice.value = labels[-1] if labels else None
        self.publish()

    def summary(self) -> str:
        states = ", ".join(f"{step} {self.chain.status(step)}" for step in STEPS)
        return f"<PipelineStepper {' '.join(map(str, self.chain.source))} → {self.chain.target}: {states}>"

    def snapshot_html(self) -> str:
        details = "".join(
            f"<details><summary>{html.escape(step_title(self.chain, step))}</summary>"
            f"{artifact_html(self.chain.current[step])}</details>"
            for step in STEPS
            if step in self.chain.current
        )
        compared = (
            f"<p><b>Compared</b> {html.escape(self.reference_choice.value or '')} with "
            f"{html.escape(self.candidate_choice.value or '')}:</p>{self.explorer.snapshot_html()}"
            if self.explorer is not None
            else ""
        )
        return f"<div>{self.title_html()}{steps_table_html(self.chain)}{details}{compared}</div>"


def pipeline_stepper(
    *source: str | Path,
    target: str,
    outdir: str | Path,
    input_shape: InputShapes | None = None,
    weights: str | Path | None = None,
    name: str | None = None,
    fold_bn: bool = True,
    per_layer: bool = True,
    **options: Any,
) -> PipelineStepper:
    """A stepper panel over a ``Chain`` converting ``source`` to ``target`` into
    ``outdir``; ``options`` go to check and write (e.g. ``dialect="bvlc"``).

    The stepper starts with fold_bn on and verify layer by layer, where
    ``workbench convert`` has both off: in the stepper both are one click from off,
    the folded model stays beside the unfolded one to compare, and a per-layer
    verdict says where a conversion parts from its source, not only that it does.
    ``PipelineStepper(Chain(...))`` takes any chain as it is."""
    chain = Chain(
        source,
        target,
        outdir,
        input_shape=input_shape,
        weights=weights,
        name=name,
        fold_bn=fold_bn,
        per_layer=per_layer,
        options=options,
    )
    return PipelineStepper(chain)


# ---------------------------------------------------------------- comparison explorer


@dataclass(frozen=True)
class LayerRow:
    """One compared layer of a comparison."""

    reported: int  # index in the comparison's layers (its own order)
    position: int  # topological position in the reference graph; -1 if unknown
    layers: str  # the source layers it stands for, as the user named them (module paths, layer names)
    source: str  # the reference runner's output name
    target: str  # the candidate runner's output name
    max_abs: float  # inf when the shapes differ
    mean_abs: float
    max_rel: float
    cosine: float
    first_divergence: bool

    @property
    def name(self) -> str:
        """What the user calls this layer: its source layers, else the output name."""
        return self.layers or self.source

    @property
    def label(self) -> str:
        return f"{self.name} (max abs {self.max_abs:.3g})"


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _statistic(value: Any) -> float:
    # the report writes a non-finite error (shapes that differ) as null
    return math.inf if value is None else float(value)


def graph_positions(model: Model) -> dict[str, int]:
    """Graph index of the first node carrying each source layer name, node name or
    output value name: the topological position of what a comparison row names."""
    positions: dict[str, int] = {}
    for index, node in enumerate(model.graph):
        for name in (*provenance.sources(node), node.name, *(o.name for o in node.outputs)):
            if name:
                positions.setdefault(name, index)
    return positions


def _report_layers(comparison: Comparison | Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The layers (with their source layers) and the first divergence, from a
    ``Comparison`` or from its saved report (``compare --report`` JSON)."""
    if isinstance(comparison, Comparison):
        report = comparison.to_report()
        layers = [{**row, "layers": list(pair.layers)} for row, pair in zip(report["layers"], comparison.layers)]
        return layers, report.get("first_divergence") or {}
    return list(comparison.get("layers", [])), comparison.get("first_divergence") or {}


def layer_rows(
    comparison: Comparison | Mapping[str, Any], positions: Mapping[str, int] | None = None
) -> list[LayerRow]:
    """The rows of a comparison (a ``Comparison``, or a saved report) in topological
    order when ``positions`` (from ``graph_positions``) are given, else as compared;
    the first divergence flagged. A row naming several layers (a fused layer) sits at
    the latest of them, where its output is."""
    layers, divergence = _report_layers(comparison)
    diverging = (_names(divergence.get("source")), _names(divergence.get("target")))
    flagged = False
    rows = []
    for reported, layer in enumerate(layers):
        names = (_names(layer.get("source")), _names(layer.get("target")))
        sources = _names(layer.get("layers"))
        known = [positions[n] for n in (*sources, *names[0], *names[1]) if positions and n in positions]
        is_divergence = bool(divergence) and not flagged and names == diverging
        flagged |= is_divergence
        rows.append(
            LayerRow(
                reported=reported,
                position=max(known) if known else -1,
                layers=", ".join(sources),
                source=", ".join(names[0]),
                target=", ".join(names[1]),
                max_abs=_statistic(layer.get("max_abs")),
                mean_abs=_statistic(layer.get("mean_abs")),
                max_rel=_statistic(layer.get("max_rel")),
                cosine=float(layer.get("cosine", math.nan)),
                first_divergence=is_divergence,
            )
        )
    if positions:
        # unknown positions go last; sorted() is stable, so ties keep the reported order
        rows = sorted(rows, key=lambda row: row.position if row.position >= 0 else len(positions))
    return rows


def first_divergence_index(rows: Sequence[LayerRow]) -> int | None:
    return next((index for index, row in enumerate(rows) if row.first_divergence), None)


def layer_table_html(rows: Sequence[LayerRow]) -> str:
    """The per-layer table, source layers first, the first divergence highlighted."""
    body = "".join(
        f"<tr style='{DIVERGENCE_STYLE if row.first_divergence else ''}'>"
        f"<td>{index}</td><td>{html.escape(row.name)}</td><td>{html.escape(row.source)}</td>"
        f"<td>{html.escape(row.target)}</td><td>{row.max_abs:.3g}</td><td>{row.mean_abs:.3g}</td>"
        f"<td>{row.max_rel:.3g}</td><td>{row.cosine:.6f}</td></tr>"
        for index, row in enumerate(rows)
    )
    return (
        "<table><tr><th>#</th><th>source layers</th><th>reference output</th><th>candidate output</th>"
        f"<th>max abs</th><th>mean abs</th><th>max rel</th><th>cosine</th></tr>{body}</table>"
    )


def comparison_summary_html(comparison: Comparison) -> str:
    """One line of verdict, counts and the first divergence's explanation."""
    verdict = "agree" if comparison.ok else "differ"
    colour = "#070" if comparison.ok else "#b00"
    failing = sum(not pair.ok for pair in comparison.layers)
    divergence = comparison.first_divergence
    explanation = f"<br>{html.escape(divergence.explanation)}" if divergence else ""
    return (
        f"<div><b>{html.escape(comparison.candidate)}</b> against <b>{html.escape(comparison.reference)}</b>: "
        f"<span style='color:{colour}'>outputs {verdict}</span>; {len(comparison.layers)} layers compared, "
        f"{failing} beyond tolerance (atol {comparison.atol:g}, rtol {comparison.rtol:g}){explanation}</div>"
    )


def layer_figure(
    comparison: Comparison,
    row: LayerRow,
    reference: Any = None,
    candidate: Any = None,
    inputs: Any = None,
) -> Figure:
    """The figure for one layer: the histogram and map of its difference when both
    artifacts are at hand to run again, else the per-layer error curve with the
    layer marked."""
    if reference is not None and candidate is not None:
        expected, found = layer_tensors(reference, candidate, row.source, row.target, inputs)
        return plot_difference(expected, found, title=f"{row.name}: {row.target} against {row.source}")
    figure = plot_layer_errors(comparison)
    axes = figure.axes[0]
    axes.axvline(row.reported, color="#06c", linestyle=":")
    axes.annotate(
        row.name,
        (row.reported, 1.0),
        xycoords=("data", "axes fraction"),
        color="#06c",
        textcoords="offset points",
        xytext=(4, -14),
    )
    return figure


class ComparisonExplorer(SnapshotPanel, widgets.VBox):
    """A comparison's per-layer table in graph order, named by source layers, the
    first divergence highlighted, and a layer selector showing that layer's figure.

    With the ``reference`` and ``candidate`` artifacts (and the ``inputs``) that
    were compared, the selected layer is run again to plot its difference
    histogram; without them, its place on the error curve is shown."""

    def __init__(
        self,
        comparison: Comparison,
        *,
        reference: Any = None,
        candidate: Any = None,
        inputs: Any = None,
        model: Model | None = None,
    ) -> None:
        self._listeners = []
        self.comparison = comparison
        self.reference, self.candidate, self.inputs = reference, candidate, inputs
        graph = model if model is not None else reference if isinstance(reference, Model) else None
        self.rows = layer_rows(comparison, graph_positions(graph) if graph is not None else None)
        self.figure: Figure | None = None
        self.table = widgets.HTML(f"<div style='max-height:320px;overflow:auto'>{layer_table_html(self.rows)}</div>")
        self.layer_choice = widgets.Dropdown(
            options=[(f"{index}. {row.label}", index) for index, row in enumerate(self.rows)],
            description="layer",
            layout=widgets.Layout(width="90%"),
        )
        self.figure_view = widgets.Output()
        super().__init__(
            [widgets.HTML(comparison_summary_html(comparison)), self.table, self.layer_choice, self.figure_view]
        )
        self.add_class("workbench-panel")
        if self.rows:
            self.layer_choice.value = first_divergence_index(self.rows) or 0
            self.show_layer(self.layer_choice.value)
        self.layer_choice.observe(lambda change: self.show_layer(change["new"]), names="value")

    def show_layer(self, index: int) -> Figure:
        """Draw the figure of the row at ``index`` into the output area."""
        self.figure = layer_figure(self.comparison, self.rows[index], self.reference, self.candidate, self.inputs)
        self.figure_view.clear_output(wait=True)
        with self.figure_view:
            display(self.figure)
        self.publish()
        return self.figure

    def summary(self) -> str:
        return (
            f"<ComparisonExplorer {self.comparison.candidate} vs {self.comparison.reference}: {len(self.rows)} layers>"
        )

    def snapshot_html(self) -> str:
        chosen = ""
        if self.figure is not None and self.rows:
            row = self.rows[self.layer_choice.value]
            chosen = (
                f"<p>layer {self.layer_choice.value}: <b>{html.escape(row.label)}</b></p>{figure_html(self.figure)}"
            )
        return (
            f"{comparison_summary_html(self.comparison)}"
            f"<div style='max-height:320px;overflow:auto'>{layer_table_html(self.rows)}</div>{chosen}"
        )


# ---------------------------------------------------------------- name-map editor


@dataclass(frozen=True)
class NameMapRow:
    """One editable entry of a name map."""

    kind: str
    target: str
    op: str
    sources: str  # comma-separated, as edited
    shapes: str
    transforms: str
    status: str
    note: str
    suggestions: tuple[str, ...]  # source layers offered in the editor's drop-down

    @property
    def needs_attention(self) -> bool:
        return self.status in (UNMATCHED, AMBIGUOUS)


def parse_sources(text: str) -> list[str]:
    """Source layer names from an edited field: comma-separated, blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _shapes_text(entry: NameEntry) -> str:
    target = f"{entry.target_shape}" if entry.target_shape is not None else "?"
    sources = "; ".join(f"{name} {shape}" for name, shape in entry.source_shapes.items())
    return f"{target} ← {sources}" if sources else target


def name_map_rows(
    name_map: NameMap,
    *,
    kinds: Sequence[str] = EDITABLE_KINDS,
    only_attention: bool = False,
) -> list[NameMapRow]:
    """The entries to show: layers and parameters (a layer's blob follows its
    layer), optionally only the unmatched and ambiguous ones. Suggestions for an
    ambiguous entry are its own sources one by one; for an unmatched entry, the
    source layers whose parameters nothing claims."""
    rows = []
    for entry in name_map:
        if entry.kind not in kinds:
            continue
        row = NameMapRow(
            kind=entry.kind,
            target=entry.target,
            op=entry.op,
            sources=", ".join(entry.sources),
            shapes=_shapes_text(entry),
            transforms="; ".join(entry.transforms),
            status=entry.status,
            note=entry.note,
            suggestions=tuple(
                entry.sources
                if entry.status == AMBIGUOUS
                else name_map.unmatched_sources
                if entry.status == UNMATCHED
                else ()
            ),
        )
        if row.needs_attention or not only_attention:
            rows.append(row)
    return rows


def known_source_layers(name_map: NameMap, source: Model | None = None) -> set[str]:
    """The source layer names an edit may name: the source model's layers (and inputs)
    when it is given, else every source layer the map already knows."""
    if source is not None:
        return set(source_layers(source).ops)
    return {name for entry in name_map for name in entry.sources} | set(name_map.unmatched_sources)


def _unknown_sources_error(unknown: Mapping[str, list[str]], known: Iterable[str]) -> InputError:
    known = sorted(known)
    found = []
    for target, names in unknown.items():
        for name in names:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            found.append(f"{target}: {name}{hint}")
    return InputError(
        "the edits name source layers the model does not have; nothing was changed",
        expected="layer names of the source model, comma-separated",
        found="; ".join(found),
        remedy="pick names from the drop-down, or see map_names(...).unmatched_sources",
    )


def apply_edits(name_map: NameMap, edits: Mapping[str, str], known: Iterable[str] | None = None) -> list[str]:
    """Set every entry whose edited sources (target name -> comma-separated text)
    differ from the map's; returns the targets changed. With ``known`` source layer
    names, an edit naming any other layer is refused (an ``InputError`` listing each,
    with close matches) and no entry is changed."""
    changed = {target: parse_sources(text) for target, text in edits.items()}
    changed = {target: sources for target, sources in changed.items() if list(name_map[target].sources) != sources}
    if known is not None:
        known = set(known)
        unknown = {t: [s for s in sources if s not in known] for t, sources in changed.items()}
        unknown = {t: names for t, names in unknown.items() if names}
        if unknown:
            raise _unknown_sources_error(unknown, known)
    for target, sources in changed.items():
        name_map.set(target, sources)
    return list(changed)


def name_map_counts_html(name_map: NameMap) -> str:
    counts = name_map.to_dict()["counts"]
    parts = [
        f"<span style='color:{STATUS_COLOURS.get(status, 'inherit')}'>{n} {status}</span>"
        for status, n in counts.items()
    ]
    lost = (
        f"<br><span style='color:#b00'>source layers whose parameters nothing claims: "
        f"{html.escape(', '.join(name_map.unmatched_sources))}</span>"
        if name_map.unmatched_sources
        else ""
    )
    return f"<div><b>Name map</b> ({html.escape(name_map.target_format)}): {', '.join(parts)}{lost}</div>"


def name_map_table_html(rows: Sequence[NameMapRow]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(row.target)} <small>{html.escape(row.kind)} {html.escape(row.op)}</small></td>"
        f"<td>{html.escape(row.sources)}</td><td><small>{html.escape(row.shapes)}</small></td>"
        f"<td><small>{html.escape(row.transforms)}</small></td>"
        f"<td style='color:{STATUS_COLOURS.get(row.status, 'inherit')}'>{html.escape(row.status)}</td></tr>"
        for row in rows
    )
    return (
        "<table><tr><th>target</th><th>source layers</th><th>shapes</th><th>transforms</th><th>status</th></tr>"
        f"{body}</table>"
    )


class NameMapEditor(SnapshotPanel, widgets.VBox):
    """A table of name-map entries whose source layers can be edited, unmatched and
    ambiguous entries highlighted, with apply, save and load. Edits are checked
    against the source model's layers (``source``; without it, against the layers
    the map already names) before anything changes."""

    def __init__(
        self,
        name_map: NameMap,
        path: str | Path = "name_map.json",
        max_rows: int = MAX_EDITOR_ROWS,
        *,
        source: Model | None = None,
    ) -> None:
        self._listeners = []
        self.name_map = name_map
        self.source = source
        self.max_rows = max_rows
        self.source_fields: dict[str, widgets.Combobox] = {}
        self.summary_view = widgets.HTML()
        self.only_attention = widgets.Checkbox(description="only unmatched / ambiguous", indent=False)
        self.only_attention.observe(lambda _: self.refresh(), names="value")
        self.table = widgets.GridBox(
            layout=widgets.Layout(
                grid_template_columns="1.2fr 2fr 1.4fr 1.2fr 0.6fr", max_height="480px", overflow="auto"
            )
        )
        self.apply_button = widgets.Button(description="apply edits", icon="check")
        self.apply_button.on_click(lambda _: self.apply())
        self.path = widgets.Text(value=str(path), description="file")
        self.save_button = widgets.Button(description="save", icon="save")
        self.save_button.on_click(lambda _: self.save())
        self.load_button = widgets.Button(description="load", icon="folder-open")
        self.load_button.on_click(lambda _: self.load())
        self.message = widgets.HTML()
        super().__init__(
            [
                self.summary_view,
                self.only_attention,
                self.table,
                widgets.HBox([self.apply_button, self.path, self.save_button, self.load_button]),
                self.message,
            ]
        )
        self.add_class("workbench-panel")
        self.refresh()

    @property
    def known_sources(self) -> set[str]:
        return known_source_layers(self.name_map, self.source)

    def edits(self) -> dict[str, str]:
        """The source fields as currently typed, by target name."""
        return {target: field.value for target, field in self.source_fields.items()}

    def apply(self) -> list[str] | None:
        """Apply the typed edits; None (and the reason shown) when they were refused."""
        try:
            changed = apply_edits(self.name_map, self.edits(), self.known_sources)
        except WorkbenchError as error:
            self.message.value = error_html(error)
            self.publish()
            return None
        self.message.value = f"set by hand: {html.escape(', '.join(changed))}" if changed else "nothing changed"
        self.refresh()
        return changed

    def save(self) -> Path | None:
        """Apply the edits, then write the map as JSON to the file named in the panel
        (nothing is written when an edit was refused)."""
        if self.apply() is None:
            return None
        path = Path(self.path.value)
        self.name_map.save(path)
        self.message.value = f"saved {len(self.name_map)} entries to {html.escape(str(path))}"
        self.publish()
        return path

    def load(self) -> NameMap | None:
        """Replace the map with the one in the file named in the panel."""
        try:
            self.name_map = NameMap.load(self.path.value)
        except WorkbenchError as error:
            self.message.value = error_html(error)
            self.publish()
            return None
        self.message.value = f"loaded {len(self.name_map)} entries from {html.escape(self.path.value)}"
        self.refresh()
        return self.name_map

    def refresh(self) -> None:
        rows = name_map_rows(self.name_map, only_attention=self.only_attention.value)
        shown = rows[: self.max_rows]
        cells: list[widgets.Widget] = [
            widgets.HTML(f"<b>{title}</b>") for title in ("target", "source layers", "shapes", "transforms", "status")
        ]
        self.source_fields = {}
        for row in shown:
            colour = STATUS_COLOURS.get(row.status, "inherit")
            field = widgets.Combobox(
                value=row.sources,
                options=row.suggestions,
                placeholder="source layer names, comma-separated",
                ensure_option=False,
                layout=widgets.Layout(border=f"1px solid {colour}" if row.needs_attention else ""),
            )
            self.source_fields[row.target] = field
            cells += [
                widgets.HTML(f"{html.escape(row.target)} <small>{html.escape(row.kind)} {html.escape(row.op)}</small>"),
                field,
                widgets.HTML(f"<small>{html.escape(row.shapes)}</small>"),
                widgets.HTML(f"<small>{html.escape(row.transforms)}</small>"),
                widgets.HTML(
                    f"<span style='color:{colour}' title='{html.escape(row.note)}'>{html.escape(row.status)}</span>"
                ),
            ]
        self.table.children = cells
        self.summary_view.value = name_map_counts_html(self.name_map) + self._cut_note(len(shown), len(rows))
        self.publish()

    @staticmethod
    def _cut_note(shown: int, total: int) -> str:
        if total <= shown:
            return ""
        return (
            f"<br><i>showing {shown} of {total} entries; tick 'only unmatched / ambiguous' "
            "or edit the rest with NameMap.set</i>"
        )

    def summary(self) -> str:
        return f"<NameMapEditor {self.name_map!r}>"

    def snapshot_html(self) -> str:
        rows = name_map_rows(self.name_map, only_attention=self.only_attention.value)
        shown = rows[: self.max_rows]
        return (
            f"{name_map_counts_html(self.name_map)}{self._cut_note(len(shown), len(rows))}"
            f"<div style='max-height:480px;overflow:auto'>{name_map_table_html(shown)}</div>{self.message.value}"
        )
