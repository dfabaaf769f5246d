"""Run a Caffe model in OpenCV DNN, the Caffe runtime people use without a Caffe install.

``OpenCVCaffeRunner`` loads ``.prototxt`` + ``.caffemodel`` with
``cv2.dnn.readNetFromCaffe`` on the plain OpenCV CPU backend with layer fusion
off, so every layer (a ReLU or BatchNorm that would be fused into the preceding
convolution) keeps its own output, and with Winograd convolution off: it computes
3×3 convolutions with some 40 times the rounding error of the direct path that
Caffe itself takes (1.5e-4 against 3.4e-6 on a 128-channel layer), enough to fail
a comparison at the default tolerance, and its transformed weights take 7 times
the memory of the 3×3 weights they come from.

The structure (layer order, bottoms and tops) is read from the prototxt:

* final outputs are the blobs written last by some layer and read by no later
  layer (a Silence layer counts as a reader); ``run`` keys them by top name;
* ``run_layers`` yields every computing layer's output in prototxt order, keyed
  by layer name (a layer with several tops yields one entry per top, keyed by
  the top's blob name). An in-place layer (``top == bottom``) yields the value
  after it, and the layer before it still yields its own output: OpenCV keeps a
  separate output for every requested layer.

What OpenCV does not show, the fixed input shapes and each layer's constants, is
read from the files themselves (``caffe_net.CaffeNet``).

OpenCV protects only the *first* output of a requested layer from being reused
by later layers, so the other tops of a multi-top layer (Slice) are read from a
forward pass that ends at that layer.

The network (the weights and OpenCV's working copies of them) is loaded when first
run, not when the runner is made, and ``release`` drops it until the next run: a
comparison runs the other side first without OpenCV's memory alongside it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from google.protobuf import text_format

from ..errors import InputError, WorkbenchError
from ..formats import caffe_pb2
from .base import Inputs, LayerConstants, LayerStream, Runner
from .caffe_net import CaffeNet

_NO_OUTPUT_TYPES = {"Input", "Silence"}


@dataclass(frozen=True)
class _Layer:
    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]


def _read_structure(prototxt: Path) -> tuple[str, list[_Layer], list[str]]:
    """(net name, layers in order, input blob names) from the prototxt text."""
    definition = caffe_pb2.NetParameter()
    try:
        text_format.Parse(prototxt.read_text(), definition, allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError) as error:
        raise InputError(
            f"{prototxt} is not a readable Caffe prototxt",
            expected="a NetParameter in protobuf text format",
            found=str(error).splitlines()[0],
            remedy="check the file is the network definition (deploy.prototxt)",
        ) from error
    if definition.layers:
        raise InputError(
            f"{prototxt} uses the pre-2015 layer format (layers {{ type: CONVOLUTION }})",
            remedy="upgrade it with Caffe's upgrade_net_proto_text tool",
        )
    layers = [_Layer(l.name, l.type, tuple(l.bottom), tuple(l.top)) for l in definition.layer]
    inputs = list(definition.input) + [top for layer in layers if layer.type == "Input" for top in layer.tops]
    return definition.name, layers, inputs


class OpenCVCaffeRunner(Runner):
    """A Caffe model in OpenCV DNN; outputs keyed by Caffe top (blob) and layer names."""

    name = "opencv"

    def __init__(self, prototxt: str | Path, caffemodel: str | Path) -> None:
        prototxt, caffemodel = Path(prototxt), Path(caffemodel)
        for path in (prototxt, caffemodel):
            if not path.is_file():
                raise InputError(f"no such file: {path}", remedy="check the path")
        self.description = f"{prototxt.name} + {caffemodel.name}"
        self._files = prototxt, caffemodel
        self.declared = CaffeNet(prototxt, caffemodel)  # input shapes and constants, read when asked
        self.model_name, self._layers, self.input_names = _read_structure(prototxt)
        self._net: cv2.dnn.Net | None = None
        self._outputs = self._final_outputs()
        self.output_names = list(self._outputs)

    @property
    def net(self) -> cv2.dnn.Net:
        """The network in OpenCV DNN, loaded on first use."""
        if self._net is None:
            self._net = self._load()
        return self._net

    def _load(self) -> cv2.dnn.Net:
        prototxt, caffemodel = self._files
        try:
            net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        except cv2.error as error:
            raise InputError(
                f"OpenCV DNN cannot load {prototxt.name} + {caffemodel.name}",
                found=str(error).strip().splitlines()[-1],
                remedy="check that the weights belong to this prototxt and that OpenCV knows every layer type",
            ) from error
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        net.enableFusion(False)
        net.enableWinograd(False)
        return net

    def release(self) -> None:
        """Drop the loaded network (and the blobs read for diagnosis) until next asked."""
        self._net = None
        self.declared = CaffeNet(*self._files)

    def _final_outputs(self) -> dict[str, tuple[str, int]]:
        """Top name -> (layer, top index) of blobs nobody reads after they are written."""
        unread: dict[str, tuple[str, int]] = {}
        for layer in self._layers:
            for bottom in layer.bottoms:
                unread.pop(bottom, None)
            if layer.type not in _NO_OUTPUT_TYPES:
                for index, top in enumerate(layer.tops):
                    unread[top] = (layer.name, index)
        return unread

    def input_shapes(self) -> list[tuple[int, ...]] | None:
        """The input shapes the prototxt fixes (header or Input layers)."""
        return self.declared.input_shapes()

    def layer_constants(self, name: str) -> LayerConstants | None:
        """The blobs and parameters of the layer ``name``, by ONNX names (``caffe_net``)."""
        return self.declared.layer_constants(name)

    @property
    def output_layers(self) -> dict[str, str]:
        """Output blob -> the ``run_layers`` name of the layer that writes it last (the
        top's own name for a layer with several tops)."""
        layers = {layer.name: layer for layer in self._layers}
        return {top: layer if len(layers[layer].tops) == 1 else top for top, (layer, _) in self._outputs.items()}

    def _feed(self, inputs: Inputs) -> None:
        if not isinstance(inputs, Mapping):
            inputs = dict(zip(self.input_names, inputs))
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise InputError(
                "inputs missing for the Caffe model",
                expected=", ".join(self.input_names),
                found=", ".join(inputs) or "nothing",
                remedy="pass one array per input blob",
            )
        for name in self.input_names:
            self.net.setInput(np.ascontiguousarray(inputs[name], dtype=np.float32), name)

    def _forward(self, layer_names: list[str]) -> dict[str, list[np.ndarray]]:
        # forwardAndRetrieve gives every output of each named layer, not only the first
        try:
            results = self.net.forwardAndRetrieve(layer_names)
        except cv2.error as error:
            raise WorkbenchError(
                f"OpenCV DNN cannot run {self.description}",
                found=str(error).strip().splitlines()[-1],
                remedy="check the input shapes against the prototxt's Input layers; a layer OpenCV implements "
                "differently from Caffe fails here too (run `workbench check` on the source model)",
            ) from error
        return {name: [np.array(blob) for blob in blobs] for name, blobs in zip(layer_names, results)}

    def _all_tops(self, layer_name: str) -> list[np.ndarray]:
        """Every output of one layer, from a forward pass that stops at it."""
        return self._forward([layer_name])[layer_name]

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Final outputs keyed by their Caffe top (blob) names."""
        self._feed(inputs)
        layer_names = list(dict.fromkeys(layer for layer, _ in self._outputs.values()))
        results = self._forward(layer_names)
        for layer in {layer for layer, index in self._outputs.values() if index > 0}:
            results[layer] = self._all_tops(layer)
        return {top: results[layer][index] for top, (layer, index) in self._outputs.items()}

    def _computing_layers(self) -> list[_Layer]:
        return [layer for layer in self._layers if layer.type not in _NO_OUTPUT_TYPES and layer.tops]

    def layer_names(self, inputs: Inputs | None = None) -> list[str]:
        """The names ``run_layers`` yields, in order (known from the prototxt alone)."""
        names = []
        for layer in self._computing_layers():
            names += [layer.name] if len(layer.tops) == 1 else list(layer.tops)
        return names

    def run_layers(self, inputs: Inputs, names: Collection[str] | None = None) -> LayerStream:
        """Every computing layer's output in prototxt order, keyed by layer name
        (by top name for the tops of a layer with several); only ``names`` when given
        (the other layers' outputs are then not kept)."""
        self._feed(inputs)
        computing = [
            layer
            for layer in self._computing_layers()
            if names is None or layer.name in names or any(top in names for top in layer.tops)
        ]
        if not computing:
            return
        results = self._forward([layer.name for layer in computing])
        for layer in computing:
            if len(layer.tops) == 1:
                yield layer.name, results[layer.name][0]
                continue
            for top, array in zip(layer.tops, self._all_tops(layer.name)):
                if names is None or top in names:
                    yield top, array
