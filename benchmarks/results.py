"""What the speed and memory benchmarks share: the machine they ran on, running a
command in a fresh process with its wall time and peak resident size, and their
sections of ``benchmarks/RESULTS.md`` (each script replaces its own section).
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("numpy", "onnx", "onnx-ir", "onnxruntime", "onnxsim", "opencv-python-headless", "torch")


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def machine() -> str:
    """CPU, cores, memory, OS and the versions that set the numbers."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown CPU",
    )
    memory = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    versions = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory / 2**20:.0f} GiB RAM; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {versions}"
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@dataclass
class Run:
    """One command in a fresh process: wall seconds, CPU seconds (user + system, all
    its threads: what waiting for a core on a shared machine does not inflate), peak
    resident bytes, output."""

    seconds: float
    cpu_seconds: float
    peak_rss: int
    status: int
    stdout: str
    stderr: str


def run(command: Sequence[str], *, code: Path = ROOT, cwd: Path | None = None) -> Run:
    """Run ``command`` with the workbench in ``code`` importable (first on the path:
    ``python -m`` puts the working folder, ``code`` unless ``cwd`` is given, before
    the installed package). Its peak RSS is the process's own ``ru_maxrss``, read when
    it is reaped (``wait4``); its output goes through files, so nothing waits on a pipe."""
    environment = {**os.environ, "PYTHONPATH": str(code), "PYTHONWARNINGS": "ignore"}
    cwd = cwd if cwd is not None else code
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(list(command), cwd=cwd, env=environment, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return Run(seconds, cpu, usage.ru_maxrss * 1024, process.returncode, out.read(), err.read())


def python(*arguments: str) -> list[str]:
    return [sys.executable, *arguments]


def spread(values: Sequence[float]) -> str:
    """``best (median, worst)`` of repeated measurements."""
    ordered = sorted(values)
    return f"{ordered[0]:.2f} (median {statistics.median(ordered):.2f}, worst {ordered[-1]:.2f})"


def steps(stdout: str) -> dict[str, float]:
    """Seconds of each step from the command's progress lines (``step  summary  (1.23 s)``)."""
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        match = re.match(r"^(\S+(?: \S+)?)\s{2,}.*\((\d+\.\d+) s\)$", line) or re.match(
            r"^(\S+)\s.*\((\d+\.\d+) s\)$", line
        )
        if match:
            found[match.group(1).strip()] = found.get(match.group(1).strip(), 0.0) + float(match.group(2))
    return found


def write_section(title: str, body: str, notes: Mapping[str, str] | None = None) -> None:
    """Replace (or add) the section ``## title`` of RESULTS.md."""
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nWritten by the scripts in this folder; each replaces its own section.\n"
    )
    section = f"## {title}\n\n{body.strip()}\n"
    for key, value in (notes or {}).items():
        section += f"\n{key}: {value}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n")
