"""Runners give their memory back: a released runner drops its session or network and
its mapped weights and runs again the same; a comparison of final outputs runs one
runtime at a time; verify leaves the chain's models unmapped."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from workbench import compare, convert
from workbench.chain import fingerprint
from workbench.graph import Model, SourceInfo
from workbench.graph.builder import GraphBuilder
from workbench.readers import onnx_reader
from workbench.runners.base import Inputs, LayerStream, Runner
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.runners.opencv_runner import OpenCVCaffeRunner
from workbench.writers.caffe import write_caffe

RNG = np.random.default_rng(2)


def _model() -> Model:
    builder = GraphBuilder("released")
    x = builder.add_input("x", [1, 8, 6, 6])
    weight = builder.add_initializer("conv.weight", RNG.standard_normal((16, 8, 3, 3)).astype(np.float32))
    (value,) = builder.add_node("Conv", [x, weight], {"pads": [1, 1, 1, 1]}, sources=["conv"])
    (value,) = builder.add_node("Relu", [value], sources=["relu"])
    builder.set_outputs([value])
    return Model(builder.build(), SourceInfo("onnx", (), "released"))


@pytest.fixture
def mapped(tmp_path, monkeypatch) -> Model:
    """The model read back from a file with its weights mapped."""
    path = tmp_path / "released.onnx"
    onnx.save_model(ir.to_proto(_model().ir), path)
    monkeypatch.setattr(onnx_reader, "MAPPED_FILE_BYTES", 0)
    return onnx_reader.read_onnx(path)


def _mapping(model: Model) -> object:
    tensor = model.graph.initializers["conv.weight"].const_value
    assert isinstance(tensor, ir.ExternalTensor)
    return tensor.raw  # the memory map, None while unmapped


def test_onnxruntime_runner_releases_its_session_and_mapped_weights(mapped) -> None:
    x = RNG.standard_normal((1, 8, 6, 6)).astype(np.float32)
    runner = OnnxRuntimeRunner(mapped)
    first = runner.run([x])
    assert runner._session is not None
    mapped.graph.initializers["conv.weight"].const_value.numpy()
    assert _mapping(mapped) is not None
    runner.release()
    assert runner._session is None and _mapping(mapped) is None
    again = runner.run([x])
    np.testing.assert_array_equal(again["relu"], first["relu"])  # the same session made again: exact


def test_opencv_runner_loads_on_first_run_and_again_after_release(tmp_path) -> None:
    model = _model()
    files = write_caffe(model, tmp_path)
    runner = OpenCVCaffeRunner(files.path(".prototxt"), files.path(".caffemodel"))
    assert runner._net is None
    x = RNG.standard_normal((1, 8, 6, 6)).astype(np.float32)
    first = runner.run([x])
    runner.release()
    assert runner._net is None
    (again,) = runner.run([x]).values()
    (expected,) = OnnxRuntimeRunner(model).run([x]).values()
    np.testing.assert_array_equal(again, next(iter(first.values())))  # OpenCV loaded twice: exact
    np.testing.assert_allclose(again, expected, atol=1e-5, rtol=1e-5)  # OpenCV vs onnxruntime, float32


class _Logged(Runner):
    """A runner that records when it runs and is released."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.input_names, self.output_names = ["x"], ["y"]

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        self.log.append(f"run {self.name}")
        return {"y": np.ones(3, np.float32)}

    def run_layers(self, inputs: Inputs, names: Collection[str] | None = None) -> LayerStream:
        yield "y", self.run(inputs)["y"]

    def release(self) -> None:
        self.log.append(f"release {self.name}")


def test_final_outputs_are_compared_one_runtime_at_a_time() -> None:
    log: list[str] = []
    comparison = compare(_Logged("reference", log), _Logged("candidate", log), [np.zeros(3, np.float32)])
    assert comparison.ok
    assert log == ["run reference", "release reference", "run candidate", "release candidate"]


def test_verify_leaves_the_models_weights_unmapped(mapped, tmp_path) -> None:
    chain = convert([mapped.source.paths[0]], "caffe", tmp_path / "out")
    assert chain.ok
    assert _mapping(chain.source_model) is None


def test_fingerprints_do_not_read_mapped_weights(mapped) -> None:
    """A mapped tensor cannot be written through the model: its place in the file
    stands for its bytes, so checking a step's contract reads no weights."""
    before = fingerprint(mapped)
    assert _mapping(mapped) is None
    mapped.graph.initializers["conv.weight"].const_value.numpy()  # read: mapped now
    mapped.release_weights()
    assert fingerprint(mapped) == before and _mapping(mapped) is None
