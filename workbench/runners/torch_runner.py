"""Run a PyTorch module and give every submodule's output, through forward hooks.

``run_layers`` names each output by the submodule's path in ``named_modules()``
(``layer1.0.conv1``), the same names the PyTorch reader records as provenance, so
they line up with the exported graph without any name editing. A module called
twice (a shared ``ReLU``) yields its name twice. Modules that return tuples or
lists yield nothing themselves (their tensor-returning children still do). The
final outputs follow the layers, named ``output`` (one tensor) or ``output_0``,
``output_1``, ... (a tuple), in the order ``forward`` returns them.

The forward pass runs in a worker thread whose hooks hand one tensor at a time to
the consumer, so a caller that keeps statistics only never holds more than a few
activations. Each yielded array is a copy: a later in-place op (``ReLU(inplace=True)``)
cannot change it. With ``names``, only those submodules are hooked.

For diagnosis the runner shows a BatchNorm submodule's constants under the names
of ONNX's BatchNormalization (``layer_constants``). ``load_torch_folder`` loads the
PyTorch writer's generated folder as a user would.
"""

from __future__ import annotations

import importlib.util
import inspect
import queue
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .base import Inputs, LayerConstants, LayerStream, Runner

_DONE = object()


class _Stopped(Exception):
    """Raised inside a hook to abandon a forward pass nobody is reading any more."""


def _output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{index}" for index in range(count)]


def _tensors(result: Any) -> list:
    import torch

    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)) and all(isinstance(item, torch.Tensor) for item in result):
        return list(result)
    raise InputError(
        "the PyTorch module returned something other than tensors",
        expected="a tensor or a tuple of tensors",
        found=type(result).__name__,
        remedy="wrap the module so that forward returns tensors",
    )


