"""``compare``: run two artifacts of a conversion chain on the same input and find
where, and why, they part.

Alignment is built on provenance. Each runner names its layer outputs and says
which source layers each stands for (``layer_sources``; a name without provenance
stands for itself). A candidate output is paired with the reference output of the
*latest* source layer it stands for: a convolution with a BatchNorm folded in
(sources ``conv``, ``bn``) is compared with the reference's ``bn`` output, never with
its ``conv`` output, which has no counterpart. When several candidate outputs
stand for the same reference output (a Linear exported as MatMul + Add), the last
one is the layer's output. Boundaries that exist on one side only are listed, not
compared.

The comparison streams: both runners' ``run_layers`` iterators are consumed
together, always advancing the one that is behind, and a tensor is kept only
until its partner arrives; what is kept per pair is ``ErrorStats``. Runners whose
order is only known by running (PyTorch) are run once more first, keeping names only.

``first_divergence`` is the first pair, in the reference's execution order, that
fails ``max_abs <= atol + rtol * max|reference|``: every compared layer before it
agrees, so its inputs agree and the layer itself is where things go wrong. The
likely cause is named when a known pitfall fits (``compare_stats.tensor_cause``,
BatchNorm constants when a side exposes them, layers that exist on one side only
and are affine maps of the input, and weights re-tried transposed or taken from
another layer of the same shape).
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from ..errors import InputError
from ..graph import provenance
from ..runners import Runner, open_runner
from ..runners.onnxruntime_runner import OnnxRuntimeRunner, _session, _set_value_info
from ..runners.recorded import RecordedRunner
from ..runners.torch_runner import TorchRunner
from .compare_stats import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    Cause,
    ErrorStats,
    affine_of,
    error_stats,
    tensor_cause,
)

# ---------------------------------------------------------------- results


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class PairComparison:
    """One aligned pair: a reference output and the candidate output it is compared with."""

    source: str
    target: str
    stats: ErrorStats
    ok: bool
    layers: tuple[str, ...] = ()  # the source layers (provenance) this pair stands for

    @property
    def label(self) -> str:
        """The source layers, with the output names when they say something else."""
        names = self.source if self.target == self.source else f"{self.source} → {self.target}"
        if not self.layers or self.layers == (self.source,):
            return names
        return f"{', '.join(self.layers)} ({names})"

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "max_abs": _finite(self.stats.max_abs),
            "mean_abs": _finite(self.stats.mean_abs),
            "max_rel": _finite(self.stats.max_rel),
            "cosine": self.stats.cosine,
        }


@dataclass(frozen=True)
class Divergence:
    """The first layer whose error jumps past tolerance, and the likely cause."""

    pair: PairComparison
    previous: PairComparison | None
    cause: Cause | None

    @property
    def source(self) -> str:
        return self.pair.source

    @property
    def target(self) -> str:
        return self.pair.target

    @property
    def explanation(self) -> str:
        stats = self.pair.stats
        if not stats.shapes_match:
            where = f"shape {list(stats.shape_a)} in the reference, {list(stats.shape_b)} in the candidate"
        else:
            before = f" (the previous layer agreed to {self.previous.stats.max_abs:.2g})" if self.previous else ""
            where = f"max abs error {stats.max_abs:.3g}{before}"
        text = f"layer {self.pair.label} diverges: {where}."
        if self.cause is None:
            return f"{text} No known pitfall fits; inspect this layer's attributes and weights."
        return f"{text} Likely cause: {self.cause.explanation}."

    def __repr__(self) -> str:
        return f"<Divergence {self.explanation}>"

    def _repr_html_(self) -> str:
        return f"<p><b>First divergence:</b> {html.escape(self.explanation)}</p>"

    def to_dict(self) -> dict:
        data = {
            **self.pair.to_dict(),
            "layers": list(self.pair.layers),
            "shape_reference": list(self.pair.stats.shape_a),
            "shape_candidate": list(self.pair.stats.shape_b),
            "cause": self.cause.kind if self.cause else None,
            "explanation": self.explanation,
            "previous": self.previous.to_dict() if self.previous else None,
        }
        if self.cause:
            data["cause_details"] = {k: v for k, v in self.cause.to_dict().items() if k not in ("kind", "explanation")}
        return data


@dataclass
class Comparison:
    reference: str
    candidate: str
    atol: float
    rtol: float
    outputs: list[PairComparison]
    layers: list[PairComparison] = field(default_factory=list)
    first_divergence: Divergence | None = None
    unmatched_reference: list[str] = field(default_factory=list)
    unmatched_candidate: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.outputs) and all(pair.ok for pair in self.outputs)

    def to_report(self) -> dict:
        """The ``workbench compare --report`` JSON."""
        return {
            "ok": self.ok,
            "outputs": [
                {**pair.to_dict(), "ok": pair.ok, "needed_atol": pair.stats.needed_atol(self.rtol)}
                for pair in self.outputs
            ],
            "layers": [pair.to_dict() for pair in self.layers],
            "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_report(), indent=2))

    def plot(self, path: str | Path | None = None):
        """Error per layer along depth (log scale), divergence marked; a Figure."""
        from .plots import plot_layer_errors

        return plot_layer_errors(self, path)

    def __repr__(self) -> str:
        verdict = "agree" if self.ok else "differ"
        lines = [
            f"<Comparison {self.reference} vs {self.candidate}: outputs {verdict} (atol {self.atol:g}, rtol {self.rtol:g})"
        ]
        lines += [f"  output {p.source} / {p.target}: max abs {p.stats.max_abs:.3g}" for p in self.outputs]
        if self.layers:
            failing = sum(not p.ok for p in self.layers)
            lines.append(f"  {len(self.layers)} layers compared, {failing} beyond tolerance")
        if self.first_divergence:
            lines.append(f"  {self.first_divergence.explanation}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        def rows(pairs: Sequence[PairComparison]) -> str:
            return "".join(
                f"<tr style='{'' if p.ok else 'color:#b00'}'><td>{html.escape(', '.join(p.layers))}</td>"
                f"<td>{html.escape(p.source)}</td><td>{html.escape(p.target)}</td><td>{p.stats.max_abs:.3g}</td><td>{p.stats.mean_abs:.3g}</td>"
                f"<td>{p.stats.max_rel:.3g}</td><td>{p.stats.cosine:.6f}</td></tr>"
                for p in pairs
            )

        head = "<tr><th>source layers</th><th>reference</th><th>candidate</th><th>max abs</th><th>mean abs</th><th>max rel</th><th>cosine</th></tr>"
        verdict = "agree" if self.ok else "differ"
        colour = "#070" if self.ok else "#b00"
        divergence = (
            f"<p><b>First divergence:</b> {html.escape(self.first_divergence.explanation)}</p>"
            if self.first_divergence
            else ""
        )
        figure = ""
        if self.layers:
            buffer = io.BytesIO()
            self.plot().savefig(buffer, format="png", dpi=80)
            figure = f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
        layers = (
            f"<details><summary>{len(self.layers)} layers</summary><table>{head}{rows(self.layers)}</table></details>"
            if self.layers
            else ""
        )
        return (
            f"<div><b>{html.escape(self.reference)} vs {html.escape(self.candidate)}</b>: "
            f"<span style='color:{colour}'>outputs {verdict}</span> "
            f"<small>(atol {self.atol:g}, rtol {self.rtol:g}, {self.seconds:.2f} s)</small>"
            f"<table>{head}{rows(self.outputs)}</table>{divergence}{figure}{layers}</div>"
        )


# ---------------------------------------------------------------- inputs and runners


def _as_runner(artifact: Any) -> Runner:
    if isinstance(artifact, (tuple, list)):
        return open_runner(*artifact)
    return open_runner(artifact)


def _describe(artifact: Any, runner: Runner) -> str:
    """Which files or model, in which runtime: ``net.prototxt + net.caffemodel (opencv)``."""
    if isinstance(artifact, (str, Path)):
        what = Path(artifact).name
    elif isinstance(artifact, (tuple, list)):
        what = " + ".join(Path(str(a)).name for a in artifact)
    elif hasattr(artifact, "paths") and hasattr(artifact, "target"):  # WrittenFiles
        what = " + ".join(p.name for p in artifact.paths if not p.name.endswith("provenance.json"))
    elif isinstance(artifact, Runner):
        what = getattr(artifact, "description", artifact.name)
    else:
        what = getattr(artifact, "name", type(artifact).__name__)
    return f"{what} ({runner.name})"


def _default_inputs(artifacts: Sequence[Any], runners: Sequence[Runner]) -> list[np.ndarray]:
    """The recorded input if a side has one, else seeded random inputs of the
    declared shapes (an ONNX model's inputs, or a factory's ``input_shape``)."""
    for runner in runners:
        if isinstance(runner, RecordedRunner) and runner.inputs:
            return list(runner.inputs.values())
    rng = np.random.default_rng(0)
    for runner in runners:
        if isinstance(runner, OnnxRuntimeRunner):
            shapes = [tuple(value.shape or ("?",)) for value in runner.model.graph.inputs]
            if all(isinstance(d, int) for shape in shapes for d in shape):
                return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    for artifact in artifacts:
        spec = artifact[0] if isinstance(artifact, (tuple, list)) else artifact
        if isinstance(spec, str) and ":" in spec and not Path(spec).exists():
            import importlib

            module_name, _, attribute = spec.partition(":")
            shape = getattr(getattr(importlib.import_module(module_name), attribute, None), "input_shape", None)
            if shape:
                return [rng.standard_normal(tuple(shape)).astype(np.float32)]
    raise InputError(
        "no input to compare on",
        expected="inputs=..., a recorded input, or a model with fixed input shapes",
        found="models whose input shapes are not fixed",
        remedy="pass inputs (an array, a list, or a dict by input name; --input x.npy)",
    )


def _input_list(inputs: Any, runner: Runner) -> list[np.ndarray]:
    if isinstance(inputs, (str, Path)):
        inputs = np.load(inputs, allow_pickle=False)
    if isinstance(inputs, np.ndarray):
        return [inputs]
    if isinstance(inputs, Mapping):
        if all(name in inputs for name in runner.input_names):
            return [np.asarray(inputs[name]) for name in runner.input_names]
        return [np.asarray(value) for value in inputs.values()]
    return [np.asarray(value) for value in inputs]


# ---------------------------------------------------------------- alignment


@dataclass(frozen=True)
class Entry:
    """One output ``run_layers`` will yield: its name, which call of that name, and
    the source layers it stands for."""

    name: str
    occurrence: int
    sources: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return self.sources or (self.name,)


def layer_entries(runner: Runner, feed: list[np.ndarray], name_map: Any = None) -> list[Entry]:
    """The runner's layer outputs in order, with provenance (``name_map`` first)."""
    lister = getattr(runner, "layer_names", None)
    names = lister(feed) if lister is not None else [name for name, _ in runner.run_layers(feed)]
    known = getattr(runner, "layer_sources", None) or {}
    seen: dict[str, int] = {}
    entries = []
    for name in names:
        sources = tuple(name_map.sources_of(name) or ()) if name_map is not None else ()
        entries.append(Entry(name, seen.get(name, 0), sources or tuple(known.get(name, ()))))
        seen[name] = seen.get(name, 0) + 1
    return entries


