"""What a conversion record says about itself: the verdict a notebook ends with, and
the header ``workbench record`` writes at the top of the executed notebook.

A workflow notebook ends by displaying a ``Verdict``: the checks that verify the
conversion (comparisons against runtimes the workbench does not control, or named
pass/fail facts), the files it was converted from and the files it wrote, each with
its SHA-256, and the versions of the libraries the kernel ran. It renders as plain
HTML (tables only, so untrusted viewers keep it) and carries the same facts as JSON
under ``VERDICT_MIMETYPE``.

``workbench record`` reads that JSON back from the executed notebook and inserts a
markdown cell at the top, the record's header: the verdict, how the run went (and
where it stopped if it did), what was converted with which parameters, what was
written, and the versions. The same facts go into the notebook's metadata
(``metadata.workbench.record``) for programs.

A record has no kernel behind it, so it also keeps no live widgets: an output that
shows a widget and has an HTML snapshot of it (every workbench panel has one) keeps
the snapshot alone, and the widget state nbclient saves is dropped. Every viewer,
trusted or not, then shows the snapshot, and none loads widget code from a CDN.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import importlib.metadata
import importlib.util
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VERDICT_MIMETYPE = "application/vnd.workbench.verdict+json"
WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"
HEADER_TAG = "workbench-record"
HASH_CHUNK = 1 << 20
# distribution name -> how the header names it; OpenCV installs under several names
VERSIONED = {
    "workbench": "workbench",
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "opencv-python-headless": "OpenCV",
    "opencv-python": "OpenCV",
    "onnx-ir": "onnx-ir",
    "onnxsim": "onnxsim",
    "numpy": "numpy",
}


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """The versions of the libraries a conversion depends on, as installed here."""
    found = {"python": platform.python_version()}
    for distribution, name in VERSIONED.items():
        try:
            found.setdefault(name, importlib.metadata.version(distribution))
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class FileRecord:
    """A file a record depends on or produced: where, how big, and its SHA-256."""

    path: str
    size: int
    sha256: str
    role: str = ""  # e.g. "module defining workbench.samples:sample_net"
    shown: str = ""  # the path as tables show it: relative to the kernel's working folder when inside it

    @classmethod
    def of(cls, path: str | Path, role: str = "") -> FileRecord:
        resolved = Path(path).resolve()
        here = Path.cwd().resolve()
        shown = resolved.relative_to(here) if resolved.is_relative_to(here) else resolved
        return cls(str(resolved), resolved.stat().st_size, sha256(resolved), role, str(shown))


def _module_file(spec: str) -> Path | None:
    """The Python file defining a ``package.module:factory`` source."""
    module = spec.partition(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found is not None and found.origin and Path(found.origin).is_file() else None


def source_files(sources: Any) -> list[FileRecord]:
    """The files behind a source: a ``Model`` (its source paths), a path, a
    ``package.module:factory`` (the module's file) or a list of these."""
    paths = getattr(getattr(sources, "source", None), "paths", None)
    if paths is not None:
        return source_files(list(paths))
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files: dict[Path, list[str]] = {}  # file -> what it is for (one module can define several sources)
    for item in sources:
        text = str(item)
        if Path(text).is_file():
            files.setdefault(Path(text).resolve(), [])
        elif ":" in text and (module := _module_file(text)) is not None:
            files.setdefault(module.resolve(), []).append(text)
    return [
        FileRecord.of(path, f"module defining {', '.join(specs)}" if specs else "") for path, specs in files.items()
    ]


def written_files(written: Any) -> list[FileRecord]:
    """The files of a ``WrittenFiles`` (or several), or paths."""
    if written is None:
        return []
    if hasattr(written, "paths"):
        return [FileRecord.of(path, getattr(written, "target", "")) for path in written.paths]
    if isinstance(written, (str, Path)):
        return [FileRecord.of(written)]
    return [record for item in written for record in written_files(item)]


@dataclass(frozen=True)
class Check:
    """One fact the verdict rests on."""

    label: str
    passed: bool
    detail: str = ""

    @classmethod
    def of(cls, label: str, evidence: Any) -> Check:
        """From a ``Comparison`` (passed when its outputs agree) or a ``(passed, detail)`` pair."""
        if isinstance(evidence, tuple):
            passed, detail = evidence
            return cls(label, bool(passed), str(detail))
        outputs = getattr(evidence, "outputs", None)
        if outputs is None:
            raise TypeError(f"a check is a Comparison or a (passed, detail) pair, not {type(evidence).__name__}")
        worst = max((pair.stats.max_abs for pair in outputs), default=float("nan"))
        detail = (
            f"{evidence.candidate} against {evidence.reference}: max abs error {worst:.3g} "
            f"(atol {evidence.atol:g}, rtol {evidence.rtol:g})"
        )
        if getattr(evidence, "first_divergence", None) is not None:
            detail += f"; {evidence.first_divergence.explanation}"
        return cls(label, bool(evidence.ok), detail)


@dataclass(frozen=True)
class Verdict:
    """The end of a conversion record (see the module docstring)."""

    checks: tuple[Check, ...]
    sources: tuple[FileRecord, ...] = ()
    written: tuple[FileRecord, ...] = ()
    versions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, checks: Mapping[str, Any], *, source: Any = (), written: Any = None) -> Verdict:
        """``checks``: label -> ``Comparison`` or ``(passed, detail)``; ``source``: the
        source model or its files; ``written``: the ``WrittenFiles`` (one or several)."""
        return cls(
            tuple(Check.of(label, evidence) for label, evidence in checks.items()),
            tuple(source_files(source)),
            tuple(written_files(written)),
            versions(),
        )

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[str]:
        return [f"{check.label}: {check.detail}" for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [asdict(check) for check in self.checks],
            "sources": [asdict(record) for record in self.sources],
            "written": [asdict(record) for record in self.written],
            "versions": dict(self.versions),
        }

    def __repr__(self) -> str:
        state = "verified" if self.ok else "NOT verified"
        return f"<Verdict {state}: {sum(c.passed for c in self.checks)} of {len(self.checks)} checks passed>"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return {"text/plain": repr(self), "text/html": verdict_html(self.to_dict()), VERDICT_MIMETYPE: self.to_dict()}


