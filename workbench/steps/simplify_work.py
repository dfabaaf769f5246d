"""Whether onnxsim has anything to do on a graph, decided from the graph alone.

onnxsim takes the whole model as one protobuf message (weights included), runs
ONNX shape inference, constant folding and onnx-optimizer's default passes until
nothing changes, and gives the model back as another message: seconds and twice
the weights' memory on a large network, and importing it imports torch. Most
exported CNNs have nothing left for it once onnxscript has folded their constants,
so ``simplify`` asks ``onnxsim_work`` first and skips onnxsim when the answer is
None.

The answer is conservative: one rule per kind of rewrite among onnxsim's default
passes, each naming what onnxsim might change, and any op outside ``SETTLED_OPS``
(ops no default pass rewrites on their own) counts as work. A graph that might
change is always given to onnxsim, so skipping it never changes the result:

* ``foldable``: a node whose inputs are all constants (constant folding);
* ``constant_operand``: an elementwise op with a constant operand (bias into Conv
  or MatMul → Gemm fusions, no-op ``x + 0`` / ``x * 1`` elimination);
* ``reshape_kind``: a Reshape or Flatten whose result is its input's shape, whose
  target shape is computed, or more than one of them (no-op eliminations,
  consecutive reshapes, reshapes around elementwise ops that cancel);
* ``softmax_of_one``: a Softmax over a single element (a constant);
* ``reduce_of_one``: a ReduceMean over extents of 1 (a no-op);
* ``chained``: a Concat into a Concat, a Relu after a Relu, a ReduceMean after a
  ReduceMean (consecutive fusions, idempotent ops);
* ``single_input``: a Concat of one input (no-op concat);
* ``repeated_node``: two nodes computing the same op on the same inputs (common
  subexpressions);
* ``initializer_change``: an unused initializer, an initializer listed as a graph
  input (IR 3), large initializers with equal contents (duplicates);
* ``unfixed_input``: a graph input without a static shape.

What onnxsim's shape inference would add is not counted: ``simplify`` infers
missing shapes itself (``unknown_shape`` says whether any are missing). Small
duplicate initializers (the zero biases the PyTorch exporter gives every
convolution without one) are merged by ``simplify`` itself, as onnxsim's
``eliminate_duplicate_initializer`` would, with onnx-ir's
``DeduplicateInitializersPass``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import onnx_ir as ir

from ..graph.shapes import static_shape

SETTLED_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "Tanh",
        "HardSigmoid",
        "HardSwish",
        "Elu",
        "Selu",
        "Softplus",
        "Clip",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "LRN",
        "BatchNormalization",
        "InstanceNormalization",
        "Gemm",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Sum",
        "Max",
        "Min",
        "Concat",
        "Flatten",
        "Reshape",
        "Softmax",
        "LogSoftmax",
        "ReduceMean",
    }
)
ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Sum", "Max", "Min"})
RESHAPE_OPS = frozenset({"Reshape", "Flatten"})
CHAINED_OPS = frozenset({"Concat", "Relu", "ReduceMean"})  # fused or idempotent when one follows another
DEDUPLICATED_ELEMENTS = 1024  # duplicates up to this size are merged by simplify itself

Rule = Callable[[ir.Graph], str | None]


def _is_constant(value: ir.Value | None) -> bool:
    return value is not None and value.const_value is not None


def _producer_op(value: ir.Value | None) -> str | None:
    producer = value.producer() if value is not None else None
    return producer.op_type if producer is not None else None


def unsettled_op(graph: ir.Graph) -> str | None:
    ops = sorted(
        {node.op_type for node in graph if node.domain not in ("", "ai.onnx") or node.op_type not in SETTLED_OPS}
    )
    return f"{', '.join(ops)} node(s)" if ops else None


def foldable(graph: ir.Graph) -> str | None:
    for node in graph:
        inputs = [value for value in node.inputs if value is not None]
        if inputs and all(_is_constant(value) for value in inputs):
            return f"{node.op_type} {node.name} computes a constant"
    return None


def constant_operand(graph: ir.Graph) -> str | None:
    for node in graph:
        if node.op_type in ELEMENTWISE_OPS and any(_is_constant(value) for value in node.inputs):
            return f"{node.op_type} {node.name} has a constant operand"
    return None


def _reshape_is_settled(node: ir.Node) -> bool:
    source, result = node.inputs[0], node.outputs[0]
    if node.op_type == "Reshape" and not _is_constant(node.inputs[1] if len(node.inputs) > 1 else None):
        return False
    before, after = static_shape(source), static_shape(result)
    return before is not None and after is not None and before != after and _producer_op(source) not in RESHAPE_OPS


def reshape_kind(graph: ir.Graph) -> str | None:
    reshapes = [node for node in graph if node.op_type in RESHAPE_OPS]
    if len(reshapes) > 1:  # reshapes around elementwise ops may cancel out
        return f"{len(reshapes)} Reshape/Flatten nodes"
    for node in reshapes:
        if not _reshape_is_settled(node):
            return f"{node.op_type} {node.name} may be a no-op"
    return None


def reduce_of_one(graph: ir.Graph) -> str | None:
    for node in graph:
        if node.op_type != "ReduceMean":
            continue
        before, after = static_shape(node.inputs[0]), static_shape(node.outputs[0])
        if before is None or after is None or math.prod(after) >= math.prod(before):
            return f"ReduceMean {node.name} may reduce over extents of 1"
    return None


def softmax_of_one(graph: ir.Graph) -> str | None:
    for node in graph:
        if node.op_type not in ("Softmax", "LogSoftmax"):
            continue
        shape = static_shape(node.inputs[0])
        axis = node.attributes.get_int("axis", -1 if _opset(graph) >= 13 else 1)
        if shape is None or not -len(shape) <= axis < len(shape) or shape[axis] == 1:
            return f"{node.op_type} {node.name} may normalise over one element"
    return None


def _opset(graph: ir.Graph) -> int:
    return graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 0))


def chained(graph: ir.Graph) -> str | None:
    for node in graph:
        if node.op_type in CHAINED_OPS and any(_producer_op(value) == node.op_type for value in node.inputs):
            return f"{node.op_type} {node.name} follows another {node.op_type}"
    return None


def single_input(graph: ir.Graph) -> str | None:
    for node in graph:
        if node.op_type == "Concat" and len(node.inputs) == 1:
            return f"Concat {node.name} has one input"
    return None


def _node_key(node: ir.Node) -> tuple:
    attributes = tuple(sorted((name, repr(attribute.value)) for name, attribute in node.attributes.items()))
    return (node.domain, node.op_type, node.overload, tuple(id(value) for value in node.inputs), attributes)


def repeated_node(graph: ir.Graph) -> str | None:
    counts = Counter(_node_key(node) for node in graph)
    repeated = [key for key, count in counts.items() if count > 1]
    return f"{len(repeated)} node(s) computed twice" if repeated else None


def _equal_contents(values: list[ir.Value]) -> Iterator[tuple[ir.Value, ir.Value]]:
    """Pairs of initializers of equal dtype, shape and bytes (compared only within a
    dtype and shape, and on a prefix first, so distinct weights are told apart cheaply)."""
    groups: dict[tuple, list[np.ndarray]] = {}
    owners: dict[int, ir.Value] = {}
    for value in values:
        tensor = value.const_value
        if tensor is None:
            continue
        array = tensor.numpy()
        owners[id(array)] = value
        groups.setdefault((tensor.dtype, tuple(tensor.shape)), []).append(array)
    for arrays in groups.values():
        for index, first in enumerate(arrays):
            head = first.reshape(-1)[:16].tobytes()
            for second in arrays[index + 1 :]:
                if second.reshape(-1)[:16].tobytes() == head and np.array_equal(first, second):
                    yield owners[id(first)], owners[id(second)]


def initializer_change(graph: ir.Graph) -> str | None:
    initializers = list(graph.initializers.values())
    inputs = {id(value) for value in graph.inputs}
    if any(id(value) in inputs for value in initializers):
        return "initializers listed as graph inputs"
    if any(not value.uses() and not value.is_graph_output() for value in initializers):
        return "unused initializers"
    large = [
        value
        for value in initializers
        if value.const_value is not None and value.const_value.size > DEDUPLICATED_ELEMENTS
    ]
    duplicate = next(_equal_contents(large), None)
    return f"initializers {duplicate[0].name} and {duplicate[1].name} are equal" if duplicate else None


def unknown_shape(graph: ir.Graph) -> str | None:
    for node in graph:
        for value in node.outputs:
            if value.dtype is None or static_shape(value) is None:
                return f"{value.name} has no static shape"
    return None


def unfixed_input(graph: ir.Graph) -> str | None:
    for value in graph.inputs:
        if value.dtype is None or static_shape(value) is None:
            return f"input {value.name} has no fixed shape"
    return None


RULES: tuple[Rule, ...] = (
    unfixed_input,
    unsettled_op,
    foldable,
    constant_operand,
    reshape_kind,
    softmax_of_one,
    reduce_of_one,
    chained,
    single_input,
    repeated_node,
    initializer_change,
)


def onnxsim_work(model: ir.Model) -> str | None:
    """What onnxsim might change in ``model`` (the first rule that finds something),
    or None when it has nothing to do."""
    if model.functions:
        return "the model has functions"
    for rule in RULES:
        found = rule(model.graph)
        if found is not None:
            return found
    return None
