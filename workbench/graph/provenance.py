"""Provenance: which source layers and parameters each graph node came from.

Provenance is stored in each node's ``metadata_props`` so it survives writing the
graph to an ONNX file and reading it back. Three keys are used:

* ``workbench.source``: JSON list of source layer names (PyTorch module paths,
  Caffe layer names, MXNet node names, ...).
* ``workbench.params``: JSON object ``{input index: [source parameter names]}`` for
  the node's constant inputs (``{"1": ["conv.weight"]}``), so parameters keep their
  origin even when a tool renames the initializer (``onnx::Conv_27``, ``_v_23``).
* ``workbench.transforms``: JSON list of human-readable transforms applied to the
  node (``"folded BatchNormalization bn into weights (eps=1e-05)"``).

Name mapping and per-layer comparison are built on these records, never on
editing name strings.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Mapping, Sequence

import onnx_ir as ir

SOURCE_KEY = "workbench.source"
PARAMS_KEY = "workbench.params"
TRANSFORMS_KEY = "workbench.transforms"
_KEYS = (SOURCE_KEY, PARAMS_KEY, TRANSFORMS_KEY)


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        if name:
            seen.setdefault(name, None)
    return list(seen)


def sources(node: ir.Node) -> tuple[str, ...]:
    """The source layer names ``node`` came from (empty if unknown)."""
    raw = node.metadata_props.get(SOURCE_KEY)
    return tuple(json.loads(raw)) if raw else ()


def set_sources(node: ir.Node, names: Iterable[str]) -> None:
    node.metadata_props[SOURCE_KEY] = json.dumps(_unique(names))


def add_sources(node: ir.Node, names: Iterable[str]) -> None:
    set_sources(node, [*sources(node), *names])


def params(node: ir.Node) -> dict[int, tuple[str, ...]]:
    """Source parameter names of the node's constant inputs, by input index."""
    raw = node.metadata_props.get(PARAMS_KEY)
    if not raw:
        return {}
    return {int(index): tuple(names) for index, names in json.loads(raw).items()}


def set_params(node: ir.Node, by_input: Mapping[int, Sequence[str]]) -> None:
    cleaned = {str(i): _unique(names) for i, names in sorted(by_input.items()) if names}
    if cleaned:
        node.metadata_props[PARAMS_KEY] = json.dumps(cleaned)
    else:
        node.metadata_props.pop(PARAMS_KEY, None)


def transforms(node: ir.Node) -> tuple[str, ...]:
    raw = node.metadata_props.get(TRANSFORMS_KEY)
    return tuple(json.loads(raw)) if raw else ()


def add_transform(node: ir.Node, description: str) -> None:
    node.metadata_props[TRANSFORMS_KEY] = json.dumps([*transforms(node), description])


def copy_provenance(target: ir.Node, source: ir.Node) -> None:
    for key in _KEYS:
        if key in source.metadata_props:
            target.metadata_props[key] = source.metadata_props[key]


def record_initializer_params(node: ir.Node, source_names: Container[str] | None = None) -> None:
    """Record each initializer input's name as its source parameter, unless the node
    already has parameter provenance for that input. With ``source_names``, only
    names in it count (a tool's generated names such as ``_v_23`` are not sources)."""
    known = params(node)
    for index, value in enumerate(node.inputs):
        if value is None or not value.is_initializer() or index in known or not value.name:
            continue
        if source_names is None or value.name in source_names:
            known[index] = (value.name,)
    set_params(node, known)


def params_by_source(model: ir.Model) -> dict[str, list[str]]:
    """Source layer name -> the source parameters recorded on its nodes."""
    found: dict[str, list[str]] = {}
    for node in model.graph:
        names = [name for group in params(node).values() for name in group]
        for layer in sources(node):
            found.setdefault(layer, []).extend(n for n in names if n not in found.get(layer, ()))
    return found


def adopt_orphan_params(model: ir.Model, before: Mapping[str, Sequence[str]]) -> None:
    """After a tool folded helper nodes (e.g. the Reshape of a PReLU slope) into a
    new initializer, give that initializer the source parameters its layer had
    before and that no surviving node of the layer claims any more."""
    after = params_by_source(model)
    for node in model.graph:
        known = params(node)
        orphans = [
            index
            for index, value in enumerate(node.inputs)
            if value is not None and value.is_initializer() and index not in known
        ]
        if not orphans:
            continue
        for layer in sources(node):
            unclaimed = [name for name in before.get(layer, ()) if name not in after.get(layer, ())]
            if len(orphans) == 1 and unclaimed:
                known[orphans[0]] = tuple(unclaimed)
                after.setdefault(layer, []).extend(unclaimed)
                break
        set_params(node, known)


def snapshot(model: ir.Model) -> dict[str, dict[str, str]]:
    """Provenance of every node keyed by its first output's name, for tools
    (such as onnxsim) that drop node metadata but keep value names."""
    saved = {}
    for node in model.graph:
        record = {key: node.metadata_props[key] for key in _KEYS if key in node.metadata_props}
        for output in node.outputs:
            if output.name:
                saved[output.name] = record
    return saved


def restore(model: ir.Model, saved: Mapping[str, Mapping[str, str]]) -> int:
    """Put provenance from ``snapshot`` back onto nodes by output name.

    Returns the number of nodes that found no record (new nodes a tool made).
    """
    missing = 0
    for node in model.graph:
        if SOURCE_KEY in node.metadata_props:
            continue
        record = next((saved[o.name] for o in node.outputs if o.name is not None and o.name in saved), None)
        if record is None:
            missing += 1
            continue
        node.metadata_props.update(record)
    return missing


def source_map(model: ir.Model) -> dict[str, tuple[str, ...]]:
    """Node name -> source layer names, for every node of the graph."""
    return {node.name or "": sources(node) for node in model.graph}
