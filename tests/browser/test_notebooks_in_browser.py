"""Every notebook in Chromium, opened the way ``workbench lab`` serves it, run with Run
All, and looked at as a user would: no error output, every panel a live widget, an
image for every plot and graph drawing, and Netron showing the graph's nodes inside
the notebook. A request log holds every request the pages made: none may go
anywhere but the Jupyter server. A screenshot of each notebook is kept.

The live Netron view is also seen by a browser that reaches Jupyter only through
one forwarded port (tests/browser/network.py), and an executed record, opened
untrusted in JupyterLab and as its HTML export, still shows the drawing, the plots
and the panels' snapshots.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import nbformat
import pytest
from nbformat.sign import NotebookNotary
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError

from .jupyterlab import (
    CHROMIUM_FLAGS,
    TOKEN,
    VIEWPORT,
    RequestLog,
    cells,
    open_notebook,
    pictured_on_failure,
    run_all,
    save,
    screenshot_notebook,
)
from .network import forwarded_lab

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
PANELS = ("pipeline_stepper(", "ComparisonExplorer(", "NameMapEditor(")
NETRON_TIMEOUT = 60  # seconds for Netron to lay out a graph

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def expectations(path: Path) -> dict[str, list[int]]:
    """Which cells (by index) draw a plot, show a graph, or show a panel."""
    book = nbformat.read(path, as_version=4)
    found: dict[str, list[int]] = {"plot": [], "graph": [], "panel": []}
    for index, cell in enumerate(book.cells):
        if cell.cell_type != "code":
            continue
        if "plot" in cell.metadata.get("tags", []):
            found["plot"].append(index)
        if "show_graph(" in cell.source:
            found["graph"].append(index)
        if any(panel in cell.source for panel in PANELS):
            found["panel"].append(index)
    return found


def netron_nodes(page: Page, cell_index: int) -> tuple[int, list[str]]:
    """How many graph nodes Netron drew in the cell's live view, and their labels. Read
    from the notebook page through the iframe (same origin): Netron forbids
    ``window.eval``, which Playwright's own scripting inside the frame relies on."""
    frame = cells(page).nth(cell_index).locator("iframe")
    deadline = time.monotonic() + NETRON_TIMEOUT
    labels: list[str] = []
    while time.monotonic() < deadline:
        labels = frame.evaluate(
            "frame => Array.from(frame.contentDocument?.querySelectorAll('g.node') ?? []).map(n => n.textContent)"
        )
        if labels:
            break
        time.sleep(0.5)
    return len(labels), labels


def drawn_nodes(page: Page, cell_index: int) -> int:
    """The node count the static drawing's caption states ("drawing: 37 of 94 nodes")."""
    caption = cells(page).nth(cell_index).locator(".jp-OutputArea").inner_text()
    return int(re.search(r"drawing: (\d+) of \d+ nodes", caption).group(1))


def assert_no_errors(page: Page) -> None:
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert stderr.count() == 0, stderr.all_inner_texts()
    assert page.get_by_text("Error displaying widget").count() == 0


def assert_images(page: Page, indices: list[int], what: str) -> None:
    for index in indices:
        images = cells(page).nth(index).locator(".jp-OutputArea img")
        assert images.count() >= 1, f"cell {index}: no image for its {what}"
        assert images.first.evaluate("image => image.complete && image.naturalWidth > 0"), f"cell {index}: broken image"


def assert_local(log: RequestLog, origin: str) -> None:
    assert log.requests, "the request log recorded nothing"
    assert log.elsewhere(origin) == []
    assert log.refused() == []  # nothing even tried (a blocked try would show here)


def run_and_look(browser: Browser, base_url: str, notebook: Path, artifacts: Path, name: str) -> RequestLog:
    """Open the notebook, Run All, and check what the page shows; returns the request log."""
    expected = expectations(notebook)
    context = browser.new_context(viewport=VIEWPORT)
    log = RequestLog()
    log.attach(context)
    page = context.new_page()
    with closing(context), pictured_on_failure(page, artifacts / f"FAILED-{name}.png"):
        open_notebook(page, base_url, notebook.name)
        seconds = run_all(page)
        with (artifacts / "run-times.txt").open("a") as times:
            times.write(f"{name}\t{seconds:.1f} s\tRun All in Chromium\n")
        assert_no_errors(page)
        for index in expected["panel"]:
            panel = cells(page).nth(index).locator(".jp-OutputArea .workbench-panel")
            assert panel.count() >= 1, f"cell {index}: the panel is not a live widget"
            assert panel.first.is_visible()
        assert_images(page, expected["plot"], "plot")
        assert_images(page, expected["graph"], "graph drawing")
        for index in expected["graph"]:
            count, labels = netron_nodes(page, index)
            assert count >= drawn_nodes(page, index), f"cell {index}: Netron drew {count} nodes"
            assert any("Conv" in label for label in labels)
        screenshot_notebook(page, artifacts / f"{name}.png")
        save(page)
    return log


