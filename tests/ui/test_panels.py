"""The panels' table logic, and the widgets built and clicked without a frontend."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from workbench import InputError, Model
from workbench.chain import Chain
from workbench.graph import provenance
from workbench.steps.compare import compare
from workbench.steps.fold_bn import fold_bn
from workbench.steps.map_names import NameMap, map_names
from workbench.ui import panels
from workbench.ui.panels import (
    DIVERGENCE_STYLE,
    ComparisonExplorer,
    LayerRow,
    NameMapEditor,
    PipelineStepper,
    apply_edits,
    first_divergence_index,
    graph_positions,
    known_source_layers,
    layer_rows,
    layer_table_html,
    name_map_rows,
    parse_sources,
    pipeline_stepper,
    step_title,
)


@pytest.fixture
def stepper(conv_bn_relu_file, tmp_path):
    return pipeline_stepper(conv_bn_relu_file, target="onnx", outdir=tmp_path / "out")


def button_states(stepper) -> dict[str, tuple[bool, str]]:
    return {step: (b.disabled, b.button_style) for step, b in stepper.step_buttons.items()}


def test_stepper_builds_headless_with_only_load_enabled(stepper):
    states = button_states(stepper)
    assert states["load"] == (False, "")
    assert all(disabled for step, (disabled, _) in states.items() if step != "load")
    assert stepper.reference_choice.options == ()


def test_clicking_a_step_shows_its_report(stepper):
    stepper.step_buttons["load"].click()
    stepper.step_buttons["simplify"].click()
    assert button_states(stepper)["simplify"] == (False, "success")
    assert stepper.steps_view.selected_index == 1
    view = stepper.step_views["simplify"].value
    assert "simplify #1" in view and "from load #1" in view and "nodes" in view
    assert stepper.steps_view.get_title(1).startswith("simplify: done (simplify #1")
    assert stepper.reference_choice.value == "load #1" and stepper.candidate_choice.value == "simplify #1"


def test_switching_a_step_off_skips_it(stepper):
    stepper.switches["fold_bn"].value = False
    assert stepper.chain.enabled["fold_bn"] is False
    assert step_title(stepper.chain, "fold_bn") == "fold_bn: skipped"
    assert stepper.step_buttons["fold_bn"].disabled


def test_a_rerun_turns_later_steps_stale(stepper):
    for step in ("load", "simplify", "fold_bn"):
        stepper.run(step)
    stepper.run("simplify")
    assert button_states(stepper)["fold_bn"] == (False, "warning")
    assert stepper.candidate_choice.value == "simplify #2"
    assert len(stepper.reference_choice.options) == 4


def test_a_failed_step_shows_the_error(tmp_path):
    stepper = pipeline_stepper(tmp_path / "absent.onnx", target="onnx", outdir=tmp_path / "out")
    stepper.run_all_button.click()
    assert button_states(stepper)["load"] == (False, "danger")
    assert "no such file" in stepper.step_views["load"].value


def test_stepper_compares_any_two_kept_artifacts(stepper):
    stepper.compare_button.click()
    assert "run a step" in stepper.comparison_view.children[0].value
    for step in ("load", "simplify", "fold_bn"):
        stepper.run(step)
    stepper.reference_choice.value = "load #1"
    stepper.candidate_choice.value = "fold_bn #1"
    stepper.compare_button.click()
    (explorer,) = stepper.comparison_view.children
    assert isinstance(explorer, ComparisonExplorer)
    assert explorer.rows
    assert explorer.comparison.ok  # folding keeps the outputs (onnxruntime on both sides)


def test_the_stepper_verifies_layer_by_layer_and_that_setting_turns_verify_stale(stepper):
    stepper.run_all_button.click()
    assert {style for _, style in button_states(stepper).values()} == {"success"}
    assert stepper.chain.comparison.ok and stepper.chain.comparison.layers
    stepper.per_layer_switch.value = False
    assert button_states(stepper)["verify"] == (False, "warning")
    assert "stale: the per-layer setting changed" in stepper.step_views["verify"].value
    stepper.step_buttons["verify"].click()
    assert button_states(stepper)["verify"] == (False, "success")
    assert stepper.chain.current["verify"].label == "verify #2" and not stepper.chain.comparison.layers


def test_the_stepper_drives_the_chain_it_is_given(conv_bn_relu_file, tmp_path):
    chain = Chain(conv_bn_relu_file, "onnx", tmp_path / "out")  # as workbench convert: fold_bn off, outputs only
    stepper = PipelineStepper(chain)
    assert stepper.switches["fold_bn"].value is False and stepper.per_layer_switch.value is False
    assert button_states(stepper)["fold_bn"] == (True, "")
    stepper.run_all_button.click()
    assert [run.label for run in chain.history] == ["load #1", "simplify #1", "check #1", "write #1", "verify #1"]
    assert chain.ok and stepper.run("verify") is chain.current["verify"]


REPORT = {
    "ok": False,
    "outputs": [],
    "layers": [
        {"source": "relu", "target": "relu_out", "max_abs": 0.5, "mean_abs": 0.1, "max_rel": 2.0, "cosine": 0.9},
        {"source": "conv", "target": "conv_out", "max_abs": 1e-7, "mean_abs": 1e-8, "max_rel": 1e-6, "cosine": 1.0},
        {"source": ["bn", "conv"], "target": "bn_out", "max_abs": 0.4, "mean_abs": 0.1, "max_rel": 1.0, "cosine": 0.95},
        {"source": "extra", "target": "extra_out", "max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0, "cosine": 1.0},
    ],
    "first_divergence": {"source": ["bn", "conv"], "target": "bn_out", "cause": "eps"},
}


def test_layer_rows_follow_graph_order_and_flag_the_first_divergence(conv_bn_relu_model):
    rows = layer_rows(REPORT, graph_positions(conv_bn_relu_model))
    assert [row.source for row in rows] == ["conv", "bn, conv", "relu", "extra"]
    assert [row.position for row in rows] == [0, 1, 2, -1]
    assert first_divergence_index(rows) == 1
    assert [row.first_divergence for row in rows] == [False, True, False, False]


def test_layer_rows_keep_the_reported_order_without_a_graph():
    rows = layer_rows(REPORT)
    assert [row.target for row in rows] == ["relu_out", "conv_out", "bn_out", "extra_out"]
    assert (
        layer_rows({**REPORT, "first_divergence": None})
        and first_divergence_index(layer_rows({**REPORT, "first_divergence": None})) is None
    )


def test_layer_table_highlights_only_the_first_divergence():
    table = layer_table_html(layer_rows(REPORT))
    assert table.count("background:#ffd7d7") == 1
    highlighted = table.split("background:#ffd7d7")[1].split("</tr>")[0]
    assert "bn_out" in highlighted
    assert isinstance(layer_rows(REPORT)[0], LayerRow)


# ---------------------------------------------------------------- comparison explorer


def with_wrong_epsilon(model: Model) -> Model:
    """The same network with the BatchNormalization epsilon a framework default
    away (1e-3 instead of 1e-5): the classic eps pitfall, in one known layer."""
    broken = model.copy()
    bn = next(node for node in broken.graph if node.op_type == "BatchNormalization")
    bn.attributes["epsilon"] = ir.AttrFloat32("epsilon", 0.5)
    return broken


@pytest.fixture
def diverging(conv_bn_relu_model):
    reference, candidate = conv_bn_relu_model, with_wrong_epsilon(conv_bn_relu_model)
    return reference, candidate, compare(reference, candidate, per_layer=True)


def test_explorer_opens_on_the_first_divergence(diverging):
    reference, candidate, comparison = diverging
    explorer = ComparisonExplorer(comparison, reference=reference, candidate=candidate)
    bn_output = next(n for n in reference.graph if n.op_type == "BatchNormalization").outputs[0].name
    chosen = explorer.rows[explorer.layer_choice.value]
    assert chosen.first_divergence and chosen.target == bn_output
    assert explorer.table.value.count(DIVERGENCE_STYLE) == 1
    histogram = explorer.figure.axes[0]
    # every element of the [1, 4, 8, 8] BatchNormalization output is counted once
    assert sum(patch.get_height() for patch in histogram.patches) == 1 * 4 * 8 * 8


def test_explorer_without_the_artifacts_marks_the_layer_on_the_error_curve(diverging):
    _, _, comparison = diverging
    explorer = ComparisonExplorer(comparison)
    explorer.layer_choice.value = 0
    axes = explorer.figure.axes[0]
    assert any(text.get_text() == explorer.rows[0].target for text in axes.texts)


# ---------------------------------------------------------------- name-map editor


@pytest.fixture
def name_map(conv_bn_relu_model) -> NameMap:
    """Folded conv (matched), a Relu without provenance (unmatched) and a node
    naming two source layers with no transform (ambiguous)."""
    converted = fold_bn(conv_bn_relu_model)
    relu = next(node for node in converted.graph if node.op_type == "Relu")
    relu.metadata_props.pop(provenance.SOURCE_KEY)
    extra = ir.node("Neg", [relu.outputs[0]], name="negate")
    provenance.set_sources(extra, ["relu", "conv"])
    converted.graph.append(extra)
    return map_names(conv_bn_relu_model, converted)


def test_rows_show_layers_and_parameters_with_their_status(name_map):
    rows = {row.target: row for row in name_map_rows(name_map)}
    assert {row.kind for row in rows.values()} == {"layer", "parameter"}
    folded = next(row for row in rows.values() if row.op == "Conv" and row.kind == "layer")
    assert folded.sources == "conv, bn" and "folded" in folded.transforms
    relu = next(row for row in rows.values() if row.op == "Relu")
    assert relu.status == "unmatched" and relu.needs_attention
    assert rows["negate"].status == "ambiguous" and rows["negate"].suggestions == ("relu", "conv")
    attention = name_map_rows(name_map, only_attention=True)
    assert sorted(row.status for row in attention) == ["ambiguous", "unmatched"]


def test_apply_edits_sets_only_what_changed(name_map):
    assert parse_sources(" relu ,, conv ") == ["relu", "conv"]
    edits = {row.target: row.sources for row in name_map_rows(name_map)}
    edits["negate"] = "relu"
    assert apply_edits(name_map, edits) == ["negate"]
    assert name_map["negate"].sources == ["relu"] and name_map["negate"].status == "corrected"


def test_editor_edits_saves_and_loads(name_map, tmp_path):
    path = tmp_path / "names.json"
    editor = NameMapEditor(name_map, path=path)
    assert len(editor.table.children) == 5 * (1 + len(name_map_rows(name_map)))
    assert editor.source_fields["negate"].layout.border == "1px solid #b35900"
    editor.source_fields["negate"].value = "conv"
    editor.save_button.click()
    assert NameMap.load(path)["negate"].sources == ["conv"]
    editor.source_fields["negate"].value = "relu"
    editor.load_button.click()
    assert editor.source_fields["negate"].value == "conv"
    assert "corrected" in editor.summary_view.value
    editor.only_attention.value = True
    assert len(editor.source_fields) == 1


def test_editor_reports_a_bad_file_without_raising(name_map, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    editor = NameMapEditor(name_map, path=bad)
    assert editor.load() is None
    assert "cannot read the name map" in editor.message.value


def test_an_edit_naming_a_layer_the_model_lacks_is_refused_and_changes_nothing(name_map, conv_bn_relu_model):
    editor = NameMapEditor(name_map, source=conv_bn_relu_model)
    assert editor.known_sources == {"x", "conv", "bn", "relu"}
    before = {entry.target: list(entry.sources) for entry in name_map}
    editor.source_fields["negate"].value = "rleu"
    assert editor.apply() is None
    assert "rleu (did you mean relu?)" in editor.message.value and "nothing was changed" in editor.message.value
    assert {entry.target: list(entry.sources) for entry in name_map} == before
    editor.source_fields["negate"].value = "relu"
    assert editor.apply() == ["negate"]
    assert name_map["negate"].sources == ["relu"] and name_map["negate"].status == "corrected"


def test_without_the_model_edits_are_checked_against_the_layers_the_map_names(name_map):
    with pytest.raises(InputError, match="nowhere"):
        apply_edits(name_map, {"negate": "nowhere"}, known_source_layers(name_map))
    assert apply_edits(name_map, {"negate": "conv"}, known_source_layers(name_map)) == ["negate"]


class RecordedDisplay:
    """Stands in for IPython's display: keeps each bundle shown and each update."""

    def __init__(self):
        self.shown, self.updates, self.figures = [], [], []

    def __call__(self, bundle, raw=False, display_id=None):
        if not raw:  # a figure drawn into the explorer's output area
            self.figures.append(bundle)
            return None
        assert display_id is True
        self.shown.append(bundle)
        return self

    def update(self, bundle, raw=False):
        self.updates.append(bundle)


