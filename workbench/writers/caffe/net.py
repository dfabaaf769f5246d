"""The Caffe net being built from a graph: layers, blob names, problems.

``CaffeNet`` walks the graph in topological order and calls one converter per
node (``CAFFE_LAYERS``, keyed by ONNX op type). A converter adds Caffe layers
through ``add_layer`` or reports a ``Problem``; it never raises for an
unsupported case, so one pass lists every problem at once.

Names come from provenance: a layer is named after the first source layer of
its node (``layer1.0.conv1``), made unique; a layer's single top blob carries
the layer's name. When one node becomes several layers, the extra ones are
named ``<name>/<role>``. Which graph nodes and source layers each Caffe layer
implements is recorded next to it, so name mapping never parses names.

Element-wise layers (ReLU, BatchNorm, Scale, ...) are written in place
(``top == bottom``, the usual Caffe style) when no later node reads the blob
they overwrite and it is not a graph output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import onnx_ir as ir

from ...errors import Problem
from ...formats import caffe_pb2
from ...graph import provenance
from ...graph.names import UniqueNames
from ...graph.shapes import constant, static_shape
from ...registry import Registry

Converter = Callable[[ir.Node, "CaffeNet"], None]

CAFFE_LAYERS: Registry[Converter] = Registry("Caffe writer: ONNX op → Caffe layers")
"""ONNX op type -> function adding the Caffe layers for one node."""

DIALECTS = ("bvlc", "opencv")
OPENCV_ONLY_LAYERS = frozenset({"Permute", "ReLU6"})
"""Layer types OpenCV's Caffe importer knows but BVLC Caffe does not."""


@dataclass
class CaffeLayer:
    """One written layer: its parameters (no blobs), weights and where it came from."""

    param: caffe_pb2.LayerParameter
    weights: list[np.ndarray] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    values: list[str | None] = field(default_factory=list)  # graph value equal to each top
    blob_params: list[list[str]] = field(default_factory=list)  # source parameters of each blob

    def record(self) -> dict:
        return {
            "name": self.param.name,
            "type": self.param.type,
            "bottom": list(self.param.bottom),
            "top": list(self.param.top),
            "nodes": list(self.nodes),
            "sources": list(self.sources),
            "values": list(self.values),
            "blob_params": [list(names) for names in self.blob_params],
        }


@dataclass
class Flattened:
    """A value that is ``flatten(x)`` reordered by ``index``.

    Produced when a Transpose only feeds a flatten that only feeds InnerProducts:
    ``flatten(transpose(x))[j] == flatten(x)[index[j]]``, so the permutation can
    move into the InnerProduct weights and the layer reads ``x`` directly.
    """

    blob: str  # holds x
    index: np.ndarray
    nodes: list[ir.Node]


