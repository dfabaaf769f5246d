"""The panels' table logic, and the widgets built and clicked without a frontend."""
from __future__ import annotations

import pytest

from workbench.ui.panels import (
    LayerRow,
    first_divergence_index,
    graph_positions,
    layer_rows,
    layer_table_html,
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
    assert stepper.pipeline.enabled["fold_bn"] is False
    assert step_title(stepper.pipeline, "fold_bn") == "fold_bn: skipped"
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
    assert layer_rows({**REPORT, "first_divergence": None}) and first_divergence_index(
        layer_rows({**REPORT, "first_divergence": None})
    ) is None


def test_layer_table_highlights_only_the_first_divergence():
    table = layer_table_html(layer_rows(REPORT))
    assert table.count("background:#ffd7d7") == 1
    highlighted = table.split("background:#ffd7d7")[1].split("</tr>")[0]
    assert "bn_out" in highlighted
    assert isinstance(layer_rows(REPORT)[0], LayerRow)
