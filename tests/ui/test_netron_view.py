"""What show_graph puts in a notebook, and how a kernel publishes a model for the live
Netron view (the server side, over real HTTP, is in test_jupyter_server_extension.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import onnx_ir as ir
import pytest

from workbench import Model, SourceInfo, WorkbenchError
from workbench.graph.builder import GraphBuilder
from workbench.ui import netron_view
from workbench.ui.netron_view import JupyterServer, show_graph, stop_graphs
from workbench_jupyter import ENVIRONMENT_VARIABLE, VIEW_FILE


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


@pytest.fixture
def no_server(monkeypatch):
    """A kernel run by papermill: no workbench Jupyter server, no Jupyter session."""
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)


@pytest.fixture
def server(tmp_path, monkeypatch) -> Path:
    """This process as a kernel started by a Jupyter server with the workbench extension;
    returns the folder that server serves models from."""
    models = tmp_path / "served"
    models.mkdir()
    described = {"pid": 4242, "app_url": "/base/workbench/netron/app/", "models": str(models)}
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, json.dumps(described))
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    monkeypatch.setenv("JPY_SESSION_NAME", "notebook.ipynb")
    yield models
    stop_graphs()


def published(models: Path) -> tuple[Path, dict]:
    (folder,) = list(models.iterdir())
    return folder, json.loads((folder / VIEW_FILE).read_text())


def test_a_non_interactive_run_shows_the_drawing_and_no_iframe(onnx_file, no_server):
    view = show_graph(onnx_file)
    assert view.live is None and view.live_note == ""
    assert view.drawing.nodes_drawn == 2
    assert "<iframe" not in view.header_html() and "2 of 2 nodes" in view.header_html()


def test_a_kernel_of_a_plain_jupyter_server_says_how_to_get_the_live_view(onnx_file, no_server, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "notebook.ipynb")
    view = show_graph(onnx_file)
    assert view.live is None and "jupyter server extension enable workbench_jupyter" in view.live_note
    with pytest.raises(WorkbenchError, match="no live Netron view"):
        show_graph(onnx_file, live=True)


def test_an_in_memory_model_is_published_as_onnx_with_its_provenance(server):
    view = show_graph(small_model())
    folder, described = published(server)
    assert view.live.url == f"/base/workbench/netron/app/?model={folder.name}"
    assert f'<iframe src="/base/workbench/netron/app/?model={folder.name}"' in view.header_html()
    served = onnx.load(folder / described["file"])
    metadata = [{p.key: p.value for p in node.metadata_props} for node in served.graph.node]
    assert [m["workbench.source"] for m in metadata] == ['["features.relu"]', '["head.gate"]']
    assert stop_graphs() == 1 and not folder.exists()


def test_files_are_published_as_they_are_with_their_weights(tmp_path, server):
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text('name: "lone"\nlayer { name: "data" type: "Input" top: "data" }\n')
    weights = tmp_path / "deploy.caffemodel"
    weights.write_bytes(b"\x00weights")
    view = show_graph([prototxt, weights])
    folder, described = published(server)
    assert described == {"file": "deploy.prototxt"}
    assert (folder / "deploy.prototxt").read_bytes() == prototxt.read_bytes()
    assert (folder / "deploy.caffemodel").read_bytes() == weights.read_bytes()
    assert view.live is not None


def test_a_file_only_netron_reads_gets_a_live_view_and_says_why_there_is_no_drawing(tmp_path, server):
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text('name: "lone"\nlayer { name: "data" type: "Input" top: "data" }\n')
    view = show_graph(prototxt)
    assert view.drawing is None and "no static drawing" in view.header_html()
    assert view.live is not None


def test_the_server_is_believed_only_by_its_own_kernels(server, monkeypatch):
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))  # e.g. papermill started from a Jupyter terminal
    assert JupyterServer.of_this_kernel() is None
    assert show_graph(small_model()).live is None
    assert list(server.iterdir()) == []


def test_live_false_never_publishes(server):
    assert show_graph(small_model(), live=False).live is None
    assert list(server.iterdir()) == []


def test_displaying_shows_the_header_then_the_png(server, monkeypatch):
    shown = []
    monkeypatch.setattr(netron_view, "display", shown.append)
    show_graph(small_model())._ipython_display_()
    header, drawing = shown
    assert "<iframe" in header.data
    data, metadata = drawing._repr_mimebundle_()
    assert data["image/png"] and "image/png" in metadata


def test_missing_file_is_an_input_error(tmp_path, no_server):
    with pytest.raises(WorkbenchError, match="no such file"):
        show_graph(tmp_path / "absent.onnx")