class CaffeNet:
    """The layers written so far for ``graph``, the blob of every converted value,
    and the problems found; ``convert`` fills them in one pass."""

    def __init__(self, graph: ir.Graph, dialect: str) -> None:
        self.graph = graph
        self.dialect = dialect
        self.layers: list[CaffeLayer] = []
        self.problems: list[Problem] = []
        self.flattened: dict[ir.Value, Flattened] = {}
        self.transposed: dict[ir.Value, tuple[ir.Node, tuple[int, ...]]] = {}
        self.absorbed: set[ir.Node] = set()  # nodes already written by an earlier node's layer
        self._blob_of: dict[ir.Value, str] = {}
        self._values_in_blob: dict[str, list[ir.Value]] = {}
        self._input_blobs: set[str] = set()
        self._names = UniqueNames()
        self._base_names: dict[ir.Node, str] = {}
        self._converted: set[ir.Node] = set()

    # names -----------------------------------------------------------------
    def unique(self, name: str) -> str:
        """``name`` if unused (as a layer or blob name), else ``name_1``, ``name_2``, ..."""
        return self._names.claim(name)

    def _layer_name(self, node: ir.Node, role: str | None) -> str:
        if node not in self._base_names:
            names = provenance.sources(node)
            self._base_names[node] = self.unique(names[0] if names else node.name or node.op_type)
            if role is None:
                return self._base_names[node]
        base = self._base_names[node]
        return self.unique(base if role is None else f"{base}/{role}")

    # reading the graph -------------------------------------------------------
    @staticmethod
    def shape(value: ir.Value | None) -> tuple[int, ...] | None:
        return static_shape(value)

    @staticmethod
    def constant(value: ir.Value | None) -> np.ndarray | None:
        return constant(value)

    def bottom(self, node: ir.Node, value: ir.Value | None) -> str:
        """The blob holding ``value`` as input of ``node`` (a problem if there is none)."""
        if value is not None and value in self._blob_of:
            return self._blob_of[value]
        name = value.name if value is not None else "?"
        if value is not None and self.constant(value) is not None:
            self.problem(
                node,
                "constant-input",
                f"constant tensor {name} is used as data; Caffe holds constants only as layer weights",
                "fold the constant into the neighbouring layer in the source model, or run simplify",
            )
        else:
            self.problem(
                node,
                "missing-input",
                f"input {name} is not produced by any Caffe layer",
                "check the graph: every data input must be a graph input or a node output",
            )
        return self.unique(f"missing:{name}")

    def bind(self, value: ir.Value, blob: str) -> None:
        self._blob_of[value] = blob
        self._values_in_blob.setdefault(blob, []).append(value)

    def alias(self, node: ir.Node, output: ir.Value, source: ir.Value) -> None:
        """Make ``output`` the same blob as ``source`` (for nodes written as nothing)."""
        self.bind(output, self.bottom(node, source))

    def can_overwrite(self, blob: str, node: ir.Node) -> bool:
        """Whether ``node`` may write ``blob`` in place: nothing later reads it."""
        if blob in self._input_blobs or blob not in self._values_in_blob:
            return False
        for value in self._values_in_blob[blob]:
            if value.is_graph_output():
                return False
            if any(user is not node and user not in self._converted for user in value.consumers()):
                return False
        return True

    # writing -------------------------------------------------------------------
    def add_input(self, value: ir.Value) -> None:
        shape = self.shape(value)
        blob = self.unique(value.name or "data")
        layer = caffe_pb2.LayerParameter(name=blob, type="Input", top=[blob])
        if shape is None:
            self.problems.append(
                Problem(
                    "error",
                    "dynamic-shape",
                    "",
                    "Input",
                    f"input {value.name} has no fixed shape ({value.shape}); Caffe inputs have fixed shapes",
                    "export with a fixed input shape (--input-shape 1,3,224,224)",
                )
            )
        else:
            layer.input_param.shape.add().dim.extend(shape)
        self.layers.append(CaffeLayer(layer, sources=[value.name or blob], values=[value.name]))
        self._input_blobs.add(blob)
        self.bind(value, blob)

    def add_layer(
        self,
        node: ir.Node,
        layer_type: str,
        bottoms: Sequence[str] | None = None,
        outputs: Sequence[ir.Value | None] | None = None,
        *,
        role: str | None = None,
        weights: Sequence[np.ndarray] = (),
        weight_inputs: Sequence[int | None] = (),
        in_place: bool = False,
        also: Sequence[ir.Node] = (),
    ) -> caffe_pb2.LayerParameter:
        """Append a layer for ``node`` and bind its tops; returns it for its parameters.

        ``bottoms`` default to the blob of the node's first input; ``outputs`` are
        the graph values the tops stand for (``None``: an intermediate blob),
        default the node's outputs. ``in_place`` writes the single top over the
        first bottom when that is safe. ``also`` are further nodes (absorbed into
        this layer) whose provenance the layer carries. ``weight_inputs`` gives, per
        weight, the node input it was taken from (``None``: made by the writer), so
        each blob records its own source parameters.
        """
        if bottoms is None:
            bottoms = [self.bottom(node, node.inputs[0])]
        if outputs is None:
            outputs = list(node.outputs)
        name = self._layer_name(node, role)
        layer = caffe_pb2.LayerParameter(name=name, type=layer_type, bottom=list(bottoms))
        if in_place and len(outputs) == 1 and bottoms and self.can_overwrite(bottoms[0], node):
            tops = [bottoms[0]]
        elif len(outputs) == 1:
            tops = [name]
        else:
            tops = [self.unique(f"{name}_{index}") for index in range(len(outputs))]
        layer.top.extend(tops)
        for top, value in zip(tops, outputs):
            self._values_in_blob.setdefault(top, [])
            if value is not None:
                self.bind(value, top)
        sources = [s for n in (*also, node) for s in provenance.sources(n)]
        by_input = provenance.params(node)
        self.layers.append(
            CaffeLayer(
                layer,
                [np.asarray(w, dtype=np.float32) for w in weights],
                nodes=[n.name or n.op_type for n in (*also, node)],
                sources=list(dict.fromkeys(sources)),
                values=[v.name if v is not None else None for v in outputs],
                blob_params=[
                    list(by_input.get(index, ())) if index is not None else []
                    for index in [*weight_inputs, *[None] * (len(weights) - len(weight_inputs))]
                ],
            )
        )
        return layer

    def discard(self, node: ir.Node, blobs: Sequence[str]) -> None:
        """Consume tops nobody needs with a Silence layer, so they are not net outputs."""
        if blobs:
            self.add_layer(node, "Silence", list(blobs), [], role="discard")

    def problem(self, node: ir.Node, kind: str, message: str, remedy: str = "", severity: str = "error") -> None:
        self.problems.append(
            Problem(severity, kind, node.name or "", node.op_type, message, remedy, provenance.sources(node))
        )

    def require_opencv(self, node: ir.Node, layer_type: str, remedy: str) -> bool:
        """True in the opencv dialect; in bvlc, reports that ``layer_type`` is OpenCV-only."""
        if self.dialect == "opencv":
            return True
        self.problem(
            node,
            "dialect",
            f"needs a {layer_type} layer, which OpenCV's Caffe importer knows but BVLC Caffe does not",
            remedy,
        )
        return False

    # the walk ----------------------------------------------------------------
    def convert(self) -> None:
        for value in self.graph.inputs:
            if not value.is_initializer():
                self.add_input(value)
        self.graph.sort()
        for node in self.graph:
            self._convert_node(node)
            self._converted.add(node)
        for value in self.graph.outputs:
            if value not in self._blob_of:
                self.problems.append(
                    Problem(
                        "error",
                        "output",
                        "",
                        "",
                        f"graph output {value.name} is not computed by any Caffe layer (a constant or folded value)",
                        "make the output depend on the input, or drop it from the model",
                    )
                )

    def _convert_node(self, node: ir.Node) -> None:
        if node in self.absorbed:
            return
        converter = CAFFE_LAYERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        integer_output = any(
            v.dtype is not None and (v.dtype.is_integer() or v.dtype == ir.DataType.BOOL) for v in node.outputs
        )
        if integer_output and node.op_type != "Constant":
            self.problem(
                node,
                "needs-simplify",
                "computes integers (shapes or indices), which Caffe layers cannot hold; "
                "this is usually a Shape/Gather/Concat chain from x.view(x.size(0), -1)",
                "run simplify (workbench.steps.simplify) so the chain folds into constants",
            )
        elif converter is None:
            self.problem(
                node,
                "unsupported-op",
                f"{node.domain + '::' if node.domain else ''}{node.op_type} has no Caffe equivalent in the writer",
                "replace the op in the source model, or run simplify if it only computes constants",
            )
        else:
            converter(node, self)
        if node.op_type == "Constant":
            return  # its value reaches Caffe as weights, or as a reported constant input
        for value in node.outputs:
            if value not in self._blob_of and value not in self.flattened and value not in self.transposed:
                # keep converting downstream nodes so every problem is listed
                self.bind(value, self.unique(f"unconverted:{value.name}"))

    def records(self) -> list[dict]:
        return [layer.record() for layer in self.layers]

    def outputs(self) -> dict[str, str]:
        return {v.name: self._blob_of[v] for v in self.graph.outputs if v in self._blob_of}

    def inputs(self) -> dict[str, str]:
        return {v.name: self._blob_of[v] for v in self.graph.inputs if v in self._blob_of}
