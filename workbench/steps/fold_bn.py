"""``fold_bn``: fold every per-channel affine map that follows a weighted layer into its weights.

A *per-channel affine* node maps each channel ``c`` of its input as ``y = s_c * x + t_c``:

* an inference-mode BatchNormalization with ``gamma, beta, mean, var, eps``::

      s = gamma / sqrt(var + eps),  t = beta - mean * s

* Mul, Add, Sub or Div with one constant operand that is the same along every axis
  but the channel axis (axis 1): ``x * c`` (``s = c``), ``x + c`` (``t = c``),
  ``x - c``, ``c - x`` (``s = -1, t = c``), ``x / c`` (``s = 1 / c``). This is how a
  Caffe ``Scale`` (Mul, then Add with ``bias_term``) and ``Bias`` (Add) arrive from
  the Caffe reader, and how MXNet's ``broadcast_mul`` or a PyTorch ``x * self.scale``
  by a ``[1, C, 1, 1]`` parameter arrive from theirs.

A *chain* is a run of such nodes, each the only reader of the one before. Two maps
compose into one: applying ``(s1, t1)`` then ``(s2, t2)`` is ``(s2 * s1, s2 * t1 + t2)``,
so BatchNorm → Scale, Scale → BatchNorm, or any number of them in any order is one
``(s, t)``.

When the chain reads the output of a layer that is linear in its weights, ``x = W * a + b``
with one row of ``W`` per output channel, the two merge into one layer::

    W' = W * s          (each output channel's weights scaled by its s)
    b' = s * b + t      (for a BatchNorm alone: (b - mean) * s + beta)

Output channels sit on axis 0 of a Conv weight ``[Cout, Cin/group, kh, kw]``, on
axis 1 of each group of a ConvTranspose weight ``[Cin, Cout/group, kh, kw]``, on
the columns of a Gemm/MatMul weight ``[K, N]`` (the rows with ``transB=1``). A
Gemm's ``beta * C`` is its ``b``; a MatMul becomes a Gemm that takes the new bias.

A BatchNormalization that cannot be folded (it does not follow a weighted layer, or
that layer's output has other readers, whose values must not change) becomes, with
the affine nodes after it, one per-channel ``Mul(x, s) + Add(t)`` with constants
shaped ``[C, 1, 1]`` (one 1 per spatial axis), the form a Caffe ``Scale`` layer
computes; Mul/Add chains without one stay as they are. Like onnxscript's rewriter,
everything left unfolded is reported with the reason.

Weights are computed in float64 and stored in the weight's own dtype. The folded
node keeps the layer's provenance, gains the source layers of every folded node
and their parameter names (those that scale the weight on the weight, all of them
on the bias), and records each fold as a transform.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from ..errors import WorkbenchError
from ..graph import Model, StepReport, provenance
from ..graph.builder import initializer_value
from ..graph.names import UniqueNames
from ..graph.report import timed
from ..graph.shapes import constant, infer_shapes

DEFAULT_EPSILON = 1e-5  # the ONNX default for BatchNormalization's epsilon
NOT_CONSTANT = "is computed in the graph, not a constant (simplify the model first)"
CHANNEL_AXIS = 1
ARITHMETIC_OPS = ("Mul", "Add", "Sub", "Div")
BATCHNORM = "BatchNormalization"


@dataclass(frozen=True)
class ChannelAffine:
    """``y[:, c] = scale[c] * x[:, c] + shift[c]`` (float64, one value per channel)."""

    scale: np.ndarray
    shift: np.ndarray

    @property
    def channels(self) -> int:
        return self.scale.shape[0]

    def then(self, after: ChannelAffine) -> ChannelAffine:
        """This map followed by ``after``."""
        return ChannelAffine(after.scale * self.scale, after.scale * self.shift + after.shift)

    def folded_bias(self, bias: np.ndarray) -> np.ndarray:
        """``s * b + t`` for a layer bias ``b``."""
        return self.scale * bias + self.shift


@dataclass(frozen=True)
class AffineStep:
    """One per-channel affine node of a chain, with the source parameters behind it."""

    node: ir.Node
    affine: ChannelAffine
    scale_params: tuple[str, ...]  # source parameters that shape ``s`` (and so the folded weight)
    shift_params: tuple[str, ...]  # the others, which reach the bias only
    description: str  # "BatchNormalization bn1 (eps=1e-05)", "Mul scale1 (per-channel scale)"


@dataclass
class FoldedLayer:
    """The new weight, bias and attributes of a layer a chain was folded into."""

    op_type: str
    weight: np.ndarray
    bias: np.ndarray
    attributes: dict[str, ir.Attr] = field(default_factory=dict)


def _float64(value: ir.Value | None) -> np.ndarray | None:
    data = constant(value)
    return None if data is None else np.asarray(data, dtype=np.float64)


def _stored_dtype(value: ir.Value | None) -> np.dtype:
    """The dtype a constant is stored in (folded constants keep it)."""
    data = constant(value)
    return data.dtype if data is not None else np.dtype(np.float32)


def _label(node: ir.Node) -> str:
    """How the report names a node: its source layers, else its node name."""
    return ", ".join(provenance.sources(node)) or node.name or node.op_type


# ---------------------------------------------------------------- reading affine nodes


def _batchnorm_step(bn: ir.Node, channels: int) -> AffineStep | str:
    """The BatchNormalization's map, or why its constants cannot be used."""
    training = bn.attributes.get("training_mode")
    if training is not None and training.as_int() == 1:
        return "it runs in training mode (statistics come from the batch)"
    if any(output.uses() or output.is_graph_output() for output in bn.outputs[1:]):
        return "its running-statistics outputs are used"
    arrays = [_float64(value) for value in bn.inputs[1:5]]
    if len(arrays) < 4 or any(array is None for array in arrays):
        return f"its gamma, beta, mean or var {NOT_CONSTANT}"
    gamma, beta, mean, var = (np.asarray(array).reshape(-1) for array in arrays)
    if not gamma.shape == beta.shape == mean.shape == var.shape == (channels,):
        return f"its gamma, beta, mean and var do not all have one value for each of the {channels} channels"
    eps_attr = bn.attributes.get("epsilon")
    eps = eps_attr.as_float() if eps_attr is not None else DEFAULT_EPSILON
    scale = gamma / np.sqrt(var + eps)
    params = provenance.params(bn)
    gamma_names, beta_names, mean_names, var_names = (params.get(index, ()) for index in range(1, 5))
    return AffineStep(
        bn,
        ChannelAffine(scale, beta - mean * scale),
        (*gamma_names, *var_names),
        (*beta_names, *mean_names),
        f"{BATCHNORM} {_label(bn)} (eps={eps:g})",
    )


