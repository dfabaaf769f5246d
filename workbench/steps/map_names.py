"""``map_names``: which source layers and parameters every converted layer, blob and
parameter came from — read from provenance, never guessed from names.

For a converted graph (a ``Model`` or an ONNX file) each node is a layer entry,
each node output a blob entry and each initializer input a parameter entry; their
sources are the node's ``workbench.source``, ``workbench.params`` and
``workbench.transforms``. For a Caffe net the writer's per-layer record
(``WrittenFiles.details["layers"]`` or ``NAME.provenance.json``) gives each layer's
sources; its parameters are the ``.caffemodel`` blobs.

An entry is *matched* when every source it names exists in the source model,
*unmatched* when it names none (or none that exist), *ambiguous* when it names
several source layers with no recorded transform saying how they were combined.
Source layers with parameters that no entry claims are listed too: their weights
were lost. ``set`` corrects an entry by hand; the map round-trips through JSON.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from ..errors import InputError
from ..graph import Model, provenance
from ..graph.shapes import static_shape

MATCHED, UNMATCHED, AMBIGUOUS, CORRECTED = "matched", "unmatched", "ambiguous", "corrected"


@dataclass
class NameEntry:
    kind: str  # "layer", "blob" or "parameter"
    target: str
    op: str = ""
    sources: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    target_shape: list[int] | None = None
    source_shapes: dict[str, list[int]] = field(default_factory=dict)
    transforms: list[str] = field(default_factory=list)
    status: str = MATCHED
    note: str = ""
    layer: str = ""  # for blobs and parameters: the target layer they belong to

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SourceLayers:
    """What the source model holds: its layers, their ops and parameter shapes."""

    ops: dict[str, str]
    params: dict[str, list[str]]
    param_shapes: dict[str, list[int]]


class NameMap:
    def __init__(self, entries: Sequence[NameEntry], target_format: str, unmatched_sources: Sequence[str] = ()) -> None:
        self.entries = list(entries)
        self.target_format = target_format
        self.unmatched_sources = list(unmatched_sources)

    def __iter__(self) -> Iterator[NameEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, target: str, kind: str | None = None) -> list[NameEntry]:
        return [e for e in self.entries if e.target == target and (kind is None or e.kind == kind)]

    def __getitem__(self, target: str) -> NameEntry:
        found = self.find(target)
        if not found:
            raise KeyError(target)
        return found[0]

    @property
    def unmatched(self) -> list[NameEntry]:
        return [e for e in self.entries if e.status == UNMATCHED]

    @property
    def ambiguous(self) -> list[NameEntry]:
        return [e for e in self.entries if e.status == AMBIGUOUS]

    def sources_of(self, target: str) -> tuple[str, ...] | None:
        """The source layers of a runner's output name: a blob of a graph (ONNX
        runners name outputs by value), a layer of a Caffe net (OpenCV names them
        by layer)."""
        preferred = ("layer", "blob") if self.target_format == "caffe" else ("blob", "layer")
        for kind in preferred:
            for entry in self.find(target, kind):
                if entry.status != UNMATCHED:
                    return tuple(entry.sources)
        return None

    def set(self, target: str, sources: Sequence[str], params: Sequence[str] | None = None) -> None:
        """Correct the layer (and its blobs) or parameter named ``target`` by hand."""
        found = self.find(target)
        if not found:
            raise InputError(
                f"no entry {target!r} in the name map",
                expected="a target layer, blob or parameter name",
                remedy="see NameMap.to_dict() for the names",
            )
        layer_names = {e.target for e in found if e.kind == "layer"}
        found += [e for e in self.entries if e.kind == "blob" and e.layer in layer_names and e not in found]
        for entry in found:
            entry.sources = list(sources)
            if params is not None:
                entry.params = list(params)
            entry.status = CORRECTED
            entry.note = "set by hand"

    def to_dict(self) -> dict:
        return {
            "target_format": self.target_format,
            "entries": [e.to_dict() for e in self.entries],
            "unmatched_sources": list(self.unmatched_sources),
            "counts": {
                status: sum(e.status == status for e in self.entries)
                for status in (MATCHED, CORRECTED, AMBIGUOUS, UNMATCHED)
            },
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "NameMap":
        try:
            data = json.loads(Path(path).read_text())
            entries = [NameEntry(**entry) for entry in data["entries"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(
                f"cannot read the name map {path}",
                expected="a JSON file written by NameMap.save",
                found=str(error).splitlines()[0] if str(error) else type(error).__name__,
            ) from error
        return cls(entries, data.get("target_format", "onnx"), data.get("unmatched_sources", ()))

    def __repr__(self) -> str:
        counts = self.to_dict()["counts"]
        return (
            f"<NameMap ({self.target_format}) {len(self.entries)} entries: "
            + ", ".join(f"{n} {status}" for status, n in counts.items())
            + (f"; {len(self.unmatched_sources)} source layer(s) unclaimed" if self.unmatched_sources else "")
            + ">"
        )

    def _repr_html_(self) -> str:
        colours = {UNMATCHED: "#b00", AMBIGUOUS: "#b35900", CORRECTED: "#06c"}
        rows = "".join(
            f"<tr style='color:{colours.get(e.status, 'inherit')}'><td>{e.kind}</td><td>{html.escape(e.target)}</td>"
            f"<td>{html.escape(e.op)}</td><td>{html.escape(', '.join(e.sources))}</td>"
            f"<td>{html.escape(', '.join(e.params))}</td><td>{e.target_shape or ''}</td>"
            f"<td>{html.escape('; '.join(e.transforms))}</td><td>{e.status}</td></tr>"
            for e in self.entries
            if e.kind != "blob"
        )
        lost = (
            f"<p style='color:#b00'>Source layers whose parameters nothing claims: "
            f"{html.escape(', '.join(self.unmatched_sources))}</p>"
            if self.unmatched_sources
            else ""
        )
        return (
            f"<div><b>Name map</b> ({html.escape(self.target_format)}) {html.escape(repr(self))}{lost}"
            "<table><tr><th>kind</th><th>target</th><th>op</th><th>source layers</th><th>source params</th>"
            f"<th>shape</th><th>transforms</th><th>status</th></tr>{rows}</table></div>"
        )


# ---------------------------------------------------------------- reading both sides


def _as_model(artifact: Any) -> Model:
    from ..readers import load, read_onnx
    from ..writers.files import WrittenFiles

    if isinstance(artifact, Model):
        return artifact
    if isinstance(artifact, WrittenFiles):
        onnx_files = [p for p in artifact.paths if Path(p).suffix == ".onnx"]
        if onnx_files:
            return read_onnx(onnx_files[0])
        raise InputError(f"{artifact.target} files cannot be read back as a source model", remedy="pass the Model")
    if isinstance(artifact, (tuple, list)):
        return load(*artifact)
    return load(artifact)


def source_layers(model: Model) -> SourceLayers:
    # the model's inputs count as layers: a Caffe Input layer stands for one
    ops: dict[str, str] = {name: "input" for name in model.input_names}
    params: dict[str, list[str]] = {}
    shapes: dict[str, list[int]] = {}
    for node in model.graph:
        by_input = provenance.params(node)
        for layer in provenance.sources(node):
            ops.setdefault(layer, node.op_type)
            params.setdefault(layer, [])
        for index, names in by_input.items():
            value = node.inputs[index] if index < len(node.inputs) else None
            shape = static_shape(value)
            for name in names:
                if shape is not None and name not in shapes and len(names) == 1:
                    shapes[name] = list(shape)
                for layer in provenance.sources(node):
                    if name not in params[layer]:
                        params[layer].append(name)
    return SourceLayers(ops, params, shapes)


def _param_transforms(target_shape: list[int] | None, params: Sequence[str], source: SourceLayers) -> list[str]:
    if target_shape is None or len(params) != 1 or params[0] not in source.param_shapes:
        return []
    shape = source.param_shapes[params[0]]
    if shape == target_shape:
        return []
    if len(shape) == 2 and shape[::-1] == target_shape:
        return ["transposed"]
    if int(np.prod(shape)) == int(np.prod(target_shape)):
        return [f"reshaped {shape} → {target_shape}"]
    return []


def _status(sources: Sequence[str], transforms: Sequence[str], source: SourceLayers) -> tuple[str, str]:
    known = [s for s in sources if s in source.ops]
    if not known:
        return UNMATCHED, "no provenance" if not sources else f"sources not in the source model: {', '.join(sources)}"
    if len(known) < len(sources):
        return UNMATCHED, f"sources not in the source model: {', '.join(s for s in sources if s not in source.ops)}"
    if len(known) > 1 and not transforms:
        return AMBIGUOUS, "several source layers and no recorded transform combining them"
    return MATCHED, ""


def _graph_entries(model: ir.Model, source: SourceLayers) -> list[NameEntry]:
    entries: list[NameEntry] = []
    for node in model.graph:
        if node.op_type == "Constant":
            continue
        sources = list(provenance.sources(node))
        transforms = list(provenance.transforms(node))
        status, note = _status(sources, transforms, source)
        by_input = provenance.params(node)
        all_params = [name for names in by_input.values() for name in names]
        name = node.name or (node.outputs[0].name if node.outputs else node.op_type)
        entries.append(NameEntry("layer", name, node.op_type, sources, all_params, None, {}, transforms, status, note))
        for value in node.outputs:
            if value.name:
                shape = static_shape(value)
                entries.append(
                    NameEntry(
                        "blob",
                        value.name,
                        node.op_type,
                        sources,
                        [],
                        list(shape) if shape else None,
                        {},
                        [],
                        status,
                        note,
                        name,
                    )
                )
        for index, value in enumerate(node.inputs):
            # integer initializers are op arguments (shapes, axes), not weights
            if (
                value is None
                or not value.is_initializer()
                or value.dtype is None
                or not value.dtype.is_floating_point()
            ):
                continue
            params = list(by_input.get(index, ()))
            shape = static_shape(value)
            target_shape = list(shape) if shape else None
            param_status, param_note = (status, note) if params else (UNMATCHED, "no source parameter recorded")
            entries.append(
                NameEntry(
                    "parameter",
                    value.name,
                    node.op_type,
                    sources,
                    params,
                    target_shape,
                    {p: source.param_shapes[p] for p in params if p in source.param_shapes},
                    _param_transforms(target_shape, params, source) + (transforms if len(params) > 1 else []),
                    param_status,
                    param_note,
                    name,
                )
            )
    return entries


def _caffe_blob_shapes(caffemodel: Path) -> dict[str, list[list[int]]]:
    from ..formats import caffe_pb2

    net = caffe_pb2.NetParameter()
    net.ParseFromString(caffemodel.read_bytes())
    shapes = {}
    for layer in net.layer:
        shapes[layer.name] = [
            list(blob.shape.dim)
            if blob.HasField("shape")
            else [d for d in (blob.num, blob.channels, blob.height, blob.width)]
            for blob in layer.blobs
        ]
    return shapes


def _caffe_entries(records: Sequence[Mapping], caffemodel: Path | None, source: SourceLayers) -> list[NameEntry]:
    blob_shapes = _caffe_blob_shapes(caffemodel) if caffemodel is not None and caffemodel.is_file() else {}
    entries: list[NameEntry] = []
    producer_of_top: dict[str, NameEntry] = {}
    for record in records:
        sources = list(record.get("sources", ()))
        transforms = list(record.get("transforms", ()))
        status, note = _status(
            sources, transforms or (["combined by the Caffe writer"] if len(sources) > 1 else []), source
        )
        params = [p for layer in sources for p in source.params.get(layer, ())]
        layer = NameEntry(
            "layer", record["name"], record.get("type", ""), sources, params, None, {}, transforms, status, note
        )
        entries.append(layer)
        for top in record.get("top", ()):
            producer_of_top[top] = NameEntry(
                "blob", top, record.get("type", ""), sources, [], None, {}, [], status, note, record["name"]
            )
        per_blob = record.get("blob_params") or []
        for index, shape in enumerate(blob_shapes.get(record["name"], ())):
            # the writer records each blob's own source parameters; a blob it made
            # itself (BatchNorm's scale factor, a fixed upsampling kernel) has none
            own = list(per_blob[index]) if index < len(per_blob) else params
            made = index < len(per_blob) and not own
            entries.append(
                NameEntry(
                    "parameter",
                    f"{record['name']}[{index}]",
                    record.get("type", ""),
                    sources,
                    own,
                    shape,
                    {p: source.param_shapes[p] for p in own if p in source.param_shapes},
                    transforms,
                    status if own or made else UNMATCHED,
                    "made by the writer (no source parameter)"
                    if made
                    else note
                    if own
                    else "no source parameter recorded",
                    record["name"],
                )
            )
    # a top written in place by several layers is the last writer's output
    return entries + list(producer_of_top.values())


def _pytorch_entries(folder: Path, source: SourceLayers) -> list[NameEntry]:
    """Submodules and state-dict entries of a generated ``model.py`` folder, from the
    writer's ``provenance.json`` and the shapes in ``weights.pt``."""
    import torch

    record_file, weights = folder / "provenance.json", folder / "weights.pt"
    if not record_file.is_file() or not weights.is_file():
        raise InputError(
            f"{folder} has no provenance.json and weights.pt",
            expected="a folder written by `workbench convert ... --to pytorch`",
            remedy="write the PyTorch files with the workbench, or map names by hand with NameMap.set",
        )
    records = json.loads(record_file.read_text())
    state = torch.load(weights, map_location="cpu", weights_only=True)
    entries: list[NameEntry] = []
    for record in records.get("modules", []):
        sources = list(record.get("sources", ()))
        status, note = _status(sources, [], source)
        params = [p for layer in sources for p in source.params.get(layer, ())]
        entries.append(
            NameEntry("layer", record["name"], record.get("type", ""), sources, params, None, {}, [], status, note)
        )
        prefix = f"{record['name']}."
        own_params = record.get("state_params", {})
        for key, tensor in state.items():
            if key.startswith(prefix) and not key.endswith("num_batches_tracked"):
                # the writer records each state entry's own source parameters when it knows them
                own = own_params.get(key[len(prefix) :]) or params
                entries.append(
                    NameEntry(
                        "parameter",
                        key,
                        record.get("type", ""),
                        sources,
                        own,
                        list(tensor.shape),
                        {p: source.param_shapes[p] for p in own if p in source.param_shapes},
                        [],
                        status if own else UNMATCHED,
                        note if own else "no source parameter recorded",
                        record["name"],
                    )
                )
    for record in records.get("buffers", []):
        sources = list(record.get("sources", ()))
        params = [p for layer in sources for p in source.params.get(layer, ())]
        status, note = _status(sources, [], source)
        entries.append(
            NameEntry(
                "parameter",
                record["name"],
                "buffer",
                sources,
                params,
                record.get("shape"),
                {},
                [],
                status if params else UNMATCHED,
                note if params else "no source parameter recorded",
            )
        )
    return entries


