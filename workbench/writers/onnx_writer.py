"""ONNX writer: the graph as ``NAME.onnx``, provenance kept in the file.

The graph already has ONNX semantics, so writing is serialisation (``onnx_ir`` to
protobuf, weights as raw bytes) plus checks. Every node keeps its provenance in
``metadata_props``; the model's own ``metadata_props`` record the source format,
files and the steps that produced it, so a written file can be traced back and
read again with its layer names. ``onnx.checker`` validates the staged file
before it is moved into place.

A node the ONNX target cannot hold is reported by ``find_problems``: an op that
is not in the ONNX standard at the model's opset, or one from another domain
(``com.microsoft`` ops run only in onnxruntime, so they are a warning).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import onnx_ir as ir

from ..errors import InputError, Problem, UnsupportedError, errors_of
from ..graph import Model, StepReport, provenance
from ..graph.converter import OnnxNodeContext
from ..graph.report import timed
from ..graph.shapes import static_shape
from .files import WrittenFiles, staged_output

STANDARD_DOMAINS = ("", "ai.onnx")
ONNXRUNTIME_DOMAIN = "com.microsoft"
# protobuf cannot serialise a message over 2 GiB; larger weights go to NAME.onnx.data
EXTERNAL_DATA_BYTES = 1 << 30


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


def _to_proto(model: Model) -> onnx.ModelProto:
    """The model as protobuf; graph outputs without a type (graphs built node by node)
    get one from ONNX shape inference, since the format requires it."""
    proto = ir.to_proto(model.ir)
    if all(value.type is not None for value in model.graph.outputs):
        return proto
    try:
        return onnx.shape_inference.infer_shapes(proto)
    except (onnx.shape_inference.InferenceError, ValueError):
        return proto  # onnx.checker then names the output that has no type


def _checker_problems(model: Model) -> list[Problem]:
    try:
        onnx.checker.check_model(_to_proto(model))
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
    except ValueError:
        # over 2 GiB in memory: the staged file is checked by path when written
        return []
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


def write_onnx(model: Model, outdir: str | Path, *, name: str | None = None) -> WrittenFiles:
    """Write ``NAME.onnx`` (and ``NAME.onnx.data`` for weights over 1 GiB) into ``outdir``."""
    name = name or model.name
    if not name or Path(name).name != name:
        raise InputError(
            f"cannot name the ONNX file {name!r}",
            expected="a plain file name without folders",
            remedy="pass the folder as outdir and a bare name",
        )
    errors = errors_of(find_problems(model))
    if errors:
        raise UnsupportedError("ONNX", errors)
    report = StepReport("write onnx")
    with timed(report), staged_output(outdir, protected=model.source.paths) as staging:
        proto = _to_proto(model)
        metadata = {entry.key: entry.value for entry in proto.metadata_props}
        metadata.update(_metadata(model))
        del proto.metadata_props[:]
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        external = _weight_bytes(model) > EXTERNAL_DATA_BYTES
        onnx.save_model(
            proto,
            staging / f"{name}.onnx",
            save_as_external_data=external,
            location=f"{name}.onnx.data" if external else None,
        )
        try:
            onnx.checker.check_model(str(staging / f"{name}.onnx"))
        except onnx.checker.ValidationError as error:
            raise UnsupportedError(
                "ONNX",
                [Problem("error", "checker", "", "", f"onnx.checker rejects the written file: {error}")],
            ) from error
        written = sorted(staging.iterdir())
    paths = [Path(outdir) / item.name for item in written]
    # one record per node, in the form every writer uses: name, op, source layers
    layers = [
        {"name": node.name or "", "op": node.op_type, "sources": list(provenance.sources(node))} for node in model.graph
    ]
    report.summary = f"{paths[0].name}: {len(layers)} nodes, {model.parameter_count():,} parameters"
    report.counts = {"nodes": len(layers), "bytes": sum(p.stat().st_size for p in paths)}
    return WrittenFiles("onnx", paths, report, {"layers": layers})
