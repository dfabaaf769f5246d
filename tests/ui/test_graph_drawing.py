"""The static drawing: every data node and edge of the graph, plumbing hidden (checked
against onnxsim's simplification), edges routed between boxes, large graphs cut
with a note, and a PNG whose pixels are where the layout says."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import onnx_ir as ir
import pytest
from PIL import Image

from workbench import Model, SourceInfo, load
from workbench.graph.builder import GraphBuilder
from workbench.steps.simplify import simplify
from workbench.ui.graph_drawing import BOX_HEIGHT, OP_COLOURS, PNG_SCALE, draw_graph


@pytest.fixture(scope="module")
def exported() -> Model:
    """resnet_tiny as torch.onnx.export writes it: shape arithmetic and constants included."""
    return load("workbench.samples:resnet_tiny")


@pytest.fixture(scope="module")
def resnet(exported) -> Model:
    return simplify(exported)


def chain_model(length: int) -> Model:
    """x -> Relu -> Relu -> ... (``length`` nodes) plus a skip Add from x to the end."""
    builder = GraphBuilder("chain")
    x = builder.add_input("x", [1, 4])
    value = x
    for index in range(length):
        (value,) = builder.add_node("Relu", [value], sources=[f"act{index}"])
    (out,) = builder.add_node("Add", [value, x], sources=["skip"])
    builder.set_outputs([out])
    return Model(builder.build(), SourceInfo("onnx", name="chain"))


def graph_edges(model: Model) -> int:
    """Edges counted on the ONNX protobuf, independently of the drawing code: each use
    of a node output or graph input by a node, plus each graph output."""
    graph = ir.to_proto(model.ir).graph
    initializers = {t.name for t in graph.initializer}
    produced = {name for node in graph.node for name in node.output}
    inputs = {v.name for v in graph.input} - initializers
    uses = sum(1 for node in graph.node for name in node.input if name in produced | inputs)
    return uses + len(graph.output)


def boxes(drawing, kind: str):
    return [box for box in drawing.boxes if box.kind == kind]


def test_every_node_and_edge_of_a_simplified_sample_is_drawn(resnet):
    drawing = draw_graph(resnet)
    assert sorted(box.name for box in boxes(drawing, "node")) == sorted(node.name for node in resnet.graph)
    assert len(drawing.edges) == graph_edges(resnet) == drawing.edges_total
    assert [box.name for box in boxes(drawing, "input")] == resnet.input_names
    assert [box.name for box in boxes(drawing, "output")] == resnet.output_names
    assert drawing.cut == "" and not drawing.hidden


def test_plumbing_is_hidden_and_what_remains_is_what_onnxsim_keeps(exported, resnet):
    drawing = draw_graph(exported)
    drawn = Counter(box.lines[0] for box in boxes(drawing, "node"))
    assert drawn == resnet.census()  # onnxsim folded exactly the nodes the drawing hides
    assert {"Shape", "Constant"} <= set(drawing.hidden)
    assert drawing.nodes_drawn + drawing.nodes_hidden == drawing.nodes_total == len(exported.graph)
    assert "plumbing nodes hidden" in drawing.caption
    everything = draw_graph(exported, plumbing=True)
    assert everything.nodes_drawn == len(exported.graph) and not everything.hidden


def test_labels_show_op_type_and_provenance(resnet):
    first = boxes(draw_graph(resnet), "node")[0]
    assert first.lines == ("Conv", "stem.0")


@pytest.mark.parametrize("length", [3, 12], ids=["short-skip", "long-skip"])
def test_edges_crossing_layers_pass_between_boxes(length):
    """The skip edge x -> Add spans every layer; its vertical runs through the
    intermediate layers must not cross any box."""
    drawing = draw_graph(chain_model(length))
    rectangles = [box.rectangle for box in drawing.boxes]
    vertical_runs = 0
    for edge in drawing.edges:
        for (x0, y0), (x1, y1) in zip(edge.points, edge.points[1:]):
            if x0 == x1 and y1 - y0 == BOX_HEIGHT:
                vertical_runs += 1
                middle = (y0 + y1) / 2
                assert not any(left < x0 < right and top < middle < bottom for left, top, right, bottom in rectangles)
    assert vertical_runs == length  # one waypoint per Relu layer the skip edge crosses


def test_large_graph_is_cut_and_says_so():
    model = chain_model(50)
    drawing = draw_graph(model, max_nodes=10)
    assert len(boxes(drawing, "node")) == drawing.nodes_drawn == 10
    assert drawing.nodes_total == 51
    assert drawing.edges_total == graph_edges(model)
    # drawn: x -> Relu0, then Relu0 -> ... -> Relu9; the Add and the output are cut
    assert drawing.edges_drawn == 10
    assert "first 10 of 51 nodes" in drawing.cut and "41 nodes" in drawing.cut
    assert drawing.cut in drawing.caption


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])


def test_the_png_paints_each_box_where_the_layout_puts_it(resnet):
    drawing = draw_graph(resnet)
    image = Image.open(io.BytesIO(drawing.png())).convert("RGB")
    assert image.size == (round(drawing.width * PNG_SCALE), round(drawing.height * PNG_SCALE))
    pixels = np.asarray(image).astype(int)
    for box in boxes(drawing, "node"):
        left, top, _right, bottom = (value * PNG_SCALE for value in box.rectangle)
        # a point inside the box, left of its centred text: the fill colour (palette rounding: 8 levels)
        inside = pixels[int(top + 4 * PNG_SCALE), int(left + 6 * PNG_SCALE)]
        assert np.abs(inside - rgb(OP_COLOURS.get(box.lines[0], "#ffffff"))).max() <= 8, box.lines
        between = pixels[int(bottom + 4 * PNG_SCALE), int(left + 2 * PNG_SCALE)]
        assert (between >= 247).all()  # the gap below a box is background


def test_the_drawing_displays_as_a_png_that_fits_the_width(resnet):
    drawing = draw_graph(resnet)
    data, metadata = drawing._repr_mimebundle_()
    assert set(data) == {"image/png", "text/plain"} and metadata["image/png"]["width"] == round(drawing.width)
    assert "max-width:100%" in drawing.html() and "data:image/png;base64," in drawing.html()
