"""The converter contract: what every reader's and writer's converter works through.

A converter converts one node or layer: an ONNX node into Caffe layers or PyTorch
code (writers), a Caffe layer or an MXNet node into ONNX nodes (readers). Every
converter receives a context built on ``ConverterContext`` and

* reports what it cannot do with ``ctx.problem(kind, message, remedy)`` and
  returns: it never raises for an unsupported case. Problems are
  ``workbench.errors.Problem`` values collected in one list per conversion, so
  the walk over the graph lists every problem at once (``UnsupportedError``,
  ``check``), the way onnxscript's rewrite rules report a non-match as a value
  with a reason;
* when it reads an ONNX node (writers), does so through ``OnnxNodeContext``:
  attributes with the defaults of the opset in force (``attr``), parameters by
  their ONNX name whether that opset keeps them as attributes or as inputs
  (``param``, ``require_constants``; see ``opset``), and the window of a
  convolution or pooling with its pads resolved once for every writer
  (``window``; see ``pads``). Constant inputs are read through ``constant_value``,
  which follows ``Identity`` nodes back to the initializer or ``Constant`` they
  copy: an export that is not simplified (``--no-simplify``, TorchScript's
  ``Identity`` on every parameter) gives its weights the same way as one that is.

A format adds its own context class on top (``CaffeNodeContext``,
``TorchNodeContext``, the Caffe reader's ``LayerContext``, the MXNet reader's
``MXNetNodeContext``) with what its converters produce, and a ``Registry`` of
converters keyed by op or layer type (and since-version for ONNX ops).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import onnx
import onnx_ir as ir

from ..errors import Problem
from ..registry import Registry
from . import opset as opsets
from . import provenance
from .pads import Window, WindowProblem, read_window
from .shapes import constant, static_shape

F = TypeVar("F", bound=Callable[..., Any])

UNSUPPORTED_REMEDY = "express this layer differently in the source model, or convert it by hand"
FIXED_SHAPES_REMEDY = (
    "simplify the model with fixed input shapes first (workbench.steps.simplify, --input-shape) "
    "so it becomes a constant"
)
WEIGHTS_REMEDY = "make them parameters of the source model, or constant-fold the model first (workbench.steps.simplify)"
_SCHEMA_DEFAULT: Any = object()


def constant_source(value: ir.Value | None) -> ir.Value | None:
    """The value ``value`` copies through a chain of ``Identity`` nodes (itself when it is
    not an ``Identity`` output)."""
    while value is not None:
        producer = value.producer()
        if producer is None or producer.op_type != "Identity" or opsets.canonical_domain(producer.domain) != "":
            break
        value = producer.inputs[0]
    return value


def constant_value(value: ir.Value | None) -> np.ndarray | None:
    """The data of ``value`` when it is an initializer, a ``Constant`` output, or one of
    those passed through ``Identity`` nodes; None when computed at run time or absent."""
    return constant(constant_source(value))


class ConverterContext:
    """One node or layer being converted: what it is, and where its problems go.

    ``name``, ``op_type`` and ``source`` identify it in every ``Problem`` it reports;
    ``ok`` turns False at its first error, so the walk knows its outputs are missing.
    """

    def __init__(self, problems: list[Problem], *, name: str, op_type: str, source: Sequence[str] = ()) -> None:
        self.problems = problems
        self.subject_name = name
        self.subject_op_type = op_type
        self.subject_source = tuple(source)
        self.ok = True

    def problem(self, kind: str, message: str, remedy: str = "", *, severity: str = "error") -> None:
        """Record a problem: ``kind`` is a short tag (``"unsupported-op"``), ``message``
        says what was found, ``remedy`` what to do; a ``"warning"`` is written around."""
        if severity == "error":
            self.ok = False
        self.problems.append(
            Problem(
                severity=severity,
                kind=kind,
                node=self.subject_name,
                op_type=self.subject_op_type,
                message=message,
                remedy=remedy,
                source=self.subject_source,
            )
        )

    def unsupported(self, message: str, remedy: str = "") -> None:
        """An attribute value or input form the target cannot express."""
        self.problem("unsupported-attribute", message, remedy or UNSUPPORTED_REMEDY)


class OnnxNodeContext(ConverterContext):
    """A converter's view of one ONNX node, read as the opset in force defines it."""

    def __init__(self, problems: list[Problem], node: ir.Node, opset: int | None = None) -> None:
        super().__init__(problems, name=node.name or "", op_type=node.op_type, source=provenance.sources(node))
        self.node = node
        found = opset if opset is not None else opsets.node_opset(node)
        self.opset = found if found is not None else onnx.defs.onnx_opset_version()

    @cached_property
    def schema(self) -> onnx.defs.OpSchema | None:
        """The operator's schema at this opset (None for ops outside the ONNX standard)."""
        if opsets.canonical_domain(self.node.domain) != "":
            return None
        return opsets.schema(self.node.op_type, self.opset)

    def converter(self, registry: Registry[F], target: str) -> F | None:
        """The converter ``registry`` holds for this node at this opset, or None after
        reporting the op as unsupported by ``target``."""
        domain = opsets.canonical_domain(self.node.domain)
        found = registry.get(self.node.op_type, self.opset) if domain == "" else None
        if found is None:
            where = f" (domain {domain})" if domain else ""
            self.problem(
                "unsupported-op",
                f"{self.node.op_type}{where} has no {target} conversion",
                "replace the op in the source model, or run simplify if it only computes constants "
                "(shape arithmetic folds away)",
            )
        return found

    # ---- inputs --------------------------------------------------------------
    def value(self, index: int) -> ir.Value | None:
        inputs = self.node.inputs
        return inputs[index] if index < len(inputs) else None

    def has_input(self, index: int) -> bool:
        """Whether optional input ``index`` is given (an empty name means left out)."""
        value = self.value(index)
        return value is not None and bool(value.name or value.const_value is not None)

    def const(self, index: int) -> np.ndarray | None:
        """The constant data of input ``index`` (through ``Identity`` chains), or None if it
        is computed or absent."""
        return constant_value(self.value(index))

    def shape(self, index: int = 0) -> tuple[int | None, ...] | None:
        """The input's shape, unknown dimensions as None, or None if the rank is unknown."""
        return _shape_of(self.value(index))

    def output_shape(self, index: int = 0) -> tuple[int | None, ...] | None:
        return _shape_of(self.node.outputs[index])

    def static_shape(self, index: int = 0) -> tuple[int, ...] | None:
        """The input's shape when every dimension is known, else None."""
        return static_shape(self.value(index))

    def weights(self, *indices: int, remedy: str = WEIGHTS_REMEDY) -> dict[int, np.ndarray] | None:
        """The constant data of inputs ``indices`` (weights, biases, statistics) by index; an
        optional input the node leaves out is absent. None after reporting a required input
        left out, or one computed at run time: a converter stores weights, never computes them."""
        found: dict[int, np.ndarray] = {}
        for index in indices:
            given = self.has_input(index)
            if not given and opsets.is_optional_input(self.schema, index):
                continue
            data = self.const(index) if given else None
            if data is None:
                self._unusable_weight(index, given, remedy)
                return None
            found[index] = data
        return found

    def _unusable_weight(self, index: int, given: bool, remedy: str) -> None:
        value = self.value(index)
        if given and value is not None:
            self.problem(
                "dynamic-weights",
                f"{self.node.op_type} input {value.name} is computed at run time; the target stores weights as constants",
                remedy,
            )
        else:
            self.problem(
                "malformed-node",
                f"{self.node.op_type} has no input {index}, which the operator requires",
                "check the model with onnx.checker.check_model(model, full_check=True)",
            )

    def rank(self, index: int = 0) -> int | None:
        shape = self.shape(index)
        return len(shape) if shape is not None else None

    def dtype(self, index: int = 0) -> np.dtype | None:
        value = self.value(index)
        if value is None or value.dtype is None:
            return None
        try:
            return np.dtype(value.dtype.numpy())
        except (TypeError, ValueError):
            return None

    # ---- attributes and parameters, as the opset in force keeps them -------
    def attr(self, name: str, default: Any = _SCHEMA_DEFAULT) -> Any:
        """Attribute ``name`` (sequences as tuples, tensors as arrays); when the node
        leaves it out, ``default``, or without one the schema's default at this opset."""
        attribute = self.node.attributes.get(name)
        if attribute is None:
            return opsets.attribute_default(self.schema, name) if default is _SCHEMA_DEFAULT else default
        value = attribute.value
        if isinstance(value, ir.TensorProtocol):
            return value.numpy()
        if isinstance(value, Sequence) and not isinstance(value, str):
            return tuple(value)
        return value

    def param(self, *names: str) -> np.ndarray | None:
        """Parameter ``names[0]`` (or an older name of it, e.g. Pad's ``value`` for
        ``constant_value``) where this opset keeps it: a constant input or an attribute,
        as an array. None when the node leaves it out, or when it is computed at run
        time (``require_constants`` reports that)."""
        for name in names:
            index = opsets.input_index(self.schema, name)
            if index is not None:
                return self.const(index) if self.has_input(index) else None
            if name in self.node.attributes:
                return np.asarray(self.attr(name))
        return None

    def require_constants(self, *names: str) -> bool:
        """True when every named parameter that this opset takes as an input is absent
        or constant; otherwise reports the first one computed at run time."""
        for name in names:
            index = opsets.input_index(self.schema, name)
            value = self.value(index) if index is not None else None
            if index is not None and self.has_input(index) and self.const(index) is None:
                self.problem(
                    "dynamic-shape",
                    f"{self.node.op_type} {name} is computed at run time (input {value.name if value else '?'})",
                    FIXED_SHAPES_REMEDY,
                )
                return False
        return True

    def window(self, kernel: Sequence[int] | None = None) -> Window | None:
        """The node's window with its pads resolved (see ``pads``), or None after
        reporting why they cannot be known."""
        found = read_window(self.node, self.shape(0), kernel)
        if isinstance(found, WindowProblem):
            self.problem(found.kind, found.message, found.remedy)
            return None
        return found


