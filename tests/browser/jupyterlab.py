"""Driving JupyterLab in Chromium the way a user does: start ``workbench lab``, open a
notebook, Run All from the menu, wait for the kernel, read what the page shows.

Debian's chromium is driven by Playwright (it cannot download its own browsers
here). The notebook setting ``windowingMode: none`` keeps every cell in the page,
so what is asserted about a cell is what a user scrolling down would see.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import BrowserContext, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "workbench-browser-test"
START_TIMEOUT = 120  # seconds for JupyterLab to answer
RUN_TIMEOUT = 600  # seconds for a notebook's Run All
KERNEL_DIALOG_WAIT = 5  # seconds JupyterLab may take to ask which kernel to start
STALL_SECONDS = 20  # nothing running and cells left unqueued this long: Run All stopped
VIEWPORT = {"width": 1400, "height": 1000}
TALLEST_SCREENSHOT = 16000  # px; Chromium's limit is 16384
USER_SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab_environment(home: Path) -> dict[str, str]:
    """Jupyter's state and the user's settings in ``home``, nothing from the caller's."""
    settings = home / "lab-settings"
    for name, values in USER_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
    }


def lab_command(port: int, ip: str = "127.0.0.1") -> list[str]:
    """``workbench lab`` as a user on a server runs it."""
    return [
        sys.executable,
        "-m",
        "workbench",
        "lab",
        "--no-browser",
        "--port",
        str(port),
        "--ip",
        ip,
        f"--ServerApp.token={TOKEN}",
    ]


def wait_until_answering(url: str, process: subprocess.Popen, log: Path, probe: list[str] | None = None) -> None:
    """Poll ``url`` (from here, or with the ``probe`` command prefix, e.g. inside a
    network namespace) until Jupyter answers."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if probe is None:
            try:
                urllib.request.urlopen(url, timeout=5)
                return
            except (urllib.error.URLError, ConnectionError):
                pass
        else:
            check = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)"
            if (
                subprocess.run([*probe, sys.executable, "-c", check, url], check=False, capture_output=True).returncode
                == 0
            ):
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"JupyterLab did not start:\n{log.read_text()}")
        time.sleep(0.5)


@dataclass
class RequestLog:
    """Every request the pages of a browser context made, and every console message."""

    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.on("request", lambda request: self.requests.append(request.url))
        context.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))

    def elsewhere(self, origin: str) -> list[str]:
        """Requests to anything but ``origin`` (data: and blob: URLs are in the page)."""
        return [
            url
            for url in self.requests
            if not url.startswith(origin + "/") and urllib.parse.urlsplit(url).scheme not in ("data", "blob")
        ]

    def refused(self) -> list[str]:
        """Console messages of requests the Content-Security-Policy blocked (tried, not sent)."""
        return [line for line in self.console if "Content Security Policy" in line or "Refused to" in line]


NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"


def open_notebook(page: Page, base_url: str, path: str) -> None:
    """Open one notebook, as a link to it would, in a JupyterLab workspace of its own
    (so no other notebook of an earlier page is restored beside it)."""
    workspace = re.sub(r"[^\w-]", "-", path)
    page.goto(f"{base_url}lab/workspaces/{workspace}/tree/{path}?token={TOKEN}")
    page.wait_for_selector(f"{NOTEBOOK} .jp-Cell", timeout=START_TIMEOUT * 1000)
    # a notebook opened before JupyterLab has its kernel list asks which kernel to start,
    # the notebook's own preselected: accept it, as a user does
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=KERNEL_DIALOG_WAIT * 1000)
    except PlaywrightTimeout:
        pass
    else:
        dialog.locator("button", has_text="Select").last.click()
    wait_for_idle_kernel(page)


def wait_for_idle_kernel(page: Page, timeout: float = START_TIMEOUT) -> None:
    page.wait_for_selector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached", timeout=timeout * 1000
    )


def run_all(page: Page) -> float:
    """Run → Run All Cells from the menu bar, once JupyterLab enables it (its kernel is
    ready); returns the seconds until every code cell has its execution count."""
    prompts = page.locator(f"{NOTEBOOK} .jp-CodeCell .jp-InputPrompt")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            raise AssertionError(f"JupyterLab shows a dialog: {dialog.first.inner_text()!r}")
        page.locator("li.lm-MenuBar-item", has_text="Run").first.click()
        item = page.locator("li.lm-Menu-item[data-command='runmenu:run-all']")
        item.wait_for()
        if "lm-mod-disabled" not in (item.get_attribute("class") or ""):
            item.click()
            start = time.monotonic()
            try:  # the first cell starts (or already ran) when the kernel took the request
                page.wait_for_function(
                    "selector => document.querySelector(selector).innerText.trim() !== '[ ]:'",
                    arg=f"{NOTEBOOK} .jp-CodeCell .jp-InputPrompt",
                    timeout=15_000,
                )
                break
            except PlaywrightTimeout:
                pass
        else:
            page.keyboard.press("Escape")
        if time.monotonic() > deadline:
            raise TimeoutError("JupyterLab never ran the notebook: Run All stayed disabled or did nothing")
        page.wait_for_timeout(1000)
    stalled_since = None
    while True:
        texts = [text.strip() for text in prompts.all_inner_texts()]
        if texts and all(re.fullmatch(r"\[\d+\]:", text) for text in texts):
            break
        # Run All queues every cell at once ([*]); a cell left unqueued with nothing running means it stopped
        stalled = "[*]:" not in texts and "[ ]:" in texts
        stalled_since = (stalled_since or time.monotonic()) if stalled else None
        if stalled_since is not None and time.monotonic() - stalled_since > STALL_SECONDS:
            raise TimeoutError(f"Run All stopped with cells never run: prompts {texts}")
        if time.monotonic() > start + RUN_TIMEOUT:
            raise TimeoutError(f"Run All did not finish in {RUN_TIMEOUT} s: prompts {texts}")
        time.sleep(0.5)
    seconds = time.monotonic() - start
    wait_for_idle_kernel(page)
    return seconds


def save(page: Page) -> None:
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1500)


def cells(page: Page):
    """The cells of the open notebook, in order (every one is in the page: windowingMode none)."""
    return page.locator(f"{NOTEBOOK} .jp-Cell")


def screenshot_notebook(page: Page, path: Path) -> None:
    """The whole notebook in one picture: the window is made as tall as the notebook."""
    height = page.evaluate(
        "() => { const n = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');"
        " if (!n) return document.body.scrollHeight; n.scrollTop = 0; return n.scrollHeight; }"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height) + 200, TALLEST_SCREENSHOT)})
    page.wait_for_timeout(1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)


@contextmanager
def pictured_on_failure(page: Page, path: Path) -> Iterator[None]:
    """On a failure inside, keep a screenshot of what the page showed then."""
    try:
        yield
    except BaseException:
        try:
            screenshot_notebook(page, path)
        except Exception:  # noqa: BLE001, S110 - the page itself may be what failed; the original error matters
            pass
        raise
