"""Provenance survives export, simplification and ONNX files, and is never guessed from names."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
import torch

from workbench import example_inputs, load
from workbench.graph import provenance
from workbench.readers import read_onnx
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.steps.simplify import simplify


@pytest.fixture(scope="module")
def mtcnn():
    return load("workbench.samples:mtcnn_tiny")


def test_exported_nodes_name_their_modules(mtcnn):
    by_op = {}
    for node in mtcnn.graph:
        by_op.setdefault(node.op_type, []).append(provenance.sources(node))
    assert ("conv1",) in by_op["Conv"]
    assert ("prelu1",) in by_op["PRelu"]
    assert all(sources for node in mtcnn.graph for sources in [provenance.sources(node)])


def test_simplify_keeps_module_and_parameter_names(mtcnn):
    simplified = simplify(mtcnn)
    prelu = next(n for n in simplified.graph if provenance.sources(n) == ("prelu1",) and n.op_type == "PRelu")
    # the slope's Reshape was folded into a new initializer: its source parameter is kept
    assert provenance.params(prelu) == {1: ("prelu1.weight",)}
    fc = next(n for n in simplified.graph if provenance.sources(n) == ("fc",))
    assert provenance.params(fc)[1] == ("fc.weight",)


def test_provenance_survives_an_onnx_file(tmp_path, mtcnn):
    path = tmp_path / "m.onnx"
    ir.save(simplify(mtcnn).ir, path)
    reread = read_onnx(path)
    assert {provenance.sources(n) for n in reread.graph} >= {("conv1",), ("prelu1",), ("fc",)}


def test_simplify_preserves_outputs(mtcnn):
    inputs = example_inputs(mtcnn)
    module = __import__("workbench.samples", fromlist=["x"]).mtcnn_tiny()
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.from_numpy(inputs["x"]))]
    got = list(OnnxRuntimeRunner(simplify(mtcnn)).run(inputs).values())
    for want, have in zip(expected, got):
        # onnxruntime vs PyTorch eager, float32: atol 1e-5
        np.testing.assert_allclose(have, want, atol=1e-5, rtol=0)
