"""Caffe (``.prototxt`` + ``.caffemodel``) -> graph.

The network is read as Caffe runs it for deployment (TEST phase, V1 layers
upgraded, legacy ``input:`` header or ``Input`` layers) and converted layer by
layer with Caffe's exact arithmetic (``layers.py``).

Names and provenance:

* Every node records the Caffe layer it came from (``provenance.sources``), and
  every weight the blob it came from as ``"<layer>/<blob index>"``
  (``provenance.params``: ``{1: ["conv1/0"], 2: ["conv1/1"]}``).
* The network outputs are the blobs no later layer consumes (Caffe's rule), in
  the order they were last written; each output value is named after its blob.
* Any other value is named after its top blob, except the output of an in-place
  layer (``bottom == top``, e.g. BatchNorm/Scale/ReLU on ``conv1``), which is a value
  of its own named after the layer; a name already in use gets a ``_1`` suffix.
  Initializers are named after the blob they hold (``conv1/0``), node names are
  ``<layer>/<op type>``.
* Split and Dropout add no node: their tops are their bottom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from ...errors import InputError, Problem, UnsupportedLayersError
from ...graph import Model, SourceInfo, StepReport, provenance
from ...graph.builder import GraphBuilder
from ...graph.converter import ConverterContext
from ...graph.names import UniqueNames
from ...graph.report import timed
from .caffemodel import Weights, read_weights
from .layers import LAYERS, WEIGHTS_KIND, Converter, LayerContext, needs_weights
from .prototxt import DeployNet, read_net

__all__ = ["LAYERS", "read_caffe"]


def read_caffe(
    prototxt: str | Path,
    caffemodel: str | Path,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Model:
    """Read a Caffe network and its trained weights into a ``Model``.

    ``input_shapes`` gives or overrides the shapes of input blobs (by blob name),
    for prototxts that declare inputs without a shape.
    """
    prototxt, caffemodel = Path(prototxt), Path(caffemodel)
    report = StepReport("read_caffe")
    with timed(report):
        net = read_net(prototxt)
        weights = read_weights(caffemodel)
        model = _NetConverter(net, weights, dict(input_shapes or {}), caffemodel).convert(report)
    return Model(model, SourceInfo("caffe", (str(prototxt), str(caffemodel)), net.name), [report])


def _top_names(net: DeployNet) -> tuple[dict[tuple[int, int], str], list[str]]:
    """The value name of every (layer index, top index), and the network outputs.

    Outputs follow Caffe: a blob stays available from its last write until a later
    layer reads it; what remains available at the end is the network's output.
    """
    available = dict.fromkeys(net.inputs)
    last_write: dict[str, tuple[int, int]] = {}
    for layer_index, layer in enumerate(net.layers):
        for blob in layer.bottom:
            available.pop(blob, None)
        for top_index, blob in enumerate(layer.top):
            available.pop(blob, None)
            available[blob] = None
            last_write[blob] = (layer_index, top_index)
    outputs = list(available)
    taken = UniqueNames([*outputs, *net.inputs])
    names = {}
    for layer_index, layer in enumerate(net.layers):
        for top_index, blob in enumerate(layer.top):
            key = (layer_index, top_index)
            if blob in available and last_write[blob] == key:
                names[key] = blob
            else:
                names[key] = taken.claim(layer.name if blob in layer.bottom else blob)
    return names, outputs


class _NetConverter:
    """The walk over a deploy net: blob -> current value, problems collected."""

    def __init__(
        self, net: DeployNet, weights: Weights, input_shapes: dict[str, Sequence[int]], caffemodel: Path
    ) -> None:
        self.net = net
        self.weights = weights
        self.input_shapes = input_shapes
        self.caffemodel = caffemodel
        self.builder = GraphBuilder(net.name)
        self.top_names, self.outputs = _top_names(net)
        # every name handed to the builder comes from here, so the builder never renames
        self.taken = UniqueNames([*self.top_names.values(), *self.outputs, *net.inputs])
        self.values: dict[str, ir.Value | None] = {}  # blob -> current value (None: its layer failed)
        self.layer_index = 0
        self.problems: list[Problem] = []  # every layer's, through the converter contract

    # ---- names and nodes ---------------------------------------------------
    def _initializer(self, name: str, array: np.ndarray) -> ir.Value:
        return self.builder.add_initializer(self.taken.claim(name), array)

    def _emit(
        self,
        layer: str,
        op_type: str,
        inputs: list[ir.Value | None],
        attributes: dict,
        params: dict[int, list[str]],
        shapes: list[tuple[int, ...]],
        tops: list[int] | None,
    ) -> list[ir.Value]:
        if tops is None:
            names = [self.taken.claim(f"{layer}/{op_type.lower()}")]
        else:
            names = [self.top_names[(self.layer_index, top)] for top in tops]
        values = self.builder.add_node(
            op_type,
            inputs,
            attributes,
            sources=[layer],
            params=params,
            outputs=names,
            name=self.taken.claim(f"{layer}/{op_type}"),
        )
        for value, shape in zip(values, shapes):
            value.shape = ir.Shape(shape)
            value.type = ir.TensorType(ir.DataType.FLOAT)
        return values

    # ---- inputs ------------------------------------------------------------
    def _input_shape(self, blob: str, declared: Sequence[int] | None) -> tuple[int, ...]:
        shape = self.input_shapes.get(blob, declared)
        if not shape or not all(int(d) > 0 for d in shape):
            raise InputError(
                f"input blob {blob} has no usable shape",
                expected="input_shape / input_dim in the header, or an Input layer with a shape",
                found=str(list(shape)) if shape else "no shape",
                remedy=f"give the shape, e.g. read_caffe(..., input_shapes={{'{blob}': [1, 3, 224, 224]}})",
            )
        return tuple(int(d) for d in shape)

    def _input_layer(self, layer: Any) -> None:
        shapes = [tuple(int(d) for d in s.dim) for s in layer.input_param.shape]
        if len(shapes) not in (0, 1, len(layer.top)):
            raise InputError(
                f"Input layer {layer.name} gives {len(shapes)} shapes for {len(layer.top)} tops",
                remedy="give one shape for all tops or one per top",
            )
        for index, blob in enumerate(layer.top):
            declared = shapes[0] if len(shapes) == 1 else (shapes[index] if shapes else None)
            name = self.top_names[(self.layer_index, index)]
            self.values[blob] = self.builder.add_input(name, self._input_shape(blob, declared))

    # ---- the walk ----------------------------------------------------------
    def convert(self, report: StepReport) -> ir.Model:
        for layer in self.net.layers:
            if needs_weights(layer) and not self.weights.blobs.get(layer.name):
                self._context(layer).problem(
                    WEIGHTS_KIND, "has no weights in the caffemodel", "pass the caffemodel trained with this prototxt"
                )
        self._raise_problems()
        self._check_input_shapes()
        for blob, declared in self.net.inputs.items():
            self.values[blob] = self.builder.add_input(blob, self._input_shape(blob, declared))
        for index, layer in enumerate(self.net.layers):
            self.layer_index = index
            self._convert_layer(layer)
        self._raise_problems()
        outputs = [self._output_value(blob) for blob in self.outputs]
        self.builder.set_outputs(outputs)
        model = self.builder.build()
        self._fill_report(report, model)
        return model

    def _check_input_shapes(self) -> None:
        input_blobs = [*self.net.inputs, *(b for layer in self.net.layers if layer.type == "Input" for b in layer.top)]
        strangers = sorted(set(self.input_shapes) - set(input_blobs))
        if strangers:
            raise InputError(
                f"input shapes were given for blob(s) that are not network inputs: {', '.join(strangers)}",
                expected=f"input blobs {', '.join(input_blobs) or '(none)'}",
                remedy="name the input blobs of the prototxt",
            )

    def _context(self, layer: Any, inputs: list[ir.Value] | None = None) -> LayerContext:
        blobs = self.weights.blobs.get(layer.name, [])
        return LayerContext(self.problems, layer, inputs or [], blobs, self._emit, self._initializer)

    def _convert_layer(self, layer: Any) -> None:
        if layer.type == "Input":
            self._input_layer(layer)
            return
        unknown = [blob for blob in layer.bottom if blob not in self.values]
        if unknown:
            raise InputError(
                f"layer {layer.name} ({layer.type}) reads blob(s) {', '.join(unknown)} that no earlier layer makes",
                remedy="check the bottom names and the layer order of the prototxt",
            )
        found = [self.values[blob] for blob in layer.bottom]
        inputs = [value for value in found if value is not None]
        for blob in layer.top:
            self.values[blob] = None  # until the layer converts
        converter = LAYERS.get(layer.type)
        if converter is None:
            ConverterContext(self.problems, name=layer.name, op_type=layer.type, source=(layer.name,)).problem(
                "unsupported-layer",
                "layer type not supported",
                "replace the layer by types the reader converts (the README lists them), or convert it by hand",
            )
        elif len(inputs) == len(found):  # else an earlier layer failed and was reported
            self._run(converter, self._context(layer, inputs))

    def _run(self, converter: Converter, context: LayerContext) -> None:
        converter(context)
        outputs, tops = context.outputs or [], list(context.layer.top)
        if context.ok and len(outputs) != len(tops):
            context.problem(
                "tops",
                f"has {len(tops)} top(s), the conversion gives {len(outputs)}",
                "give the layer the tops its type produces",
            )
        if context.ok:
            self.values.update(zip(tops, outputs))

    def _output_value(self, blob: str) -> ir.Value:
        """The value of an output blob, under the blob's name (a Split or Dropout at
        the end passes its bottom through, so the name needs an Identity)."""
        value = self.values[blob]
        assert value is not None  # a layer that did not convert was reported and raised
        if value.name == blob:
            return value
        writer = next(layer.name for layer in reversed(self.net.layers) if blob in layer.top)
        (named,) = self.builder.add_node(
            "Identity", [value], sources=[writer], outputs=[blob], name=self.taken.claim(f"{writer}/Identity")
        )
        named.shape, named.type = value.shape, value.type
        return named

    def _raise_problems(self) -> None:
        """Blobs that do not fit the prototxt are bad input (InputError); layers the reader
        cannot express are listed all at once (UnsupportedLayersError)."""
        weights = [p for p in self.problems if p.kind == WEIGHTS_KIND]
        if weights:
            known = {layer.name for layer in self.net.layers}
            unused = sorted(name for name in self.weights.blobs if name not in known)
            listing = "\n    ".join(sorted(f"{p.node}: {p.message}" for p in weights))
            extra = f"\n  layers with weights that the prototxt does not have: {', '.join(unused)}" if unused else ""
            layers = len({p.node for p in weights})
            raise InputError(
                f"the weights in {self.caffemodel} do not fit the prototxt ({layers} layer(s))",
                expected="a caffemodel trained from this prototxt (the same layer names and blob shapes)",
                found=f"\n    {listing}{extra}",
                remedy="pass the caffemodel that belongs to this prototxt, or rename the layers to match",
            )
        if self.problems:
            raise UnsupportedLayersError(
                "Caffe",
                self.problems,
                remedy="replace or remove these layers in the prototxt, or convert them by hand",
            )

    def _fill_report(self, report: StepReport, model: ir.Model) -> None:
        layers = self.net.layers
        with_nodes = {name for node in model.graph for name in provenance.sources(node)}
        in_place = [layer.name for layer in layers if set(layer.top) & set(layer.bottom) and layer.name in with_nodes]
        used = {layer.name for layer in layers}
        unused = sorted(name for name in self.weights.blobs if name not in used)
        report.summary = f"{len(layers)} Caffe layers → {len(model.graph)} nodes"
        report.counts = {
            "layers": len(layers),
            "nodes": len(model.graph),
            "initializers": len(model.graph.initializers),
            "parameters": int(sum(a.size for name in used for a in self.weights.blobs.get(name, []))),
            "outputs": list(self.outputs),
        }
        if self.net.skipped:
            report.changes.append(
                f"skipped {len(self.net.skipped)} layer(s) outside the TEST phase: {', '.join(self.net.skipped)}"
            )
        if in_place:
            report.changes.append(f"{len(in_place)} in-place layer(s) given values of their own: {', '.join(in_place)}")
        if unused:
            report.warnings.append(
                f"the caffemodel has weights for layers the prototxt does not use: {', '.join(unused)}"
            )
