"""``fold_bn``: fold inference-mode BatchNormalization into the weights before it.

In inference a BatchNormalization with per-channel ``gamma, beta, mean, var`` and
``eps`` is an affine map of each channel ``c``::

    y = gamma * (x - mean) / sqrt(var + eps) + beta = s * x + t
    s = gamma / sqrt(var + eps),  t = beta - mean * s

When ``x`` is the output of a layer that is linear in its weights, ``x = W * a + b``
with one row of ``W`` per output channel, the two merge into one layer::

    W' = W * s          (each output channel's weights scaled by its s)
    b' = (b - mean) * s + beta

Output channels sit on axis 0 of a Conv weight ``[Cout, Cin/group, kh, kw]``, on
axis 1 of each group of a ConvTranspose weight ``[Cin, Cout/group, kh, kw]``, on
the columns of a Gemm/MatMul weight ``[K, N]`` (the rows with ``transB=1``). A
Gemm's ``beta * C`` is its ``b``; a MatMul becomes a Gemm that takes the new bias.

A BatchNormalization that cannot be folded (its producer has no weights, or the
producer's output has other consumers, whose values must not change) becomes the
per-channel ``Mul(x, s) + Add(t)`` with constants shaped ``[C, 1, 1]`` (one 1 per
spatial axis), the form a Caffe ``Scale`` layer computes. Like onnxscript's
rewriter, every BatchNormalization left unfolded is reported with the reason.

Weights are computed in float64 and stored in the weight's own dtype. The folded
node keeps the producer's provenance, gains the BatchNormalization's source and
parameter names, and records the fold as a transform.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

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


@dataclass(frozen=True)
class BatchNormStatistics:
    """A BatchNormalization's constants, as the per-channel affine map ``s * x + t``."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float

    @property
    def channels(self) -> int:
        return self.gamma.shape[0]

    @property
    def scale(self) -> np.ndarray:
        return self.gamma / np.sqrt(self.var + self.eps)

    @property
    def shift(self) -> np.ndarray:
        return self.beta - self.mean * self.scale

    def folded_bias(self, bias: np.ndarray) -> np.ndarray:
        """``(b - mean) * s + beta`` for a layer bias ``b`` (float64)."""
        return (bias - self.mean) * self.scale + self.beta


@dataclass
class FoldedLayer:
    """The new weight, bias and attributes of a layer a BatchNormalization was folded into."""

    op_type: str
    weight: np.ndarray
    bias: np.ndarray
    attributes: dict[str, ir.Attr] = field(default_factory=dict)


def _float64(value: ir.Value | None) -> np.ndarray | None:
    data = constant(value)
    return None if data is None else np.asarray(data, dtype=np.float64)


def _read_statistics(bn: ir.Node) -> BatchNormStatistics | str:
    """The BatchNormalization's constants, or why they cannot be used."""
    training = bn.attributes.get("training_mode")
    if training is not None and training.as_int() == 1:
        return "it runs in training mode (statistics come from the batch)"
    if any(output.uses() or output.is_graph_output() for output in bn.outputs[1:]):
        return "its running-statistics outputs are used"
    arrays = [_float64(value) for value in bn.inputs[1:5]]
    if len(arrays) < 4 or any(array is None for array in arrays):
        return f"its gamma, beta, mean or var {NOT_CONSTANT}"
    gamma, beta, mean, var = (array.reshape(-1) for array in arrays)
    if not gamma.shape == beta.shape == mean.shape == var.shape:
        return "its gamma, beta, mean and var differ in length"
    eps = bn.attributes.get("epsilon")
    return BatchNormStatistics(gamma, beta, mean, var, eps.as_float() if eps is not None else DEFAULT_EPSILON)


def _layer_bias(node: ir.Node, channels: int) -> np.ndarray | str:
    """The node's bias input (input 2) as float64, zeros when absent."""
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return np.zeros(channels)
    bias = _float64(node.inputs[2])
    if bias is None:
        return f"the {node.op_type} bias {NOT_CONSTANT}"
    return bias.reshape(-1)


