"""A static drawing of a graph as a PNG, for notebook records that outlive the kernel.

A record is opened by other people in viewers that trust nothing: JupyterLab strips
inline SVG and scripts from an untrusted notebook, HTML exports and web viewers
show images. A PNG output survives all of them, so the drawing is laid out here and
painted with matplotlib (already a dependency; Graphviz would be a system binary,
and Netron lays out in the browser with a live kernel behind it).

What is drawn by default is the graph people reason about: *plumbing* is hidden.
A node is plumbing when its outputs carry no data derived from the graph inputs:
constants (``Constant``, weights reshaped in the graph) and shape arithmetic (the
``Shape → Gather → Unsqueeze → Concat`` chains that ``x.view(x.size(0), -1)``
exports to, the ``CastLike``/``Expand`` pairs that bring a constant bias to the
input's type). Formally a value carries data when it is a graph input, or an output
of a node with at least one data input among those it reads values from: ``Shape``
and ``Size`` read only a tensor's shape, ``CastLike`` only its second input's type.
The nodes drawn are those with data outputs, the edges those carrying data.

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

Large graphs are cut to their first ``max_nodes`` drawn nodes in graph order, and
the drawing says how many nodes and edges were left out.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from statistics import fmean

import onnx_ir as ir
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, PathPatch, Polygon
from matplotlib.path import Path as CurvePath
from PIL import Image

from ..graph import Model, provenance

DEFAULT_MAX_NODES = 400

BOX_WIDTH = 150
BOX_HEIGHT = 36
TERMINAL_WIDTH = 130
WAYPOINT_WIDTH = 14
GAP_X = 18
GAP_Y = 34
MARGIN = 12
FONT_PIXELS = 11
CHAR_WIDTH = 6.3  # average glyph width of the 11 px sans-serif labels, to truncate text
BARYCENTRE_SWEEPS = 4
PNG_SCALE = 2  # image pixels per layout pixel: sharp on high-density screens and when zoomed
PALETTE_COLOURS = 64
ARROW_LENGTH, ARROW_HALF_WIDTH = 7.0, 3.5
# inputs whose values a node does not read (it reads their shape or type): not data edges
METADATA_INPUTS = {"Shape": (0,), "Size": (0,), "CastLike": (1,)}

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
EDGE_COLOUR = "#888888"
BORDER_COLOUR = "#555555"


@dataclass
class Box:
    """One item of the drawing: a node, a graph input/output, or an edge waypoint."""

    key: str
    kind: str  # "node", "input", "output" or "waypoint"
    layer: int
    width: float
    lines: tuple[str, ...] = ()  # first line bold for nodes
    colour: str = DEFAULT_COLOUR
    name: str = ""
    x: float = 0.0
    above: list[str] = field(default_factory=list)
    below: list[str] = field(default_factory=list)

    @property
    def top(self) -> float:
        return MARGIN + self.layer * (BOX_HEIGHT + GAP_Y)

    @property
    def rectangle(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) in layout pixels."""
        return (self.x, self.top, self.x + self.width, self.top + BOX_HEIGHT)


@dataclass
class Edge:
    source: str
    target: str
    value: str
    route: list[str] = field(default_factory=list)  # waypoint keys, top to bottom
    points: list[tuple[float, float]] = field(default_factory=list)  # polyline the curve goes through


