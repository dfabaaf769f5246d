"""identify: every kind of model artifact recognised in one place, files by role,
the writers' provenance sidecars found beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.artifacts import KINDS, identify
from workbench.errors import InputError
from workbench.samples import resnet_tiny

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(
    "names, kind, roles",
    [
        (["m.onnx"], "onnx", {"model": "m.onnx"}),
        (["m.onnx", "m.onnx.data"], "onnx", {"model": "m.onnx", "data": "m.onnx.data"}),
        (["n.caffemodel", "d.prototxt"], "caffe", {"prototxt": "d.prototxt", "caffemodel": "n.caffemodel"}),
        (["r-symbol.json", "r-0000.params"], "mxnet", {"symbol": "r-symbol.json", "params": "r-0000.params"}),
        (["a.msnhnet", "a.msnhbin"], "msnhnet", {"model": "a.msnhnet", "weights": "a.msnhbin"}),
        (["out/model.py", "out/weights.pt"], "pytorch-folder", {"code": "out/model.py", "weights": "out/weights.pt"}),
        (["x-reference.npz"], "recording", {"recording": "x-reference.npz"}),
    ],
    ids=["onnx", "onnx-external-data", "caffe", "mxnet", "msnhnet", "pytorch-folder", "recording"],
)
def test_files_are_recognised_by_role(names, kind, roles) -> None:
    artifact = identify(*names)
    assert artifact.kind == kind
    assert {role: str(path) for role, path in artifact.files.items()} == roles
    assert artifact.sidecar is None and artifact.spec is None


def test_a_factory_spec_with_weights() -> None:
    artifact = identify("workbench.samples:resnet_tiny", "w.pt")
    assert artifact.kind == "pytorch" and artifact.spec == "workbench.samples:resnet_tiny"
    assert artifact.files == {"weights": Path("w.pt")}
    assert artifact.paths == ("workbench.samples:resnet_tiny", "w.pt")
    assert artifact.describe() == "workbench.samples:resnet_tiny + w.pt"


@pytest.mark.parametrize(
    "names",
    [["model.pb"], ["deploy.prototxt"], ["a.onnx", "b.onnx"], ["a.onnx", "w.pt"], [], ["workbench.samples"]],
    ids=["unknown-suffix", "lone-prototxt", "two-models", "onnx-with-weights", "nothing", "spec-without-factory"],
)
def test_what_fits_is_listed_when_nothing_does(names) -> None:
    with pytest.raises(InputError, match="cannot tell the source format") as error:
        identify(*names)
    for kind in KINDS:
        assert kind.pattern() in str(error.value)


def test_written_files_and_their_sidecars(tmp_path) -> None:
    model = wb.simplify(wb.export(resnet_tiny(), np.zeros(resnet_tiny.input_shape, np.float32)))
    caffe = wb.write(model, tmp_path / "caffe", "caffe")
    for artifact in (identify(caffe), identify(caffe.path(".prototxt"), caffe.path(".caffemodel"))):
        assert artifact.kind == "caffe"
        assert artifact.sidecar == caffe.path(".provenance.json")
        assert artifact.describe() == f"{model.name}.prototxt + {model.name}.caffemodel"
        assert str(artifact.sidecar) not in artifact.paths
    pytorch = wb.write(model, tmp_path / "pytorch", "pytorch")
    for artifact in (identify(pytorch), identify(tmp_path / "pytorch")):
        assert artifact.kind == "pytorch-folder"
        assert artifact.path("code") == tmp_path / "pytorch" / "model.py"
        assert artifact.sidecar == tmp_path / "pytorch" / "provenance.json"
    artifact.require_files()  # every file is there
    (tmp_path / "pytorch" / "weights.pt").unlink()
    with pytest.raises(InputError, match="no such file"):
        identify(tmp_path / "pytorch").require_files()


def test_a_sidecar_is_only_found_where_its_writer_puts_it(tmp_path) -> None:
    prototxt, caffemodel = DATA / "caffe" / "zoo_tiny.prototxt", DATA / "caffe" / "zoo_tiny.caffemodel"
    assert identify(prototxt, caffemodel).sidecar is None  # a Caffe-zoo original has none


def test_every_reader_and_runner_names_a_declared_kind() -> None:
    from workbench.readers import READERS
    from workbench.runners import RUNNERS
    from workbench.steps.map_names import TARGET_ENTRIES

    kinds = {kind.name for kind in KINDS}
    assert set(READERS) <= kinds and set(RUNNERS) <= kinds and set(TARGET_ENTRIES) <= kinds


def test_a_new_kind_is_one_declaration_and_one_entry_per_capability(tmp_path, monkeypatch) -> None:
    """What adding MsnhNet takes: a kind in KINDS, a reader and a runner registered by
    kind; load, open_runner and compare then take its files unchanged. (Here the toy
    format is an ONNX model under another suffix, run by onnxruntime.)"""
    import onnx_ir as ir

    from workbench import artifacts, readers, runners
    from workbench.artifacts import ArtifactKind, Role

    monkeypatch.setattr(artifacts, "KINDS", (*KINDS, ArtifactKind("toy", (Role("model", "*.toy"),))))
    monkeypatch.setitem(readers.READERS, "toy", lambda artifact, shapes: readers.read_onnx(artifact.path("model")))
    monkeypatch.setitem(runners.RUNNERS, "toy", lambda artifact: runners.OnnxRuntimeRunner(artifact.path("model")))

    model = wb.simplify(wb.export(resnet_tiny(), np.zeros(resnet_tiny.input_shape, np.float32)))
    ir.save(model.ir, tmp_path / "net.onnx")
    (tmp_path / "net.onnx").rename(tmp_path / "net.toy")
    assert identify(tmp_path / "net.toy").kind == "toy"
    assert len(wb.load(tmp_path / "net.toy").graph) == len(model.graph)
    comparison = wb.compare(model, tmp_path / "net.toy")
    assert comparison.candidate == "net.toy (onnxruntime)"
    assert comparison.outputs[0].stats.max_abs == 0.0  # the same graph in the same runtime: exact
