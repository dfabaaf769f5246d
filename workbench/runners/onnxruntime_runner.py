"""Run a graph (or an ONNX file) in onnxruntime, the independent ONNX reference.

``run`` gives the final outputs from one session. ``run_layers`` gives every node's
outputs, named by value name, in graph (topological) order, without holding all
of them at once: the graph is cut into consecutive segments of nodes, each run as
its own session (an ``onnx_ir.GraphView`` over the original nodes; the weights
are handed to onnxruntime as buffers with ``add_external_initializers``, never
serialized). Between segments only the values a later segment still reads are kept. Peak memory is the weights plus one
segment's activations and weights (segments are cut at ``segment_nodes`` nodes
or ``segment_bytes`` of weights) plus the live values at the cut.

``layer_sources`` maps each value name to the provenance of the node that makes
it, and ``producer`` to that node, so ``compare`` aligns values by source layer
and can re-evaluate a node with other weights when looking for a cause.
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Iterator, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from ..errors import InputError
from ..graph import Model, provenance

DEFAULT_SEGMENT_NODES = 48
DEFAULT_SEGMENT_BYTES = 16 * 2**20  # weights copied for one segment at a time
BUFFER_MIN_ELEMENTS = 1024


def _session(payload: bytes | str, weights: Mapping[str, np.ndarray] | None = None) -> ort.InferenceSession:
    """A CPU session; ``weights`` are handed over as buffers, never serialized."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    buffers = [ort.OrtValue.ortvalue_from_numpy(array) for array in (weights or {}).values()]
    if weights is not None:
        # a short-lived segment session: memory goes back as soon as a tensor is freed
        options.enable_cpu_mem_arena = False
    if buffers:
        options.add_external_initializers(list(weights), buffers)
    session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    session.external_buffers = buffers  # the session reads these: keep them alive as long as it lives
    return session


