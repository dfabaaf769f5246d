"""Netron inside Jupyter: a Jupyter server extension that serves Netron's web app and
the models a notebook shows through the Jupyter server itself.

Why a server extension. The browser may reach nothing but the Jupyter server: an
SSH tunnel forwards one port, JupyterHub and containers expose one, VS Code remote
talks to one. A Netron server of its own on another port (what ``netron.serve``
does) is unreachable there. Of the ways to go through the Jupyter server,
jupyter-server-proxy would still need that second server (it only relays to it)
and one more dependency; a widget that loads Netron without a server would have to
push Netron's multi-megabyte app of ES modules through the kernel's comm channel and
rewrite its relative imports. Handlers added to the Jupyter server serve the app
files straight from the installed ``netron`` package, on the server's origin, behind
its login, under its ``base_url`` (so JupyterHub's ``/user/NAME/`` prefix works).

This module is its own small top-level package so that the Jupyter server imports
no more than it needs: a module inside ``workbench`` would load the whole package
(torch, onnx) into the server process. It is enabled by the
``jupyter_server_config.d/workbench_jupyter.json`` file the project installs, and
``workbench lab`` enables it explicitly as well.

How a kernel shows a model (``workbench.ui.netron_view`` is the kernel side):

1. On load the extension makes a private folder (mode 0700) in the Jupyter runtime
   folder and puts ``{"pid", "app_url", "models"}`` in the environment variable
   ``WORKBENCH_NETRON`` of the server process; every kernel the server starts
   inherits it. A kernel believes it only when its ``JPY_PARENT_PID`` is that pid,
   so a kernel started by anything else (papermill in a terminal) draws no live view.
2. The kernel copies the model into ``models/<token>/`` (a random token per view)
   with ``view.json`` naming the file Netron opens, and shows an iframe at
   ``app_url?model=<token>``.
3. The page is Netron's ``index.html`` with ``<meta name="file">`` pointing at
   ``models/<token>/<file>``; Netron fetches it relative to the page.

What is changed in Netron's page, so that nothing leaves the machine and nothing
blocks the view: Netron's browser host asks ipinfo.io where the user is, shows a
cookie-consent splash, then reports to Google Analytics (sending the page URL as
referrer) when its version meta says it is a packaged release, and refuses to run
180 days after its build date. The page served here carries version ``0.0.0``
(Netron's own marker of an unpackaged build: no telemetry, no error reports), the
serving date, and a ``consent`` cookie so the consent step neither asks nor looks
up anything. A Content-Security-Policy header limits every fetch, script, image,
font and worker to the Jupyter server itself, so a future Netron that adds another
look-up is stopped by the browser rather than trusted to behave.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

ENVIRONMENT_VARIABLE = "WORKBENCH_NETRON"
ROUTE = "workbench/netron/app/"
VIEW_FILE = "view.json"  # in each model folder: {"file": the file Netron opens}
TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")
FILE_NAME = re.compile(r"[^/\\]+")
CONSENT_COOKIE_DAYS = 30
APP_FILE_TYPES = {
    ".js": "text/javascript",
    ".json": "application/json",
    ".css": "text/css",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
CONTENT_SECURITY_POLICY = "; ".join(  # noqa: FLY002 (one directive per line, with its reason)
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # index.html has an inline <style> and style attributes
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'none'",
        "frame-ancestors 'self'",
    )
)
ENDED_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Netron view ended</title></head>
<body style="font-family:sans-serif;color:#555;padding:1em">
<p>This live Netron view ended with the kernel that showed it. Run the cell again to see the graph.</p>
</body></html>"""


def netron_folder() -> Path:
    """Where the installed ``netron`` package keeps its web app (found without importing it)."""
    spec = find_spec("netron")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the netron package is not installed: pip install netron")
    return Path(next(iter(spec.submodule_search_locations)))


def new_token() -> str:
    return secrets.token_urlsafe(16)


