"""Runners execute a model and return named outputs (final, or every layer's).

The protocol every runner follows, with the capabilities ``compare`` may ask of it
(layer names, layer sources, per-layer runs, inputs, constants for diagnosis, node
evaluation), is ``base.Runner``.

``open_runner`` builds a runner for anything the API and the CLI accept as a model:
a ``Model``, an ``nn.Module``, a dict of recorded arrays or a runner as they are;
files (and ``WrittenFiles``) identified by ``workbench.artifacts.identify`` and opened
with the runner registered for their kind in ``RUNNERS``. A runner of files written
by the workbench knows the source layer of every output from the writer's sidecar.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..artifacts import Artifact, identify
from ..errors import InputError
from ..graph import Model
from .base import Inputs, LayerConstants, NodeEvaluation, Runner, SourcedRunner
from .onnxruntime_runner import OnnxRuntimeRunner
from .recorded import RecordedRunner
from .torch_runner import TorchRunner, load_torch_folder

RunnerFactory = Callable[[Artifact], Runner]


def _onnx_runner(artifact: Artifact) -> Runner:
    return OnnxRuntimeRunner(artifact.path("model"))


def _caffe_runner(artifact: Artifact) -> Runner:
    """OpenCV DNN, with provenance from the Caffe writer's sidecar when there is one."""
    from ..writers.caffe.sidecar import layer_sources, read_layer_records
    from .opencv_runner import OpenCVCaffeRunner

    runner = OpenCVCaffeRunner(artifact.path("prototxt"), artifact.path("caffemodel"))
    records = read_layer_records(artifact.sidecar) if artifact.sidecar is not None else []
    if not records:
        return runner
    return SourcedRunner(runner, layer_sources(records), [record["name"] for record in records])


def _msnhnet_runner(artifact: Artifact) -> Runner:
    """The project's NumPy executor of MsnhNet files, with the writer's provenance record
    (layer sources, output names and shapes) when there is one."""
    from ..writers.msnhnet.sidecar import read_sidecar
    from .msnhnet_runner import MsnhNetRunner

    record = read_sidecar(artifact.sidecar) if artifact.sidecar is not None else None
    return MsnhNetRunner(artifact.path("model"), artifact.path("weights"), record)


def _factory_runner(artifact: Artifact) -> Runner:
    """The module a ``package.module:factory`` builds, with its declared input shape."""
    from ..readers.pytorch_reader import declared_input_shape, load_factory

    spec = artifact.spec or ""
    module = load_factory(spec, artifact.optional_path("weights"))
    shape = declared_input_shape(spec)
    return TorchRunner(module, input_shapes=[shape] if shape else None)


def _torch_folder_runner(artifact: Artifact) -> Runner:
    """A generated PyTorch folder (see ``load_torch_folder``); its submodules' source
    layers come from the PyTorch writer's sidecar when it is there."""
    from ..writers.pytorch.sidecar import module_sources, read_sidecar

    runner = TorchRunner(load_torch_folder(artifact.path("code").parent))
    if artifact.sidecar is None:
        return runner
    return SourcedRunner(runner, module_sources(read_sidecar(artifact.sidecar)))


def _mxnet_runner(artifact: Artifact) -> Runner:
    """The MXNet reader's graph in onnxruntime, built for the shapes it is first run on."""
    from .mxnet_runner import MXNetRunner

    return MXNetRunner(artifact.path("symbol"), artifact.path("params"))


def _recording_runner(artifact: Artifact) -> Runner:
    return RecordedRunner(artifact.path("recording"))


# artifact kind -> runner, for every kind declared in artifacts.KINDS
RUNNERS: dict[str, RunnerFactory] = {
    "onnx": _onnx_runner,
    "caffe": _caffe_runner,
    "mxnet": _mxnet_runner,
    "msnhnet": _msnhnet_runner,
    "pytorch": _factory_runner,
    "pytorch-folder": _torch_folder_runner,
    "recording": _recording_runner,
}


def runner_for(artifact: Artifact) -> Runner:
    """Run an identified artifact with its kind's runner."""
    factory = RUNNERS.get(artifact.kind)
    if factory is None:
        raise InputError(
            f"no runner for {artifact.kind} files",
            expected=f"files of one of the kinds {', '.join(RUNNERS)}",
            found=artifact.describe(),
            remedy="load the model (workbench.load) and compare the Model, which runs in onnxruntime, "
            "or compare against outputs recorded in the original framework (.npz)",
        )
    artifact.require_files()
    runner = factory(artifact)
    runner.description = artifact.describe()
    return runner


def _in_memory_runner(source: Any) -> Runner | None:
    """A runner for a model held in memory (``None`` for anything else)."""
    if isinstance(source, Runner):
        return source
    if isinstance(source, Model):
        return OnnxRuntimeRunner(source)
    if isinstance(source, Mapping):
        return RecordedRunner(source)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(source, torch.nn.Module):
        return TorchRunner(source)
    return None


def open_runner(*sources: Any) -> Runner:
    """A runner for: a ``Model``; an ``nn.Module``; a runner (returned as is); a dict of
    recorded arrays; a ``WrittenFiles``; or files — ``.onnx``, ``.prototxt`` +
    ``.caffemodel`` (OpenCV DNN), ``*-symbol.json`` + ``*.params`` (the MXNet reader's
    graph in onnxruntime), ``.msnhnet`` + ``.msnhbin`` (the NumPy MsnhNet executor),
    ``.npz`` (recorded), a folder with ``model.py`` +
    ``weights.pt``, ``package.module:factory`` (optionally with a ``.pt`` state dict)."""
    if len(sources) == 1:
        runner = _in_memory_runner(sources[0])
        if runner is not None:
            return runner
    return runner_for(identify(*sources))


__all__ = [
    "RUNNERS",
    "Inputs",
    "LayerConstants",
    "NodeEvaluation",
    "OnnxRuntimeRunner",
    "RecordedRunner",
    "Runner",
    "SourcedRunner",
    "TorchRunner",
    "load_torch_folder",
    "open_runner",
    "runner_for",
]
