"""The MsnhNet layer list being built from a graph, and the per-node context converters use.

MsnhNet runs a *sequence* of layers: each layer reads the output of the layer
before it, and only ``route`` (concatenate or add layers named by index) and
``varop`` (arithmetic with layers named by index) read others. A graph is a DAG,
so the walk keeps, for every graph value, the layer whose output holds its data
(``MsnhNet.holder``), and a converter asks for its input as *the previous layer*
(``ctx.feed``): when the value is not the output of the last layer written, a
one-input ``route`` copies it there; when the converter needs the data as a
(C, H, W) tensor other than the layer's, a ``view`` gives it those dimensions.

Every layer's output is one sample's data in row-major order, ``batch`` samples
after another; a graph value held by a layer has exactly that data (its
per-sample element count equals the layer's, which the walk checks after every
node), so Reshape, Flatten, Squeeze and Unsqueeze move no data: they are the
same layer. Axis 0 of every graph value is the batch axis (MsnhNet's ``batch``).

The dimensions of every layer are computed as MsnhNet's builder computes them
(``NetBuilder::buildNetFromMsnhNet``): a layer's (C, H, W) comes from the layer
before it (``route``: from the layers it names), and ``softmax`` leaves them 0 —
so nothing that needs an image may follow a softmax. The network input is not a
layer; when it must be named by index (read by two branches, or added), an
identity ``act`` (``activation: none``) becomes layer 0.

Names come from provenance: each layer records the graph nodes and source layers
it implements and the graph value its output equals, for the sidecar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from ...errors import Problem
from ...graph import provenance
from ...graph.converter import ConverterContext, OnnxNodeContext
from ...graph.opset import opset_of
from ...graph.shapes import static_shape
from ...registry import Registry

TARGET = "MsnhNet"

Dims = tuple[int, int, int]
Converter = Callable[["MsnhNodeContext"], None]

MSNHNET_LAYERS: Registry[Converter] = Registry("MsnhNet writer: ONNX op → MsnhNet layers")
"""ONNX op type (and since-opset) -> function adding the MsnhNet layers for one node."""

NO_DIMS: Dims = (0, 0, 0)  # what MsnhNet's softmax reports as its output dimensions
FLOAT_MAX = 3.4028234e38  # just below FLT_MAX: atof then a cast to float gives FLT_MAX
ACTIVATION_HOSTS = ("conv", "connect", "batchnorm")  # layer kinds with an ``activation`` key
_FAILED = object()  # the holder of a value whose node could not be converted


def canonical_dims(shape: Sequence[int]) -> Dims:
    """The (C, H, W) a graph value of ``shape`` (batch first) has as an image:
    ``(N, C, H, W)`` -> ``(C, H, W)``, ``(N, F)`` -> ``(F, 1, 1)``, ``(N, C, L)`` ->
    ``(C, 1, L)``, longer shapes fold their trailing axes into W."""
    rest = [int(d) for d in shape[1:]]
    if not rest:
        return (1, 1, 1)
    if len(rest) == 1:
        return (rest[0], 1, 1)
    if len(rest) == 2:
        return (rest[0], 1, rest[1])
    return (rest[0], rest[1], math.prod(rest[2:]))


def as_dims(values: Sequence[int]) -> Dims:
    """Three sizes as (C, H, W)."""
    return (int(values[0]), int(values[1]), int(values[2]))


def per_sample(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape[1:])


@dataclass(eq=False)
class MsnhLayer:
    """One written layer: its kind and keys in written order (a list of layers, as
    ``route``'s ``layers``, is written as their indexes), its weights in ``.msnhbin``
    order, the (C, H, W) MsnhNet gives its output and where it came from."""

    kind: str
    params: dict[str, Any]
    dims: Dims
    size: int  # floats per sample of its output (MsnhNet's outputNum)
    weights: list[np.ndarray] = field(default_factory=list)
    weight_params: list[list[str]] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    transforms: list[str] = field(default_factory=list)
    value: str | None = None  # the graph value its output equals
    shape: tuple[int, ...] | None = None  # that value's shape
    role: str | None = None  # what an extra layer of a node does ("pad", "route", "view", ...)

    @property
    def activation(self) -> str:
        return str(self.params.get("activation", "none"))

    def add_weights(self, arrays: Sequence[np.ndarray], params: Sequence[Sequence[str]] = ()) -> None:
        for index, array in enumerate(arrays):
            self.weights.append(np.ascontiguousarray(array, dtype=np.float32))
            self.weight_params.append(list(params[index]) if index < len(params) else [])

    def stands_for(self, value: ir.Value, sources: Sequence[str], nodes: Sequence[str] = ()) -> None:
        """The layer's output now equals ``value``, made by ``nodes`` from ``sources``."""
        self.value = value.name
        self.shape = static_shape(value)
        self.nodes += [n for n in nodes if n not in self.nodes]
        self.sources += [s for s in sources if s not in self.sources]


class MsnhNet:
    """The layers written so far for ``graph``, the holder of every converted value,
    and the problems found; ``convert`` (in ``writer``) fills them in one pass."""

    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph
        self.opset = opset_of(graph.opset_imports)
        self.layers: list[MsnhLayer] = []
        self.problems: list[Problem] = []
        self.absorbed: set[ir.Node] = set()  # nodes an earlier converter already wrote
        self.input: ir.Value | None = None
        self.input_shape: tuple[int, ...] = ()
        self.batch = 1
        self._held: dict[ir.Value, Any] = {}  # value -> MsnhLayer, None (the network input) or _FAILED
        self._input_layer: MsnhLayer | None = None
        self._nodes_of: dict[str, set[ir.Node]] = {}  # source layer -> the nodes standing for it
        for node in graph:
            for source in provenance.sources(node):
                self._nodes_of.setdefault(source, set()).add(node)

    # ---- the network input --------------------------------------------------
    def set_input(self, value: ir.Value, shape: tuple[int, ...]) -> None:
        self.input, self.input_shape, self.batch = value, shape, shape[0]
        self._held[value] = None

    @property
    def input_dims(self) -> Dims:
        return canonical_dims(self.input_shape)

    def input_layer(self) -> MsnhLayer:
        """Layer 0 as an identity of the network input, so that it can be named by index."""
        if self._input_layer is None:
            dims = self.input_dims
            layer = MsnhLayer("act", {"activation": "none"}, dims, math.prod(dims), role="input")
            if self.input is not None:
                layer.stands_for(self.input, [self.input.name or "input"])
            self.layers.insert(0, layer)
            self._input_layer = layer
        return self._input_layer

    # ---- values ---------------------------------------------------------------
    def bind(self, value: ir.Value, layer: MsnhLayer) -> None:
        self._held[value] = layer

    def share(self, value: ir.Value, other: ir.Value) -> None:
        """``other`` holds the same data as ``value`` (the network input stays the input)."""
        self._held[other] = self._held[value]

    def called_elsewhere(self, nodes: Sequence[ir.Node]) -> bool:
        """Whether a source layer of ``nodes`` also stands for other nodes: a module called
        more than once (one ReLU module after every block), whose outputs compare lines up
        only if each call keeps a layer of its own."""
        others = {other for node in nodes for s in provenance.sources(node) for other in self._nodes_of.get(s, ())}
        return bool(others - set(nodes))

    def held(self, value: ir.Value) -> MsnhLayer | None:
        """The layer holding ``value`` as it is (None for the network input or a failed value)."""
        found = self._held.get(value)
        return found if isinstance(found, MsnhLayer) else None

    def fail(self, value: ir.Value) -> None:
        self._held.setdefault(value, _FAILED)

    def is_bound(self, value: ir.Value) -> bool:
        return value in self._held

    def holder(self, ctx: ConverterContext, value: ir.Value | None) -> MsnhLayer | None:
        """The layer holding ``value``, layer 0 made an identity for the network input;
        None after reporting a value no layer computes (or that failed earlier, silently)."""
        if value is None or value not in self._held:
            name = value.name if value is not None else "?"
            is_constant = value is not None and value.const_value is not None
            ctx.problem(
                "constant-input" if is_constant else "missing-input",
                f"{name} is {'a constant' if is_constant else 'not computed by any layer'}; "
                "MsnhNet layers hold constants only as weights",
                "fold the constant into a neighbouring layer in the source model, or run simplify",
            )
            return None
        held = self._held[value]
        if held is _FAILED:
            ctx.ok = False
            return None
        return self.input_layer() if held is None else held

    def size_of(self, value: ir.Value) -> int | None:
        """Values per sample of the layer holding ``value`` (None: not converted)."""
        held = self._held.get(value, _FAILED)
        if held is _FAILED:
            return None
        return math.prod(self.input_dims) if held is None else held.size

    @property
    def last(self) -> MsnhLayer | None:
        return self.layers[-1] if self.layers else None

    def is_previous(self, value: ir.Value) -> bool:
        """Whether ``value`` is what the next layer reads (the last layer's output, or the
        network input while no layer is written)."""
        held = self._held.get(value, _FAILED)
        if held is None:
            return not self.layers or self._input_layer is self.last
        return held is not _FAILED and held is self.last

    def append(self, layer: MsnhLayer) -> MsnhLayer:
        self.layers.append(layer)
        return layer

    def index(self, layer: MsnhLayer) -> int:
        return next(i for i, candidate in enumerate(self.layers) if candidate is layer)

    def weight_count(self) -> int:
        return sum(int(w.size) for layer in self.layers for w in layer.weights)


class MsnhNodeContext(OnnxNodeContext):
    """A MsnhNet converter's view of one node: the shared contract, plus the layers it writes."""

    def __init__(self, net: MsnhNet, node: ir.Node) -> None:
        super().__init__(net.problems, node, net.opset)
        self.net = net

    # ---- inputs as layers ------------------------------------------------------
    def holder(self, index: int = 0) -> MsnhLayer | None:
        """The layer holding input ``index``, to be named by index (``route``, ``varop``)."""
        return self.net.holder(self, self.value(index))

    def dims_of(self, index: int = 0) -> Dims | None:
        """The (C, H, W) of input ``index`` as an image (None for an unknown shape)."""
        shape = self.static_shape(index)
        return canonical_dims(shape) if shape is not None else None

    def feed(self, index: int = 0, dims: Dims | None = None) -> Dims | None:
        """Make input ``index`` the previous layer's output, with ``dims`` when given
        (a ``route`` copies it when another layer came last, a ``view`` reshapes it).
        Returns the dims it then has, or None after a problem."""
        value = self.value(index)
        if value is None or not self.net.is_previous(value):
            held = self.net.holder(self, value)
            if held is None:
                return None
            self._copy(held, value)
        elif not self.net.layers:
            if dims is None or dims == self.net.input_dims:
                return self.net.input_dims
            self.net.input_layer()  # a view cannot be layer 0
        previous = self.net.last
        assert previous is not None
        if dims is not None and previous.dims != dims:
            return self._view(previous, dims, value)
        return previous.dims

    def _copy(self, held: MsnhLayer, value: ir.Value | None) -> None:
        route = self.net.append(MsnhLayer("route", {"layers": [held]}, held.dims, held.size, role="route"))
        self._copied(route, held, value)

    def _view(self, previous: MsnhLayer, dims: Dims, value: ir.Value | None) -> Dims | None:
        if previous.dims == NO_DIMS:
            self.problem(
                "softmax-dims",
                "reads the output of a MsnhNet softmax as an image; MsnhNet's softmax leaves its output "
                "without dimensions, so no layer that needs them can follow it",
                "apply softmax last, or only before a Linear layer",
            )
            return None
        if math.prod(dims) != previous.size:
            self.problem(
                "shape",
                f"needs its input as {dims}, which does not hold the {previous.size} values per sample MsnhNet has",
                "check the graph's shapes (simplify with a fixed input shape)",
            )
            return None
        view = self.net.append(MsnhLayer("view", view_params(dims), dims, previous.size, role="view"))
        self._copied(view, previous, value)
        return dims

    def _copied(self, layer: MsnhLayer, held: MsnhLayer, value: ir.Value | None) -> None:
        """``layer`` holds the same data as ``held``: it stands for the same value."""
        layer.value, layer.shape = held.value, held.shape
        layer.sources = list(held.sources)
        layer.nodes = [self.node.name or self.node.op_type]
        if value is not None and held.value is None:
            layer.value, layer.shape = value.name, static_shape(value)

    def previous(self) -> tuple[Dims, int]:
        """(dims, values per sample) of what the next layer reads: the last layer's
        output, or the network input while no layer is written."""
        last = self.net.last
        return (last.dims, last.size) if last is not None else (self.net.input_dims, math.prod(self.net.input_dims))

    def bring(self, layer: MsnhLayer) -> None:
        """Make ``layer``'s output the previous one (a route copy unless it came last)."""
        if layer is not self.net.last:
            self.net.append(MsnhLayer("route", {"layers": [layer]}, layer.dims, layer.size, role="route"))
            self._copied(self.net.layers[-1], layer, None)

    def first_layer_allowed(self) -> None:
        """Before a layer kind MsnhNet refuses as layer 0 (varop, view, route, a deconv of
        a non-square input) reads the network input: an identity layer 0 takes its place."""
        if not self.net.layers:
            self.net.input_layer()

    def view_previous(self, dims: Dims) -> Dims | None:
        """The previous layer's output viewed as ``dims`` (a ``view`` unless it has them)."""
        self.first_layer_allowed()
        previous = self.net.last
        assert previous is not None
        return dims if previous.dims == dims else self._view(previous, dims, None)

    def layer_for(self, value: ir.Value, dims: Dims) -> MsnhLayer | None:
        """A layer holding ``value`` with ``dims``, to be named by index: its holder, or
        a route copy viewed as ``dims`` (written now)."""
        held = self.net.holder(self, value)
        if held is None or held.dims == dims:
            return held
        self._copy(held, value)
        return self.net.last if self._view(held, dims, value) is not None else None

    # ---- writing -----------------------------------------------------------------
    def add_layer(
        self,
        kind: str,
        params: dict[str, Any],
        dims: Dims,
        *,
        size: int | None = None,
        weights: Sequence[np.ndarray] = (),
        weight_inputs: Sequence[int | None] = (),
        output: ir.Value | None | bool = True,
        role: str | None = None,
        also: Sequence[ir.Node] = (),
    ) -> MsnhLayer:
        """Append a layer for this node. ``output``: the graph value its output equals
        (True: the node's first output; None: an intermediate). ``weight_inputs``
        gives, per weight, the node input it came from, for its source parameters."""
        layer = MsnhLayer(kind, params, dims, math.prod(dims) if size is None else size, role=role)
        layer.add_weights(weights, self.weight_params(weight_inputs))
        nodes = [*also, self.node]
        layer.nodes = [n.name or n.op_type for n in nodes]
        layer.sources = list(dict.fromkeys(s for n in nodes for s in provenance.sources(n)))
        target = self.node.outputs[0] if output is True else output if isinstance(output, ir.Value) else None
        if target is not None:
            layer.stands_for(target, ())
            self.net.bind(target, layer)
        return self.net.append(layer)

    def weight_params(self, inputs: Sequence[int | None]) -> list[list[str]]:
        """The source parameters of the weights taken from node inputs ``inputs``."""
        by_input = provenance.params(self.node)
        return [list(by_input.get(index, ())) if index is not None else [] for index in inputs]

    def alias(self, index: int = 0, output: int = 0) -> None:
        """The node moves no data: its output ``output`` is held where input ``index`` is."""
        value = self.value(index)
        if value is None or not self.net.is_bound(value):
            self.net.holder(self, value)  # reports
            return
        target = self.node.outputs[output]
        self.net.share(value, target)
        held = self.net.held(target)
        if target.is_graph_output() and held is not None:
            # the layer's output is the graph output (a final Flatten): it stands for it, as the runner shapes it
            held.stands_for(target, provenance.sources(self.node), [self.node.name or self.node.op_type])

    def absorbing_layer(self, kinds: Sequence[str]) -> MsnhLayer | None:
        """The layer that computed input 0, when this node can be merged into it: it is
        the last layer, of one of ``kinds``, and nothing else reads its output. A node of
        a module called more than once (one ReLU module after every block) stays a layer
        of its own, so that each of its outputs lines up with the source's in compare."""
        value = self.value(0)
        last = self.net.last
        if value is None or last is None or last.kind not in kinds or not self.net.is_previous(value):
            return None
        if self.net.called_elsewhere([self.node]):
            return None
        if value.is_graph_output() or len(value.consumers()) != 1 or last.value != value.name:
            return None
        return last

    def absorb(self, layer: MsnhLayer, weights: Sequence[np.ndarray] = (), weight_inputs: Sequence[int] = ()) -> None:
        """Merge this node into ``layer`` (found by ``absorbing_layer``): its output is the layer's."""
        layer.add_weights(weights, self.weight_params(weight_inputs))
        layer.stands_for(self.node.outputs[0], provenance.sources(self.node), [self.node.name or self.node.op_type])
        self.net.bind(self.node.outputs[0], layer)


def view_params(dims: Dims) -> dict[str, Any]:
    """A ``view`` to (C, H, W): MsnhNet's builder passes ``dim0`` as the output width,
    ``dim1`` as the height and ``dim2`` as the channels (checked in the real runtime)."""
    return {"dim0": dims[2], "dim1": dims[1], "dim2": dims[0]}


def pair(params: dict[str, Any], key: str, x: int, y: int, default: int) -> None:
    """Write ``key`` once when X and Y agree (and differ from the default), else
    ``keyX`` and ``keyY`` (MsnhNet fills an unset X/Y from the scalar)."""
    if x == y:
        if x != default:
            params[key] = x
    else:
        params[f"{key}X"], params[f"{key}Y"] = x, y


def float_text(value: float) -> str:
    """A float32 as MsnhNet's parser reads it (its number pattern, then atof): the
    shortest text that gives the same float32."""
    return str(np.float32(value))
