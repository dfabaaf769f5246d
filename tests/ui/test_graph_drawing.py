"""The static SVG drawing: every node and edge of the graph, valid XML, edges routed
between boxes, large graphs cut with a note."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import onnx_ir as ir
import pytest

from workbench import Model, SourceInfo, load
from workbench.graph.builder import GraphBuilder
from workbench.steps.simplify import simplify
from workbench.ui.graph_svg import BOX_HEIGHT, draw_graph

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def resnet() -> Model:
    return simplify(load("workbench.samples:resnet_tiny"))


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


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on malformed XML


def boxes(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == kind]


def test_every_node_and_edge_of_a_sample_is_drawn(resnet):
    drawing = draw_graph(resnet)
    root = parse(drawing.svg)
    drawn_names = [g.get("data-name") for g in boxes(root, "node")]
    assert sorted(drawn_names) == sorted(node.name for node in resnet.graph)
    edges = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]
    assert len(edges) == graph_edges(resnet) == drawing.edges_total
    assert [g.get("data-name") for g in boxes(root, "input")] == resnet.input_names
    assert [g.get("data-name") for g in boxes(root, "output")] == resnet.output_names
    assert drawing.cut == ""


def test_labels_show_op_type_and_provenance(resnet):
    root = parse(draw_graph(resnet).svg)
    first = boxes(root, "node")[0]
    op_text, source_text = (t.text for t in first.iter(f"{SVG}text"))
    assert op_text == "Conv" and source_text == "stem.0"
    assert "source: stem.0" in first.find(f"{SVG}title").text


def box_rectangles(root: ET.Element) -> list[tuple[float, float, float, float]]:
    rectangles = []
    for kind in ("node", "input", "output"):
        for group in boxes(root, kind):
            rect = group.find(f"{SVG}rect")
            x, y, w, h = (float(rect.get(a)) for a in ("x", "y", "width", "height"))
            rectangles.append((x, y, x + w, y + h))
    return rectangles


@pytest.mark.parametrize("length", [3, 12], ids=["short-skip", "long-skip"])
def test_edges_crossing_layers_pass_between_boxes(length):
    """The skip edge x -> Add spans every layer; its vertical runs through the
    intermediate layers must not cross any box."""
    root = parse(draw_graph(chain_model(length)).svg)
    rectangles = box_rectangles(root)
    vertical_runs = 0
    for path in (p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"):
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.get("d"))]
        points = list(zip(numbers[::2], numbers[1::2]))
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if x0 == x1 and y1 - y0 == BOX_HEIGHT:
                vertical_runs += 1
                middle = (y0 + y1) / 2
                assert not any(left < x0 < right and top < middle < bottom for left, top, right, bottom in rectangles)
    assert vertical_runs == length  # one waypoint per Relu layer the skip edge crosses


def test_large_graph_is_cut_and_says_so():
    model = chain_model(50)
    drawing = draw_graph(model, max_nodes=10)
    root = parse(drawing.svg)
    assert len(boxes(root, "node")) == drawing.nodes_drawn == 10
    assert drawing.nodes_total == 51
    assert drawing.edges_total == graph_edges(model)
    # drawn: x -> Relu0, then Relu0 -> ... -> Relu9; the Add and the output are cut
    assert drawing.edges_drawn == 10
    assert "first 10 of 51 nodes" in drawing.cut and "41 nodes" in drawing.cut
    assert drawing.cut in drawing._repr_html_()


def test_text_is_escaped():
    builder = GraphBuilder("escape")
    x = builder.add_input("x<&>", [1, 2])
    w = builder.add_initializer("w", np.ones((1, 2), np.float32))
    (out,) = builder.add_node("Mul", [x, w], sources=['layer "a" & <b>'])
    builder.set_outputs([out])
    root = parse(draw_graph(Model(builder.build(), SourceInfo("onnx"))).svg)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert 'layer "a" & <b>' in texts and "x<&>" in texts
