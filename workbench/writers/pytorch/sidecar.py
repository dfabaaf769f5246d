"""The PyTorch writer's provenance sidecar: ``provenance.json`` beside ``model.py``.

``write_pytorch`` writes it; the PyTorch runner reads it to say which source layers
each submodule stands for, and ``map_names`` to map submodules, state-dict entries
and buffers to their source layers and parameters. The record is a JSON object:
``modules`` (``name``, ``type``, ``nodes``, ``sources``, ``state_params``),
``buffers`` (``name``, ``shape``, ``nodes``, ``sources``), ``forward`` (one entry per
generated line), ``inlined``, ``inputs`` and ``outputs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..files import read_record, write_record

FILE_NAME = "provenance.json"


def sidecar_path(folder: str | Path) -> Path:
    """Where the sidecar of the generated folder lies."""
    return Path(folder) / FILE_NAME


def write_sidecar(folder: Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` as ``folder/provenance.json``."""
    return write_record(sidecar_path(folder), record)


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The record in ``path`` (the sidecar file, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = sidecar_path(path)
    data = read_record(path, "the provenance.json the PyTorch writer puts beside model.py", "the PyTorch folder")
    if not isinstance(data, dict):
        raise InputError(
            f"{path} is not a PyTorch provenance record",
            expected="a JSON object with modules, buffers and forward",
            found=type(data).__name__,
            remedy="write the PyTorch folder again with the workbench",
        )
    return data


def module_sources(record: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Submodule path -> the source layers it stands for."""
    return {module["name"]: tuple(module.get("sources", ())) for module in record.get("modules", [])}
