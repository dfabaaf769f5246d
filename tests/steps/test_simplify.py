"""simplify removes the exporter's shape plumbing and keeps the numbers (onnxruntime reference)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import example_inputs, load
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.steps.simplify import simplify

SAMPLES = ["resnet_tiny", "mobilenet_tiny", "shufflenet_tiny", "segmentation_tiny", "mtcnn_tiny"]


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLES)
def test_simplify_removes_shape_chains_and_keeps_outputs(sample):
    model = load(f"workbench.samples:{sample}")
    simplified = simplify(model)
    census = simplified.census()
    for op in ("Shape", "Gather", "Unsqueeze", "CastLike", "Expand", "Identity"):
        assert census.get(op, 0) == 0, f"{op} left after simplify"
    assert len(simplified.graph) < len(model.graph)
    report = simplified.report
    assert report.step == "simplify" and report.counts["nodes_after"] == len(simplified.graph)
    assert any(change.startswith("Shape:") for change in report.changes) or "Shape" not in model.census()
    inputs = example_inputs(model)
    before = OnnxRuntimeRunner(model).run(inputs)
    after = OnnxRuntimeRunner(simplified).run(inputs)
    for name in before:
        # the same graph before and after folding, both in onnxruntime: atol 1e-5
        np.testing.assert_allclose(after[name], before[name], atol=1e-5, rtol=0)


def test_simplify_does_not_touch_its_input():
    model = load("workbench.samples:squeezenet_tiny")
    nodes = len(model.graph)
    simplify(model)
    assert len(model.graph) == nodes


def test_exporter_zero_biases_are_dropped_but_real_biases_kept():
    from workbench.graph import provenance

    simplified = simplify(load("workbench.samples:resnet_tiny"))  # its convolutions have bias=False
    convs = [n for n in simplified.graph if n.op_type == "Conv"]
    assert convs and all(len(n.inputs) == 2 for n in convs)
    squeeze = simplify(load("workbench.samples:squeezenet_tiny"))  # bias=True everywhere
    for node in (n for n in squeeze.graph if n.op_type == "Conv"):
        assert len(node.inputs) == 3 and 2 in provenance.params(node)
