"""A static drawing of a graph as inline SVG, for notebook records that outlive the kernel.

Hand-written on purpose: the usual layout engine (Graphviz) is a system binary that
is not installed where the notebooks run, and Netron lays out in the browser with
JavaScript served by a live kernel. An executed notebook saved as HTML must still
show the graph, so the drawing is plain SVG markup computed here.

The layout is a small layered (Sugiyama-style) drawing:

1. Layer = topological depth: graph inputs are layer 0, a node sits one layer below
   its deepest producer, a graph output one layer below its producer.
2. An edge spanning more than one layer gets a waypoint in every layer it crosses,
   so it runs between the boxes of those layers instead of through them.
3. Order within a layer starts from graph order; sweeps then move each item to the
   mean position (barycentre) of its neighbours in the layer above (downward
   sweep) or below (upward sweep), which removes most edge crossings.
4. x = running sum of the item widths of a layer, each layer centred on the widest;
   y = layer x row height.

Large graphs are cut to their first ``max_nodes`` nodes in graph order, and the
drawing says how many nodes and edges were left out.
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass, field
from statistics import fmean

import onnx_ir as ir

from ..graph import Model, provenance

DEFAULT_MAX_NODES = 400

BOX_WIDTH = 150
BOX_HEIGHT = 36
TERMINAL_WIDTH = 130
WAYPOINT_WIDTH = 14
GAP_X = 18
GAP_Y = 34
MARGIN = 12
CHAR_WIDTH = 6.3  # average glyph width of the 11px sans-serif labels, to truncate text
BARYCENTRE_SWEEPS = 4

# Fill colours by op family, so the structure reads at a glance.
OP_COLOURS = {
    **dict.fromkeys(("Conv", "ConvTranspose", "Gemm", "MatMul"), "#dbe9f6"),
    **dict.fromkeys(("BatchNormalization", "InstanceNormalization", "LayerNormalization", "LRN"), "#e3f1d8"),
    **dict.fromkeys(
        (
            "Relu",
            "PRelu",
            "LeakyRelu",
            "Sigmoid",
            "Tanh",
            "Clip",
            "Elu",
            "Selu",
            "HardSigmoid",
            "HardSwish",
            "Softmax",
            "LogSoftmax",
            "Softplus",
            "Mish",
            "Gelu",
        ),
        "#fde6d6",
    ),
    **dict.fromkeys(
        (
            "MaxPool",
            "AveragePool",
            "GlobalAveragePool",
            "GlobalMaxPool",
            "ReduceMean",
            "ReduceMax",
            "Resize",
            "Upsample",
        ),
        "#ebe1f3",
    ),
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Sum", "Concat", "Split"), "#f5f2d0"),
    **dict.fromkeys(
        (
            "Reshape",
            "Flatten",
            "Transpose",
            "Squeeze",
            "Unsqueeze",
            "Shape",
            "Gather",
            "Slice",
            "Constant",
            "Cast",
            "Identity",
        ),
        "#eeeeee",
    ),
}
DEFAULT_COLOUR = "#ffffff"
TERMINAL_COLOUR = "#fff8e1"

_marker_ids = itertools.count()


@dataclass
class _Item:
    """One box in the drawing: a node, a graph input/output, or an edge waypoint."""

    key: str
    kind: str  # "node", "input", "output" or "waypoint"
    layer: int
    width: float
    title: str = ""
    lines: tuple[str, ...] = ()
    colour: str = DEFAULT_COLOUR
    name: str = ""
    x: float = 0.0
    above: list[str] = field(default_factory=list)
    below: list[str] = field(default_factory=list)


@dataclass
class _Edge:
    source: str
    target: str
    value: str
    route: list[str] = field(default_factory=list)  # waypoint keys, top to bottom


@dataclass(frozen=True)
class GraphDrawing:
    """The SVG markup and what was drawn (and cut) from the graph."""

    svg: str
    nodes_drawn: int
    nodes_total: int
    edges_drawn: int
    edges_total: int

    @property
    def cut(self) -> str:
        """A sentence saying what was left out, or "" when the whole graph is drawn."""
        if self.nodes_drawn == self.nodes_total:
            return ""
        return (
            f"showing the first {self.nodes_drawn} of {self.nodes_total} nodes in graph order; "
            f"{self.nodes_total - self.nodes_drawn} nodes and "
            f"{self.edges_total - self.edges_drawn} edges are not drawn"
        )

    def _repr_html_(self) -> str:
        note = f"<p style='color:#b35900'>{html.escape(self.cut)}</p>" if self.cut else ""
        return f"<div style='overflow:auto;max-height:640px'>{note}{self.svg}</div>"


def _shape_text(value: ir.Value) -> str:
    if value.shape is None:
        return ""
    return "[" + ",".join(str(d) for d in value.shape) + "]"


def _fit(text: str, width: float) -> str:
    room = max(int((width - 10) / CHAR_WIDTH), 1)
    return text if len(text) <= room else text[: room - 1] + "…"


def _node_item(key: str, node: ir.Node) -> _Item:
    sources = provenance.sources(node)
    if sources:
        origin = sources[0] + (f" +{len(sources) - 1}" if len(sources) > 1 else "")
    else:
        origin = node.name or ""
    details = [f"{node.name} ({node.op_type})"]
    if sources:
        details.append("source: " + ", ".join(sources))
    details += [f"transform: {t}" for t in provenance.transforms(node)]
    details += [f"out {o.name} {_shape_text(o)}" for o in node.outputs]
    return _Item(
        key,
        "node",
        0,
        BOX_WIDTH,
        title="\n".join(details),
        lines=(node.op_type, origin),
        colour=OP_COLOURS.get(node.op_type, DEFAULT_COLOUR),
        name=node.name or "",
    )


def _terminal_item(key: str, kind: str, value: ir.Value) -> _Item:
    return _Item(
        key,
        kind,
        0,
        TERMINAL_WIDTH,
        title=f"graph {kind} {value.name} {_shape_text(value)}",
        lines=(value.name or "", _shape_text(value)),
        colour=TERMINAL_COLOUR,
        name=value.name or "",
    )


def _collect(graph: ir.Graph, max_nodes: int) -> tuple[dict[str, _Item], list[_Edge], int, int]:
    """Items and edges of the drawn part, plus the node and edge totals of the whole graph.

    An edge is one use of a value by a node (or by the graph outputs) whose value
    comes from another node or from a graph input; initializers are not edges.
    """
    nodes = list(graph)
    drawn = nodes[:max_nodes]
    node_keys = {id(node): f"node{index}" for index, node in enumerate(drawn)}
    items: dict[str, _Item] = {}
    input_keys: dict[int, str] = {}
    for index, value in enumerate(graph.inputs):
        key = f"input{index}"
        input_keys[id(value)] = key
        items[key] = _terminal_item(key, "input", value)
    for node in drawn:
        items[node_keys[id(node)]] = _node_item(node_keys[id(node)], node)

    def origin(value: ir.Value) -> tuple[bool, str | None]:
        """(is an edge of the graph, key of its drawn origin or None if cut)."""
        producer = value.producer()
        if producer is not None and producer.graph is graph:
            return True, node_keys.get(id(producer))
        if id(value) in input_keys:
            return True, input_keys[id(value)]
        return False, None

    edges: list[_Edge] = []
    edges_total = 0
    for node in nodes:
        for value in node.inputs:
            if value is None:
                continue
            is_edge, source = origin(value)
            edges_total += is_edge
            target = node_keys.get(id(node))
            if source is not None and target is not None:
                edges.append(_Edge(source, target, value.name or ""))
    for index, value in enumerate(graph.outputs):
        is_edge, source = origin(value)
        edges_total += is_edge
        if source is not None:
            key = f"output{index}"
            items[key] = _terminal_item(key, "output", value)
            edges.append(_Edge(source, key, value.name or ""))
    return items, edges, len(nodes), edges_total


def _assign_layers(items: dict[str, _Item], edges: list[_Edge]) -> None:
    # items were collected in graph order, which is topological, so one pass suffices
    incoming: dict[str, list[str]] = {}
    for edge in edges:
        incoming.setdefault(edge.target, []).append(edge.source)
    for key, item in items.items():
        if item.kind == "input":
            continue
        item.layer = 1 + max((items[s].layer for s in incoming.get(key, ())), default=0)


def _add_waypoints(items: dict[str, _Item], edges: list[_Edge]) -> None:
    for number, edge in enumerate(edges):
        previous = edge.source
        for layer in range(items[edge.source].layer + 1, items[edge.target].layer):
            key = f"way{number}_{layer}"
            items[key] = _Item(key, "waypoint", layer, WAYPOINT_WIDTH)
            edge.route.append(key)
            items[previous].below.append(key)
            items[key].above.append(previous)
            previous = key
        items[previous].below.append(edge.target)
        items[edge.target].above.append(previous)


def _order_layers(items: dict[str, _Item]) -> list[list[str]]:
    layers: list[list[str]] = [[] for _ in range(max(i.layer for i in items.values()) + 1)]
    for key, item in items.items():
        layers[item.layer].append(key)
    for sweep in range(BARYCENTRE_SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
        for index in indices:
            neighbour_layer = layers[index - 1] if downward else layers[index + 1]
            position = {key: p for p, key in enumerate(neighbour_layer)}
            current = {key: p for p, key in enumerate(layers[index])}

            def barycentre(key: str) -> tuple[float, int]:
                neighbours = items[key].above if downward else items[key].below
                placed = [position[n] for n in neighbours if n in position]
                return (fmean(placed) if placed else current[key], current[key])

            layers[index].sort(key=barycentre)
    return layers


def _place(items: dict[str, _Item], layers: list[list[str]]) -> tuple[float, float]:
    def row_width(layer: list[str]) -> float:
        return sum(items[k].width for k in layer) + GAP_X * max(len(layer) - 1, 0)

    widest = max(row_width(layer) for layer in layers)
    for layer in layers:
        x = MARGIN + (widest - row_width(layer)) / 2
        for key in layer:
            items[key].x = x
            x += items[key].width + GAP_X
    return widest + 2 * MARGIN, len(layers) * (BOX_HEIGHT + GAP_Y) - GAP_Y + 2 * MARGIN


def _top(layer: int) -> float:
    return MARGIN + layer * (BOX_HEIGHT + GAP_Y)


def _edge_path(items: dict[str, _Item], edge: _Edge, port: float) -> str:
    """A path from the bottom of the source box, down through its waypoints, to the
    top of the target box at horizontal position ``port``; curves between layers."""
    source = items[edge.source]
    points = [(source.x + source.width / 2, _top(source.layer) + BOX_HEIGHT)]
    for key in edge.route:
        waypoint = items[key]
        centre = waypoint.x + waypoint.width / 2
        points += [(centre, _top(waypoint.layer)), (centre, _top(waypoint.layer) + BOX_HEIGHT)]
    points.append((port, _top(items[edge.target].layer)))
    parts = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 == x1:
            parts.append(f"L{x1:.1f},{y1:.1f}")
        else:
            middle = (y0 + y1) / 2
            parts.append(f"C{x0:.1f},{middle:.1f} {x1:.1f},{middle:.1f} {x1:.1f},{y1:.1f}")
    return " ".join(parts)


def _box_svg(item: _Item) -> str:
    y = _top(item.layer)
    radius = 14 if item.kind != "node" else 4
    first, second = (_fit(line, item.width) for line in item.lines)
    centre = item.x + item.width / 2
    weight = "bold" if item.kind == "node" else "normal"
    return (
        f'<g class="{item.kind}" data-name="{html.escape(item.name)}">'
        f"<title>{html.escape(item.title)}</title>"
        f'<rect x="{item.x:.1f}" y="{y:.1f}" width="{item.width}" height="{BOX_HEIGHT}" '
        f'rx="{radius}" fill="{item.colour}" stroke="#555"/>'
        f'<text x="{centre:.1f}" y="{y + 15:.1f}" font-weight="{weight}">{html.escape(first)}</text>'
        f'<text x="{centre:.1f}" y="{y + 29:.1f}" fill="#555">{html.escape(second)}</text>'
        "</g>"
    )


def draw_graph(model: Model | ir.Model, *, max_nodes: int = DEFAULT_MAX_NODES) -> GraphDrawing:
    """Draw the model's main graph as an SVG string (see the module docstring)."""
    graph = model.graph
    items, edges, nodes_total, edges_total = _collect(graph, max_nodes)
    if not items:
        svg = '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="30"><text x="10" y="20">empty graph</text></svg>'
        return GraphDrawing(svg, 0, 0, 0, 0)
    _assign_layers(items, edges)
    _add_waypoints(items, edges)
    layers = _order_layers(items)
    width, height = _place(items, layers)

    # spread the edges entering one box along its top, in the order of their sources
    entering: dict[str, list[_Edge]] = {}
    for edge in edges:
        entering.setdefault(edge.target, []).append(edge)
    ports: dict[int, float] = {}
    for target, group in entering.items():
        box = items[target]
        group.sort(key=lambda e: items[e.route[-1] if e.route else e.source].x)
        for rank, edge in enumerate(group):
            ports[id(edge)] = box.x + box.width * (rank + 1) / (len(group) + 1)

    marker = f"wb-arrow-{next(_marker_ids)}"
    paths = "".join(
        f'<path class="edge" d="{_edge_path(items, edge, ports[id(edge)])}" '
        f'marker-end="url(#{marker})"><title>{html.escape(edge.value)}</title></path>'
        for edge in edges
    )
    boxes = "".join(_box_svg(item) for item in items.values() if item.kind != "waypoint")
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="11" '
        f'text-anchor="middle" style="max-width:none">'
        f'<defs><marker id="{marker}" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        f'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#666"/></marker></defs>'
        f'<g fill="none" stroke="#888" stroke-width="1.2">{paths}</g>{boxes}</svg>'
    )
    nodes_drawn = sum(1 for item in items.values() if item.kind == "node")
    return GraphDrawing(svg, nodes_drawn, nodes_total, len(edges), edges_total)
