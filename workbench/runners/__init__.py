"""Runners execute a model and return named outputs (final, or every layer's).

The runner protocol (what ``compare`` relies on):

* ``name``: the runtime (``"onnxruntime"``, ``"opencv"``, ``"pytorch"``, ``"recorded"``).
* ``input_names`` / ``output_names``: the model's inputs and final outputs.
* ``run(inputs) -> dict[str, ndarray]``: final outputs by name; ``inputs`` is a
  mapping by input name or a sequence in input order.
* ``run_layers(inputs) -> Iterator[tuple[str, ndarray]]``: named intermediate
  outputs in execution order, produced one at a time so that a consumer keeping
  statistics only holds a few activations.

Two optional members make comparisons cheaper and better aligned:

* ``layer_sources: Mapping[str, tuple[str, ...]]``: for each name ``run_layers``
  yields, the source layers (provenance) it stands for;
* ``layer_names(inputs) -> list[str]``: the names ``run_layers(inputs)`` will
  yield, in order, when known without keeping tensors;
* ``run_layers(inputs, names=...)``: yield only these names (and skip computing
  what nothing needs, where the runtime allows).

``open_runner`` builds a runner from anything the CLI accepts as a model.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import InputError
from ..graph import Model
from .onnxruntime_runner import OnnxRuntimeRunner
from .recorded import RecordedRunner
from .torch_runner import TorchRunner

if TYPE_CHECKING:
    import torch

Inputs = Mapping[str, np.ndarray] | Sequence[np.ndarray]
PROVENANCE_SUFFIX = ".provenance.json"


@runtime_checkable
class Runner(Protocol):
    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]: ...

    def run_layers(self, inputs: Inputs) -> Iterator[tuple[str, np.ndarray]]: ...


class SourcedRunner:
    """A runner together with the provenance of its layer outputs, for runtimes
    that know nothing of it (a Caffe net in OpenCV: the writer's record says which
    source layers each Caffe layer came from)."""

    def __init__(self, runner: Runner, layer_sources: Mapping[str, Sequence[str]], order: Sequence[str] = ()) -> None:
        self.runner = runner
        self.name = runner.name
        self.description = getattr(runner, "description", runner.name)
        self.layer_sources = {name: tuple(sources) for name, sources in layer_sources.items()}
        self._order = list(order)

    @property
    def input_names(self) -> list[str]:
        return self.runner.input_names

    @property
    def output_names(self) -> list[str]:
        return self.runner.output_names

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        return self.runner.run(inputs)

    def run_layers(self, inputs: Inputs) -> Iterator[tuple[str, np.ndarray]]:
        return self.runner.run_layers(inputs)

    def layer_names(self, inputs: Inputs) -> list[str]:
        if self._order:
            return list(self._order)
        names = getattr(self.runner, "layer_names", None)
        return names(inputs) if names is not None else [name for name, _ in self.runner.run_layers(inputs)]


def caffe_layer_records(details_or_path: Mapping | Sequence | str | Path) -> list[dict]:
    """The Caffe writer's per-layer records, from ``WrittenFiles.details`` or a
    ``NAME.provenance.json`` file (a list of records, or ``{"layers": [...]}``)."""
    data: Any = details_or_path
    if isinstance(details_or_path, (str, Path)):
        data = json.loads(Path(details_or_path).read_text())
    if isinstance(data, Mapping):
        data = data.get("layers", [])
    return [dict(record) for record in data]


def open_caffe_runner(prototxt: str | Path, caffemodel: str | Path, records: Sequence[Mapping] | None = None) -> Runner:
    """A Caffe net in OpenCV DNN, with provenance from the writer's records (or from
    ``NAME.provenance.json`` beside the prototxt) when there are any."""
    from .opencv_runner import OpenCVCaffeRunner

    runner = OpenCVCaffeRunner(str(prototxt), str(caffemodel))
    if records is None:
        sidecar = Path(prototxt).with_suffix(PROVENANCE_SUFFIX)
        records = caffe_layer_records(sidecar) if sidecar.is_file() else None
    if not records:
        return runner
    sources = {record["name"]: tuple(record.get("sources", ())) for record in records}
    return SourcedRunner(runner, sources, [record["name"] for record in records])


def load_torch_folder(folder: str | Path) -> torch.nn.Module:
    """The ``nn.Module`` of a generated PyTorch folder, as a user loads it:
    ``model.py`` imported by path, ``Model()``, then ``weights.pt`` read with
    ``weights_only=True`` (never unpickling code). Left in the mode ``Model()``
    builds it in; the caller chooses ``eval()``."""
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
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    network = module.Model()
    try:
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as error:  # unpickling refusals, missing or extra keys
        raise InputError(
            f"{weights} does not load into {code}'s Model",
            found=str(error).splitlines()[0],
            remedy="write the folder again; weights.pt must be a state dict of tensors",
        ) from error
    return network


def torch_folder_runner(folder: str | Path) -> Runner:
    """The generated PyTorch model in ``folder`` (see ``load_torch_folder``); the
    submodules' source layers come from ``provenance.json`` when it is there."""
    folder = Path(folder)
    network = load_torch_folder(folder)
    runner = TorchRunner(network)
    runner.description = f"{folder.name}/model.py + weights.pt"
    sidecar = folder / "provenance.json"
    if not sidecar.is_file():
        return runner
    modules = json.loads(sidecar.read_text()).get("modules", [])
    return SourcedRunner(runner, {record["name"]: record.get("sources", ()) for record in modules})


