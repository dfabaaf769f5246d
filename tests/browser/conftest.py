"""JupyterLab started with ``workbench lab`` on a copy of the notebooks, and Chromium.

Screenshots and the pages opened are kept in ``artifacts/browser/`` (git-ignored)
for people to look at after a run.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from .jupyterlab import CHROMIUM, CHROMIUM_FLAGS, TOKEN, free_port, lab_command, lab_environment, wait_until_answering

REPOSITORY = Path(__file__).resolve().parents[2]
ARTIFACTS = REPOSITORY / "artifacts" / "browser"


@dataclass(frozen=True)
class Lab:
    """A running ``workbench lab``: where it answers and the folder it was started in."""

    base_url: str  # "http://127.0.0.1:PORT/"
    workspace: Path  # holds notebooks/, as a clone does
    environment: dict

    @property
    def notebooks(self) -> Path:
        return self.workspace / "notebooks"


def copy_notebooks(workspace: Path) -> Path:
    """A folder with a copy of notebooks/ (what the browser changes and saves stays out of the repository)."""
    target = workspace / "notebooks"
    shutil.copytree(REPOSITORY / "notebooks", target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "out"))
    return target


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab(tmp_path_factory, artifacts) -> Lab:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (run it as root once)")
    workspace = tmp_path_factory.mktemp("lab")
    copy_notebooks(workspace)
    environment = lab_environment(workspace / "home")
    port = free_port()
    log_path = workspace / "lab.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            lab_command(port), cwd=workspace, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_answering(f"{base_url}api/status?token={TOKEN}", process, log_path)
        yield Lab(base_url, workspace, environment)
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.copyfile(log_path, ARTIFACTS / "lab.log")  # the server's side of whatever the pages showed


@pytest.fixture(scope="session")
def playwright() -> Playwright:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright) -> Browser:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    yield chromium
    chromium.close()