def fold_conv(node: ir.Node, bn: BatchNormStatistics) -> FoldedLayer | str:
    """Conv: weight ``[Cout, Cin/group, k...]``, output channels on axis 0."""
    weight = _float64(node.inputs[1])
    if weight is None:
        return f"the Conv weight {NOT_CONSTANT}"
    if weight.shape[0] != bn.channels:
        return f"the Conv has {weight.shape[0]} output channels, the BatchNormalization {bn.channels}"
    bias = _layer_bias(node, bn.channels)
    if isinstance(bias, str):
        return bias
    scale = bn.scale.reshape(-1, *[1] * (weight.ndim - 1))
    return FoldedLayer("Conv", weight * scale, bn.folded_bias(bias))


def fold_conv_transpose(node: ir.Node, bn: BatchNormStatistics) -> FoldedLayer | str:
    """ConvTranspose: weight ``[Cin, Cout/group, k...]``; output channel ``g * Cout/group + j``
    is column ``j`` of group ``g``'s rows."""
    weight = _float64(node.inputs[1])
    if weight is None:
        return f"the ConvTranspose weight {NOT_CONSTANT}"
    group_attr = node.attributes.get("group")
    groups = group_attr.as_int() if group_attr is not None else 1
    cin, cout_per_group, *kernel = weight.shape
    if cout_per_group * groups != bn.channels or cin % groups:
        return f"the ConvTranspose has {cout_per_group * groups} output channels, the BatchNormalization {bn.channels}"
    bias = _layer_bias(node, bn.channels)
    if isinstance(bias, str):
        return bias
    grouped = weight.reshape(groups, cin // groups, cout_per_group, *kernel)
    scale = bn.scale.reshape(groups, 1, cout_per_group, *[1] * len(kernel))
    return FoldedLayer("ConvTranspose", (grouped * scale).reshape(weight.shape), bn.folded_bias(bias))


def _scale_columns(weight: np.ndarray, bn: BatchNormStatistics, transposed: bool, op: str) -> np.ndarray | str:
    """Scale each output feature's weights: rows of ``[N, K]`` or columns of ``[K, N]``."""
    if weight.ndim != 2:
        return f"the {op} weight is {weight.ndim}-D, not a 2-D matrix"
    features = weight.shape[0] if transposed else weight.shape[1]
    if features != bn.channels:
        return f"the {op} has {features} output features, the BatchNormalization {bn.channels}"
    return weight * (bn.scale[:, None] if transposed else bn.scale[None, :])


def fold_gemm(node: ir.Node, bn: BatchNormStatistics) -> FoldedLayer | str:
    """Gemm ``alpha * A @ B + beta * C``: B's output features are its columns (rows with transB);
    ``beta * C`` becomes the bias and ``beta`` is set to 1."""
    weight = _float64(node.inputs[1])
    if weight is None:
        return f"the Gemm weight B {NOT_CONSTANT}"
    trans_b = node.attributes.get("transB")
    scaled = _scale_columns(weight, bn, trans_b is not None and trans_b.as_int() == 1, "Gemm")
    if isinstance(scaled, str):
        return scaled
    bias = np.zeros(bn.channels)
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        c = _float64(node.inputs[2])
        if c is None:
            return f"the Gemm bias C {NOT_CONSTANT}"
        if c.size not in (1, bn.channels) or (c.ndim == 2 and c.shape[0] != 1):
            return f"the Gemm bias C has shape {list(c.shape)}, not one value per output feature"
        beta = node.attributes.get("beta")
        bias = np.broadcast_to(c.reshape(-1), (bn.channels,)) * (beta.as_float() if beta is not None else 1.0)
    attributes = dict(node.attributes)
    attributes["beta"] = ir.AttrFloat32("beta", 1.0)
    return FoldedLayer("Gemm", scaled, bn.folded_bias(bias), attributes)


def fold_matmul(node: ir.Node, bn: BatchNormStatistics) -> FoldedLayer | str:
    """MatMul ``A @ W`` with a constant ``[K, N]`` W and a 2-D A becomes ``Gemm(A, W', b')``."""
    weight = _float64(node.inputs[1])
    if weight is None:
        return "the MatMul's second input is not a constant weight"
    rank = len(node.outputs[0].shape) if node.outputs[0].shape is not None else None
    if rank != 2:
        return "the MatMul output is not 2-D, so its features are not BatchNormalization's channel axis"
    scaled = _scale_columns(weight, bn, False, "MatMul")
    if isinstance(scaled, str):
        return scaled
    return FoldedLayer("Gemm", scaled, bn.folded_bias(np.zeros(bn.channels)))


FOLDERS: dict[str, Callable[[ir.Node, BatchNormStatistics], FoldedLayer | str]] = {
    "Conv": fold_conv,
    "ConvTranspose": fold_conv_transpose,
    "Gemm": fold_gemm,
    "MatMul": fold_matmul,
}


def _label(node: ir.Node) -> str:
    """How the report names a node: its source layers, else its node name."""
    return ", ".join(provenance.sources(node)) or node.name or node.op_type


class BatchNormFolder:
    """Folds the BatchNormalization nodes of one graph (a working copy) in place."""

    def __init__(self, model: ir.Model) -> None:
        self.model = model
        self.graph = model.graph
        self.node_names = UniqueNames(node.name for node in self.graph if node.name)
        self.value_names = UniqueNames(
            [
                *(value.name for value in self.graph.inputs if value.name),
                *self.graph.initializers,
                *(out.name for node in self.graph for out in node.outputs if out.name),
            ]
        )
        self.folded: list[tuple[str, str, str]] = []  # (bn label, producer op, producer label)
        self.as_scale: list[tuple[str, str]] = []  # (bn label, why it was not folded)
        self.kept: list[tuple[str, str]] = []  # (bn label, why it was left as it is)

    def initializer(self, name: str, array: np.ndarray) -> ir.Value:
        value = initializer_value(self.value_names.claim(name), array)
        self.graph.register_initializer(value)
        return value

    def fold(self, bn: ir.Node) -> None:
        statistics = _read_statistics(bn)
        if isinstance(statistics, str):
            self.kept.append((_label(bn), statistics))
            return
        reason = self.fold_into_producer(bn, statistics)
        if reason is None:
            return
        scale_reason = self.replace_with_scale(bn, statistics, reason)
        if scale_reason is None:
            self.as_scale.append((_label(bn), reason))
        else:
            self.kept.append((_label(bn), f"{reason}; {scale_reason}"))

    def fold_into_producer(self, bn: ir.Node, statistics: BatchNormStatistics) -> str | None:
        """Fold into the node that computes the BatchNormalization's input; None on success,
        else why the fold does not apply."""
        value = bn.inputs[0]
        producer = value.producer() if value is not None else None
        if producer is None:
            return "its input is not computed by a layer"
        folder = FOLDERS.get(producer.op_type) if producer.domain == "" else None
        if folder is None:
            return f"its input comes from {producer.op_type} {_label(producer)}, which has no weights"
        other_uses = len(value.uses()) - 1 + int(value.is_graph_output())
        if other_uses:
            return f"the output of {producer.op_type} {_label(producer)} also feeds {other_uses} other consumer(s)"
        folded = folder(producer, statistics)
        if isinstance(folded, str):
            return folded
        dtype = constant(producer.inputs[1]).dtype
        node_name = producer.name or self.node_names.claim(producer.op_type)
        weight = self.initializer(f"{node_name}.weight", folded.weight.astype(dtype))
        bias = self.initializer(f"{node_name}.bias", folded.bias.astype(dtype))
        attributes = folded.attributes or dict(producer.attributes)
        fused = ir.Node(
            "",
            folded.op_type,
            [producer.inputs[0], weight, bias],
            attributes=list(attributes.values()),
            name=node_name,
        )
        provenance.copy_provenance(fused, producer)
        provenance.merge_into(fused, bn)
        layer_params, bn_params = provenance.params(producer), provenance.params(bn)
        gamma, beta, mean, var = (bn_params.get(index, ()) for index in range(1, 5))
        provenance.set_params(
            fused,
            {
                1: [*layer_params.get(1, ()), *gamma, *var],
                2: [*layer_params.get(2, ()), *gamma, *beta, *mean, *var],
            },
        )
        provenance.add_transform(fused, f"folded BatchNormalization {_label(bn)} (eps={statistics.eps:g})")
        ir.convenience.replace_nodes_and_values(
            self.graph, bn, [producer, bn], [fused], [bn.outputs[0]], [fused.outputs[0]]
        )
        self.folded.append((_label(bn), producer.op_type, _label(producer)))
        return None

    def replace_with_scale(self, bn: ir.Node, statistics: BatchNormStatistics, reason: str) -> str | None:
        """Replace ``bn`` by ``Mul(x, s) + t``; None on success, else why not."""
        shape = bn.inputs[0].shape
        if shape is None or len(shape) < 2:
            return "its input rank is unknown, so the per-channel constants cannot be shaped"
        dtype = constant(bn.inputs[1]).dtype
        broadcast = (statistics.channels, *[1] * (len(shape) - 2))
        scale = self.initializer(f"{bn.name}.scale", statistics.scale.reshape(broadcast).astype(dtype))
        shift = self.initializer(f"{bn.name}.shift", statistics.shift.reshape(broadcast).astype(dtype))
        # the Mul takes over the BatchNormalization's node name (that node goes away)
        mul = ir.Node("", "Mul", [bn.inputs[0], scale], name=bn.name)
        add = ir.Node("", "Add", [mul.outputs[0], shift], name=self.node_names.claim(f"{bn.name}.shift"))
        mul.outputs[0].name = self.value_names.claim(f"{bn.name}.scaled")
        bn_params = provenance.params(bn)
        gamma, beta, mean, var = (bn_params.get(index, ()) for index in range(1, 5))
        note = f"BatchNormalization {_label(bn)} (eps={statistics.eps:g}) as per-channel scale: {reason}"
        for node, params in ((mul, [*gamma, *var]), (add, [*gamma, *beta, *mean, *var])):
            provenance.copy_provenance(node, bn)
            provenance.set_params(node, {1: params})
            provenance.add_transform(node, note)
        ir.convenience.replace_nodes_and_values(self.graph, bn, [bn], [mul, add], [bn.outputs[0]], [add.outputs[0]])
        return None


def _needs_shapes(model: ir.Model) -> bool:
    return any(
        node.op_type == "BatchNormalization" and node.inputs[0] is not None and node.inputs[0].shape is None
        for node in model.graph
    )


def fold_bn(model: Model) -> Model:
    """Fold every inference BatchNormalization into the Conv, ConvTranspose, Gemm or
    MatMul before it, or turn it into a per-channel scale; returns a new Model."""
    report = StepReport("fold_bn")
    with timed(report):
        working = model.copy().ir
        if _needs_shapes(working):
            try:
                working = infer_shapes(working)
            except WorkbenchError as error:
                report.warnings.append(f"shapes unknown ({error.what}); some BatchNormalization may stay")
        folder = BatchNormFolder(working)
        for node in [n for n in working.graph if n.op_type == "BatchNormalization" and n.domain == ""]:
            folder.fold(node)
        RemoveUnusedNodesPass()(working)
        result = model.derive(working, report)
    total = len(folder.folded) + len(folder.as_scale) + len(folder.kept)
    report.summary = (
        f"folded {len(folder.folded)} of {total} BatchNormalization; "
        f"{len(folder.as_scale)} became per-channel scales, {len(folder.kept)} kept"
    )
    report.changes = [f"{bn} folded into {op} {layer}" for bn, op, layer in folder.folded]
    report.changes += [f"{bn} became a per-channel scale (Mul + Add)" for bn, _ in folder.as_scale]
    report.warnings += [f"{bn} not folded: {why}" for bn, why in folder.as_scale]
    report.warnings += [f"{bn} kept as BatchNormalization: {why}" for bn, why in folder.kept]
    report.counts = {
        "batchnorm": total,
        "folded": len(folder.folded),
        "folded_by_op": dict(sorted(Counter(op for _, op, _ in folder.folded).items())),
        "as_scale": len(folder.as_scale),
        "kept": len(folder.kept),
        "nodes_before": len(model.graph),
        "nodes_after": len(working.graph),
    }
    return result
