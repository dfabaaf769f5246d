"""The Caffe net being built from a graph: layers, blob names, problems.

``CaffeNet`` walks the graph in topological order and calls one converter per
node (``CAFFE_LAYERS``, keyed by ONNX op type and since-opset) with a
``CaffeNodeContext``: the shared converter contract (``workbench.graph.converter``:
problems, opset-aware attributes, resolved pads) plus the layers it adds. A
converter adds Caffe layers through ``ctx.add_layer`` or reports a ``Problem``
with ``ctx.problem``; it never raises for an unsupported case, so one pass lists
every problem at once.

Names come from provenance: a layer is named after the first source layer of
its node (``layer1.0.conv1``), made unique; a layer's single top blob carries
the layer's name. When one node becomes several layers, the extra ones are
named ``<name>/<role>``. Which graph nodes and source layers each Caffe layer
implements is recorded next to it, so name mapping never parses names.

Element-wise layers (ReLU, BatchNorm, Scale, ...) are written in place
(``top == bottom``, the usual Caffe style) when no later node reads the blob
they overwrite and it is not a graph output.

Three rules hold for every node:

* **Constants used as data** (a Concat with a constant piece, ``Max(x, c)``) get
  a blob of their own: the graph input of the highest rank is cut down to its
  first element ``e`` (one Slice per axis longer than 1) and an InnerProduct with zero weights
  and the flattened constant as its bias gives ``0 * e + c = c`` exactly (for a
  finite ``e``), reshaped to the constant's shape. Constants that a layer stores
  as weights never take this path.
* **A graph output of rank below 2 is refused**: OpenCV DNN returns a blob of
  rank 0 or 1 as a column ``(n, 1)`` where BVLC Caffe keeps ``(n,)``, so the two
  runtimes would give different shapes (the numbers agree). Restoring the shape
  in our own runner would hide that from the one place a user finds out; network
  outputs carry a batch axis, so the remedy is to keep it.
* **A graph output that is a graph input** (through ``Identity``, ``Dropout``, a
  one-input ``Max``...) is copied by a Split layer: a Caffe net whose output is
  its input blob has no layer to compute it, and OpenCV refuses to run it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from ...errors import Problem
from ...formats import caffe_pb2
from ...graph import provenance
from ...graph.converter import ConverterContext, OnnxNodeContext, constant_value
from ...graph.names import UniqueNames
from ...graph.opset import opset_of
from ...graph.shapes import static_shape
from ...registry import Registry

TARGET = "Caffe"

Converter = Callable[["CaffeNodeContext"], None]

CAFFE_LAYERS: Registry[Converter] = Registry("Caffe writer: ONNX op → Caffe layers")
"""ONNX op type (and since-opset) -> function adding the Caffe layers for one node."""

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

    def record(self) -> dict[str, object]:
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
        self.opset = opset_of(graph.opset_imports)
        self.layers: list[CaffeLayer] = []
        self.problems: list[Problem] = []
        self.flattened: dict[ir.Value, Flattened] = {}
        self.transposed: dict[ir.Value, tuple[ir.Node, tuple[int, ...]]] = {}
        self.absorbed: set[ir.Node] = set()  # nodes already written by an earlier node's layer
        self._blob_of: dict[ir.Value, str] = {}
        self._current: dict[str, list[ir.Value]] = {}  # the graph values a blob holds since its last write
        self._input_blobs: set[str] = set()
        self._names = UniqueNames()
        self._base_names: dict[ir.Node, str] = {}
        self._element: str | None = None  # an input's first element, the source of constant blobs
        self._element_source: ir.Value | None = None

    def context(self, node: ir.Node) -> CaffeNodeContext:
        """The context a converter writes ``node`` through."""
        return CaffeNodeContext(self, node)

    # names -----------------------------------------------------------------
    def unique(self, name: str) -> str:
        """``name`` if unused (as a layer or blob name), else ``name_1``, ``name_2``, ..."""
        return self._names.claim(name)

    def layer_name(self, node: ir.Node, role: str | None) -> str:
        """The layer name of ``node`` (its first source layer), or ``<name>/<role>`` for its extra layers."""
        if node not in self._base_names:
            names = provenance.sources(node)
            self._base_names[node] = self.unique(names[0] if names else node.name or node.op_type)
            if role is None:
                return self._base_names[node]
        base = self._base_names[node]
        return self.unique(base if role is None else f"{base}/{role}")

    # blobs -------------------------------------------------------------------
    def bottom(self, ctx: CaffeNodeContext, value: ir.Value | None) -> str:
        """The blob holding ``value`` as an input of the node ``ctx`` converts: a constant
        gets its own blob (see the module docstring); a problem if there is none."""
        if value is not None and value in self._blob_of:
            return self._blob_of[value]
        name = value.name if value is not None else "?"
        data = constant_value(value)
        if value is not None and data is not None:
            index = next((i for i, v in enumerate(ctx.node.inputs) if v is value), None)
            found = self.constant_blob(ctx, data, value.name or "constant", value, index)
            if found is not None:
                return found
        else:
            ctx.problem(
                "missing-input",
                f"input {name} is not produced by any Caffe layer",
                "check the graph: every data input must be a graph input or a node output",
            )
        return self.unique(f"missing:{name}")

    def constant_blob(
        self,
        ctx: CaffeNodeContext,
        data: np.ndarray,
        name: str,
        value: ir.Value | None = None,
        weight_input: int | None = None,
    ) -> str | None:
        """A blob equal to the constant ``data`` (``0 * e + c`` from an input's first element,
        see the module docstring), standing for ``value``; None after a problem."""
        element = self._element_blob(ctx)
        if element is None:
            ctx.problem(
                "constant-input",
                f"constant tensor {name} is used as data, and the graph has no input (of rank 1 or more) "
                "to derive a blob from",
                "fold the constant computation with simplify",
            )
            return None
        flat = np.asarray(data, np.float32).reshape(-1)
        element_rank = len(static_shape(self._element_source) or ())
        shaped = data.ndim == 2 and data.shape[0] == 1 and element_rank >= 2
        layer = ctx.add_layer(
            "InnerProduct",
            [element],
            [value if shaped else None],
            role=f"constant_{name}",
            weights=[np.zeros((flat.size, 1), np.float32), flat],
            weight_inputs=[None, weight_input],
        )
        layer.inner_product_param.num_output = flat.size
        if element_rank < 2:
            layer.inner_product_param.axis = 0  # a 0-d or 1-d element: all of it is the one input feature
        if shaped:
            return str(layer.top[0])
        reshape = ctx.add_layer("Reshape", [layer.top[0]], [value], role=f"constant_{name}/shape")
        reshape.reshape_param.shape.dim.extend(data.shape)
        return str(reshape.top[0])

    def producer_type(self, blob: str) -> str | None:
        """The type of the layer that last wrote ``blob``."""
        return next((layer.param.type for layer in reversed(self.layers) if blob in layer.param.top), None)

    def _element_blob(self, ctx: CaffeNodeContext) -> str | None:
        """``x[0, 0, ..., 0]`` (all axes kept, length 1) of the graph input of the highest rank, made once."""
        if self._element is not None:
            return self._element
        known = [v for v in self.graph.inputs if v in self._blob_of and static_shape(v)]  # rank 1 or more
        source = max(known, key=lambda v: len(static_shape(v) or ()), default=None)  # the image, if any
        shape = static_shape(source)
        if source is None or shape is None:
            return None
        self._element_source = source
        blob = self._blob_of[source]
        for axis, size in enumerate(shape):
            if size > 1:
                cut = ctx.add_layer("Slice", [blob], [None, None], role=f"element_axis{axis}")
                cut.slice_param.axis = axis
                cut.slice_param.slice_point.append(1)
                ctx.discard([cut.top[1]])
                blob = cut.top[0]
        self._element = blob
        return blob

    def bind(self, value: ir.Value, blob: str) -> None:
        self._blob_of[value] = blob
        self._current.setdefault(blob, []).append(value)

    def claim_blob(self, blob: str, value: ir.Value | None) -> None:
        """A layer writes ``blob``; ``value`` is the graph value it holds (None: an intermediate)."""
        self._current[blob] = []
        if value is not None:
            self.bind(value, blob)

    def can_overwrite(self, blob: str, node: ir.Node) -> bool:
        """Whether ``node`` may write ``blob`` in place: it is the only reader of what the blob
        holds. Not only later readers matter: BVLC Caffe gives a blob with several readers a
        Split whose copies the readers take, so an in-place reader's top would no longer be
        its bottom ("Top blob produced by multiple sources")."""
        if blob in self._input_blobs or blob not in self._current:
            return False
        for value in self._current[blob]:
            if value.is_graph_output():
                return False
            if any(user is not node for user in value.consumers()):
                return False
        return True

    # writing -------------------------------------------------------------------
    def add_input(self, value: ir.Value) -> None:
        shape = static_shape(value)
        blob = self.unique(value.name or "data")
        layer = caffe_pb2.LayerParameter(name=blob, type="Input", top=[blob])
        if shape is None:
            ConverterContext(self.problems, name="", op_type="Input").problem(
                "dynamic-shape",
                f"input {value.name} has no fixed shape ({value.shape}); Caffe inputs have fixed shapes",
                "export with a fixed input shape (--input-shape 1,3,224,224)",
            )
        else:
            layer.input_param.shape.add().dim.extend(shape)
        self.layers.append(CaffeLayer(layer, sources=[value.name or blob], values=[value.name]))
        self._input_blobs.add(blob)
        self.bind(value, blob)

    def tops(self, node: ir.Node, name: str, bottoms: Sequence[str], count: int, in_place: bool) -> list[str]:
        """Top names of ``node``'s layer ``name``: the first bottom when written in place (and safe)."""
        if in_place and count == 1 and bottoms and self.can_overwrite(bottoms[0], node):
            return [bottoms[0]]
        if count == 1:
            return [name]
        return [self.unique(f"{name}_{index}") for index in range(count)]

    # the walk ----------------------------------------------------------------
    def convert(self) -> None:
        for value in self.graph.inputs:
            if not value.is_initializer():
                self.add_input(value)
        self.graph.sort()
        for node in self.graph:
            if node not in self.absorbed:
                self._convert_node(self.context(node))
        for value in self.graph.outputs:
            if value not in self._blob_of:
                ConverterContext(self.problems, name="", op_type="").problem(
                    "output",
                    f"graph output {value.name} is not computed by any Caffe layer (a constant or folded value)",
                    "make the output depend on the input, or drop it from the model",
                )
            elif value.shape is not None and len(value.shape) < 2:
                self._refuse_rank(value)
            elif self._blob_of[value] in self._input_blobs:
                self._copy_output(value)

    def _refuse_rank(self, value: ir.Value) -> None:
        producer = value.producer()
        report = (
            self.context(producer) if producer is not None else ConverterContext(self.problems, name="", op_type="")
        )
        report.problem(
            "rank",
            f"graph output {value.name} has shape {list(value.shape or ())}: OpenCV DNN returns a blob of rank "
            "below 2 as a column (n, 1) where BVLC Caffe keeps its shape, so the two runtimes would disagree",
            "keep the batch axis in the source model (x.flatten(1) rather than x.squeeze(), x[None] for a vector)",
        )

    def _copy_output(self, value: ir.Value) -> None:
        """A Split layer copying an input blob to the graph output ``value`` (a net needs a layer per output)."""
        bottom = self._blob_of[value]
        producer = value.producer()
        if producer is not None:
            layer = self.context(producer).add_layer("Split", [bottom], [value], role="copy")
            self._blob_of[value] = str(layer.top[0])
            return
        top = self.unique(f"{value.name}/copy")
        param = caffe_pb2.LayerParameter(name=top, type="Split", bottom=[bottom], top=[top])
        self.layers.append(CaffeLayer(param, values=[value.name]))
        self.claim_blob(top, value)

    def _convert_node(self, ctx: CaffeNodeContext) -> None:
        node = ctx.node
        if node.outputs and constant_value(node.outputs[0]) is not None:
            return  # a Constant (or an Identity of one): weights of its users, or a constant blob when used as data
        if _computes_integers(node):
            ctx.problem(
                "needs-simplify",
                "computes integers (shapes or indices), which Caffe layers cannot hold; "
                "this is usually a Shape/Gather/Concat chain from x.view(x.size(0), -1)",
                "run simplify (workbench.steps.simplify) so the chain folds into constants",
            )
        else:
            converter = ctx.converter(CAFFE_LAYERS, TARGET)
            if converter is not None:
                converter(ctx)
        for value in node.outputs:
            if value not in self._blob_of and value not in self.flattened and value not in self.transposed:
                read = value.is_graph_output() or any(user not in self.absorbed for user in value.consumers())
                if ctx.ok and read:
                    ctx.problem(
                        "unwritten-output",
                        f"{node.op_type} output {value.name} is read but the writer computes only the others",
                        "use only the node's first output in the source model",
                    )
                # keep converting downstream nodes so every problem is listed
                self.bind(value, self.unique(f"unconverted:{value.name}"))

    def records(self) -> list[dict[str, object]]:
        return [layer.record() for layer in self.layers]

    def outputs(self) -> dict[str, str]:
        return {v.name or "": self._blob_of[v] for v in self.graph.outputs if v in self._blob_of}

    def inputs(self) -> dict[str, str]:
        return {v.name or "": self._blob_of[v] for v in self.graph.inputs if v in self._blob_of}