def once_more_on_failure(attempt: Callable[[], RequestLog], artifacts: Path, name: str) -> RequestLog:
    """One more try when the first fails, the failure kept in ``retries.txt`` (a second
    failure fails the test). Seen while JupyterLab was set to start the preferred kernel
    on its own: a notebook opened before JupyterLab had its kernel list got a second
    kernel, which dropped the queued cells of a Run All and the widgets of the first
    kernel ("Error displaying widget"). Choosing the kernel in its dialog ended that in
    our runs; the retry remains a logged guard against a loaded machine."""
    try:
        return attempt()
    except (AssertionError, TimeoutError, PlaywrightError) as failure:
        with (artifacts / "retries.txt").open("a") as retries:
            retries.write(f"{name}: {str(failure).splitlines()[0]}\n")
    return attempt()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab(lab, browser, artifacts, notebook):
    log = once_more_on_failure(
        lambda: run_and_look(browser, lab.base_url, notebook, artifacts, notebook.stem), artifacts, notebook.stem
    )
    assert_local(log, lab.base_url.rstrip("/"))
    saved = nbformat.read(lab.notebooks / notebook.name, as_version=4)
    assert not [o for cell in saved.cells for o in cell.get("outputs", []) if o["output_type"] == "error"]


def test_an_untrusted_record_shows_the_drawing_plots_and_snapshots(lab, browser, artifacts):
    notebook = lab.notebooks / "00_tour.ipynb"
    record = lab.notebooks / "records" / "00_tour.record.ipynb"
    command = [sys.executable, "-m", "workbench", "record", str(notebook), "-o", str(record), "--html"]
    done = subprocess.run(command, check=False, cwd=lab.workspace, env=lab.environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    executed = nbformat.read(record, as_version=4)
    assert not NotebookNotary(data_dir=lab.environment["JUPYTER_DATA_DIR"]).check_signature(executed)
    expected = expectations(notebook)
    shift = 1  # the record's header cell comes first
    context = browser.new_context(viewport=VIEWPORT)
    log = RequestLog()
    log.attach(context)
    page = context.new_page()
    with closing(context), pictured_on_failure(page, artifacts / "FAILED-record.png"):
        open_notebook(page, lab.base_url, "records/00_tour.record.ipynb")
        header = cells(page).nth(0)
        header.locator(".jp-RenderedMarkdown h1").wait_for()
        assert "Record of 00_tour.ipynb: verified" in header.inner_text()
        assert_no_errors(page)
        assert_images(page, [i + shift for i in expected["plot"]], "plot")
        assert_images(page, [i + shift for i in expected["graph"]], "graph drawing")
        for index in expected["panel"]:
            output = cells(page).nth(index + shift).locator(".jp-OutputArea")
            assert output.locator(".workbench-snapshot").count() == 1, f"cell {index}: no snapshot"
            assert output.locator(".jupyter-widgets").count() == 0
            assert output.locator("table").count() >= 1  # what the panel showed: its tables
        assert cells(page).nth(0).locator("table").count() >= 3  # verdict, sources, parameters, written
        screenshot_notebook(page, artifacts / "record-00_tour-untrusted.png")
        page.goto(f"{lab.base_url}files/records/00_tour.record.html?token={TOKEN}")
        page.wait_for_selector(".workbench-snapshot")
        assert page.locator(".workbench-snapshot").count() == len(expected["panel"])
        images = page.locator("img")
        assert images.count() >= len(expected["plot"]) + len(expected["graph"])
        assert page.evaluate("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(artifacts / "record-00_tour-html.png"), full_page=True)
    assert_local(log, lab.base_url.rstrip("/"))


def test_the_netron_view_through_one_forwarded_port(playwright, artifacts, tmp_path):
    with forwarded_lab(tmp_path) as remote:
        # a browser of its own, inside the browser's namespace
        chromium = playwright.chromium.launch(executable_path=str(remote.chromium), args=CHROMIUM_FLAGS)
        with closing(chromium):
            notebook = remote.notebooks / "00_tour.ipynb"
            log = once_more_on_failure(
                lambda: run_and_look(chromium, remote.base_url, notebook, artifacts, "forwarded-00_tour"),
                artifacts,
                "forwarded-00_tour",
            )
        assert_local(log, remote.base_url.rstrip("/"))
        assert remote.unreachable_directly()
