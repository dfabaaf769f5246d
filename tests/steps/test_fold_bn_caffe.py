"""``convert deploy.prototxt net.caffemodel --to caffe --fold-bn`` on a Caffe-zoo-style
ResNet (in-place BatchNorm + Scale pairs, BatchNorm's moving-average factor, convolutions
without bias, written with protobuf by ``workbench.samples_caffe``): one Convolution per
conv + BatchNorm + Scale, the same numbers in OpenCV DNN, and a caffemodel smaller by
exactly the blobs removed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from google.protobuf import text_format

from workbench import cli
from workbench.formats import caffe_pb2
from workbench.samples_caffe import resnet_caffe


def _definition(prototxt: Path) -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter()
    text_format.Parse(prototxt.read_text(), net)
    return net


def _floats(caffemodel: Path) -> int:
    """How many float values the caffemodel's blobs hold (parsed by protobuf)."""
    net = caffe_pb2.NetParameter()
    net.ParseFromString(caffemodel.read_bytes())
    return sum(len(blob.data) for layer in net.layer for blob in layer.blobs)


def _opencv(prototxt: Path, caffemodel: Path, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Layer outputs from OpenCV DNN itself, without its own BatchNorm fusion and with
    Winograd off (its 3×3 transform alone moves outputs by ~1e-5 relative when the
    weights change, which would hide what folding does)."""
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.enableFusion(False)
    net.enableWinograd(False)
    net.setInput(x)
    return dict(zip(names, net.forward(names)))


@pytest.fixture(scope="module")
def folded(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    folder = tmp_path_factory.mktemp("resnet_bn")
    prototxt, caffemodel = resnet_caffe(folder / "source", blocks=(2, 2), widths=(8, 16))
    code = cli.main(
        ["convert", str(prototxt), str(caffemodel), "--to", "caffe", "--fold-bn", "-o", str(folder / "out")]
    )
    assert code == 0
    return prototxt, caffemodel, folder / "out" / prototxt.name, folder / "out" / caffemodel.name


def test_no_batchnorm_or_scale_layer_remains(folded) -> None:
    prototxt, _, folded_prototxt, _ = folded
    before = [layer.type for layer in _definition(prototxt).layer]
    after = [layer.type for layer in _definition(folded_prototxt).layer]
    assert before.count("BatchNorm") == before.count("Scale") == before.count("Convolution") == 10
    assert "BatchNorm" not in after and "Scale" not in after
    assert after.count("Convolution") == 10  # one Convolution per conv + BatchNorm + Scale
    # 47 layers (Input, 10 × conv/BN/Scale, 9 ReLU, 4 Eltwise, pool, fc, prob) → 27: the
    # InnerProduct reads the pooled blob as the source's does, with no Flatten before it
    assert (len(before), len(after)) == (47, 27)


def test_folded_files_compute_the_same_in_opencv(folded) -> None:
    prototxt, caffemodel, folded_prototxt, folded_caffemodel = folded
    shared = ["conv1_relu", "res2a", "res2b", "res3a", "res3b", "res3b_relu", "pool5", "prob"]
    logits = {
        path: next(layer.name for layer in _definition(path).layer if layer.type == "InnerProduct")
        for path in (prototxt, folded_prototxt)
    }
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    original = _opencv(prototxt, caffemodel, [*shared, logits[prototxt]], x)
    result = _opencv(folded_prototxt, folded_caffemodel, [*shared, logits[folded_prototxt]], x)
    for name in shared:
        # OpenCV DNN, float32, BatchNorm and Scale computed vs folded in float64: atol 1e-5 (values up to ~9)
        np.testing.assert_allclose(result[name], original[name], atol=1e-5, rtol=0, err_msg=name)
    np.testing.assert_allclose(result[logits[folded_prototxt]], original[logits[prototxt]], atol=1e-5, rtol=0)


def test_caffemodel_is_smaller_by_the_removed_blobs(folded) -> None:
    _, caffemodel, _, folded_caffemodel = folded
    source = caffe_pb2.NetParameter()
    source.ParseFromString(caffemodel.read_bytes())
    channels = [layer.blobs[0].shape.dim[0] for layer in source.layer if layer.type == "BatchNorm"]
    # each pair drops mean, var, factor (BatchNorm) and gamma, beta (Scale); the convolution gains a bias
    removed = sum(4 * c + 1 - c for c in channels)
    assert _floats(caffemodel) - _floats(folded_caffemodel) == removed
    saved = caffemodel.stat().st_size - folded_caffemodel.stat().st_size
    assert saved >= 4 * removed  # float32 blobs, and the layer records around them
