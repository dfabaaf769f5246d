"""A runner that replays outputs recorded elsewhere (e.g. where MXNet is installed).

The recording convention, for a file ``NAME-reference.npz`` (or any ``.npz``):

* every array is one layer's output, stored in execution order (``np.savez`` keeps
  the order of its keyword arguments), under the name the recording framework
  gave it (MXNet's internal outputs are ``<node>_output``);
* the input the outputs were computed from is ``NAME-input.npy`` beside the file,
  or arrays in the ``.npz`` named ``input:<input name>``;
* optional ``meta:outputs``: the names of the final outputs (a string array);
  without it, the last array is the final output;
* optional ``meta:sources``: a JSON string ``{array name: [source layer names]}``,
  the provenance of each array; for an MXNet recording with ``NAME-symbol.json``
  beside it, each ``<node>_output`` stands for its node; otherwise an array
  stands for itself.

``run`` returns the final outputs after checking that the given input is the
recorded one (a recording says nothing about any other input). The recorded input
fixes the input shapes; for an MXNet recording with its ``NAME-symbol.json`` and
``NAME-*.params`` beside it, the constants behind each output are MXNet's params
(``layer_constants``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Inputs, LayerConstants, LayerStream, Runner, only

INPUT_PREFIX = "input:"
OUTPUTS_KEY = "meta:outputs"
SOURCES_KEY = "meta:sources"
INPUT_FILE_SUFFIX = "-input.npy"
REFERENCE_FILE_SUFFIX = "-reference.npz"
SYMBOL_FILE_SUFFIX = "-symbol.json"
INPUT_ATOL = 1e-6  # inputs are saved as float32; equal inputs compare exactly


def _read_recording(recording: str | Path | Mapping[str, np.ndarray]) -> tuple[Path | None, dict[str, np.ndarray]]:
    """The recording's file (if it is one) and its arrays by name, in recorded order."""
    if isinstance(recording, Mapping):
        return None, dict(recording)
    path = Path(recording)
    if not path.is_file():
        raise InputError(f"no such recording: {path}", expected="a .npz of named outputs", remedy="check the path")
    with np.load(path, allow_pickle=False) as archive:
        return path, {key: archive[key] for key in archive.files}


def _final_names(outputs: np.ndarray | None, layers: Mapping[str, np.ndarray]) -> list[str]:
    """``meta:outputs`` when recorded (every name must be a recorded array), else the last array."""
    if outputs is None:
        return [list(layers)[-1]]
    names = [str(name) for name in outputs]
    unknown = [name for name in names if name not in layers]
    if unknown:
        raise InputError(
            f"{OUTPUTS_KEY} names arrays that are not recorded",
            expected=f"names among the recorded arrays ({len(layers)} of them)",
            found=", ".join(unknown),
            remedy=f"record those outputs, or list only recorded names in {OUTPUTS_KEY}",
        )
    return names


