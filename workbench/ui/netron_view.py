"""Show a model's graph in a notebook: live in Netron, served by the Jupyter server,
and as a static drawing that every record keeps.

``show_graph(model)`` displays two outputs:

1. A header (title, what the drawing shows) and, while the kernel runs under a
   Jupyter server with the ``workbench_jupyter`` extension, Netron in an iframe. The
   iframe's page, app and model come from that Jupyter server (the extension's
   docstring says why and how), so the view works wherever Jupyter does: SSH
   tunnels, JupyterHub, containers. Nothing is sent to any other host.
2. The static drawing (``graph_drawing``) as a PNG, which an untrusted notebook, an
   HTML export and any notebook viewer show.

A kernel run by papermill or nbclient (``workbench record``, the test suite) has no
Jupyter server behind it: it shows the drawing alone, so a record never holds an
iframe to a page that is gone. The kernel publishes each model into the folder the
extension serves and deletes it when the kernel exits (or ``stop_graphs()``).
"""

from __future__ import annotations

import atexit
import html
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx_ir as ir
from IPython.display import HTML, display

from workbench_jupyter import ENVIRONMENT_VARIABLE, VIEW_FILE, new_token

from ..errors import WorkbenchError
from ..graph import Model
from ..readers import load
from .graph_drawing import DEFAULT_MAX_NODES, GraphDrawing, draw_graph

ModelSource = Model | ir.Model | str | Path | Sequence[str | Path]

# The files Netron reads as a model's graph when a format has several files.
GRAPH_FILE_SUFFIXES = (".onnx", ".prototxt", "-symbol.json", ".msnhnet")
DEFAULT_HEIGHT = 600
NO_SERVER = "no live Netron view: this kernel was not started by a Jupyter server with the workbench extension"
ENABLE_SERVER = "open the notebook from `workbench lab`, or run `jupyter server extension enable workbench_jupyter`"


@dataclass(frozen=True)
class JupyterServer:
    """The workbench extension of the Jupyter server that started this kernel."""

    app_url: str  # Netron's page, as a path on the Jupyter server's origin
    models: Path  # the folder the extension serves models from

    @classmethod
    def of_this_kernel(cls) -> JupyterServer | None:
        """The server, or None when this kernel was not started by one with the extension."""
        try:
            described = json.loads(os.environ.get(ENVIRONMENT_VARIABLE, ""))
            pid, app_url, models = described["pid"], described["app_url"], Path(described["models"])
        except (ValueError, KeyError, TypeError):
            return None
        # the variable is inherited by everything the server starts; only its own kernels may use it
        if os.environ.get("JPY_PARENT_PID") != str(pid) or not models.is_dir():
            return None
        return cls(app_url, models)


