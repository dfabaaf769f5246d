"""Run a graph (or an ONNX file) in onnxruntime, the independent ONNX reference.

``run`` gives the final outputs from one session. A graph held in memory is never
serialised with its weights for it (that cost a copy of them as protobuf and
another as bytes on top of onnxruntime's own): weights mapped from a file are read
by onnxruntime from the file, the others handed over as buffers. ``release`` drops
the session and unmaps weights read from files until the next run.

``run_layers`` gives every node's outputs, named by value name, in graph
(topological) order, without holding all of them at once: the graph is cut into
consecutive segments of nodes, each run as its own session (an
``onnx_ir.GraphView`` over the original nodes; the weights are handed to
onnxruntime as buffers with ``add_external_initializers``, never serialized).
Between segments only the values a later segment still reads are kept. Peak
memory is the weights plus one segment's activations and weights (segments are
cut at ``segment_nodes`` nodes, ``segment_bytes`` of weights or
``segment_output_bytes`` of outputs, whichever comes first) plus the live values
at the cut. Each segment costs a session (some
30 ms to make), so segments are as large as those bounds allow: a ResNet-50 is
two or three of them, not twenty. For a graph with weights up to
``KEPT_SEGMENT_BYTES`` the segment sessions are kept for the next ``run_layers``
(a comparison repeated, on other inputs or tolerances, makes none again), at the
cost of onnxruntime's copy of those weights, until ``release``.

``layer_sources`` maps each value name to the provenance of the node that makes
it, so ``compare`` aligns values by source layer. For diagnosis the runner shows
each node's constants by the input names of the op's schema (``layer_constants``)
and re-runs one node alone with other constants (``node_evaluation``,
``evaluate_node``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from ..errors import InputError, WorkbenchError
from ..graph import Model, provenance
from ..graph.model import release_mapped_weights
from ..graph.shapes import static_shape
from ..readers.onnx_reader import load_graph
from .base import Inputs, LayerConstants, LayerStream, NodeEvaluation, Runner

DEFAULT_SEGMENT_NODES = 512
DEFAULT_SEGMENT_BYTES = 64 * 2**20  # weights copied for one segment at a time
DEFAULT_SEGMENT_OUTPUT_BYTES = 64 * 2**20  # outputs one segment returns at once (from static shapes)
KEPT_SEGMENT_BYTES = 256 * 2**20  # graphs with weights up to this keep their segment sessions
BUFFER_MIN_ELEMENTS = 1024


# onnxruntime's errors share no base class but Exception: every one its bindings define
_ORT_ERRORS = tuple(
    error
    for error in vars(ort.capi.onnxruntime_pybind11_state).values()
    if isinstance(error, type) and issubclass(error, Exception)
)


@contextmanager
def _ort_errors_reported(doing: str) -> Iterator[None]:
    """onnxruntime refusing a model or its inputs becomes one ``WorkbenchError``."""
    try:
        yield
    except _ORT_ERRORS as error:
        lines = str(error).strip().splitlines()
        raise WorkbenchError(
            f"onnxruntime could not {doing}",
            found=lines[0] if lines else type(error).__name__,
            remedy="check the model with onnx.checker.check_model(model, full_check=True), "
            "and that the inputs match the model's input names, shapes and types",
        ) from error


def _run(session: ort.InferenceSession, outputs: list[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    with _ort_errors_reported("run the model"):
        return session.run(outputs, dict(feeds))


def _session(
    payload: bytes | str, weights: Mapping[str, np.ndarray] | None = None, weights_folder: str | None = None
) -> ort.InferenceSession:
    """A CPU session; ``weights`` are handed over as buffers, never serialized;
    ``weights_folder`` is where the model's external data files lie."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if weights_folder is not None:
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", weights_folder)
    weights = weights if weights is not None else {}
    buffers = [ort.OrtValue.ortvalue_from_numpy(array) for array in weights.values()]
    if weights:
        # a short-lived segment session: memory goes back as soon as a tensor is freed
        options.enable_cpu_mem_arena = False
        options.add_external_initializers(list(weights), buffers)
    with _ort_errors_reported("load the model"):
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
    found: list[ir.Value] = []
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


def _outputs(nodes: Sequence[ir.Node]) -> list[ir.Value]:
    """The named outputs of ``nodes``, in order."""
    return [value for node in nodes for value in node.outputs if value.name]