def align(reference: Sequence[Entry], candidate: Sequence[Entry]) -> list[tuple[int, int]]:
    """``(reference index, candidate index)`` pairs in reference order.

    A source layer's position is the last reference entry standing for it. A
    candidate entry goes to the latest position among the sources it is the last
    candidate entry for; of several candidate entries going to one reference
    entry, the last is the boundary.
    An output without provenance (a recording) is matched by its name (the MXNet
    reader names values as MXNet does). Two artifacts of one graph also share value names: an entry left over on both
    sides with the same name, call and sources (the first call of a shared ReLU)
    is paired too, as long as the pairs stay in the same order on both sides.
    """
    by_source: dict[str, int] = {}
    by_name: dict[str, int] = {}
    unsourced: dict[str, int] = {}
    for index, entry in enumerate(reference):
        for source in entry.keys:
            by_source[source] = index
        by_name[entry.name] = index
        if not entry.sources:
            unsourced[entry.name] = index
    # a source layer ends at the last candidate entry that stands for it: an earlier
    # one is inside it (the Flatten before an InnerProduct that a BatchNorm was folded into)
    last_mention = {source: index for index, entry in enumerate(candidate) for source in entry.sources}
    chosen: dict[int, int] = {}
    for index, entry in enumerate(candidate):
        ending = [source for source in entry.sources if last_mention[source] == index]
        if entry.sources and not ending:
            continue
        hits = [by_source[source] for source in ending if source in by_source]
        # an output without provenance (a recording) stands for the value of its name
        if entry.name in unsourced:
            hits.append(unsourced[entry.name])
        if not entry.sources and entry.name in by_name:
            hits.append(by_name[entry.name])
        if hits:
            chosen[max(hits)] = index
    taken = set(chosen.values())
    same = {(e.name, e.occurrence, e.keys): j for j, e in enumerate(candidate) if j not in taken}
    for index, entry in enumerate(reference):
        match = same.get((entry.name, entry.occurrence, entry.keys))
        if index in chosen or match is None:
            continue
        before = [c for r, c in chosen.items() if r < index]
        after = [c for r, c in chosen.items() if r > index]
        if all(c < match for c in before) and all(c > match for c in after):
            chosen[index] = match
    return sorted(chosen.items())


