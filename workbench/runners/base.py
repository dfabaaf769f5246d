"""The runner protocol: what ``compare`` may ask of any runtime.

Every runner runs a model and names what it computes:

* ``name``: the runtime (``"onnxruntime"``, ``"opencv"``, ``"pytorch"``, ``"recorded"``);
  ``description``: which model (``net.prototxt + net.caffemodel``);
* ``input_names`` / ``output_names``: the model's inputs and final outputs;
* ``run(inputs) -> {name: array}``: final outputs; ``inputs`` is a mapping by input
  name or a sequence in input order;
* ``run_layers(inputs, names=None)``: named intermediate outputs in execution order,
  one at a time, so that a consumer keeping statistics only holds a few; with
  ``names``, only those (a runner whose runtime allows it skips the rest).

What a runtime can do beyond that is declared here too, each capability a method
with the answer of a runtime that cannot ("not known", ``None``), overridden by the
runners that can. The comparator asks these methods and never which concrete
runner it holds (as Polygraphy's runners and comparator do):

* layer names: ``layer_names(inputs)``, the names ``run_layers`` will yield, in order
  (by default learnt from one run, keeping names only);
* layer sources: ``layer_sources``, for each name, the source layers (provenance) it
  stands for (by default none: a name stands for itself);
* final outputs among the layers: ``output_layers``, the name ``run_layers`` yields each
  final output under (by default its own; a Caffe output blob is yielded under the
  name of the layer that writes it last);
* inputs: ``recorded_inputs()``, the input a recording holds for; ``input_shapes()``,
  the fixed input shapes the model declares;
* constants for diagnosis: ``layer_constants(name)``, the op and constant inputs of
  the layer that computes ``name``;
* node evaluation: ``node_evaluation(name, inputs)``, the node that computes ``name``,
  re-runnable alone with some of its constant inputs replaced;
* memory: ``release()`` gives back what the runtime holds (a session, a loaded
  network, weights mapped from files) until the next run loads it again, so that
  two runtimes can run one after the other without holding both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Inputs = Mapping[str, np.ndarray] | Sequence[np.ndarray]
LayerStream = Iterator[tuple[str, np.ndarray]]


@dataclass(frozen=True)
class LayerConstants:
    """The constants of the layer that computes one output, named by ONNX semantics:
    for ``BatchNormalization``, arrays ``scale``, ``bias``, ``mean``, ``var`` and the
    attribute ``epsilon``."""

    op_type: str
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    attributes: Mapping[str, float] = field(default_factory=dict)


class NodeEvaluation(ABC):
    """The node that computes one output, to be run alone with some of its constant
    inputs replaced (e.g. a weight transposed), its other inputs as computed on the
    inputs it was made for."""

    def __init__(self, op_type: str, name: str, label: str) -> None:
        self.op_type = op_type
        self.name = name  # the node's name in its model
        self.label = label  # its source layers, for messages

    @abstractmethod
    def constant(self, index: int) -> np.ndarray | None:
        """Input ``index`` if it is a constant of the model."""

    @abstractmethod
    def evaluate(self, replaced: Mapping[int, np.ndarray]) -> list[np.ndarray]:
        """The node's outputs with the constant inputs in ``replaced`` (by index) swapped."""

    @abstractmethod
    def alternatives(self, index: int) -> Iterator[tuple[str, np.ndarray]]:
        """The model's other constants shaped like input ``index``, each described by
        the layer (and source parameters) that uses it."""


def only(stream: Iterable[tuple[str, np.ndarray]], names: Collection[str] | None) -> LayerStream:
    """The items of ``stream`` named in ``names`` (all of them when ``names`` is None)."""
    for name, array in stream:
        if names is None or name in names:
            yield name, array


class Runner(ABC):
    """Base of every runner: the required members, and each optional capability with
    the answer of a runtime that does not have it."""

    name: str = "runner"
    description: str = ""
    input_names: list[str]
    output_names: list[str]

    @abstractmethod
    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Final outputs by name."""

    @abstractmethod
    def run_layers(self, inputs: Inputs, names: Collection[str] | None = None) -> LayerStream:
        """Named intermediate outputs in execution order (only ``names`` when given)."""

    def layer_names(self, inputs: Inputs) -> list[str]:
        """The names ``run_layers(inputs)`` yields, in order."""
        return [name for name, _ in self.run_layers(inputs)]

    @property
    def layer_sources(self) -> Mapping[str, tuple[str, ...]]:
        """Output name -> the source layers it stands for (none known by default)."""
        return {}

    @property
    def output_layers(self) -> Mapping[str, str]:
        """Final output name -> the name ``run_layers`` yields it under (the last entry of
        that name holds it); by default its own name."""
        return {name: name for name in self.output_names}

    def recorded_inputs(self) -> list[np.ndarray] | None:
        """The inputs the outputs were recorded for, when they are fixed by a recording."""
        return None

    def input_shapes(self) -> list[tuple[int, ...]] | None:
        """Every input's shape, in input order, when the model fixes all of them."""
        return None

    def layer_constants(self, name: str) -> LayerConstants | None:
        """The op and constants of the layer that computes ``name``, when the runtime shows them."""
        return None

    def node_evaluation(self, name: str, inputs: Inputs) -> NodeEvaluation | None:
        """The node that computes ``name``, re-runnable alone, when the runtime allows it."""
        return None

    def release(self) -> None:
        """Give back the runtime's memory until the next run (nothing to give by default)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description or self.name}>"


class SourcedRunner(Runner):
    """A runner together with the provenance of its layer outputs, for runtimes that
    know nothing of it (a Caffe net in OpenCV: the writer's sidecar says which source
    layers each Caffe layer came from). Every other capability is the wrapped runner's."""

    def __init__(self, runner: Runner, layer_sources: Mapping[str, Sequence[str]], order: Sequence[str] = ()) -> None:
        self.runner = runner
        self.name = runner.name
        self.description = runner.description or runner.name
        self._sources = {name: tuple(sources) for name, sources in layer_sources.items()}
        self._order = list(order)

    # the wrapped runner's names, read each time: a PyTorch runner learns its outputs by running
    @property
    def input_names(self) -> list[str]:
        return self.runner.input_names

    @input_names.setter
    def input_names(self, names: list[str]) -> None:
        self.runner.input_names = names

    @property
    def output_names(self) -> list[str]:
        return self.runner.output_names

    @output_names.setter
    def output_names(self, names: list[str]) -> None:
        self.runner.output_names = names

    @property
    def layer_sources(self) -> Mapping[str, tuple[str, ...]]:
        return self._sources

    @property
    def output_layers(self) -> Mapping[str, str]:
        return self.runner.output_layers

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        return self.runner.run(inputs)

    def run_layers(self, inputs: Inputs, names: Collection[str] | None = None) -> LayerStream:
        return self.runner.run_layers(inputs, names)

    def layer_names(self, inputs: Inputs) -> list[str]:
        return list(self._order) if self._order else self.runner.layer_names(inputs)

    def recorded_inputs(self) -> list[np.ndarray] | None:
        return self.runner.recorded_inputs()

    def input_shapes(self) -> list[tuple[int, ...]] | None:
        return self.runner.input_shapes()

    def layer_constants(self, name: str) -> LayerConstants | None:
        return self.runner.layer_constants(name)

    def node_evaluation(self, name: str, inputs: Inputs) -> NodeEvaluation | None:
        return self.runner.node_evaluation(name, inputs)

    def release(self) -> None:
        self.runner.release()