@dataclass(frozen=True)
class GraphDrawing:
    """A laid-out graph: boxes and edges in layout pixels, what was hidden and cut,
    and its PNG rendering (``png()``)."""

    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    width: float
    height: float
    nodes_drawn: int
    nodes_total: int
    edges_drawn: int
    edges_total: int
    hidden: Counter = field(default_factory=Counter)  # op type -> plumbing nodes not drawn

    @property
    def nodes_hidden(self) -> int:
        return sum(self.hidden.values())

    @property
    def cut(self) -> str:
        """A sentence saying what was left out for size, or "" when nothing was."""
        shown = self.nodes_total - self.nodes_hidden
        if self.nodes_drawn == shown:
            return ""
        return (
            f"showing the first {self.nodes_drawn} of {shown} nodes in graph order; "
            f"{shown - self.nodes_drawn} nodes are not drawn"
        )

    @property
    def caption(self) -> str:
        """What the drawing shows, in one line."""
        parts = [f"{self.nodes_drawn} of {self.nodes_total} nodes, {self.edges_drawn} edges"]
        if self.hidden:
            ops = ", ".join(f"{op} ×{n}" if n > 1 else op for op, n in sorted(self.hidden.items()))
            parts.append(f"{self.nodes_hidden} plumbing nodes hidden ({ops})")
        if self.cut:
            parts.append(self.cut)
        return "; ".join(parts)

    def png(self, scale: float = PNG_SCALE) -> bytes:
        """The drawing as PNG bytes, ``scale`` image pixels per layout pixel."""
        return render_png(self, scale)

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        # shown at its layout width (the PNG has PNG_SCALE times more pixels), narrower if the page is
        data = {"image/png": base64.b64encode(self.png()).decode(), "text/plain": f"<GraphDrawing: {self.caption}>"}
        return data, {"image/png": {"width": round(self.width)}}

    def html(self) -> str:
        """The drawing as an ``<img>`` that fits the width (for HTML that must survive sanitizers)."""
        encoded = base64.b64encode(self.png()).decode()
        return (
            f"<img src='data:image/png;base64,{encoded}' width='{round(self.width)}' "
            f"style='max-width:100%;height:auto' alt='{html.escape(self.caption)}'>"
        )


def _fit(text: str, width: float) -> str:
    room = max(int((width - 10) / CHAR_WIDTH), 1)
    return text if len(text) <= room else text[: room - 1] + "…"


def _shape_text(value: ir.Value) -> str:
    if value.shape is None:
        return ""
    return "[" + ",".join(str(d) for d in value.shape) + "]"


def _node_box(key: str, node: ir.Node) -> Box:
    sources = provenance.sources(node)
    if sources:
        origin = sources[0] + (f" +{len(sources) - 1}" if len(sources) > 1 else "")
    else:
        origin = node.name or ""
    return Box(
        key,
        "node",
        0,
        BOX_WIDTH,
        lines=(node.op_type, origin),
        colour=OP_COLOURS.get(node.op_type, DEFAULT_COLOUR),
        name=node.name or "",
    )


def _terminal_box(key: str, kind: str, value: ir.Value) -> Box:
    return Box(
        key,
        "input" if kind == "input" else "output",
        0,
        TERMINAL_WIDTH,
        (value.name or "", _shape_text(value)),
        TERMINAL_COLOUR,
        value.name or "",
    )


def data_nodes(graph: ir.Graph) -> set[int]:
    """ids of the nodes whose outputs carry data from the graph inputs (see the module docstring)."""
    data_values = {id(value) for value in graph.inputs}
    drawn = set()
    for node in graph:  # graph order is topological
        metadata_only = METADATA_INPUTS.get(node.op_type, ())
        read = [value for index, value in enumerate(node.inputs) if index not in metadata_only]
        if any(value is not None and id(value) in data_values for value in read):
            drawn.add(id(node))
            data_values.update(id(output) for output in node.outputs)
    return drawn


def _visible_nodes(graph: ir.Graph, nodes: list[ir.Node], plumbing: bool) -> tuple[list[ir.Node], Counter]:
    """The nodes to draw, in graph order: all of them with ``plumbing``, else those carrying
    data; and how many nodes of each op are hidden."""
    carrying = data_nodes(graph)
    if plumbing or not carrying:  # a graph of constants only is all plumbing: draw it whole
        visible = nodes
    else:
        visible = [node for node in nodes if id(node) in carrying]
    visible_ids = {id(node) for node in visible}
    return visible, Counter(node.op_type for node in nodes if id(node) not in visible_ids)


