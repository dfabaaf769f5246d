"""Every notebook, recorded headless with ``workbench record`` (papermill + nbclient)
from a folder that is neither the repository nor ``notebooks/``: the bundled data is
found through the package. Each record must open with a verified verdict, hold no
error and no warning, and keep a PNG for every plot and graph drawing.

Each notebook ends with a verdict built from comparisons against independent
runtimes (the PyTorch module, OpenCV DNN on the original Caffe files, MXNet's
recorded outputs), so a notebook that records as verified has verified its
conversion. The same notebooks run in a real browser in tests/browser/.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from workbench import cli
from workbench.records import HEADER_TAG

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds; the longest cell takes a few


def outputs_of(cell) -> list[dict]:
    return cell.get("outputs", [])


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_records_a_verified_conversion(notebook, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["record", str(notebook), "-o", "record.ipynb", "--timeout", str(CELL_TIMEOUT)])
    assert code == 0, capsys.readouterr().err
    record = nbformat.read(tmp_path / "record.ipynb", as_version=4)
    header = record.cells[0]
    assert HEADER_TAG in header.metadata["tags"] and header.source.startswith(
        f"# Record of `{notebook.name}`: verified"
    )
    code_cells = [cell for cell in record.cells if cell.cell_type == "code"]
    outputs = [output for cell in code_cells for output in outputs_of(cell)]
    assert not [o for o in outputs if o["output_type"] == "error" or o.get("name") == "stderr"]
    for cell in code_cells:
        if "plot" in cell.metadata.get("tags", []) or "show_graph(" in cell.source:
            assert any("image/png" in o.get("data", {}) for o in outputs_of(cell)), cell.source
    written = record.metadata["workbench"]["record"]["verdict"]["written"]
    assert all(Path(entry["path"]).is_relative_to(tmp_path) for entry in written)  # out/ of the caller's folder