def _converted_entries(converted: Any, source: SourceLayers) -> tuple[list[NameEntry], str]:
    from ..runners import PROVENANCE_SUFFIX, caffe_layer_records
    from ..writers.files import WrittenFiles

    if isinstance(converted, WrittenFiles) and converted.target == "caffe":
        records = caffe_layer_records(converted.details)
        return _caffe_entries(records, converted.path(".caffemodel"), source), "caffe"
    if isinstance(converted, WrittenFiles) and converted.target == "pytorch":
        return _pytorch_entries(converted.path("model.py").parent, source), "pytorch"
    if isinstance(converted, (str, Path)) and Path(converted).is_dir():
        return _pytorch_entries(Path(converted), source), "pytorch"
    paths = [str(p) for p in converted] if isinstance(converted, (tuple, list)) else None
    if paths and sorted(Path(p).suffix for p in paths) == [".caffemodel", ".prototxt"]:
        prototxt = Path(next(p for p in paths if p.endswith(".prototxt")))
        sidecar = prototxt.with_suffix(PROVENANCE_SUFFIX)
        if not sidecar.is_file():
            raise InputError(
                f"no provenance record for {prototxt.name}",
                expected=f"{sidecar.name} written beside it by the Caffe writer",
                remedy="write the Caffe files with the workbench, or map names by hand with NameMap.set",
            )
        caffemodel = Path(next(p for p in paths if p.endswith(".caffemodel")))
        return _caffe_entries(caffe_layer_records(sidecar), caffemodel, source), "caffe"
    return _graph_entries(_as_model(converted).ir, source), "onnx"


def map_names(source: Any, converted: Any) -> NameMap:
    """Map every layer, blob and parameter of ``converted`` to the source layers and
    parameters it came from. Both sides: a ``Model``, ``WrittenFiles`` or paths."""
    layers = source_layers(_as_model(source))
    entries, target_format = _converted_entries(converted, layers)
    claimed = {p for e in entries if e.status != UNMATCHED for p in e.params}
    claimed_layers = {s for e in entries if e.status != UNMATCHED for s in e.sources}
    lost = [
        layer
        for layer, params in layers.params.items()
        if params and layer not in claimed_layers and not any(p in claimed for p in params)
    ]
    return NameMap(entries, target_format, lost)


__all__ = ["NameEntry", "NameMap", "map_names"]
