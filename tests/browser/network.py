"""A remote user, made on this machine: JupyterLab in one network namespace, the
browser in another, joined by a veth pair, and one port forwarded as an SSH tunnel
would (``ssh -L PORT:localhost:PORT``).

    browser namespace                         server namespace
    chromium -> 127.0.0.1:PORT -> socat  ==veth==>  socat -> 127.0.0.1:PORT -> workbench lab

Everything in the server namespace listens on its own loopback, so the browser can
reach the forwarded Jupyter port and nothing else: a view on a second port (a
Netron server of its own, a kernel's sockets) would be out of its reach. Both
namespaces and the veth pair are made by the test and deleted after it; their
addresses belong to them alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import copy_notebooks
from .jupyterlab import CHROMIUM, TOKEN, free_port, lab_command, lab_environment, wait_until_answering


@dataclass(frozen=True)
class ForwardedLab:
    base_url: str  # as the browser sees it
    notebooks: Path
    chromium: Path  # runs Debian's chromium inside the browser namespace
    browser_namespace: str
    server_namespace: str
    server_address: str
    port: int

    def in_browser_namespace(self, command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.browser_namespace, *command], check=False, capture_output=True, text=True
        )

    def unreachable_directly(self) -> bool:
        """Every other port listening in the server namespace (kernels, Jupyter itself
        on its loopback) is out of the browser's reach; only the forwarded one answers."""
        listening = subprocess.run(
            ["ip", "netns", "exec", self.server_namespace, "ss", "-ltnH"], capture_output=True, text=True, check=True
        ).stdout
        ports = {int(line.split()[3].rsplit(":", 1)[1]) for line in listening.splitlines() if line.strip()}
        probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)"
        others = sorted(ports - {self.port})
        assert others, "the server namespace should have kernel ports listening"
        for port in others:
            for address in (self.server_address, "127.0.0.1"):
                if self.in_browser_namespace([sys.executable, "-c", probe, address, str(port)]).returncode == 0:
                    return False
        return self.in_browser_namespace([sys.executable, "-c", probe, "127.0.0.1", str(self.port)]).returncode == 0


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True)


@contextmanager
def forwarded_lab(tmp_path: Path) -> Iterator[ForwardedLab]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    tag = os.getpid() % 10000
    server, browser = f"wb-server-{tag}", f"wb-browser-{tag}"
    veth_server, veth_browser = f"wbs{tag}", f"wbb{tag}"
    subnet = 16 + tag % 200  # a /30 of 10.211.0.0/16, inside these two namespaces only
    server_address, browser_address = f"10.211.{subnet}.1", f"10.211.{subnet}.2"
    port = free_port()
    workspace = tmp_path / "remote"
    notebooks = copy_notebooks(workspace)
    environment = lab_environment(workspace / "home")
    chromium = tmp_path / "chromium-in-namespace"
    chromium.write_text(f'#!/bin/sh\nexec ip netns exec {browser} {CHROMIUM} "$@"\n')
    chromium.chmod(0o755)
    with ExitStack() as cleanup:
        for namespace in (server, browser):
            _ip("netns", "add", namespace)
            cleanup.callback(subprocess.run, ["ip", "netns", "del", namespace], capture_output=True)
            _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("link", "add", veth_server, "type", "veth", "peer", "name", veth_browser)
        for device, namespace, address in (
            (veth_server, server, server_address),
            (veth_browser, browser, browser_address),
        ):
            _ip("link", "set", device, "netns", namespace)
            _ip("-n", namespace, "addr", "add", f"{address}/30", "dev", device)
            _ip("-n", namespace, "link", "set", device, "up")

        def start(namespace: str, command: list[str], log: Path, **options) -> subprocess.Popen:
            with log.open("w") as output:
                process = subprocess.Popen(
                    ["ip", "netns", "exec", namespace, *command], stdout=output, stderr=subprocess.STDOUT, **options
                )
            cleanup.callback(process.wait, 60)
            cleanup.callback(process.terminate)
            return process

        lab_log = workspace / "lab.log"
        lab = start(server, lab_command(port), lab_log, cwd=workspace, env=environment)
        # the tunnel: one port, from the browser's loopback to the server's loopback
        start(
            server,
            ["socat", f"TCP-LISTEN:{port},bind={server_address},reuseaddr,fork", f"TCP:127.0.0.1:{port}"],
            workspace / "socat-server.log",
        )
        start(
            browser,
            ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"TCP:{server_address}:{port}"],
            workspace / "socat-browser.log",
        )
        base_url = f"http://127.0.0.1:{port}/"
        wait_until_answering(
            f"{base_url}api/status?token={TOKEN}", lab, lab_log, probe=["ip", "netns", "exec", browser]
        )
        yield ForwardedLab(base_url, notebooks, chromium, browser, server, server_address, port)