NOTHING_WRITTEN = "none: the notebook compared models without writing files"


def _files_html(records: Sequence[Mapping[str, Any]], empty: str = "none") -> str:
    if not records:
        return f"<p><i>{html.escape(empty)}</i></p>"
    rows = "".join(
        f"<tr><td title='{html.escape(r['path'])}'>{html.escape(r.get('shown') or r['path'])}{' <small>(' + html.escape(r['role']) + ')</small>' if r.get('role') else ''}"
        f"</td><td>{r['size']:,}</td><td><code>{r['sha256']}</code></td></tr>"
        for r in records
    )
    return f"<table><tr><th>file</th><th>bytes</th><th>SHA-256</th></tr>{rows}</table>"


def verdict_html(verdict: Mapping[str, Any]) -> str:
    colour, state = ("#070", "verified") if verdict["ok"] else ("#b00", "NOT verified")
    checks = "".join(
        f"<tr><td>{html.escape(c['label'])}</td>"
        f"<td style='color:{'#070' if c['passed'] else '#b00'}'>{'pass' if c['passed'] else 'FAIL'}</td>"
        f"<td>{html.escape(c['detail'])}</td></tr>"
        for c in verdict["checks"]
    )
    versions = ", ".join(f"{name} {version}" for name, version in verdict["versions"].items())
    return (
        f"<div><h3 style='color:{colour}'>Verdict: {state}</h3>"
        f"<table><tr><th>check</th><th>result</th><th>evidence</th></tr>{checks}</table>"
        f"<p><b>Converted from</b></p>{_files_html(verdict['sources'])}"
        f"<p><b>Written</b></p>{_files_html(verdict['written'], NOTHING_WRITTEN)}"
        f"<p><small>{html.escape(versions)}</small></p></div>"
    )


# ---------------------------------------------------------------- the record header


@dataclass(frozen=True)
class Outcome:
    """How the notebook's execution ended."""

    status: str  # "completed", "failed" or "timed out"
    seconds: float
    cell: str | None = None  # the cell where it stopped: "[3]" (its execution count) or "2 from the top"
    error: str = ""


def find_verdict(notebook: Any) -> dict[str, Any] | None:
    """The last verdict an executed notebook displayed."""
    found = None
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if VERDICT_MIMETYPE in data:
                found = data[VERDICT_MIMETYPE]
    return found


def _markdown_files(records: Sequence[Mapping[str, Any]], empty: str = "none") -> list[str]:
    if not records:
        return [f"*{empty}*"]
    lines = ["| file | bytes | SHA-256 |", "|---|---:|---|"]
    for r in records:
        role = f" ({r['role']})" if r.get("role") else ""
        lines.append(f"| `{r.get('shown') or r['path']}`{role} | {r['size']:,} | `{r['sha256']}` |")
    return lines