def per_channel(array: np.ndarray, rank: int, channels: int) -> np.ndarray | str:
    """A constant broadcast against a rank-``rank`` tensor as one value per channel
    (``[C]``), or why it is not one: it must be 1 along every axis but the channel axis."""
    if array.ndim > rank:
        return f"its constant has {array.ndim} dimensions, more than the {rank} of the data"
    padded = (1,) * (rank - array.ndim) + tuple(array.shape)
    varying = [axis for axis, size in enumerate(padded) if size != 1 and axis != CHANNEL_AXIS]
    if varying:
        return f"its constant {list(array.shape)} varies along axis {varying[0]}, not only along the channels"
    if padded[CHANNEL_AXIS] not in (1, channels):
        return f"its constant has {padded[CHANNEL_AXIS]} values along the channels, the data {channels}"
    return np.broadcast_to(np.asarray(array, np.float64).reshape(-1), (channels,)).copy()


def _arithmetic_map(op: str, values: np.ndarray, constant_first: bool) -> ChannelAffine | str:
    ones, zeros = np.ones_like(values), np.zeros_like(values)
    if op == "Mul":
        return ChannelAffine(values, zeros)
    if op == "Add":
        return ChannelAffine(ones, values)
    if op == "Sub":
        return ChannelAffine(-ones, values) if constant_first else ChannelAffine(ones, -values)
    if constant_first:
        return "it divides a constant by the data, which is not affine"
    if not np.all(values):
        return "it divides by a constant that holds zeros"
    return ChannelAffine(1.0 / values, zeros)


