"""ONNX writer: the graph as ``NAME.onnx``, provenance kept in the file.

The graph already has ONNX semantics, so writing is serialisation (``onnx_ir`` to
protobuf) plus checks. Every node keeps its provenance in ``metadata_props``; the
model's own ``metadata_props`` record the source format, files and the steps that
produced it, so a written file can be traced back and read again with its layer
names. ``onnx.checker`` validates the staged file before it is moved into place.

Weights are streamed to the file, never serialised with the graph: protobuf
serialises the model with each large initializer marked as external data
(``_structure``), and the file is then composed (``formats.wire``) from that
structure and each weight's bytes, copied from the tensor (from the file it is
mapped from, by the kernel, when it is one): ``raw_data`` spliced into its
initializer for a single file, or laid out in ``NAME.onnx.data`` for weights over
``EXTERNAL_DATA_BYTES``. Memory holds the graph and one weight at a time. The
graph is checked with its large initializers as inputs (``onnx.checker`` would
otherwise read, or look for, their data), and a large single file is read back
through a memory map rather than parsed whole.

A node the ONNX target cannot hold is reported by ``find_problems``: an op that
is not in the ONNX standard at the model's opset, or one from another domain
(``com.microsoft`` ops run only in onnxruntime, so they are a warning).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import onnx
import onnx_ir as ir

from ..errors import Problem, UnsupportedError, errors_of
from ..formats.wire import record_header
from ..graph import Model, StepReport, provenance
from ..graph.converter import OnnxNodeContext
from ..graph.report import timed
from ..graph.shapes import static_shape
from ..readers.onnx_mapped import load_mapped
from .files import WrittenFiles, file_stem, staged_output

STANDARD_DOMAINS = ("", "ai.onnx")
ONNXRUNTIME_DOMAIN = "com.microsoft"
# protobuf cannot serialise a message over 2 GiB; larger weights go to NAME.onnx.data
EXTERNAL_DATA_BYTES = 1 << 30
STREAMED_TENSOR_BYTES = 4096  # initializers this large are streamed, not serialised by protobuf
DATA_ALIGNMENT = 4096  # offsets of weights in NAME.onnx.data, a page each, as mappers prefer
_STREAMED = "workbench:streamed"  # the external data location marking a streamed initializer
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9  # field numbers in onnx.proto


def _report_node(ctx: OnnxNodeContext, known: set[tuple[str, str, str]]) -> None:
    """Report the node if the ONNX target cannot hold it (ops with a function in the model can)."""
    node = ctx.node
    if (node.domain, node.op_type, node.overload) in known:
        return
    if node.domain in STANDARD_DOMAINS:
        if not onnx.defs.has(node.op_type, ctx.opset, ""):
            ctx.problem(
                "unknown-op",
                f"{node.op_type} is not an ONNX operator at opset {ctx.opset}",
                "re-export with a newer opset, or replace the op with standard ones",
            )
    elif node.domain == ONNXRUNTIME_DOMAIN:
        ctx.problem(
            "runtime-specific-op",
            f"{node.op_type} is an onnxruntime contrib op ({ONNXRUNTIME_DOMAIN}); other runtimes cannot run it",
            "export without onnxruntime-specific fusions if the model must run elsewhere",
            severity="warning",
        )
    else:
        ctx.problem(
            "custom-domain-op",
            f"{node.op_type} is in domain {node.domain!r}, which no ONNX runtime knows",
            "export the op as standard ONNX ops, or include its function definition in the model",
        )


def find_problems(model: Model) -> list[Problem]:
    """Every node the ONNX target cannot hold, then ``onnx.checker``'s verdict."""
    known = {(f.domain, f.name, f.overload) for f in model.ir.functions.values()}
    problems: list[Problem] = []
    for node in model.graph.all_nodes():
        _report_node(OnnxNodeContext(problems, node, model.opset), known)
    if not errors_of(problems):
        problems += _checker_problems(model)
    return problems