def _known_bytes(value: ir.Value) -> int:
    """The size of a value whose type and shape are static (0 when not known)."""
    shape = static_shape(value)
    return int(math.prod(shape) * value.dtype.itemsize) if shape is not None and value.dtype is not None else 0


def _names(values: Sequence[ir.Value]) -> list[str]:
    """The values' names (values without one left out: a graph's values all have one)."""
    return [value.name for value in values if value.name is not None]


def _constant(value: ir.Value) -> np.ndarray:
    """The array of a constant value (an initializer or a folded constant)."""
    if value.const_value is None:
        raise InputError(f"{value.name} is not a constant of the model", remedy="check the model with onnx.checker")
    return value.const_value.numpy()


def _segment_inputs(
    segment: Sequence[ir.Node], available: Mapping[str, np.ndarray]
) -> tuple[dict[str, ir.Value], dict[str, ir.Value]]:
    """What a segment reads from outside itself: values fed to it (graph inputs and
    earlier results), and the weights it needs from the model."""
    produced = set(_names(_outputs(segment)))
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
    return inputs, initializers


class _Liveness:
    """Which values must outlive the segment that ends at ``end``: those a later node
    reads, and the graph outputs."""

    def __init__(self, nodes: Sequence[ir.Node], graph_outputs: Collection[str]) -> None:
        self.last_use: dict[str, int] = {}
        for index, node in enumerate(nodes):
            for value in [*node.inputs, *_outer_values(node)]:
                if value is not None and value.name:
                    self.last_use[value.name] = index
        self.graph_outputs = set(graph_outputs)

    def needed_after(self, name: str, end: int) -> bool:
        return self.last_use.get(name, -1) >= end or name in self.graph_outputs


def _reported(
    segment: Sequence[ir.Node], results: Mapping[str, np.ndarray], names: Collection[str] | None
) -> LayerStream:
    """A segment's results in node order, Constant nodes left out."""
    for node in segment:
        if node.op_type == "Constant":
            continue
        for name in _names(node.outputs):
            if name in results and (names is None or name in names):
                yield name, results[name]


def _input_names(node: ir.Node) -> list[str]:
    """The names the op's schema gives the node's inputs (``input_<i>`` for ops
    without a schema)."""
    count = len(node.inputs)
    try:
        schema = onnx.defs.get_schema(
            node.op_type, _opsets(node).get(node.domain, 0) or onnx.defs.onnx_opset_version(), node.domain
        )
    except onnx.defs.SchemaError:
        return [f"input_{index}" for index in range(count)]
    formal = [parameter.name for parameter in schema.inputs]
    return [formal[index] if index < len(formal) else f"input_{index}" for index in range(count)]


def _opsets(node: ir.Node) -> dict[str, int]:
    """The opset versions of the graph that holds the node."""
    return dict(node.graph.opset_imports) if node.graph is not None else {}


def _attribute_numbers(node: ir.Node) -> dict[str, float]:
    return {
        name: float(attribute.value)
        for name, attribute in node.attributes.items()
        if attribute.type in (ir.AttributeType.FLOAT, ir.AttributeType.INT)
    }


def evaluate_node(node: ir.Node, arrays: Mapping[int, np.ndarray]) -> list[np.ndarray]:
    """Run one node alone in onnxruntime, its inputs given by index (the others taken
    from the node's constants)."""
    names = [f"input_{i}" if value is not None else "" for i, value in enumerate(node.inputs)]
    proto = ir.serde.serialize_node(node)
    del proto.input[:]
    proto.input.extend(names)
    del proto.output[:]
    outputs = [f"output_{i}" for i in range(len(node.outputs))]
    proto.output.extend(outputs)
    feeds, infos = {}, []
    for index, value in enumerate(node.inputs):
        if value is None:
            continue
        array = arrays[index] if index in arrays else _constant(value)
        feeds[names[index]] = np.ascontiguousarray(array)
        info = onnx.ValueInfoProto(name=names[index])
        _set_value_info(info, feeds[names[index]])
        infos.append(info)
    graph = onnx.helper.make_graph([proto], "node", infos, [onnx.ValueInfoProto(name=o) for o in outputs])
    opsets = [onnx.helper.make_opsetid(domain, version) for domain, version in _opsets(node).items()]
    model = onnx.helper.make_model(graph, opset_imports=opsets, ir_version=8)
    return _run(_session(model.SerializeToString()), outputs, feeds)


