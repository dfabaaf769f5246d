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
cannot change it.
"""

from __future__ import annotations

import inspect
import queue
import threading
from typing import Iterator, Mapping, Sequence

import numpy as np

from ..errors import InputError

_DONE = object()


class _Stopped(Exception):
    """Raised inside a hook to abandon a forward pass nobody is reading any more."""


def _output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{index}" for index in range(count)]


def _tensors(result) -> list:
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


class TorchRunner:
    name = "pytorch"

    def __init__(self, module, input_names: Sequence[str] | None = None) -> None:
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

    @property
    def layer_sources(self) -> dict[str, tuple[str, ...]]:
        """Each submodule's output stands for the source layer of its own path."""
        return {name: (name,) for name, _ in self.module.named_modules() if name}

    def _forward_parameters(self) -> list[str]:
        parameters = inspect.signature(self.module.forward).parameters.values()
        positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return positional or ["input"]

    def _arguments(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray) -> list:
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

    def run(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Final outputs by name."""
        outputs = self._forward(self._arguments(inputs))
        return {name: tensor.numpy().copy() for name, tensor in zip(self.output_names, outputs)}

    def layer_names(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> list[str]:
        """The names ``run_layers(inputs)`` yields, learnt from one forward pass that
        records names only (the order of calls is only known by running)."""
        import torch

        names: list[str] = []

        def record(name: str):
            def hook(module, args, output) -> None:
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

    def run_layers(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
        """Every submodule's output by module path, in call order, then the final outputs."""
        import torch

        arguments = self._arguments(inputs)
        channel: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def send(item) -> None:
            while not stop.is_set():
                try:
                    channel.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
            raise _Stopped

        def hook_for(name: str):
            def hook(module, args, output) -> None:
                if isinstance(output, torch.Tensor):
                    send((name, output.detach().cpu().numpy().copy()))

            return hook

        def work() -> None:
            handles = [m.register_forward_hook(hook_for(n)) for n, m in self.module.named_modules() if n]
            try:
                outputs = self._forward(arguments)
                for name, tensor in zip(self.output_names, outputs):
                    send((name, tensor.numpy().copy()))
                send(_DONE)
            except _Stopped:
                return
            except BaseException as error:  # handed to the consumer, which re-raises it
                try:
                    send(error)
                except _Stopped:
                    return
            finally:
                for handle in handles:
                    handle.remove()

        worker = threading.Thread(target=work, name="TorchRunner.run_layers", daemon=True)
        worker.start()
        try:
            while True:
                item = channel.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()
