"""``write_caffe`` and ``find_problems``: a graph -> ``NAME.prototxt`` + ``NAME.caffemodel``.

Both run the same conversion (``CaffeNet``) on a clone of the graph with
inferred shapes, so ``find_problems`` lists exactly what ``write_caffe`` would refuse
(severity "error") or write around (severity "warning"). Nothing is written
while an error remains; the files appear together through ``staged_output``.

Besides the two Caffe files, ``NAME.provenance.json`` records for every layer
(in prototxt order) the graph nodes and source layers it implements and, per
top, the graph value it equals, so names map without parsing them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from ...errors import InputError, Problem, UnsupportedError, errors_of, sort_problems
from ...formats import caffe_pb2
from ...graph import Model, StepReport
from ...graph.report import timed
from ...graph.shapes import infer_shapes
from ..files import SIDECAR_SUFFIX, WrittenFiles, file_stem, staged_output
from . import activation, arithmetic, conv, linear, normalization, pooling, resize, shape, space  # noqa: F401  (register)
from .blobs import write_caffemodel
from .net import DIALECTS, TARGET, CaffeNet
from .sidecar import write_sidecar

# a caffemodel is one NetParameter message; protobuf, so Caffe and OpenCV DNN, reads at most 2 GiB of one
CAFFEMODEL_BYTES = 2**31 - 1


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise InputError(
            f"unknown Caffe dialect {dialect!r}",
            expected=" or ".join(DIALECTS),
            found=dialect,
            remedy="use 'bvlc' (runs in BVLC Caffe and OpenCV) or 'opencv' (OpenCV-only layers allowed)",
        )


def build_caffe_net(model: Model, dialect: str = "bvlc") -> CaffeNet:
    """Convert ``model`` to an in-memory Caffe net (the model itself is not changed)."""
    _check_dialect(dialect)
    # a structural clone shares the weight tensors, so a 100 MB model costs no copy
    working = infer_shapes(model.ir.clone())
    net = CaffeNet(working.graph, dialect)
    net.convert()
    weights = sum(4 * np.size(array) for layer in net.layers for array in layer.weights)  # float32 blobs
    if weights > CAFFEMODEL_BYTES:
        net.problems.append(
            Problem(
                "error",
                "too-large",
                "",
                "",
                f"the weights take {weights / 1e9:.2f} GB: a caffemodel is one protobuf message, "
                f"which Caffe and OpenCV DNN read up to 2 GiB",
                "convert to ONNX (weights in NAME.onnx.data) or to PyTorch",
            )
        )
    return net


def find_problems(model: Model, *, dialect: str = "bvlc") -> list[Problem]:
    """Every unsupported op and pitfall for Caffe, errors first, each with a remedy."""
    return sort_problems(build_caffe_net(model, dialect).problems)


def _net_parameter(net: CaffeNet, name: str) -> caffe_pb2.NetParameter:
    definition = caffe_pb2.NetParameter(name=name)
    definition.layer.extend(layer.param for layer in net.layers)
    return definition


def write_caffe(model: Model, outdir: str | Path, *, name: str | None = None, dialect: str = "bvlc") -> WrittenFiles:
    """Write ``NAME.prototxt``, ``NAME.caffemodel`` and ``NAME.provenance.json`` into ``outdir``.

    Raises ``UnsupportedError`` listing every blocking problem before anything is
    written. ``details`` holds ``layers`` (prototxt order, with nodes and sources),
    ``dialect``, ``inputs`` and ``outputs`` (graph value name -> Caffe blob name).
    """
    name = file_stem(name, model.name, "Caffe")
    report = StepReport("write caffe")
    with timed(report):
        net = build_caffe_net(model, dialect)
        problems = sort_problems(net.problems)
        errors = errors_of(problems)
        if errors:
            raise UnsupportedError(f"{TARGET} ({dialect})", errors)
        records = net.records()
        details = {"layers": records, "dialect": dialect, "inputs": net.inputs(), "outputs": net.outputs()}
        prototxt = text_format.MessageToString(_net_parameter(net, name))
        with staged_output(outdir, protected=model.source.paths) as staging:
            (staging / f"{name}.prototxt").write_text(prototxt)
            weights_bytes = write_caffemodel(
                staging / f"{name}.caffemodel",
                caffe_pb2.NetParameter(name=name),
                [(layer.param, layer.weights) for layer in net.layers],
            )
            record = {"name": name, **details, "warnings": [p.to_dict() for p in problems]}
            write_sidecar(staging, name, record)
    outdir = Path(outdir)
    paths = [outdir / f"{name}{suffix}" for suffix in (".prototxt", ".caffemodel", SIDECAR_SUFFIX)]
    by_type = Counter(layer.param.type for layer in net.layers)
    report.summary = f"{len(net.layers)} layers, {weights_bytes:,} bytes of weights ({dialect} dialect)"
    report.changes = [f"{layer_type}: {count}" for layer_type, count in sorted(by_type.items())]
    report.counts = {
        "layers": len(net.layers),
        "layers_by_type": dict(sorted(by_type.items())),
        "blobs": sum(len(layer.weights) for layer in net.layers),
        "caffemodel_bytes": weights_bytes,
        "prototxt_bytes": len(prototxt.encode()),
    }
    report.warnings = [str(p) for p in problems]
    return WrittenFiles("caffe", paths, report, details)