def _collect(graph: ir.Graph, max_nodes: int, plumbing: bool) -> tuple[dict[str, Box], list[Edge], int, int, Counter]:
    """Boxes and edges of the drawn part, the node and edge totals of the whole graph,
    and the plumbing hidden.

    An edge is one use of a value by a node (or by the graph outputs) whose value
    comes from another node or from a graph input; initializers are not edges.
    """
    nodes = list(graph)
    visible, hidden = _visible_nodes(graph, nodes, plumbing)
    drawn = visible[:max_nodes]
    node_keys = {id(node): f"node{index}" for index, node in enumerate(drawn)}
    boxes: dict[str, Box] = {}
    input_keys: dict[int, str] = {}
    for index, graph_input in enumerate(graph.inputs):
        key = f"input{index}"
        input_keys[id(graph_input)] = key
        boxes[key] = _terminal_box(key, "input", graph_input)
    for node in drawn:
        boxes[node_keys[id(node)]] = _node_box(node_keys[id(node)], node)

    def origin(value: ir.Value) -> tuple[bool, str | None]:
        """(is an edge of the graph, key of its drawn origin or None if cut or hidden)."""
        producer = value.producer()
        if producer is not None and producer.graph is graph:
            return True, node_keys.get(id(producer))
        if id(value) in input_keys:
            return True, input_keys[id(value)]
        return False, None

    edges: list[Edge] = []
    edges_total = 0
    for node in nodes:
        for value in node.inputs:
            if value is None:
                continue
            is_edge, source = origin(value)
            edges_total += is_edge
            target = node_keys.get(id(node))
            if source is not None and target is not None:
                edges.append(Edge(source, target, value.name or ""))
    for index, output in enumerate(graph.outputs):
        is_edge, source = origin(output)
        edges_total += is_edge
        if source is not None:
            key = f"output{index}"
            boxes[key] = _terminal_box(key, "output", output)
            edges.append(Edge(source, key, output.name or ""))
    return boxes, edges, len(nodes), edges_total, hidden


def _assign_layers(boxes: dict[str, Box], edges: list[Edge]) -> None:
    # boxes were collected in graph order, which is topological, so one pass suffices
    incoming: dict[str, list[str]] = {}
    for edge in edges:
        incoming.setdefault(edge.target, []).append(edge.source)
    for key, box in boxes.items():
        if box.kind == "input":
            continue
        box.layer = 1 + max((boxes[s].layer for s in incoming.get(key, ())), default=0)


def _add_waypoints(boxes: dict[str, Box], edges: list[Edge]) -> None:
    for number, edge in enumerate(edges):
        previous = edge.source
        for layer in range(boxes[edge.source].layer + 1, boxes[edge.target].layer):
            key = f"way{number}_{layer}"
            boxes[key] = Box(key, "waypoint", layer, WAYPOINT_WIDTH)
            edge.route.append(key)
            boxes[previous].below.append(key)
            boxes[key].above.append(previous)
            previous = key
        boxes[previous].below.append(edge.target)
        boxes[edge.target].above.append(previous)