def _numbered(stream: Iterator[tuple[str, np.ndarray]], index: Mapping[tuple[str, int], int]):
    seen: dict[str, int] = {}
    for name, array in stream:
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        yield index.get((name, occurrence)), name, array


# ---------------------------------------------------------------- causes needing the models


@dataclass(frozen=True)
class BatchNormConstants:
    gamma: np.ndarray
    beta: np.ndarray
    var: np.ndarray
    eps: float


def _batchnorm_constants(runner: Runner, name: str) -> BatchNormConstants | None:
    """The constants of the BatchNorm that computes ``name``, if the runner shows them."""
    if isinstance(runner, OnnxRuntimeRunner):
        node = runner.producer.get(name)
        if node is None or node.op_type != "BatchNormalization":
            return None
        tensors = [v.const_value if v is not None else None for v in node.inputs[1:5]]
        if len(tensors) < 4 or any(t is None for t in tensors):
            return None
        gamma, beta, _, var = (t.numpy().astype(np.float64).reshape(-1) for t in tensors)
        eps = node.attributes.get("epsilon")
        return BatchNormConstants(gamma, beta, var, eps.as_float() if eps is not None else 1e-5)
    if isinstance(runner, TorchRunner):
        import torch

        module = dict(runner.module.named_modules()).get(name)
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
            ones = np.ones(module.num_features)
            return BatchNormConstants(
                module.weight.detach().double().numpy() if module.weight is not None else ones,
                module.bias.detach().double().numpy() if module.bias is not None else 0 * ones,
                module.running_var.double().numpy(),
                float(module.eps),
            )
    return None


