"""``workbench record``: the header it writes at the top of a record (what was
converted, with what, into what, the verdict), its exit status, and ``--timeout``.
The notebooks run in a real kernel (papermill)."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import nbformat
import onnx_ir as ir
import pytest

from workbench import cli
from workbench.records import HEADER_TAG, VERDICT_MIMETYPE, WIDGET_VIEW_MIMETYPE, Verdict, versions

from .ui.conftest import conv_bn_relu


def notebook(path: Path, parameters: str, *cells: str) -> Path:
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    parameter_cell = nbformat.v4.new_code_cell(parameters)
    parameter_cell.metadata["tags"] = ["parameters"]
    book.cells = [parameter_cell, *(nbformat.v4.new_code_cell(source) for source in cells)]
    nbformat.write(book, path)
    return path


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "conv_bn_relu.onnx"
    ir.save(conv_bn_relu().ir, path)
    return path


CONVERT = """\
import workbench
from workbench.records import Verdict
from workbench.ui import NameMapEditor
model = workbench.load(source)
written = workbench.write(workbench.fold_bn(model), outdir, "onnx")
final = workbench.compare(model, written)
display(NameMapEditor(workbench.map_names(model, written), source=model))
Verdict.of({"folded ONNX file in onnxruntime against the source": final, "stated": (stated, "as given")},
           source=model, written=written)
"""


def record(arguments: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(["record", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def header(path: Path) -> tuple[str, dict]:
    executed = nbformat.read(path, as_version=4)
    first = executed.cells[0]
    assert first.cell_type == "markdown" and HEADER_TAG in first.metadata["tags"]
    return first.source, executed.metadata["workbench"]["record"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_header_says_what_was_converted_how_into_what_and_the_verdict(tmp_path, model_file, capsys):
    source = notebook(tmp_path / "convert.ipynb", 'source = "model.onnx"\noutdir = "out"\nstated = True', CONVERT)
    output = tmp_path / "record.ipynb"
    code, out, err = record(
        [str(source), "-o", str(output), "-p", "source", str(model_file), "-p", "outdir", str(tmp_path / "out")],
        capsys,
    )
    assert code == 0, err
    text, facts = header(output)
    assert text.startswith("# Record of `convert.ipynb`: verified")
    assert "Record of `convert.ipynb`: verified" in out
    assert f"| `{model_file.resolve()}` | {model_file.stat().st_size:,} | `{sha256(model_file)}` |" in text
    written = tmp_path / "out" / "conv_bn_relu.onnx"
    assert f"`{written.resolve()}` (onnx) | {written.stat().st_size:,} | `{sha256(written)}` |" in text
    assert f"| `source` | `{str(model_file)!r}` | given |" in text and "| `stated` | `True` | default |" in text
    assert "| folded ONNX file in onnxruntime against the source | pass | conv_bn_relu" in text
    for library in ("workbench", "torch", "onnx", "onnxruntime", "OpenCV"):
        assert f"{library} {versions()[library]}" in text
    assert facts["verified"] is True and facts["outcome"]["status"] == "completed"
    assert facts["verdict"]["sources"][0]["sha256"] == sha256(model_file)


def test_a_record_keeps_the_panels_snapshots_and_no_live_widgets(tmp_path, model_file, capsys):
    source = notebook(tmp_path / "convert.ipynb", 'source = "model.onnx"\noutdir = "out"\nstated = True', CONVERT)
    output = tmp_path / "record.ipynb"
    arguments = [str(source), "-o", str(output), "-p", "source", str(model_file), "-p", "outdir", str(tmp_path / "out")]
    assert record([*arguments, "--html"], capsys)[0] == 0
    executed = nbformat.read(output, as_version=4)
    outputs = [o for cell in executed.cells for o in cell.get("outputs", []) if "data" in o]
    assert not any(WIDGET_VIEW_MIMETYPE in o["data"] for o in outputs) and "widgets" not in executed.metadata
    (panel,) = [o for o in outputs if "workbench-snapshot" in o["data"].get("text/html", "")]
    assert "<b>Name map</b> (onnx)" in panel["data"]["text/html"]
    exported = output.with_suffix(".html").read_text()
    assert "<b>Name map</b> (onnx)" in exported
    assert not re.findall(r"(?:src|href)=\"(?:https?:)?//", exported)  # nothing loaded from elsewhere


def test_a_failed_check_is_a_record_that_is_not_verified(tmp_path, model_file, capsys):
    source = notebook(tmp_path / "convert.ipynb", 'source = "model.onnx"\noutdir = "out"\nstated = False', CONVERT)
    output = tmp_path / "record.ipynb"
    code, _, _ = record(
        [str(source), "-o", str(output), "-p", "source", str(model_file), "-p", "outdir", str(tmp_path / "out")],
        capsys,
    )
    assert code == 1
    text, facts = header(output)
    assert text.startswith("# Record of `convert.ipynb`: NOT verified: a check failed")
    assert "| stated | **FAIL** | as given |" in text and facts["verified"] is False


def test_a_cell_that_raises_is_named_in_the_header(tmp_path, capsys):
    source = notebook(tmp_path / "broken.ipynb", "x = 1", "y = x + 1", "raise ValueError('no such layer: fc9')")
    output = tmp_path / "record.ipynb"
    code, _, err = record([str(source), "-o", str(output), "--html"], capsys)
    assert code == 1 and "failed in cell [3]" in err
    text, facts = header(output)
    assert "**The run failed in cell [3]:** ValueError: no such layer: fc9" in text
    assert facts["outcome"]["status"] == "failed" and facts["verdict"] is None
    assert "no such layer: fc9" in output.with_suffix(".html").read_text()


def test_timeout_stops_a_cell_that_hangs(tmp_path, capsys):
    source = notebook(tmp_path / "hangs.ipynb", "seconds = 600", "import time\ntime.sleep(seconds)")
    output = tmp_path / "record.ipynb"
    start = time.monotonic()
    code, _, _err = record([str(source), "-o", str(output), "--timeout", "3"], capsys)
    assert code == 1 and time.monotonic() - start < 60
    text, facts = header(output)
    assert "**The run timed out in cell [2]:**" in text and "at most 3 s per cell" in text
    assert facts["outcome"]["status"] == "timed out" and facts["timeout"] == 3


def test_timeout_must_be_positive(tmp_path, capsys):
    source = notebook(tmp_path / "n.ipynb", "x = 1")
    code, _, err = record([str(source), "-o", str(tmp_path / "r.ipynb"), "--timeout", "0"], capsys)
    assert code == 2 and "--timeout must be positive" in err


def test_a_verdict_displays_as_html_and_carries_its_facts(model_file):
    verdict = Verdict.of({"stated": (True, "by hand")}, source=[model_file, "workbench.samples:sample_net"])
    bundle = verdict._repr_mimebundle_()
    assert bundle[VERDICT_MIMETYPE]["ok"] is True
    roles = [record["role"] for record in bundle[VERDICT_MIMETYPE]["sources"]]
    assert roles == ["", "module defining workbench.samples:sample_net"]
    assert "Verdict: verified" in bundle["text/html"] and "<script" not in bundle["text/html"]
    assert not Verdict.of({}).ok  # no evidence is no verdict


def test_a_verdict_without_written_files_says_so_instead_of_an_empty_table(model_file):
    html_text = Verdict.of({"stated": (True, "by hand")}, source=[model_file])._repr_mimebundle_()["text/html"]
    written = html_text.split("<b>Written</b>", 1)[1]
    assert "compared models without writing files" in written and "<th>SHA-256</th>" not in written
