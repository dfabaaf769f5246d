"""Output files that appear whole or not at all.

A writer produces all its files in a temporary folder beside ``outdir``; only when
every file is complete are they moved into place. A failure leaves ``outdir`` as
it was. Writing over one of the model's own source files is refused.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..graph import StepReport


@dataclass
class WrittenFiles:
    """What a writer produced: the target, the files, and its report."""

    target: str
    paths: list[Path]
    report: StepReport
    details: dict = field(default_factory=dict)

    def path(self, suffix: str) -> Path:
        """The written file whose name ends with ``suffix`` (e.g. ``.prototxt``)."""
        return next(p for p in self.paths if p.name.endswith(suffix))

    def __repr__(self) -> str:
        return f"<WrittenFiles {self.target}: {', '.join(str(p) for p in self.paths)}>"

    def _repr_html_(self) -> str:
        files = "".join(
            f"<li>{html.escape(str(p))} ({p.stat().st_size:,} bytes)</li>" for p in self.paths if p.exists()
        )
        return f"<div><b>{html.escape(self.target)}</b> files<ul>{files}</ul>{self.report._repr_html_()}</div>"


SIDECAR_SUFFIX = ".provenance.json"


def write_record(path: Path, record: Mapping[str, Any]) -> Path:
    """Write a writer's provenance record (a sidecar) as JSON at ``path``."""
    path.write_text(json.dumps(record, indent=1))
    return path


def read_record(path: Path, expected: str, written: str) -> Any:
    """The JSON in the sidecar at ``path``, or an InputError naming the record
    ``expected`` and the files to write again (``written``)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(
            f"cannot read the provenance record {path}",
            expected=expected,
            found=str(error).splitlines()[0] if str(error) else type(error).__name__,
            remedy=f"write {written} again with the workbench, or remove the broken record",
        ) from error


def file_stem(name: str | None, default: str, what: str) -> str:
    """The stem of the files a writer names ``NAME.ext``: ``name`` or the model's
    name, refused when it is empty or holds folders (they belong in ``outdir``)."""
    stem = name or default
    if not stem or Path(stem).name != stem:
        raise InputError(
            f"the {what} model name must be a plain file name",
            expected="a name without folders",
            found=repr(stem),
            remedy="pass the folder as outdir and a bare name (name='my_model')",
        )
    return stem


@contextmanager
def staged_output(outdir: str | Path, protected: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield a staging folder; on success move its files into ``outdir``.

    ``protected`` are the source files, which must never be overwritten.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    protected_paths = {Path(p).resolve() for p in protected}
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=outdir))
    try:
        yield staging
        targets = [(item, outdir / item.name) for item in sorted(staging.iterdir())]
        clashes = [str(dst) for _, dst in targets if dst.resolve() in protected_paths]
        if clashes:
            raise InputError(
                "the output would overwrite the model's own source files",
                found=", ".join(clashes),
                remedy="choose another output folder (-o)",
            )
        for src, dst in targets:
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
