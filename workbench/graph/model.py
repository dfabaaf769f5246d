"""The one in-memory model type that flows between readers, steps and writers.

``Model`` wraps an ``onnx_ir.Model`` (ONNX semantics, every node carrying
provenance, see ``provenance.py``) together with where it came from and the
reports of the steps that produced it. Steps never mutate their input model:
they copy it (the graph; weights are shared, see ``Model.copy``), so every artifact
of a conversion chain stays available for ``compare``.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import onnx_ir  # inside Model, the field ``ir`` hides the module's short name
import onnx_ir as ir

from . import provenance
from .report import StepReport
from .shapes import static_shape


def release_mapped_weights(model: onnx_ir.Model) -> None:
    """Unmap the weights a model reads from files (``onnx_ir.ExternalTensor``): their
    pages go back to the system and the next read maps them again. A tensor whose
    array someone still holds a view of stays mapped."""
    for graph in model.graphs():
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                try:
                    value.const_value.release()
                except BufferError:
                    pass


@dataclass(frozen=True)
class SourceInfo:
    """Where a model came from: its format, files and a short name."""

    format: str  # "pytorch", "onnx", "caffe", "mxnet", "msnhnet"
    paths: tuple[str, ...] = ()
    name: str = "model"


@dataclass
class Model:
    ir: ir.Model
    source: SourceInfo
    reports: list[StepReport] = field(default_factory=list)

    @property
    def graph(self) -> onnx_ir.Graph:
        return self.ir.graph

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def report(self) -> StepReport | None:
        """The report of the step that produced this model."""
        return self.reports[-1] if self.reports else None

    @property
    def input_names(self) -> list[str]:
        return [value.name or "" for value in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [value.name or "" for value in self.graph.outputs]

    @property
    def opset(self) -> int:
        return self.graph.opset_imports.get("", self.ir.opset_imports.get("", 0))

    def input_shapes(self) -> dict[str, tuple]:
        return {value.name or "": tuple(value.shape) if value.shape is not None else () for value in self.graph.inputs}

    def nodes(self) -> Iterator[onnx_ir.Node]:
        return iter(self.graph)

    def census(self) -> Counter:
        """How many nodes of each op type the graph holds."""
        return Counter(node.op_type for node in self.graph)

    def parameter_count(self) -> int:
        shapes = map(static_shape, self.graph.initializers.values())
        return sum(math.prod(shape) if shape is not None else 0 for shape in shapes)

    def copy(self) -> Model:
        """A copy to change, keeping source and reports: every node, value and attribute
        is new, the weight tensors are shared (a step replaces a value's tensor, it never
        writes into one; the chain's fingerprints check that). Copying costs the graph,
        not the weights: nothing is serialised."""
        return Model(self.ir.clone(), self.source, list(self.reports))

    def release_weights(self) -> None:
        """Give back the memory of weights mapped from files until they are read again
        (``release_mapped_weights``); weights held in memory stay."""
        release_mapped_weights(self.ir)

    def derive(self, model: onnx_ir.Model, report: StepReport) -> Model:
        """A new Model for the output of a step, with its report appended."""
        return Model(model, self.source, [*self.reports, report])

    def __repr__(self) -> str:
        ops = ", ".join(f"{op}×{n}" for op, n in sorted(self.census().items()))
        return (
            f"<Model {self.name!r} from {self.source.format}: {len(self.graph)} nodes "
            f"({ops}); inputs {self.input_shapes()}; outputs {self.output_names}>"
        )

    def _repr_html_(self) -> str:
        census = "".join(
            f"<tr><td>{html.escape(op)}</td><td>{count}</td></tr>" for op, count in sorted(self.census().items())
        )
        shapes = ", ".join(f"{html.escape(n)} {list(s)}" for n, s in self.input_shapes().items())
        traced = sum(1 for node in self.graph if provenance.sources(node))
        last = self.report._repr_html_() if self.report else ""
        return (
            f"<div><b>Model {html.escape(self.name)}</b> "
            f"<small>from {html.escape(self.source.format)}</small><br>"
            f"inputs: {shapes}<br>outputs: {html.escape(', '.join(self.output_names))}<br>"
            f"{len(self.graph)} nodes ({traced} with provenance), "
            f"{self.parameter_count():,} parameters"
            f"<details><summary>op census</summary><table>{census}</table></details>"
            f"{last}</div>"
        )
