"""``compare``: run two artifacts of a conversion chain on the same input and find
where, and why, they part.

``compare`` is a short sequence of steps, each in its own module:

1. a runner for each side (``runners.open_runner``: a ``Model``, files, written
   files, a module, a recording or a runner), asked only through the runner
   protocol's capabilities;
2. the inputs: as given, else the input a side recorded, else seeded random inputs
   of the shapes a side declares;
3. without ``per_layer``, both sides' final outputs, paired by position, one runtime
   at a time (each released, ``Runner.release``, before the next runs);
4. with ``per_layer``: the layer outputs of both sides aligned on provenance
   (``compare_align``), both streams walked together keeping error statistics per
   pair (``compare_walk``), and the first divergence explained by the cause finders
   (``compare_causes``).

The results (``Comparison``, ``PairComparison``, ``Divergence``) are in
``compare_results``; the error statistics and the relations between two tensors
that name a pitfall in ``compare_stats``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..runners import Runner, open_runner
from .compare_align import Alignment, SourceNames, align, layer_entries
from .compare_results import Comparison, Divergence, PairComparison
from .compare_stats import DEFAULT_ATOL, DEFAULT_RTOL
from .compare_walk import LayerWalk, final_pairs

Feeds = tuple[list[np.ndarray], list[np.ndarray]]


def _as_runner(artifact: Any) -> Runner:
    if isinstance(artifact, (tuple, list)):
        return open_runner(*artifact)
    return open_runner(artifact)


def _describe(runner: Runner) -> str:
    """Which files or model, in which runtime: ``net.prototxt + net.caffemodel (opencv)``."""
    return f"{runner.description or runner.name} ({runner.name})"


def default_inputs(runners: Sequence[Runner]) -> list[np.ndarray]:
    """The recorded input if a side has one, else seeded random inputs of the input
    shapes a side declares (an ONNX model's inputs, a factory's ``input_shape``)."""
    for runner in runners:
        recorded = runner.recorded_inputs()
        if recorded:
            return recorded
    rng = np.random.default_rng(0)
    for runner in runners:
        shapes = runner.input_shapes()
        if shapes:
            return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    raise InputError(
        "no input to compare on",
        expected="inputs=..., a recorded input, or a model with fixed input shapes",
        found="models whose input shapes are not fixed",
        remedy="pass inputs (an array, a list, or a dict by input name; --input x.npy)",
    )


def _input_list(inputs: Any, runner: Runner) -> list[np.ndarray]:
    if isinstance(inputs, (str, Path)):
        inputs = np.load(inputs, allow_pickle=False)
    if isinstance(inputs, np.ndarray):
        return [inputs]
    if isinstance(inputs, Mapping):
        if all(name in inputs for name in runner.input_names):
            return [np.asarray(inputs[name]) for name in runner.input_names]
        return [np.asarray(value) for value in inputs.values()]
    return [np.asarray(value) for value in inputs]


def _feeds(inputs: Any, reference: Runner, candidate: Runner) -> Feeds:
    """Each side's inputs, in its input order."""
    if inputs is None:
        inputs = default_inputs([reference, candidate])
    return _input_list(inputs, reference), _input_list(inputs, candidate)


def _compare_layers(result: Comparison, reference: Runner, candidate: Runner, feeds: Feeds, name_map: Any) -> None:
    """Align the layers, walk both sides, explain the first divergence."""
    alignment = Alignment.of(reference, candidate, feeds, name_map)
    walk = LayerWalk(
        reference=reference, candidate=candidate, feeds=feeds, alignment=alignment, atol=result.atol, rtol=result.rtol
    ).run()
    result.outputs = walk.outputs()
    result.layers = walk.layers()
    result.unmatched_reference, result.unmatched_candidate = alignment.unmatched()
    result.first_divergence = walk.divergence()


def compare(
    reference: Any,
    candidate: Any,
    inputs: Any = None,
    *,
    name_map: SourceNames | None = None,
    per_layer: bool = False,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> Comparison:
    """Compare two artifacts (anything ``open_runner`` takes, or runners) on ``inputs``.

    Final outputs are paired by position. With ``per_layer``, every layer boundary
    both sides share is compared and the first divergence is explained.
    ``name_map`` (a ``NameMap`` from ``map_names``) overrides the candidate's provenance.
    """
    start = time.perf_counter()
    ref_runner, cand_runner = _as_runner(reference), _as_runner(candidate)
    feeds = _feeds(inputs, ref_runner, cand_runner)
    result = Comparison(reference=_describe(ref_runner), candidate=_describe(cand_runner), atol=atol, rtol=rtol)
    if per_layer:
        _compare_layers(result, ref_runner, cand_runner, feeds, name_map)
    else:
        reference_outputs = ref_runner.run(feeds[0])
        ref_runner.release()
        result.outputs = final_pairs(reference_outputs, cand_runner.run(feeds[1]), atol, rtol)
        cand_runner.release()
    result.seconds = time.perf_counter() - start
    return result


def layer_tensors(
    reference: Any, candidate: Any, source: str, target: str, inputs: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's ``source`` output and the candidate's ``target`` output (the
    last of each name), for a closer look at one layer (``plots.plot_difference``)."""
    ref_runner, cand_runner = _as_runner(reference), _as_runner(candidate)
    feeds = _feeds(inputs, ref_runner, cand_runner)
    found = []
    for runner, feed, name in ((ref_runner, feeds[0], source), (cand_runner, feeds[1], target)):
        kept = None
        for layer, array in runner.run_layers(feed, {name}):
            if layer == name:
                kept = array
        if kept is None:
            raise InputError(f"{runner.name} has no layer output {name!r}", remedy="use names from Comparison.layers")
        found.append(kept)
    return found[0], found[1]


__all__ = [
    "Comparison",
    "Divergence",
    "PairComparison",
    "align",
    "compare",
    "default_inputs",
    "layer_entries",
    "layer_tensors",
]
