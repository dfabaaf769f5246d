"""check: every problem of a model for a target in one report, plus general pitfalls."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from workbench import InputError, UnsupportedError
from workbench.graph import Model, SourceInfo
from workbench.graph.builder import GraphBuilder
from workbench.steps.check import CheckReport, check


def _chain(ops: list[str], shape: list) -> Model:
    """A chain of one-input nodes, each with its own source layer."""
    builder = GraphBuilder("chain")
    value = builder.add_input("x", shape)
    for index, op in enumerate(ops):
        (value,) = builder.add_node(op, [value], sources=[f"layer{index}"], outputs=[f"v{index}"])
    value.type, value.shape = ir.TensorType(ir.DataType.FLOAT), ir.Shape(shape)
    builder.set_outputs([value])
    return Model(builder.build(), SourceInfo("onnx", (), "chain"))


def test_lists_every_unsupported_op_at_once() -> None:
    report = check(_chain(["Relu", "Frobnicate", "Relu", "Twiddle"], [1, 4]), "onnx")
    assert isinstance(report, CheckReport)
    assert not report.ok
    assert sorted(p.op_type for p in report.errors) == ["Frobnicate", "Twiddle"]
    assert report.counts() == {"unknown-op": 2}
    assert report.to_dict()["ok"] is False
    text = str(report)
    assert "Frobnicate" in text and "Twiddle" in text and "2 error(s)" in text
    html = report._repr_html_()
    assert html.count("<tr") == 3 and "layer1" in html and "layer3" in html
    with pytest.raises(UnsupportedError, match="Frobnicate, Twiddle"):
        report.raise_for_errors()


def test_a_clean_model_is_ok_and_says_so() -> None:
    report = check(_chain(["Relu", "Sigmoid"], [1, 4]), "onnx")
    assert report.ok
    assert report.problems == []
    assert "ok" in str(report)
    report.raise_for_errors()


def test_a_dynamic_input_shape_is_flagged_for_any_target() -> None:
    report = check(_chain(["Relu"], ["batch", 4]), "onnx")
    assert report.ok
    assert [p.kind for p in report.warnings] == ["dynamic-input-shape"]
    assert "--input-shape" in report.warnings[0].remedy


def test_shape_arithmetic_is_flagged_once_with_a_count() -> None:
    builder = GraphBuilder("shapes")
    x = builder.add_input("x", [2, 3])
    shapes = [builder.add_node("Shape", [x], sources=[f"size{i}"])[0] for i in range(3)]
    builder.set_outputs(shapes)
    report = check(Model(builder.build(), SourceInfo("onnx", (), "shapes")), "onnx")
    (problem,) = [p for p in report.problems if p.kind == "shape-arithmetic"]
    assert problem.message.startswith("3 node(s)")


def test_an_unknown_target_lists_the_targets() -> None:
    with pytest.raises(InputError) as raised:
        check(_chain(["Relu"], [1, 4]), "tensorflow")
    assert "onnx" in str(raised.value) and "tensorflow" in str(raised.value)


def test_an_option_the_target_does_not_take_is_refused() -> None:
    with pytest.raises(InputError, match="no option dialect"):
        check(_chain(["Relu"], [1, 4]), "onnx", dialect="opencv")