def _structure(model: Model) -> tuple[onnx.ModelProto, dict[str, ir.TensorProtocol]]:
    """The model as protobuf with each large initializer of the main graph, and each
    one mapped from a file, marked as external data at ``_STREAMED`` (no bytes), and
    those initializers' tensors by name.
    Graph outputs without a type (graphs built node by node) get one from ONNX shape
    inference, since the format requires it."""
    working = model.ir.clone()
    streamed: dict[str, ir.TensorProtocol] = {}
    for name, value in working.graph.initializers.items():
        tensor = value.const_value
        mapped = isinstance(tensor, ir.ExternalTensor)  # its data stays behind: always copied
        if (
            tensor is None
            or tensor.dtype == ir.DataType.STRING
            or (tensor.nbytes < STREAMED_TENSOR_BYTES and not mapped)
        ):
            continue
        streamed[name] = tensor
        value.const_value = ir.ExternalTensor(
            _STREAMED,
            offset=None,
            length=tensor.nbytes,
            dtype=tensor.dtype,
            shape=ir.Shape(tensor.shape.numpy()),
            name=name,
            doc_string=tensor.doc_string,
            metadata_props=dict(tensor.metadata_props),
        )
    proto = ir.to_proto(working)
    if all(value.type is not None for value in model.graph.outputs):
        return proto, streamed
    try:
        return onnx.shape_inference.infer_shapes(proto), streamed
    except (onnx.shape_inference.InferenceError, ValueError):
        return proto, streamed  # onnx.checker then names the output that has no type