def _computes_integers(node: ir.Node) -> bool:
    """True for a node (other than a Constant) with an integer or boolean output."""
    return node.op_type != "Constant" and any(
        v.dtype is not None and (v.dtype.is_integer() or v.dtype == ir.DataType.BOOL) for v in node.outputs
    )


def _blob_params(node: ir.Node, count: int, weight_inputs: Sequence[int | None]) -> list[list[str]]:
    """The source parameters of each of ``count`` weights taken from ``weight_inputs``."""
    by_input = provenance.params(node)
    indices = [*weight_inputs, *[None] * (count - len(weight_inputs))][:count]
    return [list(by_input.get(index, ())) if index is not None else [] for index in indices]


class CaffeNodeContext(OnnxNodeContext):
    """A Caffe converter's view of one node: the shared contract, plus the net it adds layers to."""

    def __init__(self, net: CaffeNet, node: ir.Node) -> None:
        super().__init__(net.problems, node, net.opset)
        self.net = net

    @property
    def dialect(self) -> str:
        return self.net.dialect

    def bottom(self, value: ir.Value | None) -> str:
        """The blob holding ``value`` (a problem if no layer produced it)."""
        return self.net.bottom(self, value)

    def add_layer(
        self,
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
        """Append a layer for this node and bind its tops; returns it for its parameters.

        ``bottoms`` default to the blob of the node's first input; ``outputs`` are the
        graph values the tops stand for (``None``: an intermediate blob), default the
        node's outputs. ``in_place`` writes the single top over the first bottom when
        that is safe. ``also`` are further nodes (absorbed into this layer) whose
        provenance the layer carries. ``weight_inputs`` gives, per weight, the node
        input it was taken from (``None``: made by the writer), so each blob records
        its own source parameters.
        """
        net, node = self.net, self.node
        bottoms = [self.bottom(node.inputs[0])] if bottoms is None else list(bottoms)
        outputs = list(node.outputs) if outputs is None else list(outputs)
        name = net.layer_name(node, role)
        layer = caffe_pb2.LayerParameter(name=name, type=layer_type, bottom=bottoms)
        tops = net.tops(node, name, bottoms, len(outputs), in_place)
        layer.top.extend(tops)
        for top, value in zip(tops, outputs):
            net.claim_blob(top, value)
        nodes = (*also, node)
        net.layers.append(
            CaffeLayer(
                layer,
                [np.asarray(w, dtype=np.float32) for w in weights],
                nodes=[n.name or n.op_type for n in nodes],
                sources=list(dict.fromkeys(s for n in nodes for s in provenance.sources(n))),
                values=[v.name if v is not None else None for v in outputs],
                blob_params=_blob_params(node, len(weights), weight_inputs),
            )
        )
        return layer

    def add_scale(
        self,
        bottom: str,
        scale: np.ndarray | None,
        bias: np.ndarray | None = None,
        *,
        axis: int = 1,
        outputs: Sequence[ir.Value | None] | None = None,
        role: str | None = None,
        weight_inputs: Sequence[int | None] = (),
    ) -> str:
        """``bottom * scale + bias`` with ``scale``/``bias`` over the axes from ``axis`` (either
        may be None), in place when safe; the top stands for ``outputs`` (default: the node's
        first output). Returns the top.

        OpenCV DNN folds a Scale that follows a (De)Convolution into its weights assuming one
        value per channel (an assertion when there are more), so after those layers a scale
        over other axes is a two-bottom Scale by a constant blob, which OpenCV leaves alone,
        and a bias a Scale after it."""
        outputs = [self.node.outputs[0]] if outputs is None else outputs
        shape = scale.shape if scale is not None else bias.shape if bias is not None else ()
        per_channel = axis == 1 and len(shape) == 1
        if not per_channel and self.net.producer_type(bottom) in ("Convolution", "Deconvolution"):
            top = self._scale_by_blob(bottom, scale, shape, axis, outputs if bias is None else [None], role)
            if top is None:
                return bottom
            if bias is None:
                return top
            bottom, scale = top, None
        return self._scale_by_weights(bottom, scale, bias, shape, axis, outputs, role, weight_inputs)

    def _scale_by_blob(
        self,
        bottom: str,
        scale: np.ndarray | None,
        shape: tuple[int, ...],
        axis: int,
        outputs: Sequence[ir.Value | None],
        role: str | None,
    ) -> str | None:
        """``bottom * scale`` (ones for None) as a two-bottom Scale by a constant blob; None after a problem."""
        factor = self.constant_blob(np.ones(shape, np.float32) if scale is None else scale, f"{role or 'scale'}")
        if factor is None:
            return None
        layer = self.add_layer("Scale", [bottom, factor], outputs, role=f"{role or 'scale'}/by_blob")
        layer.scale_param.axis = axis
        return str(layer.top[0])

    def _scale_by_weights(
        self,
        bottom: str,
        scale: np.ndarray | None,
        bias: np.ndarray | None,
        shape: tuple[int, ...],
        axis: int,
        outputs: Sequence[ir.Value | None],
        role: str | None,
        weight_inputs: Sequence[int | None],
    ) -> str:
        """``bottom * scale + bias`` as a Scale layer holding them (ones for no scale), in place when safe."""
        weights = [scale if scale is not None else np.ones(shape, np.float32)]
        if bias is not None:
            weights.append(bias)
        layer = self.add_layer(
            "Scale", [bottom], outputs, role=role, weights=weights, weight_inputs=weight_inputs, in_place=True
        )
        param = layer.scale_param
        if axis != 1:
            param.axis = axis
        if len(shape) != 1:
            param.num_axes = len(shape)
        param.bias_term = bias is not None
        return str(layer.top[0])

    def constant_blob(self, data: np.ndarray, name: str) -> str | None:
        """A blob holding the constant ``data`` (see ``CaffeNet.constant_blob``); None after a problem."""
        return self.net.constant_blob(self, data, name)

    def alias(self) -> None:
        """Make the node's first output the same blob as its first input (a node written as nothing)."""
        self.net.bind(self.node.outputs[0], self.bottom(self.node.inputs[0]))

    def discard(self, blobs: Sequence[str]) -> None:
        """Consume tops nobody needs with a Silence layer, so they are not net outputs."""
        if blobs:
            self.add_layer("Silence", list(blobs), [], role="discard")

    def require_opencv(self, layer_type: str, remedy: str) -> bool:
        """True in the opencv dialect; in bvlc, reports that ``layer_type`` is OpenCV-only."""
        if self.dialect == "opencv":
            return True
        self.problem(
            "dialect",
            f"needs a {layer_type} layer, which OpenCV's Caffe importer knows but BVLC Caffe does not",
            remedy,
        )
        return False