def _order_layers(boxes: dict[str, Box]) -> list[list[str]]:
    layers: list[list[str]] = [[] for _ in range(max(b.layer for b in boxes.values()) + 1)]
    for key, box in boxes.items():
        layers[box.layer].append(key)
    for sweep in range(BARYCENTRE_SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
        for index in indices:
            neighbour_layer = layers[index - 1] if downward else layers[index + 1]
            position = {key: p for p, key in enumerate(neighbour_layer)}
            current = {key: p for p, key in enumerate(layers[index])}
            layers[index].sort(key=partial(_barycentre, boxes, downward, position, current))
    return layers


def _barycentre(
    boxes: dict[str, Box], downward: bool, position: dict[str, int], current: dict[str, int], key: str
) -> tuple[float, int]:
    """Where ``key`` belongs in its layer: the mean position of its neighbours in the layer
    just swept, its current place when it has none there (and to break ties)."""
    neighbours = boxes[key].above if downward else boxes[key].below
    placed = [position[n] for n in neighbours if n in position]
    return (fmean(placed) if placed else current[key], current[key])


def _place(boxes: dict[str, Box], layers: list[list[str]]) -> tuple[float, float]:
    def row_width(layer: list[str]) -> float:
        return sum(boxes[k].width for k in layer) + GAP_X * max(len(layer) - 1, 0)

    widest = max(row_width(layer) for layer in layers)
    for layer in layers:
        x = MARGIN + (widest - row_width(layer)) / 2
        for key in layer:
            boxes[key].x = x
            x += boxes[key].width + GAP_X
    return widest + 2 * MARGIN, len(layers) * (BOX_HEIGHT + GAP_Y) - GAP_Y + 2 * MARGIN


def _route(boxes: dict[str, Box], edges: list[Edge]) -> None:
    """Each edge's polyline: from the bottom of its source, down through its waypoints,
    to the top of its target, the edges entering one box spread along its top in the
    order of where they come from."""
    entering: dict[str, list[Edge]] = {}
    for edge in edges:
        entering.setdefault(edge.target, []).append(edge)
    for target, group in entering.items():
        box = boxes[target]
        group.sort(key=lambda e: boxes[e.route[-1] if e.route else e.source].x)
        for rank, edge in enumerate(group):
            source = boxes[edge.source]
            points = [(source.x + source.width / 2, source.top + BOX_HEIGHT)]
            for key in edge.route:
                centre = boxes[key].x + boxes[key].width / 2
                points += [(centre, boxes[key].top), (centre, boxes[key].top + BOX_HEIGHT)]
            points.append((box.x + box.width * (rank + 1) / (len(group) + 1), box.top))
            edge.points = points


def draw_graph(model: Model | ir.Model, *, max_nodes: int = DEFAULT_MAX_NODES, plumbing: bool = False) -> GraphDrawing:
    """Lay out the model's main graph (see the module docstring); ``plumbing=True``
    draws the constant and shape nodes too."""
    graph = model.graph
    boxes, edges, nodes_total, edges_total, hidden = _collect(graph, max_nodes, plumbing)
    if not boxes:
        return GraphDrawing((), (), 200.0, 30.0, 0, 0, 0, 0)
    _assign_layers(boxes, edges)
    _add_waypoints(boxes, edges)
    width, height = _place(boxes, _order_layers(boxes))
    _route(boxes, edges)
    drawn_boxes = tuple(box for box in boxes.values() if box.kind != "waypoint")
    nodes_drawn = sum(1 for box in drawn_boxes if box.kind == "node")
    return GraphDrawing(
        drawn_boxes, tuple(edges), width, height, nodes_drawn, nodes_total, len(edges), edges_total, hidden
    )


def _curve(points: list[tuple[float, float]]) -> CurvePath:
    """Straight where the polyline is vertical, a cubic S-bend between layers."""
    vertices, codes = [points[0]], [CurvePath.MOVETO]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 == x1:
            vertices.append((x1, y1))
            codes.append(CurvePath.LINETO)
        else:
            middle = (y0 + y1) / 2
            vertices += [(x0, middle), (x1, middle), (x1, y1)]
            codes += [CurvePath.CURVE4] * 3
    return CurvePath(vertices, codes)


def render_png(drawing: GraphDrawing, scale: float = PNG_SCALE) -> bytes:
    """Paint the laid-out drawing with matplotlib: one layout pixel is one point at
    72 dpi, so the PNG is ``scale`` times the layout size."""
    figure = Figure(figsize=(drawing.width / 72, drawing.height / 72), dpi=72, facecolor="white")
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, drawing.width)
    axes.set_ylim(drawing.height, 0)  # y grows downwards, as in the layout
    axes.set_axis_off()
    if not drawing.boxes:
        axes.text(10, 20, "empty graph", fontsize=FONT_PIXELS)
    for edge in drawing.edges:
        axes.add_patch(PathPatch(_curve(edge.points), fill=False, edgecolor=EDGE_COLOUR, linewidth=1.2))
        tip_x, tip_y = edge.points[-1]  # every edge enters its target from above
        arrow = [
            (tip_x - ARROW_HALF_WIDTH, tip_y - ARROW_LENGTH),
            (tip_x + ARROW_HALF_WIDTH, tip_y - ARROW_LENGTH),
            (tip_x, tip_y),
        ]
        axes.add_patch(Polygon(arrow, closed=True, facecolor="#666666", edgecolor="none"))
    for box in drawing.boxes:
        radius = 4 if box.kind == "node" else 14
        axes.add_patch(
            FancyBboxPatch(
                (box.x, box.top),
                box.width,
                BOX_HEIGHT,
                boxstyle=f"round,pad=0,rounding_size={radius}",
                facecolor=box.colour,
                edgecolor=BORDER_COLOUR,
                linewidth=1.0,
            )
        )
        centre = box.x + box.width / 2
        first, second = (_fit(line, box.width) for line in box.lines)
        weight = "bold" if box.kind == "node" else "normal"
        axes.text(centre, box.top + 15, first, ha="center", va="baseline", fontsize=FONT_PIXELS, fontweight=weight)
        axes.text(centre, box.top + 29, second, ha="center", va="baseline", fontsize=FONT_PIXELS, color="#555555")
    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(72 * scale)
    canvas.draw()
    # a drawing of flat fills and grey text needs few colours: a palette PNG is about a third of the size
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(colors=PALETTE_COLOURS).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
