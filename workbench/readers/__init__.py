"""Readers: every supported source format -> ``Model``.

``load`` takes the files of one model (recognised by ``workbench.artifacts.identify``:
``*.onnx``; ``*.prototxt`` + ``*.caffemodel``; ``*-symbol.json`` + ``*.params``;
``*.msnhnet`` + ``*.msnhbin``; ``package.module:factory`` for PyTorch) and reads them with the reader registered
for that kind in ``READERS``. ``input_shape`` fixes the input shapes for every
format (see ``input_shapes``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..artifacts import Artifact, identify
from ..errors import InputError
from ..graph import Model
from .example_data import example_inputs
from .input_shapes import InputShapes, fix_input_shapes, shapes_by_name
from .onnx_reader import read_onnx
from .pytorch_reader import export, load_factory, read_factory

Reader = Callable[[Artifact, InputShapes | None], Model]


def _read_onnx(artifact: Artifact, shapes: InputShapes | None) -> Model:
    return read_onnx(artifact.path("model"))


def _read_caffe(artifact: Artifact, shapes: InputShapes | None) -> Model:
    from .caffe_reader import read_caffe
    from .caffe_reader.prototxt import read_net

    prototxt = artifact.path("prototxt")
    by_name = None
    if shapes is not None:
        # the reader takes shapes by input blob: it gives or overrides the declared ones
        net = read_net(prototxt)
        blobs = [*net.inputs, *(top for layer in net.layers if layer.type == "Input" for top in layer.top)]
        by_name = shapes_by_name(blobs, shapes)
    return read_caffe(prototxt, artifact.path("caffemodel"), input_shapes=by_name)


def _read_mxnet(artifact: Artifact, shapes: InputShapes | None) -> Model:
    from .mxnet_reader import read_mxnet

    by_name = dict(shapes) if isinstance(shapes, Mapping) else shapes
    return read_mxnet(artifact.path("symbol"), artifact.path("params"), input_shapes=by_name)


def _read_msnhnet(artifact: Artifact, shapes: InputShapes | None) -> Model:
    """MsnhNet's config fixes the input shape; the writer's provenance record (when
    beside the files) names the layers holding the source model's outputs."""
    from ..writers.msnhnet.sidecar import read_sidecar
    from .msnhnet_reader import read_msnhnet

    record = read_sidecar(artifact.sidecar) if artifact.sidecar is not None else None
    model = read_msnhnet(artifact.path("model"), artifact.path("weights"), record=record)
    wanted = list(shapes.values()) if isinstance(shapes, Mapping) else [shapes] if shapes is not None else []
    fixed = model.input_shapes()
    if any(tuple(shape) not in [tuple(f) for f in fixed.values()] for shape in wanted):
        raise InputError(
            "a MsnhNet network's input shape is fixed by its config",
            expected=", ".join(str(tuple(f)) for f in fixed.values()),
            found=", ".join(str(tuple(s)) for s in wanted),
            remedy="leave out the input shape, or write the MsnhNet files again for the new shape",
        )
    return model


def _read_pytorch(artifact: Artifact, shapes: InputShapes | None) -> Model:
    if isinstance(shapes, Mapping):
        raise InputError(
            "a PyTorch factory is exported on one input shape",
            found=f"shapes by name: {', '.join(shapes)}",
            remedy="give one shape, e.g. input_shape=(1, 3, 224, 224)",
        )
    return read_factory(artifact.spec or "", artifact.optional_path("weights"), shapes)


# artifact kind -> reader; the kinds not here (recordings) cannot be read
READERS: dict[str, Reader] = {
    "onnx": _read_onnx,
    "caffe": _read_caffe,
    "mxnet": _read_mxnet,
    "msnhnet": _read_msnhnet,
    "pytorch": _read_pytorch,
}


def detect_format(sources: Sequence[str | Path]) -> str:
    """The kind of model these paths make up, or an InputError saying what fits."""
    return identify(*sources).kind


def read_artifact(artifact: Artifact, input_shape: InputShapes | None = None) -> Model:
    """Read an identified artifact with its kind's reader, input shapes fixed."""
    reader = READERS.get(artifact.kind)
    if reader is None:
        raise InputError(
            f"reading {artifact.kind} models is not available in this version",
            expected=f"{', '.join(READERS)} sources",
            found=" ".join(artifact.given),
            remedy="convert the model to ONNX first",
        )
    artifact.require_files()
    model = reader(artifact, input_shape)
    if input_shape is not None:
        fix_input_shapes(model, input_shape)
    return model


def load(
    *sources: str | Path,
    input_shape: InputShapes | None = None,
    weights: str | Path | None = None,
) -> Model:
    """Read any supported source into a ``Model``.

    ``input_shape`` (one shape, or ``{input name: shape}``) fixes the inputs' shapes
    for every format; a PyTorch source is exported on it (or on the factory's
    ``input_shape`` attribute). ``weights`` is the state dict of a PyTorch factory.
    """
    artifact = identify(*sources)
    if weights is not None:
        if artifact.kind != "pytorch":
            raise InputError(
                "weights are given for a source that is not a PyTorch factory",
                found=f"{artifact.kind} source with weights {weights}",
                remedy="drop --weights: the model files hold their weights",
            )
        artifact = identify(*sources, weights)
    return read_artifact(artifact, input_shape)


__all__ = [
    "READERS",
    "detect_format",
    "example_inputs",
    "export",
    "fix_input_shapes",
    "load",
    "load_factory",
    "read_artifact",
    "read_onnx",
]
