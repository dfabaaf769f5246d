"""``workbench lab``: the JupyterLab command it runs, and a real start with the live
Netron view's server extension on (the notebooks in a browser: tests/browser/)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from workbench import cli
from workbench_jupyter import ENDED_PAGE

REPOSITORY = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90


@pytest.fixture
def started(monkeypatch) -> list[list[str]]:
    commands: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, command: commands.append(command))
    return commands


def test_options_and_extra_arguments_reach_jupyterlab(started, monkeypatch):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    cli.main(["lab", "--port", "9000", "--ip", "0.0.0.0", "--no-browser", "--ServerApp.token=abc", "--debug"])
    (command,) = started
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert command[3:] == [
        f"--ServerApp.root_dir={REPOSITORY / 'notebooks'}",
        "--ServerApp.jpserver_extensions=workbench_jupyter=True",
        "--port=9000",
        "--ip=0.0.0.0",
        "--no-browser",
        "--ServerApp.token=abc",
        "--debug",
    ]


def test_as_root_it_allows_root(started, monkeypatch):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    cli.main(["lab"])
    assert started[0].count("--allow-root") == 1
    cli.main(["lab", "--allow-root"])
    assert started[1].count("--allow-root") == 1


def test_other_commands_still_refuse_unknown_arguments(capsys):
    assert cli.main(["check", "x.onnx", "--to", "onnx", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_without_a_notebooks_folder_it_says_where_it_looked(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "notebooks_folder", lambda: tmp_path / "absent")
    assert cli.main(["lab"]) == 2
    assert "no notebooks folder" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_it_starts_jupyterlab_with_the_netron_view_served(tmp_path):
    port = free_port()
    environment = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "workbench", "lab", "--no-browser", "--port", str(port), "--ip", "127.0.0.1"]
    command.append("--ServerApp.token=lab-test")
    log = (tmp_path / "lab.log").open("w")
    lab = subprocess.Popen(command, cwd=REPOSITORY, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/workbench/netron/app/?model=none00000none000"
        request = urllib.request.Request(url, headers={"Authorization": "token lab-test"})
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                page = urllib.request.urlopen(request, timeout=10).read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                assert lab.poll() is None and time.monotonic() < deadline, (tmp_path / "lab.log").read_text()
                time.sleep(0.3)
        assert page == ENDED_PAGE  # the extension answers: no view by that name
    finally:
        lab.terminate()  # JupyterLab itself: workbench lab handed its process over
        lab.wait(timeout=30)
        log.close()
