"""``simplify``: constant folding and graph cleanup, provenance kept.

Two passes. onnxscript's constant folder runs first: it keeps node metadata and
understands ops onnxsim leaves alone (``CastLike`` of a constant, which the
PyTorch exporter emits for every convolution without bias). Then onnxsim folds the ``Shape/Gather/Unsqueeze/Concat`` chains that
``x.view(x.size(0), -1)`` exports to, removes identities and dropout, and fixes
shapes. It drops node metadata and renames initializers, so provenance is taken
before and put back by output value name afterwards. BatchNorm fusion is left to
``fold_bn``, which reports what it folds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir
import onnxscript.optimizer
import onnxsim
from onnx_ir.passes.common import RemoveUnusedNodesPass

from ..errors import WorkbenchError
from ..graph import Model, StepReport, provenance
from ..graph.report import timed
from ..graph.shapes import constant


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


def simplify(model: Model, *, input_shapes: Mapping[str, Sequence[int]] | None = None) -> Model:
    """Constant-fold and clean the graph with onnxsim; returns a new Model."""
    report = StepReport("simplify")
    with timed(report):
        before = model.census()
        working = model.copy().ir
        source_params = provenance.params_by_source(working)
        source_names = set(working.graph.initializers)
        onnxscript.optimizer.fold_constants(working)
        RemoveUnusedNodesPass()(working)
        saved = provenance.snapshot(working)
        try:
            proto, check_ok = onnxsim.simplify(
                ir.to_proto(working),
                skip_fuse_bn=True,
                overwrite_input_shapes={k: list(v) for k, v in (input_shapes or {}).items()} or None,
            )
        except Exception as error:  # onnxsim raises RuntimeError/ValueError/onnx errors
            raise WorkbenchError(
                "onnxsim could not simplify the model",
                found=str(error).splitlines()[0] if str(error) else type(error).__name__,
                remedy="run without simplification (--no-simplify) or fix the input shapes",
            ) from error
        simplified = ir.from_proto(proto)
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
