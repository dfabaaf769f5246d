"""Build a graph node by node, with provenance, for readers of non-ONNX formats.

The built model has every value typed and shaped by ONNX shape inference.

Weights enter as NumPy arrays and are wrapped without copying element by element
(``ir.tensor`` keeps the array's buffer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from . import provenance
from .names import UniqueNames
from .shapes import infer_shapes

DEFAULT_OPSET = 17


def initializer_value(name: str, array: np.ndarray) -> ir.Value:
    """A typed, shaped initializer value over ``array``'s buffer (no element copies)."""
    array = np.asarray(array)  # not ascontiguousarray alone: it turns 0-d scalars into shape (1,)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )


class GraphBuilder:
    def __init__(self, name: str, opset: int = DEFAULT_OPSET) -> None:
        self.name = name
        self.opset = opset
        self._inputs: list[ir.Value] = []
        self._outputs: list[ir.Value] = []
        self._initializers: list[ir.Value] = []
        self._nodes: list[ir.Node] = []
        self._names = UniqueNames()

    def unique(self, name: str) -> str:
        """``name`` if unused, else ``name_1``, ``name_2``, ..."""
        return self._names.claim(name)

    def add_input(
        self, name: str, shape: Sequence[int | str | None], dtype: ir.DataType = ir.DataType.FLOAT
    ) -> ir.Value:
        value = ir.Value(name=self.unique(name), shape=ir.Shape(list(shape)), type=ir.TensorType(dtype))
        self._inputs.append(value)
        return value

    def add_initializer(self, name: str, array: np.ndarray) -> ir.Value:
        value = initializer_value(self.unique(name), array)
        self._initializers.append(value)
        return value

    def add_node(
        self,
        op_type: str,
        inputs: Sequence[ir.Value | None],
        attributes: Mapping[str, Any] | None = None,
        *,
        sources: Sequence[str] = (),
        params: Mapping[int, Sequence[str]] | None = None,
        outputs: Sequence[str] | None = None,
        name: str | None = None,
        domain: str = "",
    ) -> list[ir.Value]:
        """Append a node; returns its output values (named from ``outputs``)."""
        output_names = list(outputs or [name or op_type.lower()])
        output_values = [ir.Value(name=self.unique(n)) for n in output_names]
        node = ir.Node(
            domain,
            op_type,
            inputs,
            attributes=[ir.convenience.convert_attribute(k, v) for k, v in (attributes or {}).items()],
            outputs=output_values,
            name=self.unique(name or (sources[0] if sources else op_type)),
        )
        provenance.set_sources(node, sources)
        if params:
            provenance.set_params(node, params)
        self._nodes.append(node)
        return output_values

    def set_outputs(self, values: Sequence[ir.Value]) -> None:
        self._outputs = list(values)

    def build(self) -> ir.Model:
        graph = ir.Graph(
            self._inputs,
            self._outputs,
            nodes=self._nodes,
            initializers=self._initializers,
            opset_imports={"": self.opset},
            name=self.name,
        )
        # typed values everywhere: tools such as onnxsim reject untyped graph outputs
        return infer_shapes(ir.Model(graph, ir_version=8, producer_name="workbench"))