def _in_memory_placeholder(name: str, array: np.ndarray) -> onnx.TensorProto:
    """An initializer whose data the session receives as a buffer
    (``add_external_initializers``): marked external, with no bytes of its own."""
    tensor = onnx.TensorProto(name=name, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "in-memory"), ("offset", "0"), ("length", str(array.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _set_value_info(info: onnx.ValueInfoProto, array: np.ndarray) -> None:
    """Give a segment input the dtype and shape of the array that will feed it."""
    tensor_type = info.type.tensor_type
    tensor_type.elem_type = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
    tensor_type.shape.Clear()
    for size in array.shape:
        tensor_type.shape.dim.add().dim_value = int(size)


def _outer_values(node: ir.Node) -> list[ir.Value]:
    """Values of the enclosing graph that a node's subgraphs (If, Loop) read."""
    found = []
    for attribute in node.attributes.values():
        graphs = (
            [attribute.as_graph()]
            if attribute.type == ir.AttributeType.GRAPH
            else list(attribute.as_graphs())
            if attribute.type == ir.AttributeType.GRAPHS
            else []
        )
        for graph in graphs:
            for inner in ir.traversal.RecursiveGraphIterator(graph):
                found.extend(v for v in inner.inputs if v is not None and v.graph is node.graph)
    return found


class OnnxRuntimeRunner:
    name = "onnxruntime"

    def __init__(
        self,
        model: Model | ir.Model | str | Path,
        *,
        segment_nodes: int = DEFAULT_SEGMENT_NODES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if isinstance(model, Model):
            model = model.ir
        self._ir: ir.Model | None = model if isinstance(model, ir.Model) else None
        self._path: Path | None = None if self._ir is not None else Path(model)
        if self._path is not None and not self._path.is_file():
            raise InputError(f"no such ONNX file: {self._path}", remedy="check the path")
        self.segment_nodes = segment_nodes
        self.segment_bytes = segment_bytes
        self._session: ort.InferenceSession | None = None
        self.input_names = [value.name for value in self.model.graph.inputs]
        self.output_names = [value.name for value in self.model.graph.outputs]

    @property
    def session(self) -> ort.InferenceSession:
        """One session for the whole graph, made on first use (``run_layers`` does
        not need it, so a per-layer comparison never holds a second copy of the weights)."""
        if self._session is None:
            payload = str(self._path) if self._path is not None else ir.to_proto(self.model).SerializeToString()
            self._session = _session(payload)
        return self._session

    @property
    def model(self) -> ir.Model:
        """The graph being run (read from the file on first use)."""
        if self._ir is None:
            self._ir = ir.load(self._path)
        return self._ir

    @property
    def producer(self) -> dict[str, ir.Node]:
        """Value name -> the node that computes it."""
        return {out.name: node for node in self.model.graph for out in node.outputs if out.name}

    @property
    def layer_sources(self) -> dict[str, tuple[str, ...]]:
        """Value name -> the source layers of the node that computes it."""
        return {name: provenance.sources(node) for name, node in self.producer.items()}

    def layer_names(self, inputs: object = None) -> list[str]:
        """The names ``run_layers`` yields, in order (known without running)."""
        return [out.name for node in self.model.graph if node.op_type != "Constant" for out in node.outputs if out.name]

    def feed(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs by graph input name, in each input's declared dtype."""
        if not isinstance(inputs, Mapping):
            inputs = dict(zip(self.input_names, inputs))
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise InputError(
                "inputs do not match the model's inputs",
                expected=", ".join(self.input_names),
                found=", ".join(inputs) or "nothing",
                remedy="give one array per model input, by name or in order",
            )
        dtypes = {value.name: value.dtype for value in self.model.graph.inputs}
        return {
            name: np.asarray(inputs[name], dtype=dtypes[name].numpy() if dtypes[name] is not None else np.float32)
            for name in self.input_names
        }

    def run(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Final outputs by name."""
        results = self.session.run(self.output_names, self.feed(inputs))
        return dict(zip(self.output_names, results))

    def run_layers(
        self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray], names: Collection[str] | None = None
    ) -> Iterator[tuple[str, np.ndarray]]:
        """Every node output (Constant nodes excepted), by value name, in graph order;
        only ``names`` when given (the others are then not even fetched)."""
        graph = self.model.graph
        nodes = list(graph)
        live: dict[str, np.ndarray] = dict(self.feed(inputs))
        last_use = self._last_use(nodes)
        graph_outputs = {value.name for value in graph.outputs}
        for start, end in self._segments(nodes):
            segment = nodes[start:end]
            wanted = [
                value.name
                for node in segment
                for value in node.outputs
                if value.name
                and (
                    names is None
                    or value.name in names
                    or value.name in graph_outputs
                    or last_use.get(value.name, -1) >= end
                )
            ]
            results = self._run_segment(segment, live, only=wanted)
            for node in segment:
                for value in node.outputs:
                    if value.name not in results:
                        continue
                    if node.op_type != "Constant" and (names is None or value.name in names):
                        yield value.name, results[value.name]
                    if last_use.get(value.name, -1) >= end or value.name in graph_outputs:
                        live[value.name] = results[value.name]
            del results
            for name in [n for n in live if last_use.get(n, -1) < end and n not in graph_outputs]:
                del live[name]

    def value(self, name: str, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> np.ndarray:
        """One intermediate value, computed by a session that stops there."""
        feed = self.feed(inputs)
        if name in feed:
            return feed[name]
        target = self.producer.get(name)
        if target is None:
            raise InputError(f"no value {name!r} in the model", remedy="use a name from run_layers")
        nodes = list(self.model.graph)
        return self._run_segment(nodes[: nodes.index(target) + 1], feed, only=[name])[name]

    def _segments(self, nodes: Sequence[ir.Node]) -> Iterator[tuple[int, int]]:
        """``(start, end)`` of consecutive node ranges, each at most ``segment_nodes``
        nodes and (unless one node alone is larger) ``segment_bytes`` of weights."""
        start, weight_bytes, seen = 0, 0, set()
        for index, node in enumerate(nodes):
            size = sum(
                v.const_value.nbytes
                for v in node.inputs
                if v is not None and v.is_initializer() and v.const_value is not None and v.name not in seen
            )
            seen.update(v.name for v in node.inputs if v is not None)
            if index > start and (index - start >= self.segment_nodes or weight_bytes + size > self.segment_bytes):
                yield start, index
                start, weight_bytes = index, 0
            weight_bytes += size
        if start < len(nodes):
            yield start, len(nodes)

    @staticmethod
    def _last_use(nodes: Sequence[ir.Node]) -> dict[str, int]:
        """Value name -> index of the last node that reads it."""
        last: dict[str, int] = {}
        for index, node in enumerate(nodes):
            for value in [*node.inputs, *_outer_values(node)]:
                if value is not None and value.name:
                    last[value.name] = index
        return last

    def _run_segment(
        self, segment: Sequence[ir.Node], available: Mapping[str, np.ndarray], only: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        produced = {value.name for node in segment for value in node.outputs if value.name}
        inputs: dict[str, ir.Value] = {}
        initializers: dict[str, ir.Value] = {}
        for node in segment:
            for value in [*node.inputs, *_outer_values(node)]:
                if value is None or not value.name or value.name in produced:
                    continue
                if value.is_initializer() and value.name not in available:
                    initializers[value.name] = value
                else:
                    inputs[value.name] = value
        outputs = [
            value for node in segment for value in node.outputs if value.name and (only is None or value.name in only)
        ]
        # shape inference reads small constants (axes, shapes, scales) from the model
        # itself; only weights large enough to matter are handed over as buffers
        embedded = {n: v for n, v in initializers.items() if v.const_value.size < BUFFER_MIN_ELEMENTS}
        view = ir.GraphView(
            list(inputs.values()),
            outputs,
            nodes=segment,
            initializers=list(embedded.values()),
            opset_imports=dict(self.model.graph.opset_imports),
        )
        proto = ir.serde.serialize_model(
            ir.Model(view, ir_version=self.model.ir_version, functions=list(self.model.functions.values()))
        )
        for info in proto.graph.input:
            _set_value_info(info, available[info.name])
        weights = {
            name: np.ascontiguousarray(value.const_value.numpy())
            for name, value in initializers.items()
            if name not in embedded
        }
        for name, array in weights.items():
            proto.graph.initializer.append(_in_memory_placeholder(name, array))
        session = _session(proto.SerializeToString(), weights)
        names = [value.name for value in outputs]
        feed = {name: available[name] for name in inputs}
        return dict(zip(names, session.run(names, feed)))
