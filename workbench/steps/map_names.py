"""``map_names``: which source layers and parameters every converted layer, blob and
parameter came from — read from provenance, never guessed from names.

For a converted graph (a ``Model`` or an ONNX file) each node is a layer entry,
each node output a blob entry and each initializer input a parameter entry; their
sources are the node's ``workbench.source``, ``workbench.params`` and
``workbench.transforms``. Files are recognised by ``workbench.artifacts.identify``;
a kind whose provenance lives in its writer's sidecar has its entries made by the
function registered in ``TARGET_ENTRIES``: for a Caffe net the Caffe writer's
per-layer records give each layer's sources and its parameters are the
``.caffemodel`` blobs; for a generated PyTorch folder the PyTorch writer's records
give each submodule's, state-dict entry's and buffer's; for MsnhNet files the
MsnhNet writer's records give each layer's and weight array's.

An entry is *matched* when every source it names exists in the source model,
*unmatched* when it names none (or none that exist), *ambiguous* when it names
several source layers with no recorded transform saying how they were combined.
Source layers with parameters that no entry claims are listed too: their weights
were lost. ``set`` corrects an entry by hand; the map round-trips through JSON.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from ..artifacts import Artifact, identify
from ..errors import InputError
from ..graph import Model, provenance
from ..graph.shapes import static_shape

MATCHED, UNMATCHED, AMBIGUOUS, CORRECTED = "matched", "unmatched", "ambiguous", "corrected"


@dataclass(kw_only=True)
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
        preferred = ("layer", "blob") if self.target_format in ("caffe", "msnhnet") else ("blob", "layer")
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
    def load(cls, path: str | Path) -> NameMap:
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


def _artifact(value: Any) -> Artifact:
    return identify(*value) if isinstance(value, (tuple, list)) else identify(value)


def _as_model(value: Any) -> Model:
    from ..readers import read_artifact

    return value if isinstance(value, Model) else read_artifact(_artifact(value))


def source_layers(model: Model) -> SourceLayers:
    # the model's inputs count as layers: a Caffe Input layer stands for one
    ops: dict[str, str] = {name: "input" for name in model.input_names}
    params: dict[str, list[str]] = {}
    shapes: dict[str, list[int]] = {}
    for node in model.graph:
        layers = provenance.sources(node)
        for layer in layers:
            ops.setdefault(layer, node.op_type)
            params.setdefault(layer, [])
        for index, names in provenance.params(node).items():
            shape = static_shape(node.inputs[index]) if index < len(node.inputs) else None
            if shape is not None and len(names) == 1:
                shapes.setdefault(names[0], list(shape))
            for layer in layers:
                params[layer] += [name for name in names if name not in params[layer]]
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


def _layer_params(sources: Iterable[str], source: SourceLayers) -> list[str]:
    """Every parameter of the source layers, in order."""
    return [param for layer in sources for param in source.params.get(layer, ())]


def _source_shapes(params: Iterable[str], source: SourceLayers) -> dict[str, list[int]]:
    return {param: source.param_shapes[param] for param in params if param in source.param_shapes}


def _parameter_status(layer: NameEntry, own: Sequence[str]) -> tuple[str, str]:
    """(status, note): a parameter entry is as matched as its layer when it names source parameters."""
    return (layer.status, layer.note) if own else (UNMATCHED, "no source parameter recorded")


def _shape_list(value: ir.Value) -> list[int] | None:
    shape = static_shape(value)
    return list(shape) if shape else None


def _is_weight(value: ir.Value | None) -> bool:
    # integer initializers are op arguments (shapes, axes), not weights
    return value is not None and value.is_initializer() and value.dtype is not None and value.dtype.is_floating_point()


def _node_entries(node: ir.Node, source: SourceLayers) -> list[NameEntry]:
    """A node's layer entry, one blob entry per output and one parameter entry per weight."""
    sources = list(provenance.sources(node))
    transforms = list(provenance.transforms(node))
    status, note = _status(sources, transforms, source)
    by_input = provenance.params(node)
    name = node.name or (node.outputs[0].name if node.outputs else None) or node.op_type
    layer = NameEntry(
        kind="layer",
        target=name,
        op=node.op_type,
        sources=sources,
        params=[param for names in by_input.values() for param in names],
        transforms=transforms,
        status=status,
        note=note,
    )
    blobs = [
        NameEntry(
            kind="blob",
            target=value.name,
            op=node.op_type,
            sources=sources,
            target_shape=_shape_list(value),
            status=status,
            note=note,
            layer=name,
        )
        for value in node.outputs
        if value.name
    ]
    weights = [
        _weight_entry(layer, value, list(by_input.get(index, ())), source)
        for index, value in enumerate(node.inputs)
        if value is not None and _is_weight(value)
    ]
    return [layer, *blobs, *weights]