def _cell_text(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _record_state(verdict: Mapping[str, Any] | None, outcome: Outcome) -> str:
    """The header's one-line state: verified only when the run completed and its verdict holds."""
    if outcome.status != "completed":
        return f"NOT verified: the run {outcome.status}"
    if verdict is None:
        return "no verdict: the notebook displayed none"
    return "verified" if verdict["ok"] else "NOT verified: a check failed"


def _verdict_markdown(verdict: Mapping[str, Any]) -> list[str]:
    """The verdict's checks as a table, then the files converted from."""
    lines = ["", "## Verdict", "", "| check | result | evidence |", "|---|---|---|"]
    lines += [
        f"| {_cell_text(c['label'])} | {'pass' if c['passed'] else '**FAIL**'} | {_cell_text(c['detail'])} |"
        for c in verdict["checks"]
    ]
    return [*lines, "", "## Converted from", "", *_markdown_files(verdict["sources"])]


def header_markdown(
    notebook_name: str,
    verdict: Mapping[str, Any] | None,
    outcome: Outcome,
    parameters: Mapping[str, tuple[str, bool]],
    timeout: float | None,
    recorded_at: datetime.datetime,
) -> str:
    """The record's header; ``parameters``: name -> (value as written, given on the command line)."""
    state = _record_state(verdict, outcome)
    limit = f", at most {timeout:g} s per cell" if timeout else ""
    lines = [
        f"# Record of `{notebook_name}`: {state}",
        "",
        f"Executed by `workbench record` on {recorded_at:%Y-%m-%d %H:%M} UTC in {outcome.seconds:.1f} s{limit}.",
    ]
    if outcome.status != "completed":
        where = f" in cell {outcome.cell}" if outcome.cell is not None else ""
        lines += ["", f"**The run {outcome.status}{where}:** {_cell_text(outcome.error)}"]
    if verdict is not None:
        lines += _verdict_markdown(verdict)
    lines += ["", "## Parameters", "", "| name | value | |", "|---|---|---|"]
    lines += [
        f"| `{name}` | `{_cell_text(value)}` | {'given' if given else 'default'} |"
        for name, (value, given) in parameters.items()
    ]
    if verdict is not None:
        lines += ["", "## Written", "", *_markdown_files(verdict["written"], NOTHING_WRITTEN)]
    versions_of = verdict["versions"] if verdict is not None else versions()
    where = "the kernel" if verdict is not None else "the recording environment"
    lines += ["", f"## Versions ({where})", "", ", ".join(f"{n} {v}" for n, v in versions_of.items())]
    return "\n".join(lines)


def freeze_widgets(notebook: Any) -> int:
    """Keep the HTML snapshot of every widget output that has one; drop the saved
    widget state. Returns how many widget views were replaced."""
    frozen = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW_MIMETYPE in data and "text/html" in data:
                del data[WIDGET_VIEW_MIMETYPE]
                frozen += 1
    notebook.metadata.pop("widgets", None)
    return frozen


def finish_record(
    executed: Path,
    notebook_name: str,
    outcome: Outcome,
    parameters: Mapping[str, tuple[str, bool]],
    timeout: float | None,
) -> tuple[bool | None, str]:
    """Insert the header cell at the top of the executed notebook (replacing an older
    one), record the same facts in its metadata and freeze its widgets; returns (whether the verdict holds,
    None when the notebook displayed no verdict; the header's title)."""
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    freeze_widgets(notebook)
    verdict = find_verdict(notebook)
    recorded_at = datetime.datetime.now(datetime.timezone.utc)
    text = header_markdown(notebook_name, verdict, outcome, parameters, timeout, recorded_at)
    header = nbformat.v4.new_markdown_cell(text, metadata={"tags": [HEADER_TAG]})
    notebook.cells = [header] + [c for c in notebook.cells if HEADER_TAG not in c.get("metadata", {}).get("tags", [])]
    verified = verdict is not None and verdict["ok"] and outcome.status == "completed"
    notebook.metadata.setdefault("workbench", {})["record"] = {
        "notebook": notebook_name,
        "recorded_at": recorded_at.isoformat(),
        "verified": verified,
        "outcome": asdict(outcome),
        "parameters": {name: value for name, (value, _) in parameters.items()},
        "timeout": timeout,
        "verdict": verdict,
    }
    staged = executed.with_name(f".{executed.name}.partial")
    nbformat.write(notebook, staged)
    staged.replace(executed)
    holds = None if verdict is None else bool(verdict["ok"])
    return holds, text.splitlines()[0].lstrip("# ")
