"""Show a model's graph in a notebook: live in Netron, and as a static drawing.

``show_graph`` serves the model with the ``netron`` package on 127.0.0.1 (a free
port, no browser launched) and embeds the Netron page in an iframe. Netron's page
is only alive while the kernel runs, so by default the same output also carries a
static SVG drawing of the graph (``graph_svg``): an executed notebook saved as a
record keeps showing the graph after the kernel is gone.

Netron serves the model file at ``/data/<file name>`` and the viewer at ``/``,
whose ``<meta name="file">`` tag points the viewer at that path.
"""

from __future__ import annotations

import atexit
import html
import logging
import re
import shutil
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import IPython
import netron
import onnx_ir as ir
from IPython.display import HTML, IFrame

from ..errors import WorkbenchError
from ..graph import Model
from ..readers import load
from .graph_svg import DEFAULT_MAX_NODES, GraphDrawing, draw_graph

ModelSource = Model | ir.Model | str | Path | Sequence[str | Path]

# The files Netron reads as a model's graph when a format has several files.
GRAPH_FILE_SUFFIXES = (".onnx", ".prototxt", "-symbol.json", ".msnhnet")
DEFAULT_HEIGHT = 600
HOST = "127.0.0.1"
STOP_TIMEOUT_SECONDS = 2.0


@dataclass
class NetronServer:
    """One model file served by Netron on this machine."""

    path: Path
    address: tuple[str, int]
    temporary_dir: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}/"

    @property
    def model_url(self) -> str:
        """Where Netron serves the model file's bytes."""
        return f"{self.url}data/{urllib.parse.quote(self.path.name)}"

    @property
    def running(self) -> bool:
        return netron.status(self.address)

    def stop(self) -> None:
        """Stop serving and delete the temporary copy of the model, if one was made."""
        netron.stop(self.address)
        # the server thread notices the stop at its next 0.25 s request timeout
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while netron.status(self.address) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.temporary_dir is not None:
            shutil.rmtree(self.temporary_dir, ignore_errors=True)
        if self in _servers:
            _servers.remove(self)

    def _repr_html_(self) -> str:
        return _iframe_html(self.url, DEFAULT_HEIGHT)


_servers: list[NetronServer] = []


def stop_graphs() -> int:
    """Stop every Netron server started by ``show_graph``/``serve_graph``; returns how many."""
    running = list(_servers)
    for server in running:
        server.stop()
    return len(running)


atexit.register(stop_graphs)


def _as_paths(source: str | Path | Sequence[str | Path]) -> list[str]:
    if isinstance(source, (str, Path)):
        return [str(source)]
    return [str(s) for s in source]


def _graph_file(paths: list[str]) -> Path | None:
    """The file among ``paths`` that holds the graph, if it exists on disk."""
    existing = [Path(p) for p in paths if Path(p).is_file()]
    for suffix in GRAPH_FILE_SUFFIXES:
        for path in existing:
            if path.name.endswith(suffix):
                return path
    return existing[0] if len(existing) == 1 else None


def _save_temporary(model: Model | ir.Model) -> tuple[Path, Path]:
    """Write the model (with its node metadata, so Netron shows provenance) to a
    temporary .onnx file; returns (file, folder to delete later)."""
    name = model.name if isinstance(model, Model) else (model.graph.name or "model")
    folder = Path(tempfile.mkdtemp(prefix="workbench-netron-"))
    # a file name, not a layer name: only characters safe in any file system are kept
    path = folder / (re.sub(r"[^\w.-]", "_", name) + ".onnx")
    ir.save(model.ir if isinstance(model, Model) else model, path)
    return path, folder


def _serve(path: Path, temporary_dir: Path | None) -> NetronServer:
    root = logging.getLogger()
    # netron.serve configures the root logger at INFO when it has no handler; a
    # NullHandler for the duration keeps the user's logging settings unchanged
    placeholder = logging.NullHandler() if not root.hasHandlers() else None
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        address = netron.serve(str(path), address=(HOST, 0), browse=False)
    finally:
        if placeholder is not None:
            root.removeHandler(placeholder)
    server = NetronServer(path, tuple(address), temporary_dir)
    _servers.append(server)
    return server