class RecordedRunner(Runner):
    name = "recorded"

    def __init__(
        self,
        recording: str | Path | Mapping[str, np.ndarray],
        *,
        inputs: Mapping[str, np.ndarray] | None = None,
        sources: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.path, arrays = _read_recording(recording)
        self.description = self.path.name if self.path is not None else "recorded outputs"
        recorded_inputs = {k[len(INPUT_PREFIX) :]: v for k, v in arrays.items() if k.startswith(INPUT_PREFIX)}
        outputs = arrays.pop(OUTPUTS_KEY, None)
        recorded_sources = arrays.pop(SOURCES_KEY, None)
        self.layers = {k: v for k, v in arrays.items() if not k.startswith(INPUT_PREFIX)}
        if not self.layers:
            raise InputError(
                "the recording holds no layer outputs",
                expected="a .npz with one array per layer output",
                found=", ".join(arrays) or "nothing",
                remedy="record the layer outputs too, one array per output name",
            )
        self.inputs = dict(inputs) if inputs is not None else recorded_inputs or self._sibling_input()
        self.input_names = list(self.inputs) or ["input"]
        self.output_names = _final_names(outputs, self.layers)
        merged: dict[str, Sequence[str]] = dict(self._sibling_sources())
        merged.update(json.loads(str(recorded_sources)) if recorded_sources is not None else {})
        merged.update(sources or {})
        self._sources = {name: tuple(merged.get(name, ())) for name in self.layers}

    @property
    def layer_sources(self) -> Mapping[str, tuple[str, ...]]:
        return self._sources

    def _sibling_input(self) -> dict[str, np.ndarray]:
        sibling = self._sibling(INPUT_FILE_SUFFIX)
        return {"data": np.load(sibling, allow_pickle=False)} if sibling is not None else {}

    def _sibling(self, suffix: str) -> Path | None:
        if self.path is None or not self.path.name.endswith(REFERENCE_FILE_SUFFIX):
            return None
        sibling = self.path.with_name(self.path.name[: -len(REFERENCE_FILE_SUFFIX)] + suffix)
        return sibling if sibling.is_file() else None

    def _sibling_sources(self) -> Mapping[str, Sequence[str]]:
        from ..readers.mxnet_reader import recorded_output_sources

        symbol = self._sibling(SYMBOL_FILE_SUFFIX)
        return recorded_output_sources(symbol) if symbol is not None else {}

    def layer_names(self, inputs: Inputs | None = None) -> list[str]:
        return list(self.layers)

    def recorded_inputs(self) -> list[np.ndarray] | None:
        return list(self.inputs.values()) if self.inputs else None

    def input_shapes(self) -> list[tuple[int, ...]] | None:
        """The shapes of the recorded inputs."""
        return [tuple(array.shape) for array in self.inputs.values()] if self.inputs else None

    def layer_constants(self, name: str) -> LayerConstants | None:
        """For an MXNet recording with ``NAME-symbol.json`` and one ``NAME-*.params`` beside
        it, the constants of the node that computed ``name``: MXNet's params, as the MXNet
        reader's graph (built for the recorded input) holds them."""
        model = self._sibling_model
        return model.layer_constants(name) if model is not None else None

    @cached_property
    def _sibling_model(self) -> Runner | None:
        from .mxnet_runner import MXNetRunner

        symbol = self._sibling(SYMBOL_FILE_SUFFIX)
        if symbol is None or not self.inputs:
            return None
        params = sorted(symbol.parent.glob(symbol.name[: -len(SYMBOL_FILE_SUFFIX)] + "-*.params"))
        if len(params) != 1:
            return None
        return MXNetRunner(symbol, params[0], input_shapes=[array.shape for array in self.inputs.values()])

    def check_inputs(self, inputs: Inputs | None) -> None:
        """Refuse inputs other than the recorded ones (when the input was recorded)."""
        if inputs is None or not self.inputs:
            return
        given = list(inputs.values()) if isinstance(inputs, Mapping) else list(inputs)
        for (name, recorded), array in zip(self.inputs.items(), given):
            array = np.asarray(array)
            if array.shape != recorded.shape or not np.allclose(array, recorded, rtol=0, atol=INPUT_ATOL):
                raise InputError(
                    f"the input differs from the recorded input {name}",
                    expected=f"the recorded array, shape {list(recorded.shape)}",
                    found=f"an array of shape {list(array.shape)} with other values",
                    remedy="compare on the recorded input (leave inputs unset) or record the new input",
                )

    def run(self, inputs: Inputs | None = None) -> dict[str, np.ndarray]:
        """The recorded final outputs."""
        self.check_inputs(inputs)
        return {name: self.layers[name] for name in self.output_names}

    def run_layers(self, inputs: Inputs | None = None, names: Collection[str] | None = None) -> LayerStream:
        """The recorded layer outputs in recorded order."""
        self.check_inputs(inputs)
        return only(self.layers.items(), names)