def _shape_of(value: ir.Value | None) -> tuple[int | None, ...] | None:
    if value is None or value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else None for d in value.shape)


@dataclass(frozen=True)
class SliceBounds:
    """A Slice node's parameters: ``starts``, ``ends``, ``axes`` (default: the first
    ``len(starts)`` axes) and ``steps`` (default: 1), as given (not yet clamped)."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    axes: tuple[int, ...]
    steps: tuple[int, ...]


def slice_bounds(ctx: OnnxNodeContext) -> SliceBounds | None:
    """The bounds of the Slice ``ctx`` converts, wherever its opset keeps them
    (attributes before opset 10, constant inputs after); None after reporting
    bounds computed at run time or missing."""
    if not ctx.require_constants("starts", "ends", "axes", "steps"):
        return None
    starts, ends, axes, steps = (ctx.param(name) for name in ("starts", "ends", "axes", "steps"))
    if starts is None or ends is None:
        ctx.problem("malformed-node", "Slice without starts or ends", "check the model with onnx.checker")
        return None
    start_list = tuple(int(v) for v in starts.reshape(-1))
    return SliceBounds(
        start_list,
        tuple(int(v) for v in ends.reshape(-1)),
        tuple(int(v) for v in axes.reshape(-1)) if axes is not None else tuple(range(len(start_list))),
        tuple(int(v) for v in steps.reshape(-1)) if steps is not None else (1,) * len(start_list),
    )