def batchnorm_cause(
    reference: np.ndarray,
    candidate: np.ndarray,
    constants: Mapping[str, BatchNormConstants | None],
    atol: float,
    rtol: float,
) -> Cause | None:
    """Test the two BatchNorm pitfalls with one side's constants (``gamma, beta, var, eps``).

    With ``this`` the output of the side whose constants are known and ``other`` the
    other side's: fix_gamma fits when ``this == gamma * (other - beta) + beta`` (the
    other side used gamma = 1). An epsilon mismatch gives, per channel,
    ``(this - beta) / (other - beta) = r = sqrt((var + eps_other) / (var + eps_this))``,
    so ``eps_other = r^2 (var + eps_this) - var`` is one number for all channels.
    """
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        return None
    for side, known in constants.items():
        if known is None or known.gamma.shape != (a.shape[1],):
            continue
        this, other = (b, a) if side == "candidate" else (a, b)
        channel_shape = (1, a.shape[1]) + (1,) * (a.ndim - 2)
        gamma, beta = known.gamma.reshape(channel_shape), known.beta.reshape(channel_shape)
        tolerance = atol + rtol * float(np.abs(this).max(initial=0.0))
        if float(np.abs(this - (gamma * (other - beta) + beta)).max(initial=0.0)) <= tolerance:
            return Cause(
                "fix-gamma",
                f"the outputs match if the {side}'s BatchNorm gamma were 1: the {side} applies a stored "
                f"gamma ({known.gamma.min():.3g}–{known.gamma.max():.3g}) that the other side treats as 1 "
                "(MXNet fix_gamma=True); set gamma to 1 when converting",
                {"gamma_min": float(known.gamma.min()), "gamma_max": float(known.gamma.max())},
            )
        centred_this, centred_other = np.moveaxis(this - beta, 1, 0), np.moveaxis(other - beta, 1, 0)
        flat_this = centred_this.reshape(a.shape[1], -1)
        flat_other = centred_other.reshape(a.shape[1], -1)
        usable = np.abs(flat_other) > 1e-3 * float(np.abs(flat_other).max(initial=0.0))
        ratios = np.where(usable, flat_this / np.where(usable, flat_other, 1.0), np.nan)
        with np.errstate(all="ignore"):
            ratio = np.nanmedian(ratios, axis=1)
        valid = np.isfinite(ratio)
        if not valid.any():
            continue
        other_eps = ratio[valid] ** 2 * (known.var[valid] + known.eps) - known.var[valid]
        estimate = float(np.median(other_eps))
        agreeing = np.abs(other_eps - estimate) <= 0.2 * abs(estimate) + 1e-7
        if estimate > 0 and agreeing.mean() >= 0.8 and not np.isclose(estimate, known.eps, rtol=0.2):
            ref_eps, cand_eps = (estimate, known.eps) if side == "candidate" else (known.eps, estimate)
            return Cause(
                "bn-eps",
                f"BatchNorm epsilon differs: the reference behaves like eps={ref_eps:.3g}, the candidate "
                f"like eps={cand_eps:.3g} (the error follows 1/sqrt(var+eps)); MXNet defaults to 1e-3, "
                "Caffe and PyTorch to 1e-5 — write the source's eps",
                {"reference_eps": ref_eps, "candidate_eps": cand_eps},
            )
    return None


WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def evaluate_node(node: ir.Node, arrays: Mapping[int, np.ndarray]) -> list[np.ndarray]:
    """Run one node alone, its inputs given by index (constants taken from the graph)."""
    names = [f"input_{i}" if value is not None else "" for i, value in enumerate(node.inputs)]
    proto = ir.serde.serialize_node(node)
    del proto.input[:]
    proto.input.extend(names)
    del proto.output[:]
    outputs = [f"output_{i}" for i in range(len(node.outputs))]
    proto.output.extend(outputs)
    feeds, infos = {}, []
    for index, value in enumerate(node.inputs):
        if value is None:
            continue
        array = arrays[index] if index in arrays else value.const_value.numpy()
        feeds[names[index]] = np.ascontiguousarray(array)
        info = onnx.ValueInfoProto(name=names[index])
        _set_value_info(info, feeds[names[index]])
        infos.append(info)
    graph = onnx.helper.make_graph([proto], "node", infos, [onnx.ValueInfoProto(name=o) for o in outputs])
    opsets = [onnx.helper.make_opsetid(domain, version) for domain, version in node.graph.opset_imports.items()]
    model = onnx.helper.make_model(graph, opset_imports=opsets, ir_version=8)
    return _session(model.SerializeToString()).run(outputs, feeds)