class TorchRunner(Runner):
    name = "pytorch"

    def __init__(
        self,
        module: Any,
        input_names: Sequence[str] | None = None,
        *,
        input_shapes: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """``input_shapes``: the shapes the module is meant for (a factory's
        ``input_shape``), when known."""
        import torch

        if not isinstance(module, torch.nn.Module):
            raise InputError(
                "TorchRunner needs a torch.nn.Module",
                found=type(module).__name__,
                remedy="pass the model instance, not its class or its state dict",
            )
        self.module = module.eval()
        self.description = type(module).__name__
        self.input_names = list(input_names) if input_names else self._forward_parameters()
        self.output_names = ["output"]
        self._input_shapes = [tuple(int(d) for d in shape) for shape in input_shapes] if input_shapes else None

    @property
    def layer_sources(self) -> dict[str, tuple[str, ...]]:
        """Each submodule's output stands for the source layer of its own path."""
        return {name: (name,) for name, _ in self.module.named_modules() if name}

    def input_shapes(self) -> list[tuple[int, ...]] | None:
        return list(self._input_shapes) if self._input_shapes else None

    def layer_constants(self, name: str) -> LayerConstants | None:
        """A BatchNorm submodule's statistics and affine parameters, named as ONNX's
        BatchNormalization names them (a missing weight is 1, a missing bias 0)."""
        import torch

        module = dict(self.module.named_modules()).get(name)
        if not isinstance(module, torch.nn.modules.batchnorm._BatchNorm) or module.running_var is None:
            return None
        ones = np.ones(module.num_features)
        arrays = {
            "scale": module.weight.detach().double().numpy() if module.weight is not None else ones,
            "B": module.bias.detach().double().numpy() if module.bias is not None else 0 * ones,
            "input_mean": module.running_mean.double().numpy() if module.running_mean is not None else 0 * ones,
            "input_var": module.running_var.double().numpy(),
        }
        return LayerConstants("BatchNormalization", arrays, {"epsilon": float(module.eps)})

    def _forward_parameters(self) -> list[str]:
        parameters = inspect.signature(self.module.forward).parameters.values()
        positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return positional or ["input"]

    def _arguments(self, inputs: Inputs | np.ndarray) -> list:
        import torch

        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, Mapping):
            if all(name in inputs for name in self.input_names):
                inputs = [inputs[name] for name in self.input_names]
            else:
                inputs = list(inputs.values())
        return [torch.from_numpy(np.ascontiguousarray(array)) for array in inputs]

    def _forward(self, arguments: list) -> list:
        import torch

        with torch.inference_mode():
            outputs = _tensors(self.module(*arguments))
        self.output_names = _output_names(len(outputs))
        return outputs

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Final outputs by name."""
        outputs = self._forward(self._arguments(inputs))
        return {name: tensor.numpy().copy() for name, tensor in zip(self.output_names, outputs)}

    def layer_names(self, inputs: Inputs) -> list[str]:
        """The names ``run_layers(inputs)`` yields, learnt from one forward pass that
        records names only (the order of calls is only known by running)."""
        import torch

        names: list[str] = []

        def record(name: str) -> Callable[..., None]:
            def hook(module: Any, args: Any, output: Any) -> None:
                if isinstance(output, torch.Tensor):
                    names.append(name)

            return hook

        handles = [m.register_forward_hook(record(n)) for n, m in self.module.named_modules() if n]
        try:
            outputs = self._forward(self._arguments(inputs))
        finally:
            for handle in handles:
                handle.remove()
        return names + _output_names(len(outputs))

    def run_layers(self, inputs: Inputs, names: Collection[str] | None = None) -> LayerStream:
        """Every submodule's output by module path, in call order, then the final outputs
        (only the submodules in ``names`` when given; the final outputs always)."""
        stream = _HookedForward(self, self._arguments(inputs), names)
        return stream.items()


class _HookedForward:
    """One forward pass in a worker thread whose forward hooks hand each submodule's
    output to the consumer one at a time (a queue of one), so a consumer that keeps
    only statistics never holds more than a couple of activations."""

    def __init__(self, runner: TorchRunner, arguments: Any, names: Collection[str] | None) -> None:
        self.runner = runner
        self.arguments = arguments
        self.names = names
        self.channel: queue.Queue = queue.Queue(maxsize=1)
        self.stop = threading.Event()

    def send(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.channel.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def hook_for(self, name: str) -> Callable[..., None]:
        import torch

        def hook(module: Any, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                self.send((name, output.detach().cpu().numpy().copy()))

        return hook

    def forward(self) -> None:
        module = self.runner.module
        handles = [
            m.register_forward_hook(self.hook_for(n))
            for n, m in module.named_modules()
            if n and (self.names is None or n in self.names)
        ]
        try:
            outputs = self.runner._forward(self.arguments)
            for name, tensor in zip(self.runner.output_names, outputs):
                self.send((name, tensor.numpy().copy()))
            self.send(_DONE)
        except _Stopped:
            return
        except BaseException as error:  # noqa: BLE001 (every error reaches the consumer, which must not wait forever)
            try:
                self.send(error)
            except _Stopped:
                return
        finally:
            for handle in handles:
                handle.remove()

    def items(self) -> LayerStream:
        worker = threading.Thread(target=self.forward, name="TorchRunner.run_layers", daemon=True)
        worker.start()
        try:
            while True:
                item = self.channel.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop.set()
            worker.join()


def load_torch_folder(folder: str | Path) -> Any:
    """The ``nn.Module`` of a generated PyTorch folder, as a user loads it:
    ``model.py`` imported by path, ``Model()``, then ``weights.pt`` read with
    ``weights_only=True`` (never unpickling code). The weights are memory-mapped and
    assigned to the module (``mmap=True``, ``assign=True``) rather than copied into
    the parameters ``Model()`` made: on VGG-16 that held 1.3 GB at the peak instead
    of 0.9 GB. Left in the mode ``Model()`` builds it in; the caller chooses ``eval()``."""
    import torch

    folder = Path(folder)
    code, weights = folder / "model.py", folder / "weights.pt"
    if not code.is_file() or not weights.is_file():
        raise InputError(
            f"{folder} is not a generated PyTorch model",
            expected="a folder with model.py and weights.pt",
            found=", ".join(sorted(p.name for p in folder.iterdir())) if folder.is_dir() else "no such folder",
            remedy="write one with `workbench convert ... --to pytorch -o FOLDER`",
        )
    module_name = f"workbench_generated_{abs(hash(str(code.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, code)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import {code}", remedy="write the folder again")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    network = module.Model()
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
        network.load_state_dict(state, assign=True)
    except Exception as error:  # unpickling refusals, missing or extra keys
        raise InputError(
            f"{weights} does not load into {code}'s Model",
            found=str(error).splitlines()[0],
            remedy="write the folder again; weights.pt must be a state dict of tensors",
        ) from error
    return network