def _weight_entry(layer: NameEntry, value: ir.Value, params: list[str], source: SourceLayers) -> NameEntry:
    target_shape = _shape_list(value)
    combined = layer.transforms if len(params) > 1 else []
    status, note = _parameter_status(layer, params)
    return NameEntry(
        kind="parameter",
        target=value.name or "",
        op=layer.op,
        sources=layer.sources,
        params=params,
        target_shape=target_shape,
        source_shapes=_source_shapes(params, source),
        transforms=_param_transforms(target_shape, params, source) + combined,
        status=status,
        note=note,
        layer=layer.target,
    )


def _graph_entries(model: ir.Model, source: SourceLayers) -> list[NameEntry]:
    return [entry for node in model.graph if node.op_type != "Constant" for entry in _node_entries(node, source)]


# ---------------------------------------------------------------- Caffe (the Caffe writer's sidecar)


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


def _record_layer_entry(record: Mapping[str, Any], source: SourceLayers, combining: str = "") -> NameEntry:
    """The layer entry of a writer's record (``name``, ``type``, ``sources``,
    ``transforms``). ``combining``: the transform a record of several source layers
    stands for without saying so (the Caffe writer merges layers only by folding)."""
    sources = list(record.get("sources", ()))
    transforms = list(record.get("transforms", ()))
    implied = transforms or ([combining] if combining and len(sources) > 1 else [])
    status, note = _status(sources, implied, source)
    return NameEntry(
        kind="layer",
        target=record["name"],
        op=record.get("type", ""),
        sources=sources,
        params=_layer_params(sources, source),
        transforms=transforms,
        status=status,
        note=note,
    )


def _caffe_blob_entries(
    record: Mapping[str, Any], layer: NameEntry, shapes: Sequence[list[int]], source: SourceLayers
) -> Iterator[NameEntry]:
    """One parameter entry per ``.caffemodel`` blob of the layer. The writer records
    each blob's own source parameters; a blob it made itself (BatchNorm's scale
    factor, a fixed upsampling kernel) has none."""
    return _weight_entries(record["name"], record.get("blob_params") or [], layer, shapes, source)


def _weight_entries(
    name: str, per_blob: Sequence[Sequence[str]], layer: NameEntry, shapes: Sequence[list[int]], source: SourceLayers
) -> Iterator[NameEntry]:
    """One parameter entry ``name[i]`` per weight array of a written layer, with the
    source parameters its writer recorded for it (none: made by the writer)."""
    for index, shape in enumerate(shapes):
        own = list(per_blob[index]) if index < len(per_blob) else layer.params
        made = index < len(per_blob) and not own
        status, note = (
            (layer.status, "made by the writer (no source parameter)") if made else _parameter_status(layer, own)
        )
        yield NameEntry(
            kind="parameter",
            target=f"{name}[{index}]",
            op=layer.op,
            sources=layer.sources,
            params=own,
            target_shape=shape,
            source_shapes=_source_shapes(own, source),
            transforms=layer.transforms,
            status=status,
            note=note,
            layer=layer.target,
        )


def _caffe_entries(records: Sequence[Mapping], caffemodel: Path | None, source: SourceLayers) -> list[NameEntry]:
    blob_shapes = _caffe_blob_shapes(caffemodel) if caffemodel is not None and caffemodel.is_file() else {}
    entries: list[NameEntry] = []
    producer_of_top: dict[str, NameEntry] = {}
    for record in records:
        layer = _record_layer_entry(record, source, combining="combined by the Caffe writer")
        entries.append(layer)
        for top in record.get("top", ()):
            producer_of_top[top] = NameEntry(
                kind="blob",
                target=top,
                op=layer.op,
                sources=layer.sources,
                status=layer.status,
                note=layer.note,
                layer=layer.target,
            )
        entries += _caffe_blob_entries(record, layer, blob_shapes.get(record["name"], ()), source)
    # a top written in place by several layers is the last writer's output
    return entries + list(producer_of_top.values())


def _record_required(artifact: Artifact, main: Path, record: Path, writer: str) -> Path:
    """The artifact's provenance sidecar, or an InputError naming where its writer puts it."""
    if artifact.sidecar is None:
        raise InputError(
            f"no provenance record for {main.name}",
            expected=f"{record.name} written beside it by the {writer} writer",
            remedy=f"write the {writer} files with the workbench, or map names by hand with NameMap.set",
        )
    return artifact.sidecar


def caffe_artifact_entries(artifact: Artifact, source: SourceLayers) -> list[NameEntry]:
    from ..writers.caffe.sidecar import read_layer_records, sidecar_path

    prototxt = artifact.path("prototxt")
    sidecar = _record_required(artifact, prototxt, sidecar_path(prototxt), "Caffe")
    return _caffe_entries(read_layer_records(sidecar), artifact.path("caffemodel"), source)


