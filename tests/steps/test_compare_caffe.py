"""``workbench compare`` on real-model workflows around Caffe, as the command line runs them:

* no ``--input`` for Caffe against Caffe, ONNX against Caffe and MXNet against Caffe: the
  input shape comes from whichever side fixes it (the prototxt's Input layer);
* an eps changed in a Caffe copy is diagnosed as eps with both values, whatever the other
  side is (Caffe, ONNX read from the Caffe files, ONNX exported from PyTorch, generated
  PyTorch code, MXNet);
* MXNet's fix_gamma on the Caffe side is still fix_gamma;
* a broken layer hidden by the final Softmax makes the verdict ``layers differ`` and the
  exit status 1.

Every number comes from the runtimes (OpenCV DNN, onnxruntime, PyTorch, MXNet's recorded
outputs); tolerances are compare's defaults (atol 1e-4, rtol 1e-3).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

import workbench as wb
from workbench import cli
from workbench.formats import caffe_pb2
from workbench.readers.mxnet_reader import read_params
from workbench.samples_caffe import resnet_caffe

MXNET = Path(__file__).resolve().parents[2] / "data" / "mxnet"
MOBILEFACENET = [str(MXNET / "mobilefacenet_tiny-symbol.json"), str(MXNET / "mobilefacenet_tiny-0000.params")]


def _compare(argv: list[str], tmp_path: Path, capsys) -> tuple[int, str, dict]:
    report = tmp_path / f"cmp{len(list(tmp_path.glob('cmp*.json')))}.json"
    code = cli.main(["compare", *argv, "--per-layer", "--report", str(report)])
    out = capsys.readouterr().out
    return code, out, json.loads(report.read_text()) if report.exists() else {}


def _line(out: str, step: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(step))


def _with_eps(prototxt: Path, caffemodel: Path, folder: Path, layer: str, eps: float) -> list[str]:
    """A copy of the Caffe files (and the writer's provenance beside them) with one
    BatchNorm's eps changed in the prototxt."""
    folder.mkdir(parents=True, exist_ok=True)
    sidecar = prototxt.with_suffix(".provenance.json")
    if sidecar.exists():
        shutil.copy(sidecar, folder / sidecar.name)
    net = caffe_pb2.NetParameter()
    text_format.Parse(prototxt.read_text(), net)
    next(entry for entry in net.layer if entry.name == layer).batch_norm_param.eps = eps
    (folder / prototxt.name).write_text(text_format.MessageToString(net))
    shutil.copy(caffemodel, folder / caffemodel.name)
    return [str(folder / prototxt.name), str(folder / caffemodel.name)]


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> tuple[Path, Path]:
    return resnet_caffe(tmp_path_factory.mktemp("resnet"), blocks=(2, 2), widths=(8, 16))


def _assert_eps(report: dict, reference_eps: float, candidate_eps: float, layer: str) -> None:
    divergence = report["first_divergence"]
    assert divergence["source"] == layer and divergence["cause"] == "bn-eps", divergence["explanation"]
    details = divergence["cause_details"]
    # stated in both files: float32 fields, read back exactly up to float32 rounding
    assert details["stated"] is True
    assert details["reference_eps"] == pytest.approx(reference_eps, rel=1e-6)
    assert details["candidate_eps"] == pytest.approx(candidate_eps, rel=1e-6)


def test_caffe_against_caffe_with_another_eps(resnet, tmp_path, capsys) -> None:
    broken = _with_eps(*resnet, tmp_path / "broken", "bn2b_branch2a", 0.5)
    code, out, report = _compare([str(p) for p in resnet] + ["--against", *broken], tmp_path, capsys)
    assert code == 1
    assert "no input" not in out
    _assert_eps(report, 1e-5, 0.5, "bn2b_branch2a")
    assert "the reference states eps=1e-05, the candidate eps=0.5" in _line(out, "divergence")


def test_onnx_read_from_caffe_against_a_caffe_copy_with_another_eps(resnet, tmp_path, capsys) -> None:
    onnx_file = wb.convert(list(resnet), "onnx", tmp_path / "onnx").written.paths[0]
    broken = _with_eps(*resnet, tmp_path / "broken", "bn3a_branch2a", 1e-2)
    code, _, report = _compare([str(onnx_file), "--against", *broken], tmp_path, capsys)
    assert code == 1
    _assert_eps(report, 1e-5, 1e-2, "bn3a_branch2a")


def test_onnx_from_pytorch_against_written_caffe_with_another_eps(tmp_path, capsys) -> None:
    """The Caffe side is the writer's BatchNorm + Scale pair: its constants are the pair's."""
    onnx_file = wb.convert("workbench.samples:resnet_tiny", "onnx", tmp_path / "onnx").written.paths[0]
    written = wb.convert(str(onnx_file), "caffe", tmp_path / "caffe").written
    prototxt, caffemodel = (
        next(p for p in written.paths if p.suffix == suffix) for suffix in (".prototxt", ".caffemodel")
    )
    broken = _with_eps(prototxt, caffemodel, tmp_path / "broken", "layer1.0.bn1", 1e-2)
    code, _, report = _compare([str(onnx_file), "--against", *broken], tmp_path, capsys)
    assert code == 1
    _assert_eps(report, 1e-5, 1e-2, "getitem_3")  # the ONNX value of layer1.0.bn1
    assert report["first_divergence"]["layers"] == ["layer1.0.bn1"]


def test_generated_pytorch_against_a_caffe_copy_with_another_eps(resnet, tmp_path, capsys) -> None:
    """The PyTorch side's constants are the generated module's state dict (nn.BatchNorm2d)."""
    folder = tmp_path / "pytorch"
    wb.convert(list(resnet), "pytorch", folder)
    broken = _with_eps(*resnet, tmp_path / "broken", "bn3a_branch1", 1e-2)
    code, _, report = _compare([str(folder), "--against", *broken], tmp_path, capsys)
    assert code == 1
    _assert_eps(report, 1e-5, 1e-2, "bn3a_branch1")


@pytest.fixture(scope="module")
def mxnet_caffe(tmp_path_factory) -> list[str]:
    written = wb.convert(MOBILEFACENET, "caffe", tmp_path_factory.mktemp("mx"), input_shape=(1, 3, 28, 28)).written
    return [str(p) for p in written.paths if p.suffix in (".prototxt", ".caffemodel")]


def test_mxnet_against_caffe_needs_no_input(mxnet_caffe, tmp_path, capsys) -> None:
    code, out, report = _compare([*MOBILEFACENET, "--against", *mxnet_caffe], tmp_path, capsys)
    assert code == 0, out
    assert report["verdict"] == "outputs match" and len(report["layers"]) > 20
    assert _line(out, "compare").startswith("compare        outputs match, all ")


def _with_stored_gamma(files: list[str], folder: Path) -> list[str]:
    """A copy of the converted Caffe files whose fc1 Scale holds MXNet's stored gamma
    (fix_gamma=True in the symbol: MXNet uses 1)."""
    folder.mkdir()
    files = [*files, str(Path(files[0]).with_suffix(".provenance.json"))]
    copies = [folder / Path(name).name for name in files]
    for source, copy in zip(files, copies):
        shutil.copy(source, copy)
    caffemodel = next(path for path in copies if path.suffix == ".caffemodel")
    net = caffe_pb2.NetParameter()
    net.ParseFromString(caffemodel.read_bytes())
    gamma = next(layer for layer in net.layer if layer.name == "fc1/scale").blobs[0]
    stored = read_params(MOBILEFACENET[1])["fc1_gamma"]
    del gamma.data[:]
    gamma.data.extend(stored.astype(float))
    caffemodel.write_bytes(net.SerializeToString())
    return [str(path) for path in copies[:2]]


@pytest.mark.parametrize("reference", ["files", "recording"])
def test_fix_gamma_on_the_caffe_side_is_fix_gamma(reference, mxnet_caffe, tmp_path, capsys) -> None:
    broken = _with_stored_gamma(mxnet_caffe, tmp_path / "broken")
    source = MOBILEFACENET if reference == "files" else [str(MXNET / "mobilefacenet_tiny-reference.npz")]
    code, _, report = _compare([*source, "--against", *broken], tmp_path, capsys)
    assert code == 1
    divergence = report["first_divergence"]
    assert divergence["layers"] == ["fc1"] and divergence["cause"] == "fix-gamma", divergence["explanation"]


def test_mxnet_against_caffe_with_another_eps(mxnet_caffe, tmp_path, capsys) -> None:
    prototxt, caffemodel = (Path(p) for p in mxnet_caffe)
    broken = _with_eps(prototxt, caffemodel, tmp_path / "broken", "conv_1_batchnorm", 0.1)
    code, _, report = _compare([*MOBILEFACENET, "--against", *broken], tmp_path, capsys)
    assert code == 1
    _assert_eps(report, 2e-5, 0.1, "conv_1_batchnorm_output")  # MXNet's eps for this model: 2e-5


def test_a_layer_hidden_by_the_softmax_makes_layers_differ(tmp_path, capsys) -> None:
    """1000 classes: probabilities near 1e-3, so a changed BatchNorm moves the output less
    than the tolerance while most layers after it are far beyond it."""
    prototxt, caffemodel = resnet_caffe(tmp_path / "wide", classes=1000)
    broken = _with_eps(prototxt, caffemodel, tmp_path / "broken", "bn2a_branch2b", 0.05)
    code, out, report = _compare([str(prototxt), str(caffemodel), "--against", *broken], tmp_path, capsys)
    assert all(output["ok"] for output in report["outputs"])  # the final Softmax passes ...
    assert code == 1 and report["ok"] is False  # ... while layers are beyond tolerance
    assert (report["verdict"], report["outputs_ok"], report["layers_ok"]) == ("layers differ", True, False)
    assert "layers differ: outputs match, but " in _line(out, "compare")
    assert report["first_divergence"]["source"] == "bn2a_branch2b"
    # without --per-layer only the outputs count
    assert cli.main(["compare", str(prototxt), str(caffemodel), "--against", *broken]) == 0


def test_declared_shapes_that_disagree_ask_for_an_input(resnet, tmp_path, capsys) -> None:
    other = resnet_caffe(tmp_path / "other", input_shape=(1, 3, 16, 16))
    code = cli.main(["compare", *map(str, resnet), "--against", *map(str, other)])
    err = capsys.readouterr().err
    assert code == 2 and "declare different input shapes" in err and "--input-shape" in err
    assert cli.main(["compare", *map(str, resnet), "--against", *map(str, other), "--input-shape", "1,3,16,16"]) == 1


def test_nan_at_the_same_positions_is_agreement(tmp_path) -> None:
    """Log of the same negative inputs in onnxruntime and in PyTorch: NaN on both sides."""
    import torch

    class LogNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.log(self.conv(x))

    torch.manual_seed(0)
    module = LogNet().eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    model = wb.export(module, x)
    comparison = wb.compare(module, model, x)
    (output,) = comparison.outputs
    with torch.no_grad():
        assert torch.isnan(module(torch.from_numpy(x))).any()  # the case is real: negative inputs to Log
    assert comparison.ok and output.stats.max_rel < 1e-4  # onnxruntime vs PyTorch, float32: rtol 1e-4 (log near 0)
