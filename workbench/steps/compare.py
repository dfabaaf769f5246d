"""``compare``: run two artifacts of a conversion chain on the same input and find
where, and why, they part.

``compare`` is a short sequence of steps, each in its own module:

1. a runner for each side (``runners.open_runner``: a ``Model``, files, written
   files, a module, a recording or a runner), asked only through the runner
   protocol's capabilities;
2. the inputs: as given (or random ones of a given input shape), else the input a
   side recorded, else seeded random inputs of the fixed shapes the sides declare
   (``runner.input_shapes()``: a prototxt's inputs, an ONNX model's static
   dimensions, an MXNet symbol's or a factory's input shape);
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
from threadpoolctl import threadpool_limits

from ..artifacts import identify
from ..errors import InputError
from ..readers.input_shapes import InputShapes, shapes_by_name
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


def _tell_apart(reference: Runner, ref_given: Any, candidate: Runner, cand_given: Any) -> None:
    """Two copies of one model in other folders (a Caffe file against an edited copy, or
    against the files ``convert --fold-bn`` wrote) are described by their paths, not by
    the same file names twice."""
    if _describe(reference) != _describe(candidate):
        return
    for runner, given in ((reference, ref_given), (candidate, cand_given)):
        paths = _file_paths(given)
        if paths:
            runner.description = " + ".join(paths)


def _file_paths(given: Any) -> list[str]:
    """The model files behind what compare was given (paths, or a writer's files), or none."""
    sources = given if isinstance(given, (tuple, list)) else [given]
    try:
        artifact = identify(*sources)
    except InputError:  # a model in memory, a runner, recorded arrays
        return []
    return [str(path) for path in artifact.files.values() if path != artifact.sidecar]


def _describe(runner: Runner) -> str:
    """Which files or model, in which runtime: ``net.prototxt + net.caffemodel (opencv)``."""
    return f"{runner.description or runner.name} ({runner.name})"


NO_INPUT_REMEDY = (
    "pass inputs (an array, a list, or a dict by input name; --input x.npy) or an input shape "
    "(input_shape=(1, 3, 224, 224); --input-shape 1,3,224,224)"
)


def random_inputs(shapes: Sequence[Sequence[int]], seed: int = 0) -> list[np.ndarray]:
    """Seeded standard-normal float32 inputs of these shapes."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(shape)).astype(np.float32) for shape in shapes]


def declared_shapes(runners: Sequence[Runner]) -> list[tuple[int, ...]] | None:
    """The fixed input shapes the sides declare (a prototxt's inputs, an ONNX model's
    static dimensions, a factory's or MXNet symbol's input shape); an InputError when
    two sides declare different ones."""
    declared = [(runner, shapes) for runner in runners if (shapes := runner.input_shapes())]
    if not declared:
        return None
    first_runner, first = declared[0]
    for runner, shapes in declared[1:]:
        if [tuple(s) for s in shapes] != [tuple(s) for s in first]:
            raise InputError(
                "the two models declare different input shapes",
                expected=f"{_describe(first_runner)}: {[list(s) for s in first]}",
                found=f"{_describe(runner)}: {[list(s) for s in shapes]}",
                remedy=NO_INPUT_REMEDY,
            )
    return [tuple(s) for s in first]


def default_inputs(runners: Sequence[Runner]) -> list[np.ndarray]:
    """The recorded input if a side has one, else seeded random inputs of the fixed
    input shapes the sides declare (asked of every side: any pair of runners)."""
    for runner in runners:
        recorded = runner.recorded_inputs()
        if recorded:
            return recorded
    shapes = declared_shapes(runners)
    if shapes is None:
        raise InputError(
            "no input to compare on",
            expected="inputs=..., a recorded input, or a model with fixed input shapes",
            found="models whose input shapes are not fixed: " + "; ".join(_describe(runner) for runner in runners),
            remedy=NO_INPUT_REMEDY,
        )
    return random_inputs(shapes)


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


def _feeds(inputs: Any, reference: Runner, candidate: Runner, input_shape: InputShapes | None = None) -> Feeds:
    """Each side's inputs, in its input order: as given, else random ones of
    ``input_shape``, else ``default_inputs``."""
    if inputs is None and input_shape is not None:
        names = reference.input_names if isinstance(input_shape, Mapping) else ["input"]
        by_name = shapes_by_name(names, input_shape)
        inputs = dict(zip(by_name, random_inputs(list(by_name.values()))))
    if inputs is None:
        inputs = default_inputs([reference, candidate])
    return _input_list(inputs, reference), _input_list(inputs, candidate)


def _compare_layers(result: Comparison, reference: Runner, candidate: Runner, feeds: Feeds, name_map: Any) -> None:
    """Align the layers, walk both sides, explain the first divergence."""
    alignment = Alignment.of(reference, candidate, feeds, name_map)
    # one BLAS thread for the statistics of every layer pair: their dot products are
    # too small to share out, and a second BLAS thread waiting for a core the runtime
    # holds made them 5 to 10 times slower (1.7-4.4 s against 0.2-0.3 s on a ResNet-50)
    with threadpool_limits(limits=1, user_api="blas"):
        walk = LayerWalk(
            reference=reference,
            candidate=candidate,
            feeds=feeds,
            alignment=alignment,
            atol=result.atol,
            rtol=result.rtol,
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
    input_shape: InputShapes | None = None,
    name_map: SourceNames | None = None,
    per_layer: bool = False,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> Comparison:
    """Compare two artifacts (anything ``open_runner`` takes, or runners) on ``inputs``.

    Without ``inputs``: seeded random inputs of ``input_shape`` (one shape, or by
    input name), else the input a side recorded, else random inputs of the fixed
    shapes the sides declare. Final outputs are paired by position. With
    ``per_layer``, every layer boundary both sides share is compared and the first
    divergence is explained. ``name_map`` (a ``NameMap`` from ``map_names``)
    overrides the candidate's provenance.
    """
    start = time.perf_counter()
    ref_runner, cand_runner = _as_runner(reference), _as_runner(candidate)
    _tell_apart(ref_runner, reference, cand_runner, candidate)
    feeds = _feeds(inputs, ref_runner, cand_runner, input_shape)
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
    "random_inputs",
]
