"""RecordedRunner on the MXNet fixtures (outputs recorded by MXNet 1.9.1) and on the
documented .npz convention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.runners import RecordedRunner

DATA = Path(__file__).resolve().parents[2] / "data" / "mxnet"
FINAL = {"op_zoo": "prob_output", "mobilefacenet_tiny": "fc1_output"}


@pytest.mark.parametrize("name", list(FINAL), ids=list(FINAL))
def test_mxnet_fixture_structure(name: str) -> None:
    runner = RecordedRunner(DATA / f"{name}-reference.npz")
    recorded = np.load(DATA / f"{name}-reference.npz")
    given = np.load(DATA / f"{name}-input.npy")
    assert [n for n, _ in runner.run_layers()] == recorded.files
    assert runner.output_names == [FINAL[name]]
    np.testing.assert_array_equal(runner.inputs["data"], given)
    np.testing.assert_array_equal(runner.run([given])[FINAL[name]], recorded[FINAL[name]])
    # beside its -symbol.json, each recorded output stands for the MXNet node that computed it
    nodes = {
        node["name"] for node in json.loads((DATA / f"{name}-symbol.json").read_text())["nodes"] if node["op"] != "null"
    }
    assert all(len(sources) == 1 and sources[0] in nodes for sources in runner.layer_sources.values())
    assert len({sources for sources in runner.layer_sources.values()}) == len(recorded.files)


def test_other_inputs_are_refused() -> None:
    runner = RecordedRunner(DATA / "op_zoo-reference.npz")
    with pytest.raises(InputError, match="differs from the recorded input"):
        runner.run([np.zeros_like(runner.inputs["data"])])


def test_npz_convention_inputs_outputs_and_sources(tmp_path) -> None:
    x = np.arange(6, dtype=np.float32).reshape(1, 6)
    path = tmp_path / "net.npz"
    np.savez(
        path,
        **{
            "input:x": x,
            "fc": x * 2,
            "prob": x / 15,
            "aux": x + 1,
            "meta:outputs": np.array(["prob", "aux"]),
            "meta:sources": np.array(json.dumps({"fc": ["classifier.0"]})),
        },
    )
    runner = RecordedRunner(path)
    assert runner.input_names == ["x"]
    assert runner.output_names == ["prob", "aux"]
    assert runner.layer_names() == ["fc", "prob", "aux"]
    assert runner.layer_sources == {"fc": ("classifier.0",), "prob": (), "aux": ()}
    np.testing.assert_array_equal(runner.run({"x": x})["aux"], x + 1)


def test_a_recording_needs_layers(tmp_path) -> None:
    path = tmp_path / "empty.npz"
    np.savez(path, **{"input:x": np.zeros(3)})
    with pytest.raises(InputError, match="no layer outputs"):
        RecordedRunner(path)


def test_recording_fixes_input_shapes_and_shows_mxnet_constants() -> None:
    """The MXNet files beside a recording give the constants behind each recorded output."""
    from workbench.readers.mxnet_reader import read_params

    runner = RecordedRunner(DATA / "mobilefacenet_tiny-reference.npz")
    assert runner.input_shapes() == [np.load(DATA / "mobilefacenet_tiny-input.npy").shape]
    constants = runner.layer_constants("fc1_output")
    params = read_params(DATA / "mobilefacenet_tiny-0000.params")
    assert constants.op_type == "BatchNormalization"
    assert np.array_equal(constants.arrays["input_var"], params["fc1_moving_var"])
    assert np.all(constants.arrays["scale"] == 1.0)  # fix_gamma: MXNet computes with gamma = 1
    assert constants.attributes["epsilon"] == pytest.approx(2e-5)  # the symbol's eps, float32
    assert RecordedRunner({"out": np.zeros(3)}).layer_constants("out") is None  # no files beside it