def serve_graph(source: ModelSource) -> NetronServer:
    """Serve a model with Netron on 127.0.0.1 at a free port.

    ``source`` is a ``Model``, an ``onnx_ir.Model``, a model file Netron reads
    (ONNX, Caffe prototxt, ...), the files of one model, or anything ``load``
    accepts (e.g. ``package.module:factory``).
    """
    if isinstance(source, (Model, ir.Model)):
        return _serve(*_save_temporary(source))
    paths = _as_paths(source)
    graph_file = _graph_file(paths)
    if graph_file is not None:
        return _serve(graph_file, None)
    return _serve(*_save_temporary(load(*paths)))


def _iframe_html(url: str, height: int) -> str:
    return f'<iframe src="{html.escape(url)}" width="100%" height="{height}" style="border:1px solid #ccc"></iframe>'


def graph_view_html(
    drawing: GraphDrawing | None, *, url: str | None, title: str, height: int = DEFAULT_HEIGHT, missing: str = ""
) -> str:
    """The HTML of one graph output: the live Netron iframe (when ``url`` is given)
    and the static drawing (or why there is none) that the saved notebook keeps."""
    parts = [f"<div><b>{html.escape(title)}</b>"]
    if url:
        parts.append(
            f" <small>live Netron view at {html.escape(url)} (served by this kernel; "
            "blank once the kernel stops)</small>" + _iframe_html(url, height)
        )
    if drawing is not None:
        counts = f"{drawing.nodes_drawn} of {drawing.nodes_total} nodes, {drawing.edges_drawn} edges"
        parts.append(
            f"<details open><summary>static drawing ({counts}; kept in the saved notebook)"
            f"</summary>{drawing._repr_html_()}</details>"
        )
    elif missing:
        parts.append(f"<p style='color:#b35900'>no static drawing: {html.escape(missing)}</p>")
    parts.append("</div>")
    return "".join(parts)


def kernel_running() -> bool:
    """True inside a Jupyter kernel (where an iframe to a local server is live)."""
    shell = IPython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _read(source: ModelSource) -> tuple[Model | ir.Model | None, str]:
    """The model in memory, or (None, why not) when only Netron can read its file."""
    if isinstance(source, (Model, ir.Model)):
        return source, ""
    paths = _as_paths(source)
    try:
        return load(*paths), ""
    except WorkbenchError as error:
        if _graph_file(paths) is None:
            raise
        return None, error.what


def _title(source: ModelSource, model: Model | ir.Model | None) -> str:
    if isinstance(model, Model):
        return f"Graph of {model.name}"
    if isinstance(model, ir.Model):
        return f"Graph of {model.graph.name or 'model'}"
    return "Graph of " + " + ".join(Path(p).name for p in _as_paths(source))


def show_graph(
    model_or_path: ModelSource,
    *,
    static: bool | None = None,
    height: int = DEFAULT_HEIGHT,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> HTML | IFrame:
    """Display a model's graph in a notebook.

    ``static=None`` (default): the static SVG drawing, plus the live Netron view
    above it when a kernel is running; ``static=True``: the drawing alone, no
    server; ``static=False``: only the live Netron iframe.
    """
    if static is False:
        return IFrame(serve_graph(model_or_path).url, width="100%", height=height)
    model, missing = _read(model_or_path)
    drawing = draw_graph(model, max_nodes=max_nodes) if model is not None else None
    url = None
    if static is None and kernel_running():
        # a file on disk is shown as it is; otherwise the model already read in memory
        on_disk = None if isinstance(model_or_path, (Model, ir.Model)) else _graph_file(_as_paths(model_or_path))
        url = serve_graph(on_disk or model).url
    title = _title(model_or_path, model)
    return HTML(graph_view_html(drawing, url=url, title=title, height=height, missing=missing))
