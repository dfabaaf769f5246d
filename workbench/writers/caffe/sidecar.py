"""The Caffe writer's provenance sidecar: ``NAME.provenance.json`` beside ``NAME.prototxt``.

``write_caffe`` writes it; the OpenCV runner reads it to say which source layers
each Caffe layer output stands for, and ``map_names`` to map every layer, top and
blob to its source layers and parameters. The record is a JSON object
``{"name", "layers", "dialect", "inputs", "outputs", "warnings"}``; each entry of
``layers`` (in prototxt order) holds ``name``, ``type``, ``nodes``, ``sources``,
``top`` and ``blob_params`` (the source parameters of each blob). A bare list of
layer records is read as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import InputError

SUFFIX = ".provenance.json"


def sidecar_path(prototxt: str | Path) -> Path:
    """Where the sidecar of ``NAME.prototxt`` lies: ``NAME.provenance.json`` beside it."""
    return Path(prototxt).with_suffix(SUFFIX)


def write_sidecar(folder: Path, name: str, record: Mapping[str, Any]) -> Path:
    """Write ``record`` as ``folder/NAME.provenance.json``."""
    path = folder / f"{name}{SUFFIX}"
    path.write_text(json.dumps(record, indent=1))
    return path


def read_layer_records(record: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path) -> list[dict[str, Any]]:
    """The per-layer records, from a sidecar file, its parsed content, or the writer's
    ``WrittenFiles.details`` (which hold the same ``layers``)."""
    data: Any = _read_json(Path(record)) if isinstance(record, (str, Path)) else record
    if isinstance(data, Mapping):
        data = data.get("layers", [])
    return [dict(layer) for layer in data]


def layer_sources(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Caffe layer name -> the source layers it implements."""
    return {record["name"]: tuple(record.get("sources", ())) for record in records}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(
            f"cannot read the provenance record {path}",
            expected="the NAME.provenance.json the Caffe writer puts beside NAME.prototxt",
            found=str(error).splitlines()[0] if str(error) else type(error).__name__,
            remedy="write the Caffe files again with the workbench, or remove the broken record",
        ) from error
