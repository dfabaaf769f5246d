"""``simplify``: constant folding and graph cleanup, provenance kept.

Two passes. onnxscript's constant folder runs first: it keeps node metadata and
understands ops onnxsim leaves alone (``CastLike`` of a constant, which the
PyTorch exporter emits for every convolution without bias). Then onnxsim folds the ``Shape/Gather/Unsqueeze/Concat`` chains that
``x.view(x.size(0), -1)`` exports to, removes identities and dropout, and fixes
shapes. It drops node metadata and renames initializers, so provenance is taken
before and put back by output value name afterwards. BatchNorm fusion is left to
``fold_bn``, which reports what it folds.

onnxsim runs only when it has something to do (``simplify_work.onnxsim_work``, which
errs towards running it); otherwise the graph onnxscript left is the result, with
the shapes ONNX shape inference gives, small duplicate initializers merged and only
provenance kept as metadata, as onnxsim would have left it, and the weights are
never serialised. The report's ``counts["onnxsim"]`` says what onnxsim had to do,
or that it was skipped. On weights of ``FILE_ONNXSIM_BYTES`` or more onnxsim reads
the model from a file with external data and writes its result to another (one
protobuf message cannot exceed 2 GB), whose weights the result then maps.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxscript.optimizer
from onnx_ir.passes.common import DeduplicateInitializersPass, RemoveUnusedNodesPass

from ..errors import WorkbenchError
from ..graph import Model, StepReport, provenance
from ..graph.report import timed
from ..graph.shapes import constant, infer_shapes
from .simplify_work import DEDUPLICATED_ELEMENTS, onnxsim_work, unknown_shape

FILE_ONNXSIM_BYTES = 1 << 30


def census_change(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    """Human-readable lines for op types whose count changed."""
    lines = []
    for op in sorted(set(before) | set(after)):
        old, new = before.get(op, 0), after.get(op, 0)
        if old != new:
            lines.append(f"{op}: {old} → {new}")
    return lines


def drop_generated_zero_biases(model: ir.Model) -> int:
    """Remove all-zero bias inputs that no source parameter stands for.

    The PyTorch exporter gives every convolution without bias a computed zero
    bias; dropping it lets writers say "no bias" (Caffe ``bias_term: false``)
    instead of storing zeros. Returns the number of nodes changed."""
    changed = 0
    for node in model.graph:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.inputs) < 3 or 2 in provenance.params(node):
            continue
        bias = constant(node.inputs[2])
        if bias is not None and not np.any(bias):
            node.resize_inputs(2)
            changed += 1
    RemoveUnusedNodesPass()(model)
    return changed


def _weight_bytes(model: ir.Model) -> int:
    return sum(value.const_value.nbytes for value in model.graph.initializers.values() if value.const_value is not None)


def _run_onnxsim(working: ir.Model, input_shapes: Mapping[str, Sequence[int]] | None) -> tuple[ir.Model, bool]:
    """onnxsim on the model (BatchNorm fusion left to fold_bn): in memory, or through
    files for large weights. Returns the result and onnxsim's own check."""
    import onnxsim  # imports torch: only when there is work for it

    options = {
        "skip_fuse_bn": True,
        "overwrite_input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()} or None,
    }
    try:
        if _weight_bytes(working) < FILE_ONNXSIM_BYTES:
            proto, check_ok = onnxsim.simplify(ir.to_proto(working), **options)
            return ir.from_proto(proto), check_ok
        folder = Path(tempfile.mkdtemp(prefix="workbench-simplify-"))
        ir.save(working, folder / "model.onnx", external_data="model.onnx.data")
        _, check_ok = onnxsim.simplify(
            str(folder / "model.onnx"), output_path=str(folder / "simplified.onnx"), **options
        )
        simplified = ir.load(folder / "simplified.onnx")
        if any(isinstance(v.const_value, ir.ExternalTensor) for v in simplified.graph.initializers.values()):
            # the result's weights are mapped from this folder: it stays while the process runs
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        return simplified, check_ok
    except Exception as error:  # onnxsim raises RuntimeError/ValueError/onnx errors
        raise WorkbenchError(
            "onnxsim could not simplify the model",
            found=str(error).splitlines()[0] if str(error) else type(error).__name__,
            remedy="run without simplification (--no-simplify) or fix the input shapes",
        ) from error


