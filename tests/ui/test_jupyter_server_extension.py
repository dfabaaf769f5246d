"""The server side of the live Netron view: a real Jupyter server with the workbench
extension, over HTTP. What a browser makes of the page is in tests/browser/."""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from workbench_jupyter import CONTENT_SECURITY_POLICY, ENDED_PAGE, VIEW_FILE, netron_folder, viewer_page

TOKEN = "test-token"
START_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    """(server URL with its base_url, folder it serves models from)."""
    root = tmp_path_factory.mktemp("jupyter")
    port = free_port()
    environment = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "runtime"), "JUPYTER_CONFIG_DIR": str(root)}
    command = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={TOKEN}",
        "--ServerApp.base_url=/user/someone/",  # as under JupyterHub
        f"--ServerApp.root_dir={root}",
        "--ServerApp.jpserver_extensions=workbench_jupyter=True",
    ]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/user/someone/"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            fetch(url + "api/status")
            break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"the Jupyter server did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.2)
    (models,) = (root / "runtime").glob(f"workbench-netron-{server.pid}-*")
    yield url, models
    server.terminate()
    server.wait(timeout=30)
    log.close()
    assert not models.exists()  # the server removes what kernels published when it stops


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect (to the login page) is the answer, not something to follow


def fetch(url: str, token: str | None = TOKEN):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    return urllib.request.build_opener(NoRedirect).open(request, timeout=10)


def status_of(url: str, token: str | None = TOKEN) -> int:
    try:
        return fetch(url, token).status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def published(jupyter, tmp_path) -> tuple[str, bytes]:
    """A model folder as a kernel writes it; returns (token, model bytes)."""
    _, models = jupyter
    token = "abcdefgh12345678"
    folder = models / token
    folder.mkdir(exist_ok=True)
    content = b"\x08\x07model bytes"
    (folder / "net.onnx").write_bytes(content)
    (folder / VIEW_FILE).write_text(json.dumps({"file": "net.onnx"}))
    return token, content


def test_the_page_opens_the_published_model_and_keeps_everything_local(jupyter, published):
    url, _ = jupyter
    token, _ = published
    response = fetch(f"{url}workbench/netron/app/?model={token}")
    page = response.read().decode()
    assert f'<meta name="file" content="models/{token}/net.onnx">' in page
    assert page.count('<meta name="version"') == 1 and '<meta name="version" content="0.0.0">' in page
    assert f'<meta name="date" content="{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}' in page
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    (consent,) = [cookie for cookie in response.headers.get_all("Set-Cookie") if cookie.startswith("consent=")]
    assert "Path=/user/someone/workbench/netron/app/" in consent and "SameSite=Strict" in consent


def test_the_app_files_and_the_model_are_served(jupyter, published):
    url, _ = jupyter
    token, content = published
    app = f"{url}workbench/netron/app/"
    script = fetch(app + "browser.js")
    assert script.headers["Content-Type"] == "text/javascript"
    assert script.read() == (netron_folder() / "browser.js").read_bytes()
    assert fetch(f"{app}models/{token}/net.onnx").read() == content


def test_an_ended_view_says_so(jupyter):
    url, _ = jupyter
    assert fetch(f"{url}workbench/netron/app/?model=gone0000gone0000").read().decode() == ENDED_PAGE


@pytest.mark.parametrize(
    "path",
    [
        "server.py",  # not an app file type
        "../../../../etc/passwd",
        "models/abcdefgh12345678/view.json",
        "models/abcdefgh12345678/..%2F..%2Fserver.log",
        "models/short/net.onnx",
    ],
)
def test_nothing_else_is_served(jupyter, published, path):
    url, _ = jupyter
    assert status_of(f"{url}workbench/netron/app/{path}") == 404


def test_the_views_need_the_jupyter_login(jupyter, published):
    url, _ = jupyter
    token, _ = published
    # without the login, Jupyter sends the browser to its login page
    assert status_of(f"{url}workbench/netron/app/?model={token}", token=None) == 302
    assert status_of(f"{url}workbench/netron/app/models/{token}/net.onnx", token="wrong") == 302


def test_viewer_page_replaces_the_release_metas():
    index = (netron_folder() / "index.html").read_text()
    page = viewer_page(index, "models/t/x.onnx", "x.onnx", datetime.datetime(2030, 1, 2, 3, 4, 5))
    assert re.findall(r'<meta name="(version|date|file|identifier)" content="([^"]*)">', page) == [
        ("version", "0.0.0"),
        ("date", "2030-01-02 03:04:05"),
        ("file", "models/t/x.onnx"),
        ("identifier", "x.onnx"),
    ]
    assert Path(netron_folder() / "index.html").read_text() == index
