"""run_layers cuts the graph where a segment's outputs or weights reach their bound,
keeps the sessions of small graphs for the next call and gives them up on release;
every way of cutting and keeping gives onnxruntime's whole-graph outputs exactly."""

from __future__ import annotations

import numpy as np

from workbench.graph import Model, SourceInfo
from workbench.graph.builder import GraphBuilder
from workbench.runners import onnxruntime_runner
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner

RNG = np.random.default_rng(3)


def _chain(layers: int = 6) -> Model:
    """Conv → Relu, ``layers`` times: every output 1×8×16×16 float32 (8 KiB)."""
    builder = GraphBuilder("chain")
    value = builder.add_input("x", [1, 8, 16, 16])
    for index in range(layers):
        weight = builder.add_initializer(f"conv{index}.weight", RNG.standard_normal((8, 8, 3, 3)).astype(np.float32))
        (value,) = builder.add_node("Conv", [value, weight], {"pads": [1, 1, 1, 1]}, sources=[f"conv{index}"])
        (value,) = builder.add_node("Relu", [value], sources=[f"relu{index}"])
    builder.set_outputs([value])
    return Model(builder.build(), SourceInfo("onnx", (), "chain"))


def _whole(model: Model, x: np.ndarray) -> dict[str, np.ndarray]:
    return dict(OnnxRuntimeRunner(model, segment_nodes=10**6).run_layers([x]))


def test_segments_end_where_their_outputs_reach_the_bound() -> None:
    model = _chain()
    runner = OnnxRuntimeRunner(model, segment_output_bytes=3 * 8 * 16 * 16 * 4)  # three outputs per segment
    nodes = list(model.graph)
    assert list(runner._segments(nodes)) == [(0, 3), (3, 6), (6, 9), (9, 12)]
    x = RNG.standard_normal((1, 8, 16, 16)).astype(np.float32)
    whole = _whole(model, x)
    for name, array in runner.run_layers([x]):
        np.testing.assert_array_equal(array, whole[name])  # the same kernels either way: exact


def test_small_graphs_keep_their_segment_sessions_until_released(monkeypatch) -> None:
    model = _chain()
    x = RNG.standard_normal((1, 8, 16, 16)).astype(np.float32)
    runner = OnnxRuntimeRunner(model, segment_nodes=4)
    first = dict(runner.run_layers([x]))
    kept = dict(runner._kept_segments)
    assert len(kept) == 3
    second = dict(runner.run_layers([x]))
    assert runner._kept_segments == kept  # the same sessions, made once
    for name, array in second.items():
        np.testing.assert_array_equal(array, first[name])  # the same sessions run again: exact
    runner.release()
    assert runner._kept_segments == {}
    monkeypatch.setattr(onnxruntime_runner, "KEPT_SEGMENT_BYTES", 0)  # a graph too large to keep them
    dict(runner.run_layers([x]))
    assert runner._kept_segments == {}