def _without_onnxsim(working: ir.Model) -> tuple[ir.Model | None, str | None]:
    """The graph as onnxsim would leave it when it has nothing to fold: static shapes
    from ONNX shape inference, small duplicate initializers merged, only provenance
    kept as metadata; or None and what onnxsim would change. Made on a copy (sharing
    the weights), so that onnxsim, if it must run, sees the graph as it was."""
    settled = working.clone()
    if unknown_shape(settled.graph) is not None:
        try:
            inferred = infer_shapes(settled.clone())
        except WorkbenchError as error:
            return None, f"shape inference failed: {error.what}"
        # taken value by value: the inference pass reorders initializers
        for node, inferred_node in zip(settled.graph, inferred.graph):
            for value, inferred_value in zip(node.outputs, inferred_node.outputs):
                value.type, value.shape = inferred_value.type, inferred_value.shape
    work = onnxsim_work(settled)
    if work is not None:
        return None, work
    DeduplicateInitializersPass(size_limit=DEDUPLICATED_ELEMENTS)(settled)
    # merged weights can make two nodes equal, which onnxsim would merge in turn
    work = unknown_shape(settled.graph) or onnxsim_work(settled)
    if work is not None:
        return None, work
    _drop_metadata(settled)
    return settled, None


def _drop_metadata(model: ir.Model) -> None:
    """Keep only provenance, as onnxsim's result does: the exporter's records on
    the graph, its nodes and values (module namespaces, export signatures) go."""
    saved = provenance.snapshot(model)
    model.graph.metadata_props.clear()
    for node in model.graph:
        node.metadata_props.clear()
        for value in node.outputs:
            value.metadata_props.clear()
    for value in [*model.graph.inputs, *model.graph.initializers.values()]:
        value.metadata_props.clear()
    provenance.restore(model, saved)


def simplify(model: Model, *, input_shapes: Mapping[str, Sequence[int]] | None = None) -> Model:
    """Constant-fold and clean the graph (onnxscript, then onnxsim when it has work);
    returns a new Model."""
    report = StepReport("simplify")
    with timed(report):
        before = model.census()
        working = model.copy().ir
        source_params = provenance.params_by_source(working)
        source_names = set(working.graph.initializers)
        onnxscript.optimizer.fold_constants(working)
        RemoveUnusedNodesPass()(working)
        settled, work = (None, "input shapes to fix") if input_shapes else _without_onnxsim(working)
        check_ok, unmatched = True, 0
        if settled is not None:
            simplified = settled
        else:
            saved = provenance.snapshot(working)
            simplified, check_ok = _run_onnxsim(working, input_shapes)
            unmatched = provenance.restore(simplified, saved)
        for node in simplified.graph:
            provenance.record_initializer_params(node, source_names)
        provenance.adopt_orphan_params(simplified, source_params)
        dropped_biases = drop_generated_zero_biases(simplified)
        after = simplified.graph
        result = model.derive(simplified, report)
        census_after = result.census()
    report.summary = f"{len(model.graph)} → {len(after)} nodes"
    report.changes = census_change(before, census_after)
    report.counts = {
        "nodes_before": len(model.graph),
        "nodes_after": len(after),
        "census_before": dict(sorted(before.items())),
        "census_after": dict(sorted(census_after.items())),
    }
    report.counts["onnxsim"] = work or "skipped: nothing to fold"
    if dropped_biases:
        report.changes.append(f"zero biases the exporter added removed from {dropped_biases} layer(s)")
    vanished = sorted(
        {name for node in model.graph for name in provenance.sources(node)}
        - {name for node in after for name in provenance.sources(node)}
    )
    if vanished:
        # e.g. a scalar Mul folded into the next convolution's weights by onnxsim
        report.changes.append(f"source layers folded into others: {', '.join(vanished)}")
        report.counts["sources_folded"] = vanished
    if not check_ok:
        report.warnings.append("onnxsim's own check found different outputs after simplifying")
    if unmatched:
        report.warnings.append(f"{unmatched} new node(s) without provenance")
    return result