@pytest.fixture
def recorded(monkeypatch) -> RecordedDisplay:
    recorder = RecordedDisplay()
    monkeypatch.setattr(panels, "display", recorder)
    return recorder


def test_a_displayed_panel_carries_the_widget_and_a_snapshot_that_follows_each_click(stepper, recorded):
    stepper._ipython_display_()
    (bundle,) = recorded.shown
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == stepper.model_id
    assert "load</td><td style='color:#777'>pending" in bundle["text/html"]
    assert bundle["text/plain"].startswith("<PipelineStepper")
    stepper.step_buttons["load"].click()
    snapshot = recorded.updates[-1]["text/html"]
    assert "load #1" in snapshot and "load</td><td style='color:#070'>done" in snapshot
    stepper.run_all_button.click()
    stepper.run("simplify")
    snapshot = recorded.updates[-1]["text/html"]
    assert "made from simplify #1; would now read simplify #2" in snapshot  # fold_bn is stale, and says why


def test_the_stepper_snapshot_includes_the_comparison_it_shows(stepper, recorded):
    stepper._ipython_display_()
    for step in ("load", "simplify", "fold_bn"):
        stepper.run(step)
    stepper.reference_choice.value, stepper.candidate_choice.value = "load #1", "fold_bn #1"
    stepper.compare_button.click()
    snapshot = recorded.updates[-1]["text/html"]
    assert "Compared</b> load #1 with fold_bn #1" in snapshot and "data:image/png;base64," in snapshot
    stepper.explorer.layer_choice.value = 0  # a change inside the explorer refreshes the stepper's snapshot
    assert recorded.updates[-1]["text/html"].count("layer 0: <b>") == 1


def test_explorer_names_layers_as_the_source_does(diverging, recorded):
    reference, candidate, comparison = diverging
    explorer = ComparisonExplorer(comparison, reference=reference, candidate=candidate)
    bn_output = next(n for n in reference.graph if n.op_type == "BatchNormalization").outputs[0].name
    chosen = explorer.rows[explorer.layer_choice.value]
    assert chosen.layers == "bn" and chosen.source == bn_output != "bn"
    label = {index: text for text, index in explorer.layer_choice.options}[explorer.layer_choice.value]
    assert label.startswith(f"{explorer.layer_choice.value}. bn (max abs")
    explorer._ipython_display_()
    snapshot = recorded.shown[-1]["text/html"]
    assert "<td>bn</td>" in snapshot and "data:image/png;base64," in snapshot


def test_plots_render_as_png_without_matplotlib_magics(diverging):
    _, _, comparison = diverging
    png = comparison.plot()._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