def _weight_variants(node: ir.Node) -> Iterator[tuple[str, np.ndarray, str]]:
    """(kind, weight, description) to re-try the node with: its weight transposed,
    and every other initializer of the same shape (a weight bound to the wrong layer)."""
    weight_value = node.inputs[1]
    weight = weight_value.const_value.numpy()
    if weight.ndim == 2 and weight.shape[0] == weight.shape[1]:
        yield "transposed-weight", weight.T, "its weight transposed"
    if weight.ndim == 4 and weight.shape[2] == weight.shape[3] and weight.shape[2] > 1:
        yield "transposed-weight", weight.transpose(0, 1, 3, 2), "its kernels transposed (kh ↔ kw)"
    if weight.ndim == 4 and weight.shape[0] == weight.shape[1]:
        yield "transposed-weight", weight.transpose(1, 0, 2, 3), "its weight transposed (Cout ↔ Cin)"
    users = {}
    for other in node.graph:
        for index, value in enumerate(other.inputs):
            if value is not None and value.is_initializer():
                users.setdefault(value.name, (other, index))
    for name, value in node.graph.initializers.items():
        if value is weight_value or value.const_value is None or tuple(value.shape or ()) != weight.shape:
            continue
        owner, index = users.get(name, (None, 0))
        label = ", ".join(provenance.sources(owner)) or owner.name if owner is not None else name
        params = ", ".join(provenance.params(owner).get(index, ())) if owner is not None else ""
        yield (
            "misbound-weight",
            value.const_value.numpy(),
            f"the weight now bound to {label}" + (f" ({params})" if params else ""),
        )


def weight_cause(
    runner: Runner, name: str, feed: list[np.ndarray], wanted: np.ndarray, atol: float, rtol: float, side: str
) -> Cause | None:
    """Re-run the node that computes ``name`` with other weights; a variant that
    reproduces ``wanted`` (the other side's output) names the mistake."""
    if not isinstance(runner, OnnxRuntimeRunner):
        return None
    node = runner.producer.get(name)
    if node is None or node.op_type not in WEIGHTED_OPS or len(node.inputs) < 2 or node.inputs[1] is None:
        return None
    if node.inputs[1].const_value is None or node.inputs[0] is None:
        return None
    computed = {
        index: runner.value(value.name, feed)
        for index, value in enumerate(node.inputs)
        if value is not None and index != 1 and value.const_value is None
    }
    tolerance = atol + rtol * float(np.abs(wanted).max(initial=0.0))
    label = ", ".join(provenance.sources(node)) or node.name
    for kind, weight, description in _weight_variants(node):
        result = evaluate_node(node, {**computed, 1: weight})[0]
        if result.shape == wanted.shape and float(np.abs(result - wanted).max(initial=0.0)) <= tolerance:
            what = (
                "transposed weights (a layout mismatch of the weight)"
                if kind == "transposed-weight"
                else ("weights bound to the wrong layer (matched by name, or swapped)")
            )
            return Cause(
                kind,
                f"the {side}'s {node.op_type} {label} reproduces the other side's output when given "
                f"{description}: {what}",
                {"node": node.name, "variant": description},
            )
    return None


def preprocessing_cause(found: Mapping[str, tuple[np.ndarray, np.ndarray]], side: str) -> Cause:
    maps = "; ".join(f"{name} = x * {_span(scale)} + {_span(shift)}" for name, (scale, shift) in found.items())
    return Cause(
        "preprocessing",
        f"the {side} transforms its input ({maps}) and the other side has no such layer: "
        "preprocessing (x * scale - mean) is missing on one side; add it, or absorb it into "
        "the first layer's weights",
        {"layers": list(found)},
    )


def _span(values: np.ndarray) -> str:
    low, high = float(values.min()), float(values.max())
    return f"{low:.4g}" if math.isclose(low, high, rel_tol=1e-6, abs_tol=1e-9) else f"[{low:.4g}…{high:.4g}]"


# ---------------------------------------------------------------- compare


@dataclass
class _Side:
    runner: Runner
    feed: list[np.ndarray]
    entries: list[Entry]
    pair_of: dict[int, int]  # entry index -> pair id
    order: list[int]  # pair ids in this side's order
    probes: set[int]  # unpaired entries before the first paired one
    stream: Iterator
    cursor: int = 0
    received: set[int] = field(default_factory=set)
    buffer: dict[int, tuple[str, np.ndarray]] = field(default_factory=dict)
    finals: dict[str, np.ndarray] = field(default_factory=dict)
    preprocessing: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    done: bool = False

    def next_needed(self) -> float:
        while self.cursor < len(self.order) and self.order[self.cursor] in self.received:
            self.cursor += 1
        return self.order[self.cursor] if self.cursor < len(self.order) else math.inf