@dataclass
class PublishedModel:
    """One model copied where the Jupyter server serves it to Netron."""

    folder: Path
    url: str

    def stop(self) -> None:
        """Delete the copy: the view then says it ended."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self in _published:
            _published.remove(self)


_published: list[PublishedModel] = []


def stop_graphs() -> int:
    """Delete every model this kernel published for a live view; returns how many."""
    published = list(_published)
    for model in published:
        model.stop()
    return len(published)


atexit.register(stop_graphs)


def _as_paths(source: ModelSource) -> list[str]:
    """The file names (or the ``package.module:factory`` spec) a source names; none for a
    model in memory."""
    if isinstance(source, (Model, ir.Model)):
        return []
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


def _file_name(name: str) -> str:
    """A layer or model name made safe as a file name in any file system."""
    return re.sub(r"[^\w.-]", "_", name) or "model"


def _place(path: Path, folder: Path) -> None:
    """A hard link where the file system allows it (a caffemodel can be large), else a copy."""
    try:
        os.link(path, folder / path.name)
    except OSError:
        shutil.copyfile(path, folder / path.name)


def publish(source: ModelSource, server: JupyterServer) -> PublishedModel:
    """Put the model where ``server`` serves it: the files as they are when ``source``
    names files Netron reads (with their weight files beside them), else the model in
    memory (or as ``load`` reads it) saved as ONNX with its provenance."""
    folder = server.models / new_token()
    folder.mkdir(mode=0o700)
    try:
        graph_file = None if isinstance(source, (Model, ir.Model)) else _graph_file(_as_paths(source))
        if graph_file is not None:
            for path in {Path(p) for p in _as_paths(source) if Path(p).is_file()}:
                _place(path, folder)
            opened = graph_file.name
        else:
            model = source if isinstance(source, (Model, ir.Model)) else load(*_as_paths(source))
            name = model.name if isinstance(model, Model) else (model.graph.name or "model")
            opened = _file_name(name) + ".onnx"
            ir.save(model.ir if isinstance(model, Model) else model, folder / opened)
        (folder / VIEW_FILE).write_text(json.dumps({"file": opened}))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    published = PublishedModel(folder, f"{server.app_url}?model={folder.name}")
    _published.append(published)
    return published


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


@dataclass
class GraphView:
    """What ``show_graph`` displays: a header with the live Netron view when there is
    one, then the static drawing."""

    title: str
    drawing: GraphDrawing | None
    missing: str = ""  # why there is no drawing
    live: PublishedModel | None = None
    live_note: str = ""  # why there is no live view
    height: int = DEFAULT_HEIGHT

    def header_html(self) -> str:
        parts = [f"<div><b>{html.escape(self.title)}</b>"]
        if self.drawing is not None:
            parts.append(f" <small>drawing: {html.escape(self.drawing.caption)}</small>")
        elif self.missing:
            parts.append(f"<p style='color:#b35900'>no static drawing: {html.escape(self.missing)}</p>")
        if self.live is not None:
            parts.append(
                "<br><small>live Netron view, served by the Jupyter server while this kernel runs "
                "(saved notebooks keep the drawing below):</small>"
                f'<iframe src="{html.escape(self.live.url)}" title="{html.escape(self.title)} in Netron" '
                f'width="100%" height="{self.height}" style="border:1px solid #ccc;display:block"></iframe>'
            )
        elif self.live_note:
            parts.append(f"<br><small style='color:#777'>{html.escape(self.live_note)}</small>")
        parts.append("</div>")
        return "".join(parts)

    def _ipython_display_(self) -> None:
        display(HTML(self.header_html()))
        if self.drawing is not None:
            display(self.drawing)

    def _repr_html_(self) -> str:
        """One piece of HTML, for renderers that ask for HTML only."""
        return self.header_html() + (self.drawing.html() if self.drawing is not None else "")


def show_graph(
    model_or_path: ModelSource,
    *,
    live: bool | None = None,
    plumbing: bool = False,
    max_nodes: int = DEFAULT_MAX_NODES,
    height: int = DEFAULT_HEIGHT,
) -> GraphView:
    """Show a model's graph: the static drawing (plumbing hidden unless ``plumbing``),
    and the live Netron view when the kernel runs under ``workbench lab`` or a Jupyter
    server with the workbench extension.

    ``model_or_path`` is a ``Model``, an ``onnx_ir.Model``, a model file Netron reads
    (ONNX, Caffe prototxt, ...), the files of one model, or anything ``load`` accepts
    (e.g. ``package.module:factory``). ``live=True`` makes a missing live view an
    error, ``live=False`` never starts one.
    """
    model, missing = _read(model_or_path)
    drawing = draw_graph(model, max_nodes=max_nodes, plumbing=plumbing) if model is not None else None
    view = GraphView(_title(model_or_path, model), drawing, missing, height=height)
    if live is False:
        return view
    server = JupyterServer.of_this_kernel()
    if server is None:
        if live:
            raise WorkbenchError(NO_SERVER, remedy=ENABLE_SERVER)
        view.live_note = "" if _non_interactive() else f"{NO_SERVER}: {ENABLE_SERVER}"
        return view
    # a file on disk is shown as it is; otherwise the model already read in memory
    on_disk = None if isinstance(model_or_path, (Model, ir.Model)) else _graph_file(_as_paths(model_or_path))
    shown = model_or_path if on_disk is not None or model is None else model
    view.live = publish(shown, server)
    return view


def _non_interactive() -> bool:
    """True in a kernel run by papermill/nbclient (no one could open a live view)."""
    return not os.environ.get("JPY_SESSION_NAME")
