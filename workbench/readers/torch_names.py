"""Source names for nodes exported by ``torch.onnx.export(dynamo=True)``.

The exporter records for each node the module scopes it ran in
(``pkg.torch.onnx.name_scopes`` = ``['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d']``,
the last entry being the traced op) and the module classes
(``pkg.torch.onnx.class_hierarchy``). A node inside a built-in ``torch.nn`` layer
takes that layer's path (``layer1.0.conv1``), so it lines up with forward hooks;
a functional op written in a ``forward`` takes ``module path.op name``
(``layer1.0.add``), or the op name at the top level (``view``).
"""

from __future__ import annotations

import ast

import onnx_ir as ir

_PREFIX = "pkg.torch.onnx."
_SCOPES = _PREFIX + "name_scopes"
_CLASSES = _PREFIX + "class_hierarchy"


def _parse_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(item) for item in parsed] if isinstance(parsed, (list, tuple)) else []


def torch_source_name(node: ir.Node) -> str | None:
    scopes = _parse_list(node.metadata_props.get(_SCOPES))
    if len(scopes) < 2:
        return None
    classes = _parse_list(node.metadata_props.get(_CLASSES))
    module_path, op_name = scopes[-2], scopes[-1]
    innermost_class = classes[-2] if len(classes) >= 2 else ""
    if module_path and innermost_class.startswith("torch.nn.modules."):
        return module_path
    return f"{module_path}.{op_name}" if module_path else op_name


def drop_exporter_metadata(node: ir.Node) -> None:
    """Remove the exporter's own records (stack traces hold local paths) once the
    source name has been taken from them."""
    for key in [k for k in node.metadata_props if k.startswith(_PREFIX)]:
        del node.metadata_props[key]
