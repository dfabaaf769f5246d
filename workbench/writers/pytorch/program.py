"""The PyTorch program being generated from a graph, and the per-node context
the op emitters write it through.

The writer walks the graph in its (topological) order and calls the emitter
registered for each node's op type (and since-opset). An emitter reads the node
through a ``TorchNodeContext``: the shared converter contract
(``workbench.graph.converter``: constant inputs as arrays, attributes and
parameters as the opset in force keeps them, resolved pads, inferred shapes,
``problem``) plus inputs as expressions, and adds to the ``Program``:

* submodules (``self.conv1 = nn.Conv2d(...)``) named after the node's source
  layer, with the tensors of their state dict;
* buffers for constant tensors (one-element operands of arithmetic and small
  index lists are written as literals instead);
* forward statements, each remembering the graph nodes and source layers it
  stands for;
* helper functions (``helpers``: ONNX Resize, AveragePool over windows
  ``nn.AvgPool`` cannot hold) that ``model.py`` carries, for ops PyTorch has no
  exact built-in for.

An emitter that cannot express a node reports a ``Problem`` (``ctx.problem``) and
returns, so every problem of a graph is found in one pass. Emitters may absorb a following node
(``Sigmoid`` + ``Mul`` -> ``nn.SiLU``); the walk then skips it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir
import torch

from ...errors import Problem
from ...graph import provenance
from ...graph.converter import OnnxNodeContext
from ...registry import Registry
from .codegen import Call, Expr, Namespace, flat, identifier, number

TARGET = "PyTorch"

# Constants with at most this many elements are written into the code as literals.
LITERAL_LIMIT = 16

_TORCH_DTYPES = {
    "float32": "torch.float32",
    "float16": "torch.float16",
    "float64": "torch.float64",
    "bfloat16": "torch.bfloat16",
    "int64": "torch.int64",
    "int32": "torch.int32",
    "int16": "torch.int16",
    "int8": "torch.int8",
    "uint8": "torch.uint8",
    "bool": "torch.bool",
}


@dataclass
class ModuleRecord:
    name: str
    type: str
    constructor: Call
    state: dict[str, np.ndarray]
    shared_values: tuple[int, ...]
    nodes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    state_params: dict[str, list[str]] = field(default_factory=dict)  # state key -> source parameters


@dataclass
class BufferRecord:
    name: str
    array: np.ndarray
    nodes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@dataclass
class Statement:
    target: str
    expr: Expr
    nodes: list[str]
    sources: list[str]


class Program:
    """Submodules, buffers and forward statements generated so far."""

    def __init__(self, graph: ir.Graph, opset: int) -> None:
        self.graph = graph
        self.opset = opset
        self.modules: dict[str, ModuleRecord] = {}
        self.buffers: dict[str, BufferRecord] = {}
        self.statements: list[Statement] = []
        self.problems: list[Problem] = []
        self.absorbed: set[int] = set()
        self.helpers: list[str] = []  # helper functions model.py carries, in first-use order
        self.defined: set[int] = set()  # values the forward code computes or aliases
        # attributes of nn.Module (train, eval, forward, ...) would shadow a submodule
        self.attributes = Namespace(dir(torch.nn.Module), builtins_too=False)
        self.variables = Namespace(["self", "torch", "nn", "F"])
        self._expressions: dict[int, str] = {}
        self._by_source: dict[str, list[ModuleRecord]] = {}
        self._buffer_of_value: dict[int, str] = {}
        self.nodes_per_source: dict[str, int] = {}
        for node in graph:
            for source in provenance.sources(node):
                self.nodes_per_source[source] = self.nodes_per_source.get(source, 0) + 1
        # files from before ONNX IR 4 also list their initializers as graph inputs
        self.arguments = [self.variable(v) for v in graph.inputs if v.const_value is None]

    def variable(self, value: ir.Value) -> str:
        """The forward variable holding ``value`` (claimed on first use)."""
        key = id(value)
        if key not in self._expressions:
            self._expressions[key] = self.variables.claim(identifier(value.name or "", "v") or "v")
        return self._expressions[key]

    def bind(self, value: ir.Value, expression: str) -> None:
        self._expressions[id(value)] = expression
        self.defined.add(id(value))

    def add_module(
        self, base: str, constructor: Call, state: dict[str, np.ndarray], shared_values: tuple[int, ...]
    ) -> ModuleRecord:
        """A new submodule, or the one already made for the same source layer when it
        is built the same way from the same weights (a layer called twice)."""
        for record in self._by_source.get(base, []):
            same_weights = record.shared_values == shared_values and (shared_values or not state)
            if same_weights and flat(record.constructor) == flat(constructor):
                return record
        name = self.attributes.claim(base)
        record = ModuleRecord(name, constructor.function, constructor, state, shared_values)
        self.modules[name] = record
        self._by_source.setdefault(base, []).append(record)
        return record

    def add_buffer(self, value: ir.Value, array: np.ndarray, base: str) -> BufferRecord:
        key = id(value)
        if key in self._buffer_of_value:
            return self.buffers[self._buffer_of_value[key]]
        record = BufferRecord(self.attributes.claim(base), array)
        self.buffers[record.name] = record
        self._buffer_of_value[key] = record.name
        return record

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every submodule's parameters and every buffer, as tensors over the arrays."""
        state: dict[str, torch.Tensor] = {}
        for module in self.modules.values():
            for key, array in module.state.items():
                state[f"{module.name}.{key}"] = as_tensor(array)
        for buffer in self.buffers.values():
            state[buffer.name] = as_tensor(buffer.array)
        return state


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over the array's buffer, never a copy: the state dict is only read (by
    ``torch.save``), so weights mapped read-only from the source file are wrapped as
    they are, without PyTorch's warning about writing to them (copying them held every
    weight twice while writing: 1.4 GB for VGG-16's 553 MB)."""
    array = np.ascontiguousarray(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def torch_dtype(dtype: ir.DataType | np.dtype | None) -> str | None:
    """``torch.float32`` for a graph or NumPy dtype, None when PyTorch has no match."""
    if dtype is None:
        return None
    if isinstance(dtype, ir.DataType):
        try:
            dtype = dtype.numpy()
        except (TypeError, ValueError):
            return None
    return _TORCH_DTYPES.get(np.dtype(dtype).name)


class TorchNodeContext(OnnxNodeContext):
    """What an emitter sees of one node, and how it adds code for it."""

    def __init__(self, program: Program, node: ir.Node) -> None:
        super().__init__(program.problems, node, program.opset)
        self.program = program
        self.nodes = [node]

    # ---- reading the node -------------------------------------------------
    @property
    def name(self) -> str:
        return self.node.name or self.node.op_type

    def sources(self) -> list[str]:
        return [name for node in self.nodes for name in provenance.sources(node)]

    def whole_layer(self) -> bool:
        """True when the node is all there is of its source layer(s), so a helper
        layer (a flatten) does not take the name the layer's main submodule needs."""
        counts = self.program.nodes_per_source
        return all(counts.get(source, 0) <= 1 for source in provenance.sources(self.node))

    # ---- expressions of inputs -------------------------------------------
    def x(self, index: int = 0) -> str:
        """The tensor expression for input ``index``: a variable, or a buffer for a constant."""
        value = self.value(index)
        if value is None:
            raise ValueError(f"{self.name} has no input {index}")
        data = self.const(index)
        if data is None:
            return self.program.variable(value)
        return self.buffer(index)

    def operand(self, index: int, other: int) -> str:
        """Input ``index`` of an elementwise op whose other tensor operand is input
        ``other``: a one-element constant becomes a Python number when broadcasting
        against the other operand keeps the same shape."""
        data = self.const(index)
        if data is not None and data.size == 1 and self.const(other) is None:
            other_rank = self.rank(other)
            if data.ndim == 0 or (other_rank is not None and other_rank >= data.ndim):
                return number(data.reshape(()).item(), data.dtype)
        return self.x(index)

    def buffer(self, index: int) -> str:
        """``self.<buffer>`` holding constant input ``index``."""
        value = self.value(index)
        data = self.const(index)
        if value is None or data is None:
            raise ValueError(f"{self.name} input {index} is not a constant")
        record = self.program.add_buffer(value, data, identifier(value.name or "", "constant") or "constant")
        record.nodes.append(self.name)
        record.sources.extend(s for s in self.sources() if s not in record.sources)
        return f"self.{record.name}"

    # ---- adding code -------------------------------------------------------
    def module(
        self,
        constructor: Call,
        state: dict[str, np.ndarray] | None = None,
        shared: Sequence[int] = (),
    ) -> str:
        """Add (or reuse) a submodule named after the node's source layer; returns
        ``self.<name>``. ``shared`` are the inputs whose weights it holds, so a
        source layer applied twice to the same weights is one submodule."""
        sources = self.sources()
        base = identifier(sources[0], "layer") if sources else identifier(self.node.op_type.lower(), "layer")
        weights = tuple(id(self.value(i)) for i in shared)
        record = self.program.add_module(base, constructor, state or {}, weights)
        # state keys follow the order of the inputs they hold (weight, bias, ...)
        by_input = provenance.params(self.node)
        for key, index in zip(state or {}, shared):
            if by_input.get(index):
                record.state_params.setdefault(key, list(by_input[index]))
        record.nodes.extend(node.name or node.op_type for node in self.nodes)
        record.sources.extend(s for s in sources if s not in record.sources)
        return f"self.{record.name}"

    def assign(self, expr: Expr, output: int = 0) -> str:
        """``output_variable = expr``; returns the variable."""
        value = self._final_outputs()[output]
        target = self.program.variable(value)
        if self._statement(target, expr):
            self.program.defined.add(id(value))
        return target

    def assign_all(self, expr: Expr) -> None:
        """``a, b, c = expr`` for a node with several outputs."""
        values = self._final_outputs()
        targets = [self.program.variable(value) for value in values]
        if self._statement(", ".join(targets) + ("," if len(targets) == 1 else ""), expr):
            self.program.defined.update(id(value) for value in values)

    def output_used(self, index: int) -> bool:
        """Whether output ``index`` exists and something reads it (a node or the graph's outputs)."""
        outputs = self._final_outputs()
        if index >= len(outputs) or not outputs[index].name:
            return False
        value = outputs[index]
        return value.is_graph_output() or bool(list(value.uses()))

    def helper(self, name: str) -> str:
        """The name of helper function ``name`` (see ``helpers``), which model.py will carry."""
        if name not in self.program.helpers:
            self.program.helpers.append(name)
        return name

    def temporary(self, expr: Expr, hint: str) -> str:
        """An intermediate variable (e.g. the padded input of a convolution)."""
        target = self.program.variables.claim(hint)
        self._statement(target, expr)
        return target

    def alias(self, index: int = 0) -> None:
        """The output is input ``index`` itself (Identity, Dropout at inference)."""
        value = self.value(index)
        expression = self.x(index) if value is not None else "None"
        self.program.bind(self._final_outputs()[0], expression)

    def alias_output(self, index: int, expression: str) -> None:
        """Output ``index`` is ``expression``, a variable the node's code already computed."""
        if self.ok:
            self.program.bind(self._final_outputs()[index], expression)

    def absorb(self, node: ir.Node) -> None:
        """Emit ``node`` together with this one (its outputs become this code's outputs)."""
        self.nodes.append(node)
        self.program.absorbed.add(id(node))

    def _final_outputs(self) -> Sequence[ir.Value]:
        return self.nodes[-1].outputs

    def _statement(self, target: str, expr: Expr) -> bool:
        if not self.ok:
            return False
        names = [node.name or node.op_type for node in self.nodes]
        self.program.statements.append(Statement(target, expr, names, self.sources()))
        return True


def single_use(value: ir.Value, op_type: str) -> ir.Node | None:
    """The one node that uses ``value`` if it has ``op_type`` and the value is not
    a graph output (so fusing the two hides nothing)."""
    if value.is_graph_output():
        return None
    consumers = list(value.consumers())
    uses = list(value.uses())
    if len(consumers) == 1 and len(uses) == 1 and consumers[0].op_type == op_type:
        return consumers[0]
    return None


Emitter = Callable[[TorchNodeContext], None]
EMITTERS: Registry[Emitter] = Registry("PyTorch writer: ONNX op → torch code")
