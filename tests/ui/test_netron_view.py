"""The Netron server over real HTTP on 127.0.0.1, and what show_graph puts in a notebook."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import onnx
import onnx_ir as ir
import pytest
from IPython.display import HTML, IFrame

from workbench import InputError, Model, SourceInfo
from workbench.graph.builder import GraphBuilder
from workbench.ui import netron_view
from workbench.ui.netron_view import serve_graph, show_graph, stop_graphs

HTTP_TIMEOUT = 5


def small_model() -> Model:
    builder = GraphBuilder("small")
    x = builder.add_input("x", [1, 3, 8, 8])
    (y,) = builder.add_node("Relu", [x], sources=["features.relu"])
    (z,) = builder.add_node("Sigmoid", [y], sources=["head.gate"])
    builder.set_outputs([z])
    return Model(builder.build(), SourceInfo("onnx", name="small"))


@pytest.fixture
def onnx_file(tmp_path) -> Path:
    path = tmp_path / "small.onnx"
    ir.save(small_model().ir, path)
    return path


@pytest.fixture(autouse=True)
def stop_servers():
    yield
    stop_graphs()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
        return response.read()


def test_serves_the_viewer_and_the_model_file(onnx_file):
    server = serve_graph(onnx_file)
    assert server.address[0] == "127.0.0.1" and server.running
    page = get(server.url).decode()
    # the viewer page names the model path it will fetch
    assert re.search(r'<meta name="file" content="/data/small\.onnx">', page)
    assert server.model_url == server.url + "data/small.onnx"
    assert get(server.model_url) == onnx_file.read_bytes()
    server.stop()
    assert not server.running
    with pytest.raises(urllib.error.URLError):
        get(server.url)


def test_an_in_memory_model_is_served_with_its_provenance():
    server = serve_graph(small_model())
    served = onnx.load_from_string(get(server.model_url))
    metadata = [{p.key: p.value for p in node.metadata_props} for node in served.graph.node]
    assert [m["workbench.source"] for m in metadata] == ['["features.relu"]', '["head.gate"]']
    temporary = server.path.parent
    assert temporary.is_dir()
    server.stop()
    assert not temporary.exists()


def test_two_models_get_two_ports(onnx_file):
    first, second = serve_graph(onnx_file), serve_graph(small_model())
    assert first.address != second.address
    assert stop_graphs() == 2
    assert not first.running and not second.running


def test_static_view_needs_no_server(onnx_file):
    shown = show_graph(onnx_file, static=True)
    assert isinstance(shown, HTML)
    assert "<svg" in shown.data and "<iframe" not in shown.data
    assert stop_graphs() == 0


def test_default_view_without_a_kernel_is_the_drawing(onnx_file):
    shown = show_graph(onnx_file)
    assert "<svg" in shown.data and "<iframe" not in shown.data


def test_default_view_in_a_kernel_has_the_live_view_and_the_drawing(onnx_file, monkeypatch):
    monkeypatch.setattr(netron_view, "kernel_running", lambda: True)
    shown = show_graph(small_model())
    url = re.search(r'<iframe src="([^"]+)"', shown.data).group(1)
    assert url.startswith("http://127.0.0.1:")
    assert "<svg" in shown.data and "2 of 2 nodes" in shown.data
    assert b"Relu" in get(url.rstrip("/") + "/data/small.onnx")


def test_live_only_view_is_an_iframe(onnx_file):
    shown = show_graph(onnx_file, static=False)
    assert isinstance(shown, IFrame)
    assert get(shown.src).startswith(b"<!DOCTYPE html>")


def test_a_file_only_netron_reads_still_gets_a_live_view(tmp_path, monkeypatch):
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text('name: "lone"\nlayer { name: "data" type: "Input" top: "data" }\n')
    monkeypatch.setattr(netron_view, "kernel_running", lambda: True)
    shown = show_graph(prototxt)
    assert "no static drawing" in shown.data and "<svg" not in shown.data
    url = re.search(r'<iframe src="([^"]+)"', shown.data).group(1)
    assert get(url + "data/deploy.prototxt") == prototxt.read_bytes()


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        show_graph(tmp_path / "absent.onnx")