class GraphNodeEvaluation(NodeEvaluation):
    """A node of the runner's graph, run alone in onnxruntime; its computed inputs are
    the values the graph gives them on ``inputs`` (computed once, when first needed)."""

    def __init__(self, runner: OnnxRuntimeRunner, node: ir.Node, inputs: Inputs) -> None:
        super().__init__(node.op_type, node.name or "", ", ".join(provenance.sources(node)) or node.name or "")
        self._runner, self._node, self._inputs = runner, node, inputs
        self._computed: dict[int, np.ndarray] | None = None

    def constant(self, index: int) -> np.ndarray | None:
        value = self._node.inputs[index] if index < len(self._node.inputs) else None
        return value.const_value.numpy() if value is not None and value.const_value is not None else None

    def evaluate(self, replaced: Mapping[int, np.ndarray]) -> list[np.ndarray]:
        if self._computed is None:
            self._computed = {
                index: self._runner.value(value.name, self._inputs)
                for index, value in enumerate(self._node.inputs)
                if value is not None and value.name is not None and value.const_value is None
            }
        return evaluate_node(self._node, {**self._computed, **replaced})

    def alternatives(self, index: int) -> Iterator[tuple[str, np.ndarray]]:
        own, array = self._node.inputs[index], self.constant(index)
        if own is None or array is None:
            return
        shape = array.shape
        graph = self._runner.model.graph
        users: dict[str, tuple[ir.Node, int]] = {}
        for node in graph:
            for position, value in enumerate(node.inputs):
                if value is not None and value.is_initializer() and value.name:
                    users.setdefault(value.name, (node, position))
        for name, value in graph.initializers.items():
            if value is not own and value.const_value is not None and tuple(value.shape or ()) == shape:
                yield _user_label(name, users.get(name)), value.const_value.numpy()