def _is_streamed(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL and any(
        entry.key == "location" and entry.value == _STREAMED for entry in tensor.external_data
    )


def _checkable(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The structure with the streamed initializers declared as graph inputs of their
    type and shape: what ``onnx.checker`` can check without their data."""
    checkable = onnx.ModelProto()
    checkable.CopyFrom(proto)
    graph = checkable.graph
    kept = [tensor for tensor in graph.initializer if not _is_streamed(tensor)]
    declared = {value.name for value in graph.input}
    for tensor in graph.initializer:
        if _is_streamed(tensor) and tensor.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return checkable


def _checker_problems(model: Model) -> list[Problem]:
    try:
        onnx.checker.check_model(_checkable(_structure(model)[0]))
    except onnx.checker.ValidationError as error:
        return [
            Problem(
                "error",
                "checker",
                "",
                "",
                f"onnx.checker rejects the graph: {str(error).splitlines()[0]}",
                "simplify the model, or fix the node named in the message",
            )
        ]
    return []


def _metadata(model: Model) -> dict[str, str]:
    return {
        "workbench.source_format": model.source.format,
        "workbench.source_paths": json.dumps(list(model.source.paths)),
        "workbench.steps": json.dumps([f"{r.step}: {r.summary}" for r in model.reports]),
    }


def _weight_bytes(model: Model) -> int:
    total = 0.0  # sub-byte types (int4) have fractional item sizes
    for value in model.graph.initializers.values():
        shape = static_shape(value)
        if shape is not None and value.dtype is not None:
            total += math.prod(shape) * value.dtype.itemsize
    return int(total)


def _copy_bytes(tensor: ir.TensorProtocol, stream: BinaryIO) -> None:
    """The tensor's bytes into ``stream``: onnx-ir's tensors copy without building
    them in memory where they can (a mapped one by the kernel, from its file)."""
    tofile = getattr(tensor, "tofile", None)
    if tofile is not None:
        tofile(stream)
    else:
        stream.write(tensor.tobytes())


def _clear_external(tensor: onnx.TensorProto) -> None:
    del tensor.external_data[:]
    tensor.ClearField("data_location")


def _write_single_file(path: Path, proto: onnx.ModelProto, streamed: Mapping[str, ir.TensorProtocol]) -> None:
    """``NAME.onnx`` with each streamed weight's bytes as the ``raw_data`` of its
    initializer: the model without its graph, then the graph without its
    initializers, then one initializer record after another (protobuf reads fields
    in any order and appends repeated ones)."""
    head = onnx.ModelProto()
    head.CopyFrom(proto)
    head.ClearField("graph")
    graph = onnx.GraphProto()
    graph.CopyFrom(proto.graph)
    del graph.initializer[:]
    records: list[tuple[bytes, ir.TensorProtocol | None]] = []
    for tensor in proto.graph.initializer:
        if not _is_streamed(tensor):
            records.append((record_header(_GRAPH_INITIALIZER, tensor.ByteSize()) + tensor.SerializeToString(), None))
            continue
        fields = onnx.TensorProto()
        fields.CopyFrom(tensor)
        _clear_external(fields)
        size = streamed[tensor.name].nbytes
        message = fields.SerializeToString() + record_header(_TENSOR_RAW_DATA, size)
        records.append((record_header(_GRAPH_INITIALIZER, len(message) + size) + message, streamed[tensor.name]))
    graph_bytes = graph.SerializeToString()
    graph_length = len(graph_bytes) + sum(len(header) + (t.nbytes if t is not None else 0) for header, t in records)
    with open(path, "wb") as stream:
        stream.write(head.SerializeToString() + record_header(_MODEL_GRAPH, graph_length) + graph_bytes)
        for header, tensor_data in records:
            stream.write(header)
            if tensor_data is not None:
                _copy_bytes(tensor_data, stream)


def _write_with_data_file(
    path: Path, data_name: str, proto: onnx.ModelProto, streamed: Mapping[str, ir.TensorProtocol]
) -> None:
    """``NAME.onnx`` pointing at ``NAME.onnx.data``, where each streamed weight lies at
    an offset aligned to ``DATA_ALIGNMENT``."""
    with open(path.with_name(data_name), "wb") as data:
        for tensor in proto.graph.initializer:
            if not _is_streamed(tensor):
                continue
            offset = -data.tell() % DATA_ALIGNMENT + data.tell()
            data.seek(offset)
            _copy_bytes(streamed[tensor.name], data)
            _clear_external(tensor)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            length = data.tell() - offset
            for key, value in (("location", data_name), ("offset", offset), ("length", length)):
                tensor.external_data.add(key=key, value=str(value))
    path.write_bytes(proto.SerializeToString())


def _check_written(path: Path, streamed: Mapping[str, ir.TensorProtocol], external: bool) -> None:
    """``onnx.checker`` on the written file; a single file with streamed weights is
    read back through a memory map instead (its graph was checked before writing),
    which parses everything but the weights and checks each weight's length."""
    try:
        if external or not streamed:
            onnx.checker.check_model(str(path))
            return
        reread = load_mapped(path)
        if reread is None:
            raise onnx.checker.ValidationError("the file is not a readable ModelProto")
        for name, tensor in streamed.items():
            value = reread.graph.initializers.get(name)
            if value is None or value.const_value is None or value.const_value.nbytes != tensor.nbytes:
                raise onnx.checker.ValidationError(f"initializer {name} was not written whole")
    except onnx.checker.ValidationError as error:
        raise UnsupportedError(
            "ONNX",
            [Problem("error", "checker", "", "", f"onnx.checker rejects the written file: {error}")],
        ) from error


def write_onnx(model: Model, outdir: str | Path, *, name: str | None = None) -> WrittenFiles:
    """Write ``NAME.onnx`` (and ``NAME.onnx.data`` for weights over 1 GiB) into ``outdir``."""
    name = file_stem(name, model.name, "ONNX")
    errors = errors_of(find_problems(model))
    if errors:
        raise UnsupportedError("ONNX", errors)
    report = StepReport("write onnx")
    with timed(report), staged_output(outdir, protected=model.source.paths) as staging:
        proto, streamed = _structure(model)
        metadata = {entry.key: entry.value for entry in proto.metadata_props}
        metadata.update(_metadata(model))
        del proto.metadata_props[:]
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        external = _weight_bytes(model) > EXTERNAL_DATA_BYTES
        path = staging / f"{name}.onnx"
        if external:
            _write_with_data_file(path, f"{name}.onnx.data", proto, streamed)
        else:
            _write_single_file(path, proto, streamed)
        _check_written(path, streamed, external)
        written = sorted(staging.iterdir())
    paths = [Path(outdir) / item.name for item in written]
    # one record per node, in the form every writer uses: name, op, source layers
    layers = [
        {"name": node.name or "", "op": node.op_type, "sources": list(provenance.sources(node))} for node in model.graph
    ]
    report.summary = f"{paths[0].name}: {len(layers)} nodes, {model.parameter_count():,} parameters"
    report.counts = {"nodes": len(layers), "bytes": sum(p.stat().st_size for p in paths)}
    return WrittenFiles("onnx", paths, report, {"layers": layers})
