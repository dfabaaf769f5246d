"""Run MXNet files (``*-symbol.json`` + ``*.params``) without MXNet: the workbench's
MXNet reader builds the graph, onnxruntime runs it.

MXNet does not install beside this stack, so this is the nearest thing to running
the files: the reader keeps MXNet's semantics (eps default 1e-3, fix_gamma,
pooling conventions, preprocessing nodes) and names every value as MXNet's
``get_internals()`` names it (``<node>_output``); the reader itself is checked
against outputs recorded with real MXNet (``data/mxnet``). For comparison against
MXNet itself, compare against such a recording.

An MXNet symbol usually leaves its input shape open, and the reader needs one to
build the graph. The graph is therefore built for the shapes given
(``input_shapes=``), else declared in the symbol (``__shape__``), else for the
shapes of the first inputs it is run on: ``compare`` with a Caffe or ONNX model
that fixes its input shape needs no ``--input``. Layer sources, constants (MXNet's
params as ONNX initializers: a fix_gamma BatchNorm shows gamma = 1, as MXNet
computes it) and node evaluation are the built graph's, in onnxruntime.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..readers.mxnet_reader import declared_inputs, read_mxnet, recorded_output_sources
from .base import Inputs, LayerConstants, LayerStream, NodeEvaluation, Runner
from .onnxruntime_runner import OnnxRuntimeRunner


class MXNetRunner(Runner):
    """MXNet files, read by the workbench's MXNet reader and run in onnxruntime."""

    name = "onnxruntime"

    def __init__(
        self,
        symbol: str | Path,
        params: str | Path,
        *,
        input_shapes: Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.symbol, self.params = Path(symbol), Path(params)
        self.description = f"{self.symbol.name} + {self.params.name}"
        declared = declared_inputs(self.symbol, self.params)
        self.input_names = list(declared)
        self.output_names = []
        given = [tuple(int(d) for d in shape) for shape in input_shapes] if input_shapes else None
        fixed = [shape for shape in declared.values() if shape is not None]
        self._shapes = given or (fixed if len(fixed) == len(declared) and fixed else None)
        self._graph: OnnxRuntimeRunner | None = None
        self._built_for: list[tuple[int, ...]] | None = None
        if self._shapes is not None:
            self._build(self._shapes)

    def _build(self, shapes: Sequence[tuple[int, ...]]) -> OnnxRuntimeRunner:
        model = read_mxnet(self.symbol, self.params, input_shapes=dict(zip(self.input_names, shapes)))
        self._graph = OnnxRuntimeRunner(model)
        self._built_for = list(shapes)
        self.output_names = self._graph.output_names
        return self._graph

    def graph_for(self, inputs: Inputs) -> OnnxRuntimeRunner:
        """The graph built for the shapes of ``inputs`` (built again when they change)."""
        arrays = [inputs[name] for name in self.input_names] if isinstance(inputs, Mapping) else list(inputs)
        shapes = [tuple(np.shape(array)) for array in arrays]
        if self._graph is None or shapes != self._built_for:
            return self._build(shapes)
        return self._graph

    def input_shapes(self) -> list[tuple[int, ...]] | None:
        return list(self._shapes) if self._shapes is not None else None

    @property
    def layer_sources(self) -> Mapping[str, tuple[str, ...]]:
        """The built graph's provenance; before it is built, each ``<node>_output`` stands
        for its node (the names the reader gives)."""
        if self._graph is not None:
            return self._graph.layer_sources
        return recorded_output_sources(self.symbol)

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        return self.graph_for(inputs).run(inputs)

    def run_layers(self, inputs: Inputs, names: Collection[str] | None = None) -> LayerStream:
        return self.graph_for(inputs).run_layers(inputs, names)

    def layer_names(self, inputs: Inputs) -> list[str]:
        return self.graph_for(inputs).layer_names(inputs)

    def layer_constants(self, name: str) -> LayerConstants | None:
        return self._graph.layer_constants(name) if self._graph is not None else None

    def node_evaluation(self, name: str, inputs: Inputs) -> NodeEvaluation | None:
        return self.graph_for(inputs).node_evaluation(name, inputs)


__all__ = ["MXNetRunner"]
