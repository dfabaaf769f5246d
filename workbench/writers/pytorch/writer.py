"""``write_pytorch``: a graph -> a readable ``model.py``, its ``weights.pt`` and
``provenance.json``.

``model.py`` defines ``class Model(nn.Module)``: one submodule per source layer
(standard ``torch.nn`` layers where they exist), named after the layer's
provenance name made into an identifier with the path flattened
(``layer1.0.conv1`` -> ``layer1_0_conv1``, ``conv1/3x3_reduce`` -> ``conv1_3x3_reduce``),
and a ``forward`` that follows the graph node by node. ``weights.pt`` is the
state dict (tensors over the graph's weight buffers); ``provenance.json`` says
which graph nodes and source layers each submodule and forward line stands for.

Before anything is written, every node is checked: ops without an emitter and
attribute values PyTorch cannot express are all reported in one
``UnsupportedError``.
"""

from __future__ import annotations

from pathlib import Path

import onnx_ir as ir
import torch

from ...errors import Problem, UnsupportedError, WorkbenchError, errors_of, sort_problems
from ...graph import Model, StepReport, provenance
from ...graph.converter import ConverterContext
from ...graph.report import timed
from ...graph.shapes import constant, infer_shapes
from ..files import WrittenFiles, staged_output
from .codegen import INDENT, call, flat, ints, render
from .helpers import helper_source
from .program import EMITTERS, TARGET, ModuleRecord, Program, TorchNodeContext, torch_dtype
from .sidecar import sidecar_path, write_sidecar


def build_program(model: Model) -> Program:
    """Run every node's emitter over a shape-annotated copy of the graph."""
    working = model.copy().ir
    try:
        working = infer_shapes(working)
    except WorkbenchError:
        pass  # emitters that need a shape report it themselves
    program = Program(working.graph, model.opset)
    for value in working.graph.inputs:
        _check_input(program, value)
    for node in working.graph:
        if id(node) not in program.absorbed:
            _emit(TorchNodeContext(program, node))
    return program


def _check_input(program: Program, value: ir.Value) -> None:
    """Inputs PyTorch cannot take (strings: an error) or whose shape is symbolic (a warning)."""
    report = ConverterContext(program.problems, name="", op_type="").problem
    if value.dtype is not None and torch_dtype(value.dtype) is None:
        report(
            "unsupported-attribute",
            f"input {value.name} is of type {value.dtype.name}, which PyTorch tensors cannot hold",
            "convert that part of the model by hand (e.g. strings to indices before the network)",
        )
    if value.shape is not None and not all(isinstance(d, int) for d in value.shape):
        report(
            "dynamic-shape",
            f"input {value.name} has symbolic dimensions {list(value.shape)}; "
            "reshape targets and sizes are written as the graph records them",
            "check the generated model with the input sizes you will use",
            severity="warning",
        )


def _emit(ctx: TorchNodeContext) -> None:
    emitter = ctx.converter(EMITTERS, TARGET)
    if emitter is None:
        return
    try:
        emitter(ctx)
    except (TypeError, ValueError, KeyError, IndexError) as error:
        # a node that breaks the operator's own rules (a required attribute
        # missing, an input of the wrong rank) is bad input, reported like the rest
        ctx.problem(
            "malformed-node",
            f"{ctx.node.op_type} node does not follow the ONNX operator spec ({error})",
            "check the model with onnx.checker.check_model(model, full_check=True)",
        )
        return
    if ctx.ok:
        _check_outputs_computed(ctx)


def _check_outputs_computed(ctx: TorchNodeContext) -> None:
    """Every output something reads must be computed by the node's code (an emitter
    that leaves one out would otherwise give a NameError only when the model runs)."""
    for index, value in enumerate(ctx.nodes[-1].outputs):
        if ctx.output_used(index) and id(value) not in ctx.program.defined and constant(value) is None:
            ctx.problem(
                "unsupported-attribute",
                f"output {value.name} of {ctx.node.op_type} is not computed by the generated code",
                "convert this op by hand: the writer has no form for this use of it",
            )


def find_problems(model: Model) -> list[Problem]:
    """Every op the PyTorch writer cannot emit and every pitfall, sorted."""
    return sort_problems(build_program(model).problems)