def viewer_page(index_html: str, model_path: str | None, file_name: str | None, now: datetime.datetime) -> str:
    """Netron's ``index.html`` with the metas that open ``model_path`` and keep the page
    local (see the module docstring)."""
    metas = [
        '<meta name="version" content="0.0.0">',
        f'<meta name="date" content="{now:%Y-%m-%d %H:%M:%S}">',
    ]
    if model_path:
        metas.append(f'<meta name="file" content="{model_path}">')
        metas.append(f'<meta name="identifier" content="{file_name}">')
    page = re.sub(r'<meta name="(version|date)" content="[^"]*">\s*', "", index_html)
    return page.replace("<head>", "<head>\n" + "\n".join(metas), 1)


class NetronHandler(JupyterHandler):
    """Netron's app files, its page for one published model, and the model files."""

    auth_resource = "contents"  # the models are files the kernel read

    def initialize(self, app_folder: Path, models: Path) -> None:
        self.app_folder = app_folder
        self.models = models

    @property
    def content_security_policy(self) -> str:
        return CONTENT_SECURITY_POLICY

    @web.authenticated
    @authorized
    def get(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")  # revalidate: tornado answers 304 by ETag
        if path in ("", "index.html"):
            self._page()
        elif path.startswith("models/"):
            self._model(path[len("models/") :])
        else:
            self._app_file(path)

    def _page(self) -> None:
        token = self.get_query_argument("model", "")
        view = self._view(token)
        if view is None:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(ENDED_PAGE)
            return
        index = (self.app_folder / "index.html").read_text(encoding="utf-8")
        page = viewer_page(
            index, f"models/{token}/{view['file']}", view["file"], datetime.datetime.now(datetime.timezone.utc)
        )
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=CONSENT_COOKIE_DAYS)
        path = url_path_join(self.base_url, ROUTE)
        self.set_cookie("consent", str(int(time.time() * 1000)), path=path, expires=expires, samesite="Strict")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(page)

    def _view(self, token: str) -> dict[str, Any] | None:
        if not TOKEN.fullmatch(token):
            return None
        try:
            view = json.loads((self.models / token / VIEW_FILE).read_text())
        except (OSError, ValueError):
            return None
        return view if isinstance(view, dict) and FILE_NAME.fullmatch(str(view.get("file", ""))) else None

    def _model(self, rest: str) -> None:
        token, _, name = rest.partition("/")
        if not TOKEN.fullmatch(token) or not FILE_NAME.fullmatch(name) or name == VIEW_FILE:
            raise web.HTTPError(404)
        self._send(self.models / token / name, "application/octet-stream")

    def _app_file(self, path: str) -> None:
        content_type = APP_FILE_TYPES.get(Path(path).suffix)
        if content_type is None or not FILE_NAME.fullmatch(path):  # the app is one flat folder
            raise web.HTTPError(404)
        self._send(self.app_folder / path, content_type)

    def _send(self, path: Path, content_type: str) -> None:
        try:
            content = path.read_bytes()
        except OSError as error:
            raise web.HTTPError(404) from error
        self.set_header("Content-Type", content_type)
        self.finish(content)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "workbench_jupyter"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    runtime = Path(serverapp.runtime_dir)
    runtime.mkdir(parents=True, exist_ok=True)
    models = Path(tempfile.mkdtemp(prefix=f"workbench-netron-{os.getpid()}-", dir=runtime))  # mode 0700
    atexit.register(shutil.rmtree, models, ignore_errors=True)
    app_url = url_path_join(serverapp.base_url, ROUTE)
    os.environ[ENVIRONMENT_VARIABLE] = json.dumps({"pid": os.getpid(), "app_url": app_url, "models": str(models)})
    pattern = url_path_join(serverapp.base_url, ROUTE, "(.*)")
    serverapp.web_app.add_handlers(".*$", [(pattern, NetronHandler, {"app_folder": netron_folder(), "models": models})])
    serverapp.log.info("workbench: Netron views served at %s (models in %s)", app_url, models)