def _user_label(name: str, user: tuple[ir.Node, int] | None) -> str:
    """``layer (source parameters)`` of the node that reads an initializer first."""
    if user is None:
        return name
    node, index = user
    label = ", ".join(provenance.sources(node)) or node.name or name
    params = ", ".join(provenance.params(node).get(index, ()))
    return f"{label} ({params})" if params else label


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(
        self,
        model: Model | ir.Model | str | Path,
        *,
        segment_nodes: int = DEFAULT_SEGMENT_NODES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        segment_output_bytes: int = DEFAULT_SEGMENT_OUTPUT_BYTES,
    ) -> None:
        self._ir: ir.Model | None = None
        self._path: Path | None = None
        if isinstance(model, Model):
            self.description, self._ir = model.name, model.ir
        elif isinstance(model, ir.Model):
            self._ir = model
        else:
            self._path = Path(model)
            if not self._path.is_file():
                raise InputError(f"no such ONNX file: {self._path}", remedy="check the path")
            self.description = self._path.name
        self.segment_nodes = segment_nodes
        self.segment_bytes = segment_bytes
        self.segment_output_bytes = segment_output_bytes
        self._session: ort.InferenceSession | None = None
        self._kept_segments: dict[tuple, ort.InferenceSession] = {}
        # an initializer also listed as an input (ONNX IR 3) is a weight, not fed at run time
        self.input_names = _names(self._fed_inputs())
        self.output_names = _names(self.model.graph.outputs)

    @property
    def session(self) -> ort.InferenceSession:
        """One session for the whole graph, made on first use (``run_layers`` does
        not need it, so a per-layer comparison never holds a second copy of the weights).
        A small file is read by onnxruntime itself; a large one, mapped (``model``), and
        a graph in memory are handed over as ``_graph_session`` describes."""
        if self._session is None:
            mapped = any(isinstance(v.const_value, ir.ExternalTensor) for v in self.model.graph.initializers.values())
            self._session = self._graph_session() if self._path is None or mapped else _session(str(self._path))
        return self._session

    def _graph_session(self) -> ort.InferenceSession:
        """The whole graph as a session without serialising its weights: those mapped
        from files (one folder) are read by onnxruntime from the files, the other large
        ones given as buffers (which onnxruntime copies), small ones embedded (graph
        inputs that are also initializers, IR 3 defaults, stay embedded too)."""
        graph = self.model.graph
        folders = {
            value.const_value.base_dir
            for value in graph.initializers.values()
            if isinstance(value.const_value, ir.ExternalTensor)
        }
        folder = str(folders.pop()) if len(folders) == 1 else None
        inputs = {id(value) for value in graph.inputs}
        weights = {
            name: np.ascontiguousarray(_constant(value))
            for name, value in graph.initializers.items()
            if id(value) not in inputs
            and not (folder is not None and isinstance(value.const_value, ir.ExternalTensor))
            and _constant(value).size >= BUFFER_MIN_ELEMENTS
        }
        embedded = [value for name, value in graph.initializers.items() if name not in weights]
        proto = self._segment_proto(list(graph), list(graph.inputs), list(graph.outputs), embedded)
        for name, array in weights.items():
            proto.graph.initializer.append(_in_memory_placeholder(name, array))
        return _session(proto.SerializeToString(), weights, folder)

    @property
    def _keeps_segments(self) -> bool:
        """Whether ``run_layers`` keeps its segment sessions between calls: for graphs
        whose weights (held once more by the kept sessions) are at most ``KEPT_SEGMENT_BYTES``."""
        weights = sum(v.const_value.nbytes for v in self.model.graph.initializers.values() if v.const_value is not None)
        return weights <= KEPT_SEGMENT_BYTES

    def release(self) -> None:
        """Drop the sessions and unmap the weights read from files, until the next run."""
        self._session = None
        self._kept_segments.clear()
        if self._ir is not None:
            release_mapped_weights(self._ir)

    @property
    def model(self) -> ir.Model:
        """The graph being run (read from the file on first use, weights mapped)."""
        if self._ir is None:
            self._ir = load_graph(str(self._path))
        return self._ir

    @property
    def producer(self) -> dict[str, ir.Node]:
        """Value name -> the node that computes it."""
        return {out.name: node for node in self.model.graph for out in node.outputs if out.name}

    @property
    def layer_sources(self) -> dict[str, tuple[str, ...]]:
        """Value name -> the source layers of the node that computes it."""
        return {name: provenance.sources(node) for name, node in self.producer.items()}

    def layer_names(self, inputs: Inputs | None = None) -> list[str]:
        """The names ``run_layers`` yields, in order (known without running)."""
        return [out.name for node in self.model.graph if node.op_type != "Constant" for out in node.outputs if out.name]

    def _fed_inputs(self) -> list[ir.Value]:
        return [value for value in self.model.graph.inputs if not value.is_initializer()]

    def input_shapes(self) -> list[tuple[int, ...]] | None:
        shapes = []
        for value in self._fed_inputs():
            dims = list(value.shape) if value.shape is not None else [None]
            fixed = tuple(d for d in dims if isinstance(d, int))
            if len(fixed) != len(dims):
                return None
            shapes.append(fixed)
        return shapes

    def layer_constants(self, name: str) -> LayerConstants | None:
        """The constant inputs of the node computing ``name``, by the names of its op's
        schema (``scale``, ``B``, ``input_mean``, ``input_var`` for BatchNormalization),
        and its numeric attributes."""
        node = self.producer.get(name)
        if node is None:
            return None
        arrays = {
            formal: value.const_value.numpy()
            for formal, value in zip(_input_names(node), node.inputs)
            if value is not None and value.const_value is not None
        }
        return LayerConstants(node.op_type, arrays, _attribute_numbers(node))

    def node_evaluation(self, name: str, inputs: Inputs) -> NodeEvaluation | None:
        node = self.producer.get(name)
        return GraphNodeEvaluation(self, node, inputs) if node is not None else None

    def feed(self, inputs: Inputs) -> dict[str, np.ndarray]:
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
        dtypes = {value.name: value.dtype.numpy() for value in self.model.graph.inputs if value.dtype is not None}
        return {name: np.asarray(inputs[name], dtype=dtypes.get(name, np.float32)) for name in self.input_names}

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Final outputs by name."""
        results = _run(self.session, self.output_names, self.feed(inputs))
        return dict(zip(self.output_names, results))

    def run_layers(self, inputs: Inputs, names: Collection[str] | None = None) -> LayerStream:
        """Every node output (Constant nodes excepted), by value name, in graph order;
        only ``names`` when given (the others are then not even fetched)."""
        nodes = list(self.model.graph)
        live: dict[str, np.ndarray] = dict(self.feed(inputs))
        liveness = _Liveness(nodes, self.output_names)
        for start, end in self._segments(nodes):
            segment = nodes[start:end]
            wanted = [
                name
                for name in _names(_outputs(segment))
                if names is None or name in names or liveness.needed_after(name, end)
            ]
            results = self._run_segment(segment, live, only=wanted, keep=self._keeps_segments)
            yield from _reported(segment, results, names)
            live.update((name, array) for name, array in results.items() if liveness.needed_after(name, end))
            del results
            for name in [n for n in live if not liveness.needed_after(n, end)]:
                del live[name]

    def value(self, name: str, inputs: Inputs) -> np.ndarray:
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
        nodes and (unless one node alone is larger) ``segment_bytes`` of weights and
        ``segment_output_bytes`` of outputs whose size is known."""
        start, weight_bytes, output_bytes = 0, 0, 0
        seen: set[str | None] = set()
        for index, node in enumerate(nodes):
            size = sum(
                v.const_value.nbytes
                for v in node.inputs
                if v is not None and v.is_initializer() and v.const_value is not None and v.name not in seen
            )
            produced = sum(_known_bytes(value) for value in node.outputs)
            seen.update(v.name for v in node.inputs if v is not None)
            full = (
                index - start >= self.segment_nodes
                or weight_bytes + size > self.segment_bytes
                or output_bytes + produced > self.segment_output_bytes
            )
            if index > start and full:
                yield start, index
                start, weight_bytes, output_bytes = index, 0, 0
            weight_bytes += size
            output_bytes += produced
        if start < len(nodes):
            yield start, len(nodes)

    def _run_segment(
        self,
        segment: Sequence[ir.Node],
        available: Mapping[str, np.ndarray],
        only: Collection[str] | None = None,
        *,
        keep: bool = False,
    ) -> dict[str, np.ndarray]:
        """Run consecutive nodes as one session, fed from ``available``; returns the
        outputs named in ``only`` (every output when None). With ``keep``, the session
        is kept for the next run of the same nodes, outputs and input shapes."""
        inputs, initializers = _segment_inputs(segment, available)
        outputs = [value for value in _outputs(segment) if only is None or value.name in only]
        names = _names(outputs)
        key = (
            id(segment[0]),
            id(segment[-1]),
            tuple(names),
            tuple((name, available[name].shape, available[name].dtype.str) for name in inputs),
        )
        session = self._kept_segments.get(key)
        if session is None:
            session = self._segment_session(segment, inputs, initializers, outputs, available)
            if keep:
                self._kept_segments[key] = session
        return dict(zip(names, _run(session, names, {name: available[name] for name in inputs})))

    def _segment_session(
        self,
        segment: Sequence[ir.Node],
        inputs: Mapping[str, ir.Value],
        initializers: Mapping[str, ir.Value],
        outputs: list[ir.Value],
        available: Mapping[str, np.ndarray],
    ) -> ort.InferenceSession:
        # shape inference reads small constants (axes, shapes, scales) from the model
        # itself; only weights large enough to matter are handed over as buffers
        arrays = {name: _constant(value) for name, value in initializers.items()}
        embedded = [value for name, value in initializers.items() if arrays[name].size < BUFFER_MIN_ELEMENTS]
        weights = {
            name: np.ascontiguousarray(array) for name, array in arrays.items() if array.size >= BUFFER_MIN_ELEMENTS
        }
        proto = self._segment_proto(segment, list(inputs.values()), outputs, embedded)
        for info in proto.graph.input:
            _set_value_info(info, available[info.name])
        for name, array in weights.items():
            proto.graph.initializer.append(_in_memory_placeholder(name, array))
        return _session(proto.SerializeToString(), weights)

    def _segment_proto(
        self, segment: Sequence[ir.Node], inputs: list[ir.Value], outputs: list[ir.Value], embedded: list[ir.Value]
    ) -> onnx.ModelProto:
        """A model over the original nodes (a ``GraphView``: nothing is copied) with
        the small constants embedded."""
        view = ir.GraphView(
            inputs, outputs, nodes=segment, initializers=embedded, opset_imports=dict(self.model.graph.opset_imports)
        )
        # a GraphView is serialized as a Graph is (onnx_ir types the argument as Graph only)
        model = ir.Model(view, ir_version=self.model.ir_version, functions=list(self.model.functions.values()))  # type: ignore[arg-type]
        return ir.serde.serialize_model(model)
