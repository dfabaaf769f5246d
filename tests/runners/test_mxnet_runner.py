"""MXNet files run through the MXNet reader in onnxruntime, the graph built for the
shapes it is run on; checked against the outputs recorded with MXNet 1.9.1."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.runners import open_runner
from workbench.runners.mxnet_runner import MXNetRunner

DATA = Path(__file__).resolve().parents[2] / "data" / "mxnet"
FILES = (DATA / "mobilefacenet_tiny-symbol.json", DATA / "mobilefacenet_tiny-0000.params")


def test_built_for_the_inputs_it_runs_on() -> None:
    runner = open_runner(*FILES)
    assert isinstance(runner, MXNetRunner) and runner.input_names == ["data"]
    assert runner.input_shapes() is None  # the symbol leaves the shape open
    x = np.load(DATA / "mobilefacenet_tiny-input.npy")
    recorded = np.load(DATA / "mobilefacenet_tiny-reference.npz")
    layers = dict(runner.run_layers([x]))
    for name in ("conv_1_batchnorm_output", "fc1_output"):
        # onnxruntime vs MXNet 1.9.1 (CPU, float32): atol 1e-5 + rtol 1e-4
        np.testing.assert_allclose(layers[name], recorded[name], atol=1e-5, rtol=1e-4)
    assert runner.layer_sources["fc1_output"] == ("fc1",)
    batch = np.concatenate([x, x])  # another shape: the graph is built again
    (output,) = runner.run([batch]).values()
    np.testing.assert_allclose(output, np.concatenate([recorded["fc1_output"]] * 2), atol=1e-5, rtol=1e-4)


def test_a_given_shape_builds_the_graph_at_once() -> None:
    runner = MXNetRunner(*FILES, input_shapes=[(1, 3, 28, 28)])
    assert runner.input_shapes() == [(1, 3, 28, 28)]
    assert runner.output_names == ["fc1_output"]
    assert runner.layer_constants("conv_1_batchnorm_output").op_type == "BatchNormalization"
