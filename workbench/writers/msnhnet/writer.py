"""``write_msnhnet`` and ``find_problems``: a graph -> ``NAME.msnhnet`` + ``NAME.msnhbin``.

Both run the same walk (``build_msnhnet``) on a clone of the graph with inferred
shapes, so ``find_problems`` lists exactly what ``write_msnhnet`` would refuse
(severity "error") or write around (severity "warning"). Nothing is written while
an error remains; the three files (with ``NAME.provenance.json``, the record of
which nodes and source layers every layer implements) appear together.

After the nodes, the walk makes the network's last layer hold the last graph
output (MsnhNet returns the last layer's output; the sidecar names the layers
holding the others), and gives a network without weights an identity
``batchnorm`` first: MsnhNet refuses an empty ``.msnhbin``.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import onnx_ir as ir

from ...errors import Problem, UnsupportedError, errors_of, sort_problems
from ...graph import Model, StepReport
from ...graph.converter import ConverterContext
from ...graph.report import timed
from ...graph.shapes import infer_shapes, static_shape
from ..files import SIDECAR_SUFFIX, WrittenFiles, file_stem, staged_output
from . import activation, arithmetic, conv, layout, linear, normalization, pooling, softmax, spatial  # noqa: F401
from .net import MSNHNET_LAYERS, TARGET, MsnhLayer, MsnhNet, MsnhNodeContext, per_sample
from .sidecar import layer_name, write_sidecar
from .text import render, weight_bytes

NEEDS_SIMPLIFY_REMEDY = "run simplify (workbench.steps.simplify) so the chain folds into constants"


def _computes_integers(node: ir.Node) -> bool:
    return node.op_type != "Constant" and any(
        v.dtype is not None and (v.dtype.is_integer() or v.dtype == ir.DataType.BOOL) for v in node.outputs
    )


def _walk_problem(net: MsnhNet, kind: str, message: str, remedy: str, severity: str = "error") -> None:
    ConverterContext(net.problems, name="", op_type="").problem(kind, message, remedy, severity=severity)


def _set_input(net: MsnhNet) -> bool:
    inputs = [value for value in net.graph.inputs if not value.is_initializer()]
    if len(inputs) != 1:
        _walk_problem(
            net,
            "inputs",
            f"the graph has {len(inputs)} inputs; a MsnhNet network has exactly one",
            "export the model with one input tensor (concatenate inputs in the source model)",
        )
        return False
    shape = static_shape(inputs[0])
    if shape is None or len(shape) < 2:
        _walk_problem(
            net,
            "dynamic-shape",
            f"input {inputs[0].name} has no fixed shape with a batch axis ({inputs[0].shape}); MsnhNet's config "
            "fixes batch, channels, height and width",
            "export with a fixed input shape (--input-shape 1,3,224,224)",
        )
        return False
    if shape[0] != 1:
        _walk_problem(
            net,
            "batch",
            f"input {inputs[0].name} has batch {shape[0]}; MsnhNet runs one sample at a time (runClassify compares "
            "the input with one sample's size)",
            "export with batch 1 (--input-shape 1,...)",
        )
        return False
    net.set_input(inputs[0], shape)
    return True


def _convert_node(net: MsnhNet, node: ir.Node) -> None:
    ctx = MsnhNodeContext(net, node)
    if node.op_type == "Constant":
        return  # its value reaches MsnhNet as weights, or is reported where it is used as data
    if _computes_integers(node):
        ctx.problem(
            "needs-simplify",
            "computes integers (shapes or indices), which MsnhNet layers cannot hold; "
            "this is usually a Shape/Gather/Concat chain from x.view(x.size(0), -1)",
            NEEDS_SIMPLIFY_REMEDY,
        )
    else:
        converter = ctx.converter(MSNHNET_LAYERS, TARGET)
        if converter is not None:
            converter(ctx)
    for value in node.outputs:
        _check_size(ctx, value)
        if not ctx.ok:
            net.fail(value)  # its readers are skipped: the problem is reported once, here


def _check_size(ctx: MsnhNodeContext, value: ir.Value) -> None:
    """The layer holding a converted value computes as many values per sample as the graph."""
    if not ctx.ok or not ctx.net.is_bound(value) or not value.consumers() and not value.is_graph_output():
        return
    shape = static_shape(value)
    size = ctx.net.size_of(value)
    if shape is not None and size is not None and not value.consumers() and math.prod(shape) == size * ctx.net.batch:
        return  # a graph output nothing reads may drop the batch axis of 1 (x.squeeze() at the end)
    if shape is None or size is None or shape[0] != ctx.net.batch:
        if shape is not None and size is not None:
            ctx.problem(
                "batch-axis",
                f"{value.name} has shape {shape}: its first axis is not the batch ({ctx.net.batch}); MsnhNet "
                "keeps the batch axis first in every layer",
                "keep the batch axis first in the source model (x.view(x.size(0), ...))",
            )
        return
    if per_sample(shape) != size:
        ctx.problem(
            "layer-size",
            f"the MsnhNet layer gives {size} values per sample, the graph {shape}",
            "report this model: the writer computed a MsnhNet layer differently from the graph",
        )


def _finish_outputs(net: MsnhNet) -> list[tuple[ir.Value, MsnhLayer]]:
    """The layer holding each graph output; the last one is made the last layer."""
    found = []
    for value in net.graph.outputs:
        producer = value.producer()
        if producer is None:
            _walk_problem(net, "output", f"graph output {value.name} is not computed", "drop it from the model")
            continue
        held = net.holder(MsnhNodeContext(net, producer), value)
        if held is not None:
            found.append((value, held))
    if found and found[-1][1] is not net.last:
        value, held = found[-1]
        route = net.append(MsnhLayer("route", {"layers": [held]}, held.dims, held.size, role="output"))
        route.value, route.shape, route.sources = held.value, held.shape, list(held.sources)
        found[-1] = (value, route)
    if len(found) > 1:
        others = ", ".join(f"{value.name} (layer {net.index(layer)})" for value, layer in found[:-1])
        _walk_problem(
            net,
            "several-outputs",
            f"MsnhNet returns only the last layer's output ({found[-1][0].name}); the other outputs are {others}",
            "read them as layer outputs (the provenance record names the layers), or keep one output",
            severity="warning",
        )
    return found


def _owned(net: MsnhNet) -> set[int]:
    """Layers MsnhNet gives a buffer of their own: those a later route names (unless the
    route comes right after them) and those a varop names."""
    position = {id(layer): index for index, layer in enumerate(net.layers)}
    owned: set[int] = set()
    for index, layer in enumerate(net.layers):
        if layer.kind in ("route", "varop"):
            refs = [position[id(ref)] for ref in layer.params.get("layers", ())]
            owned.update(ref for ref in refs if layer.kind == "varop" or ref != index - 1)
    return owned


def _protect_views(net: MsnhNet) -> None:
    """A ``view`` without a buffer of its own does nothing in MsnhNet: the next layer reads
    the shared buffer, which holds the data only if the layer before the view wrote
    there. After a layer with its own buffer, an identity ``act`` (which copies into
    the shared buffer) comes before the view (checked in the real runtime)."""
    owned = _owned(net)
    needs_copy = []
    writer = None  # the last layer whose output the shared buffer or the layer's own buffer holds
    for index, layer in enumerate(net.layers):
        shared_view = layer.kind == "view" and index not in owned
        if shared_view and writer is not None and writer[1] in owned and writer[0] not in needs_copy:
            needs_copy.append(writer[0])
        if not shared_view:
            writer = (layer, index)
    for layer in needs_copy:
        copy = MsnhLayer("act", {"activation": "none"}, layer.dims, layer.size, role="copy")
        copy.value, copy.shape, copy.sources = layer.value, layer.shape, list(layer.sources)
        net.layers.insert(net.index(layer) + 1, copy)


def _ensure_weights(net: MsnhNet) -> None:
    """MsnhNet refuses an empty ``.msnhbin``: a weightless net gets an identity
    ``batchnorm`` (scale 1, bias 0, mean 0, var 1, eps 0: exactly x) as layer 0."""
    if net.weight_count() or not net.layers:
        return
    channels = net.input_dims[0]
    ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    identity = MsnhLayer("batchnorm", {"eps": 0}, net.input_dims, math.prod(net.input_dims), role="weights")
    identity.add_weights([ones, zeros, zeros, ones])
    if net.input is not None:
        identity.stands_for(net.input, [net.input.name or "input"])
    net.layers.insert(0, identity)
    _walk_problem(
        net,
        "no-weights",
        "the network has no weights, and MsnhNet refuses an empty .msnhbin: an identity batchnorm is layer 0",
        severity="warning",
        remedy="",
    )


def build_msnhnet(model: Model) -> tuple[MsnhNet, list[tuple[ir.Value, MsnhLayer]]]:
    """Convert ``model`` to in-memory MsnhNet layers (the model itself is not changed);
    also returns the layer holding each graph output."""
    working = infer_shapes(model.ir.clone())
    net = MsnhNet(working.graph)
    if not _set_input(net):
        return net, []
    working.graph.sort()
    for node in working.graph:
        if node not in net.absorbed:
            _convert_node(net, node)
    outputs = _finish_outputs(net) if not errors_of(net.problems) else []
    _protect_views(net)
    _ensure_weights(net)
    return net, outputs


def find_problems(model: Model) -> list[Problem]:
    """Every unsupported op and pitfall for MsnhNet, errors first, each with a remedy."""
    return sort_problems(build_msnhnet(model)[0].problems)


def _records(net: MsnhNet) -> list[dict[str, object]]:
    return [
        {
            "index": index,
            "name": layer_name(index, layer.kind),
            "type": layer.kind,
            "role": layer.role,
            "dims": list(layer.dims),
            "nodes": list(layer.nodes),
            "sources": list(layer.sources),
            "transforms": list(layer.transforms),
            "value": layer.value,
            "shape": list(layer.shape) if layer.shape is not None else None,
            "weights": [list(w.shape) for w in layer.weights],
            "weight_params": [list(p) for p in layer.weight_params],
        }
        for index, layer in enumerate(net.layers)
    ]


def _fill_report(report: StepReport, net: MsnhNet, problems: list[Problem], weights: bytes, text: str) -> None:
    by_kind = Counter(layer.kind for layer in net.layers)
    report.summary = f"{len(net.layers)} layers, {len(weights):,} bytes of weights"
    report.changes = [f"{kind}: {count}" for kind, count in sorted(by_kind.items())]
    report.counts = {
        "layers": len(net.layers),
        "layers_by_kind": dict(sorted(by_kind.items())),
        "weights": net.weight_count(),
        "msnhbin_bytes": len(weights),
        "msnhnet_bytes": len(text.encode()),
    }
    report.warnings = [str(p) for p in problems]


def write_msnhnet(model: Model, outdir: str | Path, *, name: str | None = None) -> WrittenFiles:
    """Write ``NAME.msnhnet``, ``NAME.msnhbin`` and ``NAME.provenance.json`` into ``outdir``.

    Raises ``UnsupportedError`` listing every blocking problem before anything is
    written. ``details`` is the provenance record: ``layers`` (with names, nodes,
    sources and the value each equals), ``input``, ``outputs`` (graph output ->
    layer index) and ``batch``.
    """
    name = file_stem(name, model.name, "MsnhNet")
    report = StepReport("write msnhnet")
    with timed(report):
        net, outputs = build_msnhnet(model)
        problems = sort_problems(net.problems)
        if errors_of(problems):
            raise UnsupportedError(TARGET, errors_of(problems))
        text, weights = render(net), weight_bytes(net)
        assert net.input is not None
        details = {
            "name": name,
            "format": "msnhnet",
            "batch": net.batch,
            "input": {"name": net.input.name, "shape": list(net.input_shape)},
            "outputs": [
                {"name": value.name, "layer": net.index(layer), "shape": list(static_shape(value) or ())}
                for value, layer in outputs
            ],
            "layers": _records(net),
            "warnings": [p.to_dict() for p in problems],
        }
        with staged_output(outdir, protected=model.source.paths) as staging:
            (staging / f"{name}.msnhnet").write_text(text)
            (staging / f"{name}.msnhbin").write_bytes(weights)
            write_sidecar(staging, name, details)
    _fill_report(report, net, problems, weights, text)
    outdir = Path(outdir)
    paths = [outdir / f"{name}{suffix}" for suffix in (".msnhnet", ".msnhbin", SIDECAR_SUFFIX)]
    return WrittenFiles("msnhnet", paths, report, details)