def _side(runner: Runner, feed: list[np.ndarray], entries: list[Entry], pairs, which: int) -> _Side:
    pair_of = {pair[which]: pid for pid, pair in enumerate(pairs)}
    first = min(pair_of, default=len(entries))
    index = {(e.name, e.occurrence): i for i, e in enumerate(entries)}
    if "names" in inspect.signature(runner.run_layers).parameters:
        # a runner that can skip outputs fetches only what is compared or probed
        needed = {entries[i].name for i in [*pair_of, *range(first)]} | set(runner.output_names)
        stream = runner.run_layers(feed, names=needed)
    else:
        stream = runner.run_layers(feed)
    return _Side(
        runner,
        feed,
        entries,
        pair_of,
        [pair_of[i] for i in sorted(pair_of)],
        set(range(first)),
        _numbered(stream, index),
    )


def _final_pairs(ref: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray], atol: float, rtol: float):
    pairs = []
    for (ref_name, a), (cand_name, b) in zip(ref.items(), cand.items()):
        stats = error_stats(a, b)
        pairs.append(PairComparison(ref_name, cand_name, stats, stats.passes(atol, rtol)))
    return pairs


def compare(
    reference: Any,
    candidate: Any,
    inputs: Any = None,
    *,
    name_map: Any = None,
    per_layer: bool = False,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> Comparison:
    """Compare two artifacts (anything ``open_runner`` takes, or runners) on ``inputs``.

    Final outputs are paired by position. With ``per_layer``, every layer boundary
    both sides share is compared and the first divergence is explained.
    ``name_map`` (a ``NameMap`` from ``map_names``) overrides the candidate's provenance.
    """
    start = time.perf_counter()
    ref_runner, cand_runner = _as_runner(reference), _as_runner(candidate)
    if inputs is None:
        inputs = _default_inputs([reference, candidate], [ref_runner, cand_runner])
    ref_feed, cand_feed = _input_list(inputs, ref_runner), _input_list(inputs, cand_runner)
    result = Comparison(_describe(reference, ref_runner), _describe(candidate, cand_runner), atol, rtol, [])
    if not per_layer:
        result.outputs = _final_pairs(ref_runner.run(ref_feed), cand_runner.run(cand_feed), atol, rtol)
        result.seconds = time.perf_counter() - start
        return result

    ref_entries = layer_entries(ref_runner, ref_feed)
    cand_entries = layer_entries(cand_runner, cand_feed, name_map)
    pairs = align(ref_entries, cand_entries)
    ref = _side(ref_runner, ref_feed, ref_entries, pairs, 0)
    cand = _side(cand_runner, cand_feed, cand_entries, pairs, 1)
    stats: dict[int, PairComparison] = {}
    first_failing = math.inf
    first_tensors: tuple[np.ndarray, np.ndarray] | None = None
    first_cause: Cause | None = None
    shapes_seen: list[tuple[int, ...]] = []

    def settle(pid: int, a: np.ndarray, b: np.ndarray) -> None:
        nonlocal first_failing, first_tensors, first_cause
        r, c = pairs[pid]
        values = error_stats(a, b)
        passed = values.passes(atol, rtol)
        layers = ref_entries[r].sources or cand_entries[c].sources
        stats[pid] = PairComparison(ref_entries[r].name, cand_entries[c].name, values, passed, layers)
        if passed and a.shape not in shapes_seen:
            shapes_seen.append(a.shape)
        if not passed and pid < first_failing:
            first_failing, first_tensors = pid, (a, b)
            first_cause = tensor_cause(a, b, atol, rtol, tuple(shapes_seen))

    def pull(side: _Side, other: _Side, is_reference: bool) -> None:
        try:
            index, name, array = next(side.stream)
        except StopIteration:
            side.done = True
            return
        if name in side.runner.output_names:
            side.finals[name] = array
        if index in side.probes:
            for given in side.feed:
                fit = affine_of(array, given, atol) if np.shape(given) == np.shape(array) else None
                if fit is not None:
                    side.preprocessing[name] = fit
        pid = side.pair_of.get(index) if index is not None else None
        if pid is None:
            return
        side.received.add(pid)
        if pid in other.buffer:
            partner = other.buffer.pop(pid)[1]
            settle(pid, *((array, partner) if is_reference else (partner, array)))
        else:
            side.buffer[pid] = (name, array)

    while not (ref.done and cand.done):
        if cand.done or (not ref.done and ref.next_needed() <= cand.next_needed()):
            pull(ref, cand, True)
        else:
            pull(cand, ref, False)

    missing_finals = [s for s in (ref, cand) if set(s.finals) != set(s.runner.output_names)]
    for side in missing_finals:
        side.finals = side.runner.run(side.feed)
    result.outputs = _final_pairs(
        {n: ref.finals[n] for n in ref_runner.output_names},
        {n: cand.finals[n] for n in cand_runner.output_names},
        atol,
        rtol,
    )
    result.layers = [stats[pid] for pid in sorted(stats)]
    paired_ref, paired_cand = {r for r, _ in pairs}, {c for _, c in pairs}
    result.unmatched_reference = [e.name for i, e in enumerate(ref_entries) if i not in paired_ref]
    result.unmatched_candidate = [e.name for i, e in enumerate(cand_entries) if i not in paired_cand]
    if first_tensors is not None:
        result.first_divergence = _explain(
            stats, first_failing, first_tensors, first_cause, ref, cand, pairs, atol, rtol
        )
    result.seconds = time.perf_counter() - start
    return result


AFFINE_KINDS = ("preprocessing", "offset", "bn-eps", "fix-gamma")


def _explain(stats, pid, tensors, cause, ref: _Side, cand: _Side, pairs, atol, rtol) -> Divergence:
    a, b = tensors
    r, c = pairs[pid]
    ref_name, cand_name = ref.entries[r].name, cand.entries[c].name
    earlier = [stats[p] for p in sorted(stats) if p < pid]
    if cause is None or cause.kind in AFFINE_KINDS:
        preprocessing = [
            preprocessing_cause(side.preprocessing, label)
            for side, label in ((ref, "reference"), (cand, "candidate"))
            if side.preprocessing
        ]
        if len(preprocessing) == 1:
            cause = preprocessing[0]
    if cause is None or cause.kind in ("bn-eps", "fix-gamma", "offset"):
        constants = {
            "candidate": _batchnorm_constants(cand.runner, cand_name),
            "reference": _batchnorm_constants(ref.runner, ref_name),
        }
        cause = batchnorm_cause(a, b, constants, atol, rtol) or cause
    if cause is None:
        cause = weight_cause(cand.runner, cand_name, cand.feed, a, atol, rtol, "candidate") or weight_cause(
            ref.runner, ref_name, ref.feed, b, atol, rtol, "reference"
        )
    return Divergence(stats[pid], earlier[-1] if earlier else None, cause)


def layer_tensors(
    reference: Any, candidate: Any, source: str, target: str, inputs: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's ``source`` output and the candidate's ``target`` output (the
    last of each name), for a closer look at one layer (``plots.plot_difference``)."""
    ref_runner, cand_runner = _as_runner(reference), _as_runner(candidate)
    if inputs is None:
        inputs = _default_inputs([reference, candidate], [ref_runner, cand_runner])
    found = []
    for runner, name in ((ref_runner, source), (cand_runner, target)):
        kept = None
        for layer, array in runner.run_layers(_input_list(inputs, runner)):
            if layer == name:
                kept = array
        if kept is None:
            raise InputError(f"{runner.name} has no layer output {name!r}", remedy="use names from Comparison.layers")
        found.append(kept)
    return found[0], found[1]


__all__ = ["Comparison", "Divergence", "PairComparison", "align", "compare", "layer_entries", "layer_tensors"]
