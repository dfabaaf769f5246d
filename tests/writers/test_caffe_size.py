"""A model whose weights cannot fit in one caffemodel (one protobuf message: Caffe and
OpenCV DNN read at most 2 GiB) is refused before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import UnsupportedError
from workbench.graph import Model, SourceInfo
from workbench.graph.builder import GraphBuilder
from workbench.writers.caffe import find_problems, write_caffe
from workbench.writers.caffe import writer as caffe_writer


def _fully_connected() -> Model:
    builder = GraphBuilder("fc")
    x = builder.add_input("x", [1, 64])
    weight = builder.add_initializer("fc.weight", np.ones((32, 64), np.float32))
    (value,) = builder.add_node("Gemm", [x, weight], {"transB": 1}, sources=["fc"])
    builder.set_outputs([value])
    return Model(builder.build(), SourceInfo("onnx", (), "fc"))


def test_weights_beyond_one_caffemodel_are_refused(tmp_path, monkeypatch) -> None:
    model = _fully_connected()
    assert not find_problems(model)
    monkeypatch.setattr(caffe_writer, "CAFFEMODEL_BYTES", 32 * 64 * 4 - 1)  # one byte short of the weights
    (problem,) = find_problems(model)
    assert (problem.severity, problem.kind) == ("error", "too-large") and "ONNX" in problem.remedy
    with pytest.raises(UnsupportedError, match="2 GiB"):
        write_caffe(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
