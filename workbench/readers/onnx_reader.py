"""Read an ONNX file into the graph.

A file of ``MAPPED_FILE_BYTES`` or more keeps its weights in the file: they are
memory-mapped (``onnx_mapped``), read when a step reads them and never copied into
protobuf; weights in external data files (models over 2 GB) are mapped as well,
whatever the file's size. A mapped model reads the file as long as it lives: replace the file (write
a new one and rename it) rather than rewriting it in place while the model is in use.

Provenance: a node written by the workbench already carries it; a node exported
by ``torch.onnx`` carries its module path in ``pkg.torch.onnx.name_scopes``;
any other node is its own source, under its node name.

Initializers listed among the graph inputs (every file before ONNX IR 4 lists
them so; later exporters may, e.g. ``keep_initializers_as_inputs``) are default
values a caller could override. The workbench converts the network with its
weights, so they are read as initializers only: they are not run-time inputs of
the model, and the model is raised to IR 4, the first version where initializers
need not be inputs.
"""

from __future__ import annotations

from pathlib import Path

import onnx_ir as ir

from ..errors import InputError
from ..graph import Model, SourceInfo, provenance
from .onnx_mapped import load_mapped, share_mappings
from .torch_names import drop_exporter_metadata, torch_source_name

MAPPED_FILE_BYTES = 32 * 2**20


def annotate_provenance(model: ir.Model) -> None:
    """Give every node without provenance a source name and parameter names."""
    for index, node in enumerate(model.graph):
        if not provenance.sources(node):
            name = torch_source_name(node) or node.name or f"{node.op_type}_{index}"
            provenance.set_sources(node, [name])
        provenance.record_initializer_params(node)
        drop_exporter_metadata(node)


def load_graph(path: str | Path) -> ir.Model:
    """The graph in ``path`` as it is (no provenance added), its weights mapped from
    the file when it is large (one mapping per file, shared by its tensors)."""
    path = Path(path)
    mapped = load_mapped(path) if path.stat().st_size >= MAPPED_FILE_BYTES else None
    model = mapped if mapped is not None else ir.load(path)
    share_mappings(model)
    return model


def drop_initializer_inputs(model: ir.Model) -> None:
    """Keep as graph inputs only the values fed at run time (see the module docstring)."""
    graph = model.graph
    fed = [value for value in graph.inputs if not value.is_initializer()]
    if len(fed) == len(graph.inputs):
        return
    graph.inputs.clear()
    graph.inputs.extend(fed)
    model.ir_version = max(model.ir_version, 4)


def read_onnx(path: str | Path) -> Model:
    path = Path(path)
    try:
        model = load_graph(path)
    except FileNotFoundError as error:
        raise InputError(f"no such ONNX file: {path}", remedy="check the path") from error
    except Exception as error:  # protobuf decode errors have no common base type
        raise InputError(
            f"{path} is not a readable ONNX model",
            expected="a serialized onnx.ModelProto",
            found=str(error).splitlines()[0] if str(error) else type(error).__name__,
            remedy="re-export the model, or check that the file is complete",
        ) from error
    drop_initializer_inputs(model)
    annotate_provenance(model)
    return Model(model, SourceInfo("onnx", (str(path),), path.stem))