def write_pytorch(model: Model, outdir: str | Path, *, name: str | None = None) -> WrittenFiles:
    """Write ``model.py``, ``weights.pt`` and ``provenance.json`` into ``outdir``."""
    report = StepReport("write pytorch")
    with timed(report):
        program = build_program(model)
        errors = errors_of(program.problems)
        if errors:
            raise UnsupportedError(TARGET, errors)
        title = name or model.name
        source, lines = render_source(program, model, title)
        compile(source, "model.py", "exec")  # a generation bug fails here, before any file exists
        outdir = Path(outdir)
        with staged_output(outdir, protected=model.source.paths) as staging:
            (staging / "model.py").write_text(source)
            torch.save(program.state_dict(), staging / "weights.pt")
            write_sidecar(staging, provenance_record(program, lines))
    modules = [_module_entry(record) for record in program.modules.values()]
    warnings = [str(p) for p in program.problems if p.severity == "warning"]
    report.summary = (
        f"{len(program.modules)} submodules, {len(program.statements)} forward statements, "
        f"{len(program.buffers)} buffers from {len(model.graph)} nodes"
    )
    report.counts = {
        "submodules": len(program.modules),
        "statements": len(program.statements),
        "buffers": len(program.buffers),
        "nodes": len(model.graph),
    }
    report.warnings = warnings
    paths = [outdir / "model.py", outdir / "weights.pt", sidecar_path(outdir)]
    return WrittenFiles("pytorch", paths, report, {"modules": modules})


def _module_entry(record: ModuleRecord) -> dict[str, object]:
    return {
        "name": record.name,
        "type": record.type,
        "nodes": record.nodes,
        "sources": record.sources,
        "state_params": record.state_params,
    }


def render_source(program: Program, model: Model, title: str) -> tuple[str, dict[int, int]]:
    """The text of ``model.py``, and the line number of each forward statement."""
    outputs = [_output_expression(program, value) for value in program.graph.outputs]
    body = [
        "",
        "",
        "class Model(nn.Module):",
        f"{INDENT}def __init__(self) -> None:",
        f"{INDENT * 2}super().__init__()",
    ]
    for record in program.modules.values():
        body += render(f"self.{record.name} = ", record.constructor, INDENT * 2)
    for buffer in program.buffers.values():
        dtype = torch_dtype(buffer.array.dtype) or "None"  # None: PyTorch's default, load_state_dict casts
        placeholder = call("torch.zeros", ints(buffer.array.shape), dtype=dtype)
        body += render("", call("self.register_buffer", f'"{buffer.name}"', placeholder), INDENT * 2)
    body += [
        f"{INDENT * 2}# the weights come from weights.pt; the converted network runs in inference",
        f"{INDENT * 2}# mode, call .train() to fine-tune it",
        f"{INDENT * 2}self.eval()",
        "",
        f"{INDENT}def forward(self, {', '.join(program.arguments)}):",
    ]
    statement_offsets: dict[int, int] = {}
    for index, statement in enumerate(program.statements):
        statement_offsets[index] = len(body)
        body += render(f"{statement.target} = ", statement.expr, INDENT * 2)
    body.append(f"{INDENT * 2}return {', '.join(outputs)}")
    helpers = helper_source(program.helpers).splitlines() if program.helpers else []
    paths = ", ".join(model.source.paths) or f"a {model.source.format} model in memory"
    header = [
        f'"""PyTorch model generated by workbench from the {model.source.format} model "{title}".',
        "",
        f"Source: {paths} (opset {program.opset}, {len(program.graph)} nodes).",
        "Each submodule is named after the source layer it came from; provenance.json",
        "lists the graph nodes and source layers behind every submodule and forward line.",
        "",
        "    model = Model()",
        '    model.load_state_dict(torch.load("weights.pt", weights_only=True))',
        '"""',
        "import torch",
        "from torch import nn",
    ]
    if any("F." in line for line in body + helpers):
        header.append("from torch.nn import functional as F")
    if helpers:
        # functions for ops PyTorch has no exact built-in for (ONNX semantics, written out)
        header += ["", "", *helpers]
    lines = {index: len(header) + offset + 1 for index, offset in statement_offsets.items()}
    return "\n".join(header + body) + "\n", lines


def _output_expression(program: Program, value: ir.Value) -> str:
    data = constant(value)
    if data is not None and not value.is_graph_input():
        record = program.add_buffer(value, data, "output_constant")
        return f"self.{record.name}"
    return program.variable(value)


def provenance_record(program: Program, lines: dict[int, int]) -> dict[str, object]:
    """What provenance.json holds: the origin of every submodule, buffer and forward
    line, and the nodes that need no code of their own (constants read as literals or
    buffers, identities and inference-mode dropouts)."""
    covered = {name for record in program.modules.values() for name in record.nodes}
    covered |= {name for statement in program.statements for name in statement.nodes}
    return {
        "modules": [_module_entry(record) for record in program.modules.values()],
        "buffers": [
            {"name": b.name, "shape": list(b.array.shape), "nodes": b.nodes, "sources": b.sources}
            for b in program.buffers.values()
        ],
        "forward": [
            {
                "line": lines[index],
                "code": f"{statement.target} = {flat(statement.expr)}",
                "nodes": statement.nodes,
                "sources": statement.sources,
            }
            for index, statement in enumerate(program.statements)
        ],
        "inlined": [
            {"node": node.name, "op_type": node.op_type, "sources": list(provenance.sources(node))}
            for node in program.graph
            if (node.name or node.op_type) not in covered
        ],
        "inputs": [value.name for value in program.graph.inputs],
        "outputs": [value.name for value in program.graph.outputs],
    }
