"""An ONNX file whose weights stay in the file: every large initializer is memory-mapped.

Parsing a ``ModelProto`` copies every weight out of the file into protobuf's memory
(and ``onnx.load`` reads the file into memory first), so a 550 MB model costs twice
that while loading and 550 MB for as long as it lives. The ONNX format can instead
point a tensor at bytes in a file (``data_location = EXTERNAL`` with ``location``,
``offset`` and ``length``), and onnx-ir maps such tensors lazily
(``onnx_ir.ExternalTensor``): pages are read when a step reads the weights, shared
with the page cache, and given back when the tensor is released.

So the file is read in two passes over a read-only memory map:

1. the protobuf wire format is walked (``tag = field << 3 | wire type``, varint
   lengths) down to ``ModelProto.graph`` (field 7) → ``GraphProto.initializer``
   (field 5) → ``TensorProto.raw_data`` (field 9), noting where each initializer's
   raw bytes lie;
2. everything else is parsed by protobuf as usual (the model and graph without
   their initializers, each initializer without its raw bytes), and each large
   initializer is marked external, pointing at its own bytes inside the ``.onnx``
   file itself.

Initializers stored in typed fields (``float_data``...), small ones, those of
subgraphs and sparse ones are parsed as they are. Weights already in external data
files (models over 2 GB) stay where they are.

onnx-ir maps the whole file once per tensor; on this kernel each mapping counts the
page-cache folios it touches around its tensor, so 98 MB of ResNet-50 weights
counted as 250 MB of resident memory. ``MappedTensor`` (``share_mappings``) is an
``ExternalTensor`` that shares one read-only mapping per file with every other
tensor of that file; the mapping goes when no tensor or array holds it.

Protobuf's Python package has no reader that leaves bytes fields in place, so the
fields are walked with ``formats.wire``, which reads only tags and lengths.
"""

from __future__ import annotations

import mmap
import os
import weakref
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from ..formats.wire import LENGTH_DELIMITED, Field, WireFormatError, fields

_MODEL_GRAPH = 7  # ModelProto.graph
_GRAPH_INITIALIZER = 5  # GraphProto.initializer
_TENSOR_RAW_DATA = 9  # TensorProto.raw_data
# tensors smaller than this are parsed into memory: mapping them saves nothing
MAPPED_TENSOR_BYTES = 4096


def _without(data: mmap.mmap, start: int, end: int, number: int) -> tuple[bytes, list[Field]]:
    """The message's bytes without the fields ``number``, and those fields."""
    kept = bytearray()
    taken = []
    for field in fields(data, start, end):
        if field.number == number and field.wire_type == LENGTH_DELIMITED:
            taken.append(field)
        else:
            kept += data[field.start : field.end]
    return bytes(kept), taken


def _initializer(data: mmap.mmap, field: Field, location: str) -> onnx.TensorProto:
    """One initializer: parsed without its raw bytes, which it then points at in the file."""
    rest, raw = _without(data, field.value_start, field.end, _TENSOR_RAW_DATA)
    if not raw or raw[-1].end - raw[-1].value_start < MAPPED_TENSOR_BYTES:
        return onnx.TensorProto.FromString(data[field.value_start : field.end])
    tensor = onnx.TensorProto.FromString(rest)
    value = raw[-1]  # protobuf keeps the last occurrence of a repeated singular field
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, text in (("location", location), ("offset", value.value_start), ("length", value.end - value.value_start)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(text)
    return tensor


def _model_proto(data: mmap.mmap, location: str) -> onnx.ModelProto:
    model_bytes, graphs = _without(data, 0, len(data), _MODEL_GRAPH)
    if len(graphs) != 1:  # protobuf would merge several; the plain parser handles that
        raise WireFormatError(f"{len(graphs)} graph fields")
    graph = graphs[0]
    graph_bytes, initializers = _without(data, graph.value_start, graph.end, _GRAPH_INITIALIZER)
    model = onnx.ModelProto.FromString(model_bytes)
    model.graph.ParseFromString(graph_bytes)
    model.graph.initializer.extend(_initializer(data, field, location) for field in initializers)
    return model


def load_mapped(path: str | Path) -> ir.Model | None:
    """The model in ``path`` with its large inline weights memory-mapped from the file,
    or None when the file cannot be read this way (the caller then parses it whole).

    onnx-ir maps only files inside the model's folder and refuses a file with several
    hard links (one could be swapped for another file), so a symlinked or hard-linked
    file is parsed whole."""
    path = Path(path)
    if path.is_symlink() or os.stat(path).st_nlink > 1:
        return None
    with open(path, "rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            proto = _model_proto(data, path.name)
        except (WireFormatError, DecodeError):
            return None
    model = ir.serde.deserialize_model(proto)
    ir.external_data.set_base_dir(model.graph, str(path.parent))
    return model


_MAPPINGS: weakref.WeakValueDictionary[str, mmap.mmap] = weakref.WeakValueDictionary()


def _mapping(path: str) -> mmap.mmap:
    """The read-only mapping of ``path`` every ``MappedTensor`` of that file shares."""
    mapping = _MAPPINGS.get(path)
    if mapping is None or mapping.closed:
        with open(path, "rb") as stream:
            mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        _MAPPINGS[path] = mapping
    return mapping


class MappedTensor(ir.ExternalTensor):
    """An external tensor reading one mapping of its file shared with the file's other
    tensors (byte-sized types; sub-byte ones are read as onnx-ir reads them)."""

    __slots__ = ()

    def _load(self) -> None:
        super()._load()  # onnx-ir's checks (validity, path containment) and its own mapping
        if self.dtype.bitwidth % 8 or self.size == 0 or self.raw is None:
            return
        own, shared = self.raw, _mapping(str(self.path))
        dtype = np.dtype(self.dtype.numpy()).newbyteorder("<")
        array = np.frombuffer(shared, dtype=dtype, offset=self.offset or 0, count=self.size)
        self._array, self.raw = array.reshape(self.shape.numpy()), shared
        own.close()

    def release(self) -> None:
        """Let go of the shared mapping: it is unmapped when no tensor or array holds it."""
        self._array = None
        self.raw = None


def share_mappings(model: ir.Model) -> None:
    """Make every external initializer of the model a ``MappedTensor``."""
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if type(tensor) is not ir.ExternalTensor:
                continue
            value.const_value = MappedTensor(
                tensor.location,
                tensor.offset,
                tensor.length,
                tensor.dtype,
                shape=ir.Shape(tensor.shape.numpy()),
                name=tensor.name or value.name or "",
                doc_string=tensor.doc_string,
                metadata_props=dict(tensor.metadata_props),
                base_dir=tensor.base_dir,
            )