def _written_files_runner(written: Any) -> Runner:
    paths = [Path(p) for p in written.paths]
    if written.target == "caffe":
        records = caffe_layer_records(written.details) if written.details.get("layers") else None
        return open_caffe_runner(written.path(".prototxt"), written.path(".caffemodel"), records)
    if written.target == "pytorch":
        return torch_folder_runner(written.path("model.py").parent)
    onnx_files = [p for p in paths if p.suffix == ".onnx"]
    if onnx_files:
        return OnnxRuntimeRunner(onnx_files[0])
    raise InputError(
        f"no runner for {written.target} files",
        expected="onnx, caffe or pytorch output",
        found=", ".join(p.name for p in paths),
        remedy="compare the ONNX or Caffe artifact of the chain instead",
    )


def open_runner(*sources: Any) -> Runner:
    """A runner for: a ``Model``; a ``WrittenFiles``; an ``nn.Module``; a runner
    (returned as is); a dict of recorded arrays; or paths — ``.onnx``,
    ``.prototxt`` + ``.caffemodel`` (OpenCV DNN), ``.npz`` (recorded), a folder
    with ``model.py`` + ``weights.pt``, ``package.module:factory`` (optionally with
    a ``.pt`` state dict)."""
    from ..writers.files import WrittenFiles

    if len(sources) == 1:
        (source,) = sources
        if isinstance(source, Model):
            return OnnxRuntimeRunner(source)
        if isinstance(source, WrittenFiles):
            return _written_files_runner(source)
        if isinstance(source, Runner):
            return source
        if isinstance(source, Mapping):
            return RecordedRunner(source)
        if "torch" in sys.modules and isinstance(source, sys.modules["torch"].nn.Module):
            return TorchRunner(source)
    names = [str(s) for s in sources]
    suffixes = sorted(Path(n).suffix for n in names)
    if suffixes == [".onnx"]:
        return OnnxRuntimeRunner(names[0])
    if suffixes == [".npz"]:
        return RecordedRunner(names[0])
    if suffixes == [".caffemodel", ".prototxt"]:
        prototxt = next(n for n in names if n.endswith(".prototxt"))
        caffemodel = next(n for n in names if n.endswith(".caffemodel"))
        for path in (prototxt, caffemodel):
            if not Path(path).is_file():
                raise InputError(f"no such file: {path}", remedy="check the path")
        return open_caffe_runner(prototxt, caffemodel)
    if len(names) == 1 and Path(names[0]).is_dir():
        return torch_folder_runner(names[0])
    factories = [n for n in names if ":" in n and not Path(n).exists()]
    if len(factories) == 1 and all(n.endswith(".pt") for n in names if n not in factories):
        from ..readers.pytorch_reader import load_factory

        weights = next((n for n in names if n.endswith(".pt")), None)
        return TorchRunner(load_factory(factories[0], weights))
    raise InputError(
        "cannot tell how to run this model",
        expected=(
            "a Model, WrittenFiles, nn.Module, .onnx, .prototxt + .caffemodel, .npz, "
            "a folder with model.py + weights.pt, or package.module:factory [weights.pt]"
        ),
        found=" ".join(names) or "nothing",
        remedy="pass the files that make up one model",
    )


__all__ = [
    "OnnxRuntimeRunner",
    "RecordedRunner",
    "Runner",
    "SourcedRunner",
    "TorchRunner",
    "caffe_layer_records",
    "load_torch_folder",
    "open_runner",
    "open_caffe_runner",
    "torch_folder_runner",
]
