"""Small models shared by the ui tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from workbench import Model, SourceInfo, load
from workbench.graph.builder import GraphBuilder
from workbench.graph.shapes import infer_shapes


def conv_bn_relu() -> Model:
    rng = np.random.default_rng(0)
    builder = GraphBuilder("conv_bn_relu")
    x = builder.add_input("x", [1, 3, 8, 8])
    weight = builder.add_initializer("conv.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    (conv,) = builder.add_node("Conv", [x, weight], {"pads": [1, 1, 1, 1]}, sources=["conv"])
    stats = [
        builder.add_initializer(f"bn.{name}", values.astype(np.float32))
        for name, values in (
            ("weight", rng.uniform(0.5, 1.5, 4)),
            ("bias", rng.standard_normal(4) * 0.1),
            ("running_mean", rng.standard_normal(4) * 0.1),
            ("running_var", rng.uniform(0.5, 1.5, 4)),
        )
    ]
    (bn,) = builder.add_node("BatchNormalization", [conv, *stats], sources=["bn"])
    (out,) = builder.add_node("Relu", [bn], sources=["relu"])
    builder.set_outputs([out])
    # typed outputs, as an ONNX file from an exporter has (onnxsim requires them)
    return Model(infer_shapes(builder.build()), SourceInfo("onnx", name="conv_bn_relu"))


@pytest.fixture
def conv_bn_relu_file(tmp_path) -> Path:
    """An ONNX file: x -> Conv -> BatchNormalization -> Relu, with provenance."""
    path = tmp_path / "conv_bn_relu.onnx"
    ir.save(conv_bn_relu().ir, path)
    return path


@pytest.fixture
def conv_bn_relu_model(conv_bn_relu_file) -> Model:
    """The model as read from its file (the reader records parameter provenance)."""
    return load(conv_bn_relu_file)