ARITHMETIC_ROLES = {"Mul": "scale", "Add": "shift", "Sub": "shift", "Div": "scale"}


def _arithmetic_step(node: ir.Node, data_index: int, rank: int, channels: int) -> AffineStep | str:
    """A Mul/Add/Sub/Div of the data (input ``data_index``) with a per-channel constant."""
    if len(node.inputs) != 2:
        return f"the {node.op_type} has {len(node.inputs)} inputs"
    constant_index = 1 - data_index
    raw = constant(node.inputs[constant_index])
    if raw is None:
        return f"its other operand {NOT_CONSTANT}"
    if not np.issubdtype(raw.dtype, np.floating):
        return f"its constant is {raw.dtype}, not floating point"
    values = per_channel(raw, rank, channels)
    if isinstance(values, str):
        return values
    affine = _arithmetic_map(node.op_type, values, constant_first=constant_index == 0)
    if isinstance(affine, str):
        return affine
    names = provenance.params(node).get(constant_index, ())
    role = ARITHMETIC_ROLES[node.op_type]
    scales = names if role == "scale" else ()
    return AffineStep(
        node, affine, scales, names if role == "shift" else (), f"{node.op_type} {_label(node)} (per-channel {role})"
    )


def is_candidate(node: ir.Node) -> bool:
    """Whether the node may be a per-channel affine map: a BatchNormalization, or a
    Mul/Add/Sub/Div of a computed value with a constant."""
    if node.domain != "":
        return False
    if node.op_type == BATCHNORM:
        return True
    return node.op_type in ARITHMETIC_OPS and sum(constant(value) is not None for value in node.inputs) == 1


def read_step(node: ir.Node, data_index: int, rank: int | None, channels: int) -> AffineStep | str:
    """The node as a per-channel affine map of its input ``data_index``, or why it is not one."""
    if node.op_type == BATCHNORM:
        return _batchnorm_step(node, channels) if data_index == 0 else "it reads the value as a parameter"
    if rank is None:
        return "the rank of its input is unknown, so its constant cannot be placed along the channels"
    return _arithmetic_step(node, data_index, rank, channels)


# ---------------------------------------------------------------- folding into a layer


def _layer_bias(node: ir.Node, channels: int) -> np.ndarray | str:
    """The node's bias input (input 2) as float64, zeros when absent."""
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return np.zeros(channels)
    bias = _float64(node.inputs[2])
    if bias is None:
        return f"the {node.op_type} bias {NOT_CONSTANT}"
    return bias.reshape(-1)


def _groups(node: ir.Node) -> int:
    group = node.attributes.get("group")
    return group.as_int() if group is not None else 1


def _transposed(node: ir.Node) -> bool:
    trans_b = node.attributes.get("transB")
    return trans_b is not None and trans_b.as_int() == 1


def layer_geometry(node: ir.Node) -> tuple[int, int] | str:
    """``(output rank, output channels)`` of a weighted layer, read from its weight."""
    weight = constant(node.inputs[1]) if len(node.inputs) > 1 else None
    if weight is None:
        return f"the {node.op_type} weight {NOT_CONSTANT}"
    if node.op_type in ("Conv", "ConvTranspose") and weight.ndim < 3:
        return f"the {node.op_type} weight is {weight.ndim}-D"
    if node.op_type == "Conv":
        return weight.ndim, weight.shape[0]
    if node.op_type == "ConvTranspose":
        return weight.ndim, weight.shape[1] * _groups(node)
    if weight.ndim != 2:
        return f"the {node.op_type} weight is {weight.ndim}-D, not a 2-D matrix"
    if node.op_type == "MatMul":
        shape = node.outputs[0].shape
        if shape is None or len(shape) != 2:
            return "the MatMul output is not 2-D, so its features are not on the channel axis"
        return 2, weight.shape[1]
    return 2, weight.shape[0] if _transposed(node) else weight.shape[1]


