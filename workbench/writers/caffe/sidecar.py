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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import SIDECAR_SUFFIX, read_record, write_record


def sidecar_path(prototxt: str | Path) -> Path:
    """Where the sidecar of ``NAME.prototxt`` lies: ``NAME.provenance.json`` beside it."""
    return Path(prototxt).with_suffix(SIDECAR_SUFFIX)


def write_sidecar(folder: Path, name: str, record: Mapping[str, Any]) -> Path:
    """Write ``record`` as ``folder/NAME.provenance.json``."""
    return write_record(folder / f"{name}{SIDECAR_SUFFIX}", record)


def read_layer_records(record: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path) -> list[dict[str, Any]]:
    """The per-layer records, from a sidecar file, its parsed content, or the writer's
    ``WrittenFiles.details`` (which hold the same ``layers``)."""
    data: Any = (
        read_record(
            Path(record), "the NAME.provenance.json the Caffe writer puts beside NAME.prototxt", "the Caffe files"
        )
        if isinstance(record, (str, Path))
        else record
    )
    if isinstance(data, Mapping):
        data = data.get("layers", [])
    return [dict(layer) for layer in data]


def layer_sources(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Caffe layer name -> the source layers it implements."""
    return {record["name"]: tuple(record.get("sources", ())) for record in records}
