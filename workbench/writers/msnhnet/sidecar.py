"""The MsnhNet writer's provenance sidecar: ``NAME.provenance.json`` beside ``NAME.msnhnet``.

MsnhNet layers have no names, only their position after ``config``; the record
names layer ``i`` of kind ``k`` ``"i:k"`` (``"12:conv"``), as the MsnhNet runner
does, and says for each which graph nodes and source layers it implements, which
graph value its output equals (and that value's shape), and the source
parameters of each weight array. ``write_msnhnet`` writes it; the MsnhNet runner
reads it for layer sources and output shapes, ``map_names`` for every layer and
weight. The record is a JSON object ``{"name", "format", "batch", "input",
"outputs", "layers", "warnings"}``; ``outputs`` lists the graph outputs with the
index of the layer holding each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..files import SIDECAR_SUFFIX, read_record, write_record

COPY_ROLES = ("route", "view", "copy", "output")
"""Roles of layers that only copy or reshape a value another layer computed: they stand
for its source layers in the name map, but in a comparison the computing layer does."""


def layer_name(index: int, kind: str) -> str:
    """How MsnhNet layer ``index`` of ``kind`` is named in records and runners."""
    return f"{index}:{kind}"


def sidecar_path(msnhnet: str | Path) -> Path:
    """Where the sidecar of ``NAME.msnhnet`` lies: ``NAME.provenance.json`` beside it."""
    return Path(msnhnet).with_suffix(SIDECAR_SUFFIX)


def write_sidecar(folder: Path, name: str, record: Mapping[str, Any]) -> Path:
    """Write ``record`` as ``folder/NAME.provenance.json``."""
    return write_record(folder / f"{name}{SIDECAR_SUFFIX}", record)


def read_sidecar(record: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """The record, from the sidecar file or its parsed content (``WrittenFiles.details``)."""
    if not isinstance(record, (str, Path)):
        return dict(record)
    path = Path(record)
    data = read_record(
        path, "the NAME.provenance.json the MsnhNet writer puts beside NAME.msnhnet", "the MsnhNet files"
    )
    if not isinstance(data, dict) or data.get("format") != "msnhnet":
        raise InputError(
            f"{path} is not the MsnhNet writer's provenance record",
            expected='a JSON object with "format": "msnhnet"',
            remedy="pass the NAME.provenance.json written beside NAME.msnhnet",
        )
    return data


def layer_sources(record: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Layer name -> the source layers it computes (none for a copy, see ``COPY_ROLES``)."""
    return {
        layer["name"]: tuple(layer.get("sources", ()))
        for layer in record.get("layers", ())
        if layer.get("role") not in COPY_ROLES
    }


def layer_shapes(record: Mapping[str, Any]) -> dict[int, tuple[int, ...]]:
    """Layer index -> the shape of the graph value its output equals: a graph output's
    when the layer holds one (a Flatten moves no data, so one layer may hold both
    ``mean`` and the output ``view``), else the value's it was written for."""
    shapes = {
        int(layer["index"]): tuple(layer["shape"])
        for layer in record.get("layers", ())
        if layer.get("shape") is not None
    }
    for _, index, shape in outputs(record):
        if shape:
            shapes[index] = tuple(shape)
    return shapes


def outputs(record: Mapping[str, Any]) -> list[tuple[str, int, Sequence[int] | None]]:
    """(graph output name, layer index, shape) of every graph output, in graph order."""
    return [(item["name"], int(item["layer"]), item.get("shape")) for item in record.get("outputs", ())]
