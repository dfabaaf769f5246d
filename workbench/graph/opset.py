"""Which version of an ONNX operator a node follows, and where that version keeps a parameter.

Operators changed over the opsets. Parameters moved from attributes to inputs:
Slice's starts/ends/axes at 10, Clip's min/max and Pad's pads/value at 11,
Squeeze/Unsqueeze/ReduceSum axes and Split sizes at 13, the other Reduce* axes at
18, Upsample's scales at 9, and Resize's scales moved from input 1 to input 2 at 11.
Defaults changed too (Softmax's axis is 1 before opset 13, -1 after).

The operator schema of the version in force, ``onnx.defs.get_schema(op,
max_inclusive_version=opset)`` (the look-up onnx2torch uses), names that version's
attributes with their defaults and its inputs in order; so a converter asks for a
parameter by its ONNX name and never branches on the opset itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import onnx
import onnx_ir as ir

STANDARD_DOMAINS = ("", "ai.onnx")


def canonical_domain(domain: str) -> str:
    """``ai.onnx`` and ``""`` name the same standard domain."""
    return "" if domain in STANDARD_DOMAINS else domain


def opset_of(opset_imports: Mapping[str, int], domain: str = "") -> int | None:
    """The version of ``domain`` a graph imports (None when it imports none)."""
    domain = canonical_domain(domain)
    if domain == "":
        return opset_imports.get("", opset_imports.get("ai.onnx"))
    return opset_imports.get(domain)


def node_opset(node: ir.Node, fallback: int | None = None) -> int | None:
    """The opset of ``node``'s domain imported by the graph holding it."""
    graph = node.graph
    found = opset_of(graph.opset_imports, node.domain) if graph is not None else None
    return found if found is not None else fallback


@cache
def schema(op_type: str, opset: int, domain: str = "") -> onnx.defs.OpSchema | None:
    """The schema of ``op_type`` in force at ``opset``, or None for an op ONNX does not define."""
    try:
        return onnx.defs.get_schema(op_type, max_inclusive_version=opset, domain=canonical_domain(domain))
    except onnx.defs.SchemaError:
        return None


def input_index(found: onnx.defs.OpSchema | None, name: str) -> int | None:
    """The position of input ``name`` in the schema, or None when that version has no such input."""
    if found is None:
        return None
    names = [parameter.name for parameter in found.inputs]
    return names.index(name) if name in names else None


def is_optional_input(found: onnx.defs.OpSchema | None, index: int) -> bool:
    """Whether input ``index`` may be left out (an op without schema: any may)."""
    if found is None or index >= len(found.inputs):
        return True
    return found.inputs[index].option == onnx.defs.OpSchema.FormalParameterOption.Optional


def attribute_default(found: onnx.defs.OpSchema | None, name: str) -> Any:
    """The default the schema gives attribute ``name`` (strings decoded), None when it has none."""
    if found is None or name not in found.attributes:
        return None
    default = found.attributes[name].default_value
    if default.type == onnx.AttributeProto.UNDEFINED:
        return None
    return _plain(onnx.helper.get_attribute_value(default))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return tuple(_plain(item) for item in value)
    return value