# ---------------------------------------------------------------- MsnhNet (the MsnhNet writer's sidecar)


def msnhnet_artifact_entries(artifact: Artifact, source: SourceLayers) -> list[NameEntry]:
    """Every MsnhNet layer (named ``index:kind``, as the MsnhNet runner names its outputs),
    its output and its weight arrays (``index:kind[i]``, in ``.msnhbin`` order), from the
    MsnhNet writer's provenance record."""
    from ..writers.msnhnet.sidecar import read_sidecar, sidecar_path

    model = artifact.path("model")
    sidecar = _record_required(artifact, model, sidecar_path(model), "MsnhNet")
    entries: list[NameEntry] = []
    for record in read_sidecar(sidecar).get("layers", ()):
        layer = _record_layer_entry(record, source, combining="combined by the MsnhNet writer")
        blob = NameEntry(
            kind="blob",
            target=record["name"],
            op=layer.op,
            sources=layer.sources,
            target_shape=record.get("shape"),
            status=layer.status,
            note=layer.note,
            layer=layer.target,
        )
        weights = _weight_entries(
            record["name"], record.get("weight_params", ()), layer, record.get("weights", ()), source
        )
        entries += [layer, blob, *weights]
    return entries


# ---------------------------------------------------------------- PyTorch (the PyTorch writer's sidecar)


def _module_entries(record: Mapping[str, Any], state: Mapping[str, Any], source: SourceLayers) -> list[NameEntry]:
    """A submodule and its state-dict entries (``num_batches_tracked`` is no parameter)."""
    layer = _record_layer_entry(record, source)
    prefix = f"{record['name']}."
    own_params = record.get("state_params", {})
    entries = [layer]
    for key, tensor in state.items():
        if key.startswith(prefix) and not key.endswith("num_batches_tracked"):
            # the writer records each state entry's own source parameters when it knows them
            own = own_params.get(key[len(prefix) :]) or layer.params
            own_status, own_note = _parameter_status(layer, own)
            entries.append(
                NameEntry(
                    kind="parameter",
                    target=key,
                    op=layer.op,
                    sources=layer.sources,
                    params=own,
                    target_shape=list(tensor.shape),
                    source_shapes=_source_shapes(own, source),
                    status=own_status,
                    note=own_note,
                    layer=layer.target,
                )
            )
    return entries


def _buffer_entry(record: Mapping[str, Any], source: SourceLayers) -> NameEntry:
    sources = list(record.get("sources", ()))
    params = _layer_params(sources, source)
    status, note = _status(sources, [], source) if params else (UNMATCHED, "no source parameter recorded")
    return NameEntry(
        kind="parameter",
        target=record["name"],
        op="buffer",
        sources=sources,
        params=params,
        target_shape=record.get("shape"),
        status=status,
        note=note,
    )


def pytorch_artifact_entries(artifact: Artifact, source: SourceLayers) -> list[NameEntry]:
    """Submodules and state-dict entries of a generated ``model.py`` folder, from the
    writer's ``provenance.json`` and the shapes in ``weights.pt``."""
    import torch

    from ..writers.pytorch.sidecar import read_sidecar

    folder = artifact.path("code").parent
    weights = artifact.path("weights")
    if artifact.sidecar is None or not weights.is_file():
        raise InputError(
            f"{folder} has no provenance.json and weights.pt",
            expected="a folder written by `workbench convert ... --to pytorch`",
            remedy="write the PyTorch files with the workbench, or map names by hand with NameMap.set",
        )
    record = read_sidecar(artifact.sidecar)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    entries = [entry for module in record.get("modules", []) for entry in _module_entries(module, state, source)]
    return entries + [_buffer_entry(buffer, source) for buffer in record.get("buffers", [])]


# artifact kind -> (target format, entries from the writer's sidecar); other kinds are read as graphs
TargetEntries = Callable[[Artifact, SourceLayers], list[NameEntry]]
TARGET_ENTRIES: dict[str, tuple[str, TargetEntries]] = {
    "caffe": ("caffe", caffe_artifact_entries),
    "msnhnet": ("msnhnet", msnhnet_artifact_entries),
    "pytorch-folder": ("pytorch", pytorch_artifact_entries),
}


def _converted_entries(converted: Any, source: SourceLayers) -> tuple[list[NameEntry], str]:
    if isinstance(converted, Model):
        return _graph_entries(converted.ir, source), "onnx"
    artifact = _artifact(converted)
    if artifact.kind in TARGET_ENTRIES:
        target_format, entries = TARGET_ENTRIES[artifact.kind]
        return entries(artifact, source), target_format
    return _graph_entries(_as_model(artifact.given).ir, source), "onnx"


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


__all__ = ["TARGET_ENTRIES", "NameEntry", "NameMap", "map_names"]
