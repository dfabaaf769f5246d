"""Every notebook runs headless, top to bottom, on its bundled sample (papermill + nbclient).

Each notebook ends with assertions on its own comparison against an independent
runtime, so a notebook that runs to the end has verified its conversion.
"""

from __future__ import annotations

from pathlib import Path

import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_to_the_end(notebook, tmp_path):
    executed = tmp_path / notebook.name
    papermill.execute_notebook(
        str(notebook),
        str(executed),
        parameters={"outdir": str(tmp_path / "out")},
        kernel_name="python3",
        cwd=str(notebook.parent.parent),
        progress_bar=False,
    )
    assert executed.stat().st_size > notebook.stat().st_size