def fold_conv(node: ir.Node, affine: ChannelAffine) -> FoldedLayer | str:
    """Conv: weight ``[Cout, Cin/group, k...]``, output channels on axis 0."""
    weight = _float64(node.inputs[1])
    if weight is None:
        return f"the Conv weight {NOT_CONSTANT}"
    bias = _layer_bias(node, affine.channels)
    if isinstance(bias, str):
        return bias
    scale = affine.scale.reshape(-1, *[1] * (weight.ndim - 1))
    return FoldedLayer("Conv", weight * scale, affine.folded_bias(bias))


def fold_conv_transpose(node: ir.Node, affine: ChannelAffine) -> FoldedLayer | str:
    """ConvTranspose: weight ``[Cin, Cout/group, k...]``; output channel ``g * Cout/group + j``
    is column ``j`` of group ``g``'s rows."""
    weight = _float64(node.inputs[1])
    if weight is None:
        return f"the ConvTranspose weight {NOT_CONSTANT}"
    groups = _groups(node)
    cin, cout_per_group, *kernel = weight.shape
    if cin % groups:
        return f"the ConvTranspose weight's {cin} input channels do not split into {groups} groups"
    bias = _layer_bias(node, affine.channels)
    if isinstance(bias, str):
        return bias
    grouped = weight.reshape(groups, cin // groups, cout_per_group, *kernel)
    scale = affine.scale.reshape(groups, 1, cout_per_group, *[1] * len(kernel))
    return FoldedLayer("ConvTranspose", (grouped * scale).reshape(weight.shape), affine.folded_bias(bias))


def fold_gemm(node: ir.Node, affine: ChannelAffine) -> FoldedLayer | str:
    """Gemm ``alpha * A @ B + beta * C``: B's output features are its columns (rows with transB);
    ``beta * C`` becomes the bias and ``beta`` is set to 1."""
    weight = _float64(node.inputs[1])
    if weight is None:
        return f"the Gemm weight B {NOT_CONSTANT}"
    transposed = _transposed(node)
    scaled = weight * (affine.scale[:, None] if transposed else affine.scale[None, :])
    bias = np.zeros(affine.channels)
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        c = _float64(node.inputs[2])
        if c is None:
            return f"the Gemm bias C {NOT_CONSTANT}"
        if c.size not in (1, affine.channels) or (c.ndim == 2 and c.shape[0] != 1):
            return f"the Gemm bias C has shape {list(c.shape)}, not one value per output feature"
        beta = node.attributes.get("beta")
        bias = np.broadcast_to(c.reshape(-1), (affine.channels,)) * (beta.as_float() if beta is not None else 1.0)
    attributes = dict(node.attributes)
    attributes["beta"] = ir.AttrFloat32("beta", 1.0)
    return FoldedLayer("Gemm", scaled, affine.folded_bias(bias), attributes)


def fold_matmul(node: ir.Node, affine: ChannelAffine) -> FoldedLayer | str:
    """MatMul ``A @ W`` with a constant ``[K, N]`` W and a 2-D A becomes ``Gemm(A, W', b')``."""
    weight = _float64(node.inputs[1])
    if weight is None:
        return "the MatMul's second input is not a constant weight"
    return FoldedLayer("Gemm", weight * affine.scale[None, :], affine.folded_bias(np.zeros(affine.channels)))


FOLDERS: dict[str, Callable[[ir.Node, ChannelAffine], FoldedLayer | str]] = {
    "Conv": fold_conv,
    "ConvTranspose": fold_conv_transpose,
    "Gemm": fold_gemm,
    "MatMul": fold_matmul,
}


def compose(steps: Sequence[AffineStep]) -> ChannelAffine:
    combined = steps[0].affine
    for step in steps[1:]:
        combined = combined.then(step.affine)
    return combined


# ---------------------------------------------------------------- the walk


@dataclass
class FoldRecords:
    """What the walk did, for the report."""

    folded: list[tuple[str, str, list[AffineStep]]] = field(default_factory=list)  # (layer op, layer, chain)
    as_scale: list[tuple[list[AffineStep], str]] = field(default_factory=list)  # (chain, why not folded)
    kept: list[tuple[ir.Node, str]] = field(default_factory=list)  # (BatchNormalization, why left as is)
    not_folded: list[tuple[ir.Node, str]] = field(default_factory=list)  # (Mul/Add after a layer, why)


class AffineFolder:
    """Folds the per-channel affine chains of one graph (a working copy) in place."""

    def __init__(self, model: ir.Model) -> None:
        self.graph = model.graph
        self.node_names = UniqueNames(node.name for node in self.graph if node.name)
        self.value_names = UniqueNames(
            [
                *(value.name for value in self.graph.inputs if value.name),
                *self.graph.initializers,
                *(out.name for node in self.graph for out in node.outputs if out.name),
            ]
        )
        self.records = FoldRecords()
        self.reasons: dict[int, str] = {}  # id(BatchNormalization) -> why the layer before could not take it
        self.removed: set[int] = set()

    def initializer(self, name: str, array: np.ndarray) -> ir.Value:
        value = initializer_value(self.value_names.claim(name), array)
        self.graph.register_initializer(value)
        return value

    def run(self) -> FoldRecords:
        for node in list(self.graph):
            if node.domain == "" and node.op_type in FOLDERS:
                self.fold_after(node)
        for node in list(self.graph):
            if node.op_type == BATCHNORM and node.domain == "" and id(node) not in self.removed:
                self.collapse(node)
        return self.records

    def chain_after(self, value: ir.Value, rank: int | None, channels: int) -> tuple[list[AffineStep], str | None]:
        """The affine nodes that follow ``value`` one after another, and why the chain
        stops at a node that could have joined it (None when the next node is no candidate)."""
        steps: list[AffineStep] = []
        while True:
            uses = list(value.uses())
            candidates = [use for use in uses if is_candidate(use.node)]
            if not candidates:
                return steps, None
            if len(uses) > 1 or value.is_graph_output():
                others = len(uses) - 1 + int(value.is_graph_output())
                return steps, f"the value it reads also feeds {others} other consumer(s)"
            node, index = uses[0].node, uses[0].idx
            step = read_step(node, index, rank, channels)
            if isinstance(step, str):
                return steps, step
            steps.append(step)
            value = node.outputs[0]

    def note_unfolded(self, value: ir.Value, why: str) -> None:
        """Remember why the candidates reading ``value`` were not folded into the layer before."""
        for use in value.uses():
            node = use.node
            if node.op_type == BATCHNORM:
                self.reasons.setdefault(id(node), why)
            elif is_candidate(node):
                self.records.not_folded.append((node, why))

    def fold_after(self, layer: ir.Node) -> None:
        geometry = layer_geometry(layer)
        if isinstance(geometry, str):
            self.note_unfolded(layer.outputs[0], geometry)
            return
        rank, channels = geometry
        steps, stop = self.chain_after(layer.outputs[0], rank, channels)
        label = f"{layer.op_type} {_label(layer)}"
        if stop is not None:
            end = steps[-1].node.outputs[0] if steps else layer.outputs[0]
            self.note_unfolded(end, f"{stop} (after {label})")
        if not steps:
            return
        folded = FOLDERS[layer.op_type](layer, compose(steps))
        if isinstance(folded, str):
            self.note_unfolded(layer.outputs[0], folded)
            return
        self.replace(layer, steps, folded)

    def replace(self, layer: ir.Node, steps: list[AffineStep], folded: FoldedLayer) -> None:
        """Put one layer with the folded weights in place of ``layer`` and the chain."""
        dtype = _stored_dtype(layer.inputs[1])
        node_name = layer.name or self.node_names.claim(layer.op_type)
        weight = self.initializer(f"{node_name}.weight", folded.weight.astype(dtype))
        bias = self.initializer(f"{node_name}.bias", folded.bias.astype(dtype))
        attributes = folded.attributes or dict(layer.attributes)
        fused = ir.Node(
            "", folded.op_type, [layer.inputs[0], weight, bias], attributes=list(attributes.values()), name=node_name
        )
        provenance.copy_provenance(fused, layer)
        provenance.add_sources(fused, [name for step in steps for name in provenance.sources(step.node)])
        layer_params = provenance.params(layer)
        scale_params = [name for step in steps for name in step.scale_params]
        shift_params = [name for step in steps for name in step.shift_params]
        provenance.set_params(
            fused,
            {
                1: [*layer_params.get(1, ()), *scale_params],
                2: [*layer_params.get(2, ()), *scale_params, *shift_params],
            },
        )
        for step in steps:
            provenance.add_transform(fused, f"folded {step.description}")
        self.records.folded.append((layer.op_type, _label(layer), steps))
        old = [layer, *(step.node for step in steps)]
        self.removed.update(id(node) for node in old)
        ir.convenience.replace_nodes_and_values(
            self.graph, layer, old, [fused], [steps[-1].node.outputs[0]], [fused.outputs[0]]
        )

    def collapse(self, bn: ir.Node) -> None:
        """A BatchNormalization no layer took, with the affine nodes after it, as one ``Mul + Add``."""
        why = self.reasons.get(id(bn)) or _why_no_layer(bn)
        gamma = constant(bn.inputs[1]) if len(bn.inputs) > 1 else None
        first = read_step(bn, 0, None, gamma.size if gamma is not None else 0)
        if isinstance(first, str):
            self.records.kept.append((bn, first))
            return
        shape = bn.inputs[0].shape if bn.inputs[0] is not None else None
        if shape is None or len(shape) < 2:
            self.records.kept.append(
                (bn, f"{why}; its input rank is unknown, so the per-channel constants cannot be shaped")
            )
            return
        rank = len(shape)
        more, _ = self.chain_after(bn.outputs[0], rank, first.affine.channels)
        steps = [first, *more]
        self.as_scale(steps, rank, why)

    def as_scale(self, steps: list[AffineStep], rank: int, why: str) -> None:
        """Replace the chain by ``Mul(x, s) + t`` with constants shaped ``[C, 1, ...]``."""
        head = steps[0].node
        affine = compose(steps)
        dtype = _stored_dtype(head.inputs[1])
        broadcast = (affine.channels, *[1] * (rank - 2))
        # the Mul takes over the first node's name (that node goes away)
        name = head.name or self.node_names.claim(head.op_type)
        scale = self.initializer(f"{name}.scale", affine.scale.reshape(broadcast).astype(dtype))
        shift = self.initializer(f"{name}.shift", affine.shift.reshape(broadcast).astype(dtype))
        mul = ir.Node("", "Mul", [head.inputs[0], scale], name=name)
        add = ir.Node("", "Add", [mul.outputs[0], shift], name=self.node_names.claim(f"{name}.shift"))
        mul.outputs[0].name = self.value_names.claim(f"{name}.scaled")
        scale_params = [name for step in steps for name in step.scale_params]
        shift_params = [name for step in steps for name in step.shift_params]
        note = f"{', '.join(step.description for step in steps)} as one per-channel scale: {why}"
        for node, params in ((mul, scale_params), (add, [*scale_params, *shift_params])):
            provenance.set_sources(node, [name for step in steps for name in provenance.sources(step.node)])
            provenance.set_params(node, {1: params})
            provenance.add_transform(node, note)
        old = [step.node for step in steps]
        self.removed.update(id(node) for node in old)
        ir.convenience.replace_nodes_and_values(
            self.graph, head, old, [mul, add], [steps[-1].node.outputs[0]], [add.outputs[0]]
        )
        self.records.as_scale.append((steps, why))


def _why_no_layer(bn: ir.Node) -> str:
    """Why a BatchNormalization's input is not a layer it could be folded into."""
    value = bn.inputs[0]
    producer = value.producer() if value is not None else None
    if producer is None:
        return "its input is not computed by a layer"
    return f"its input comes from {producer.op_type} {_label(producer)}, which has no weights"


def _needs_shapes(model: ir.Model) -> bool:
    return any(
        is_candidate(node) and node.inputs[0] is not None and node.inputs[0].shape is None for node in model.graph
    )


def _labels(steps: Sequence[AffineStep]) -> str:
    return ", ".join(dict.fromkeys(_label(step.node) for step in steps))


def _report(report: StepReport, records: FoldRecords, nodes_before: int, nodes_after: int) -> None:
    """The step's summary, changes, warnings and counts from what the folder did."""
    folded = [step for _, _, steps in records.folded for step in steps]
    folded_bn = sum(step.node.op_type == BATCHNORM for step in folded)
    bn_as_scale = sum(step.node.op_type == BATCHNORM for steps, _ in records.as_scale for step in steps)
    total = folded_bn + bn_as_scale + len(records.kept)
    by_op = Counter(step.node.op_type for step in folded)
    others = ", ".join(f"{op} {count}" for op, count in sorted(by_op.items()) if op != BATCHNORM)
    report.summary = (
        f"folded {folded_bn} of {total} BatchNormalization"
        + (f" and per-channel {others}" if others else "")
        + f" into {len(records.folded)} layers; {bn_as_scale} became per-channel scales, {len(records.kept)} kept"
    )
    _list_changes(report, records)
    report.counts = {
        "batchnorm": total,
        "folded": folded_bn,
        "folded_nodes": dict(sorted(by_op.items())),
        "folded_by_op": dict(sorted(Counter(op for op, _, _ in records.folded).items())),
        "as_scale": bn_as_scale,
        "kept": len(records.kept),
        "not_folded": len(records.not_folded),
        "nodes_before": nodes_before,
        "nodes_after": nodes_after,
    }


def _list_changes(report: StepReport, records: FoldRecords) -> None:
    """Each fold and each per-channel scale as a change; what stayed unfolded, and why, as warnings."""
    report.changes = [f"{_labels(steps)} folded into {op} {layer}" for op, layer, steps in records.folded]
    report.changes += [f"{_labels(steps)} became one per-channel scale (Mul + Add)" for steps, _ in records.as_scale]
    report.warnings += [f"{_labels(steps)} not folded: {why}" for steps, why in records.as_scale]
    report.warnings += [f"{_label(bn)} kept as {BATCHNORM}: {why}" for bn, why in records.kept]
    report.warnings += [f"{node.op_type} {_label(node)} not folded: {why}" for node, why in records.not_folded]


def fold_bn(model: Model) -> Model:
    """Fold every per-channel affine chain (BatchNormalization, Caffe Scale/Bias as Mul/Add,
    per-channel Mul/Add/Sub/Div) into the Conv, ConvTranspose, Gemm or MatMul before it,
    or turn a BatchNormalization no layer takes into one per-channel scale; returns a new Model."""
    report = StepReport("fold_bn")
    with timed(report):
        working = model.copy().ir
        if _needs_shapes(working):
            try:
                working = infer_shapes(working)
            except WorkbenchError as error:
                report.warnings.append(f"shapes unknown ({error.what}); some affine nodes may stay")
        records = AffineFolder(working).run()
        RemoveUnusedNodesPass()(working)
        result = model.derive(working, report)
    _report(report, records, len(model.graph), len(working.graph))
    return result
