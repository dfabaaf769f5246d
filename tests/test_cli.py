"""The `workbench` command: exit codes, messages without tracebacks, no partial
output, and converted files that run like their source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import nbformat
import numpy as np
import onnx_ir as ir
import pytest
import torch

from workbench import cli, samples
from workbench.graph.builder import GraphBuilder
from workbench.runners import load_torch_folder
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def _save_graph(path: Path, ops: list[str], shape: tuple = (1, 3, 8, 8)) -> Path:
    """A small ONNX file: a Conv, then one-input ops in a chain (which may be unknown ops)."""
    builder = GraphBuilder(path.stem)
    x = builder.add_input("x", list(shape))
    weight = builder.add_initializer("conv.weight", RNG.standard_normal((4, shape[1], 3, 3)).astype(np.float32))
    bias = builder.add_initializer("conv.bias", RNG.standard_normal(4).astype(np.float32))
    (value,) = builder.add_node(
        "Conv", [x, weight, bias], {"pads": [1, 1, 1, 1]}, sources=["conv"], outputs=["conv_out"]
    )
    for index, op in enumerate(ops):
        (value,) = builder.add_node(op, [value], sources=[f"layer{index}"], outputs=[f"out{index}"])
    value.type, value.shape = ir.TensorType(ir.DataType.FLOAT), ir.Shape([shape[0], 4, *shape[2:]])
    builder.set_outputs([value])
    ir.save(builder.build(), path)
    return path


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_convert_onnx_to_onnx_verifies_and_reports(tmp_path, capsys) -> None:
    source = _save_graph(tmp_path / "small.onnx", ["Relu", "Sigmoid"])
    code, out, err = _run(
        ["convert", str(source), "--to", "onnx", "-o", str(tmp_path / "out"), "--report", str(tmp_path / "r.json")],
        capsys,
    )
    assert code == 0, err
    written = tmp_path / "out" / "small.onnx"
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(source).run([x]).values()
    (actual,) = OnnxRuntimeRunner(written).run([x]).values()
    # onnxruntime on the source file vs on the converted file: same graph, atol 1e-6
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    for step in ("load", "simplify", "check", "write onnx", "verify"):
        assert step in out
    assert "pass" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [s["step"] for s in report["steps"]] == ["simplify", "check", "write onnx"]
    assert report["comparison"]["ok"] is True
    assert report["name_map"]["conv"] == ["conv"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["convert", "{tmp}/missing.onnx", "--to", "onnx"], "no such file"),
        (["convert", "{tmp}/model.xyz", "--to", "onnx"], "cannot tell the source format"),
        (["convert", "{tmp}/corrupt.onnx", "--to", "onnx"], "not a readable ONNX model"),
        (["convert", "{tmp}/good.onnx", "--to", "onnx", "--input-shape", "1,3,x"], "cannot read --input-shape"),
        (["convert", "{tmp}/good.onnx", "--to", "onnx", "--input-shape", "1,3,9,9"], "does not fit input x"),
        (["convert", "{tmp}/good.onnx", "--to", "onnx", "--dialect", "opencv"], "--dialect applies to Caffe only"),
        (["convert", "{tmp}/good.onnx", "--to", "tflite"], "invalid choice"),
        (["convert", "no_such_package.module:factory", "--to", "onnx"], "cannot import"),
    ],
    ids=[
        "missing-file",
        "unknown-format",
        "corrupt-onnx",
        "bad-input-shape",
        "input-shape-mismatch",
        "dialect-for-onnx",
        "unknown-target",
        "unknown-factory",
    ],
)
def test_bad_input_exits_2_with_a_message_and_writes_nothing(argv, message, tmp_path, capsys) -> None:
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07 this is not protobuf")
    (tmp_path / "model.xyz").write_text("?")
    _save_graph(tmp_path / "good.onnx", ["Relu"])
    out_dir = tmp_path / "out"
    code, _, err = _run([a.format(tmp=tmp_path) for a in argv] + ["-o", str(out_dir)], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_an_open_batch_dimension_is_fixed_by_input_shape(tmp_path, capsys) -> None:
    source = _save_graph(tmp_path / "dynamic.onnx", ["Relu"], shape=("batch", 3, 8, 8))
    code, _, err = _run(["convert", str(source), "--to", "onnx", "-o", str(tmp_path / "open")], capsys)
    assert code == 2 and "--input-shape" in err
    assert not (tmp_path / "open").exists()
    code, _, err = _run(
        ["convert", str(source), "--to", "onnx", "-o", str(tmp_path / "fixed"), "--input-shape", "2,3,8,8"], capsys
    )
    assert code == 0, err
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(source).run([x]).values()
    (actual,) = OnnxRuntimeRunner(tmp_path / "fixed" / "dynamic.onnx").run([x]).values()
    # onnxruntime, source with an open batch vs converted with batch 2: atol 1e-6
    np.testing.assert_allclose(actual, expected, atol=1e-6)


def test_convert_never_overwrites_its_source(tmp_path, capsys) -> None:
    source = _save_graph(tmp_path / "small.onnx", ["Relu"])
    before = source.read_bytes()
    code, _, err = _run(["convert", str(source), "--to", "onnx", "-o", str(tmp_path)], capsys)
    assert code == 2 and "overwrite" in err
    assert source.read_bytes() == before


def test_check_lists_every_unsupported_op(tmp_path, capsys) -> None:
    source = _save_graph(tmp_path / "odd.onnx", ["Frobnicate", "Relu", "Twiddle", "Wobble"])
    code, out, _err = _run(["check", str(source), "--to", "onnx", "--no-simplify"], capsys)
    assert code == 2
    assert all(op in out for op in ("Frobnicate", "Twiddle", "Wobble"))
    assert "3 error(s)" in out


def test_convert_lists_every_unsupported_op_even_when_simplify_fails(tmp_path, capsys) -> None:
    source = _save_graph(tmp_path / "odd.onnx", ["Frobnicate", "Twiddle"])
    code, _, err = _run(["convert", str(source), "--to", "onnx", "-o", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "Frobnicate" in err and "Twiddle" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def _opencv_output(prototxt: Path, caffemodel: Path, x: np.ndarray) -> np.ndarray:
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(x)
    return net.forward()


def test_convert_onnx_to_caffe_runs_in_opencv(tmp_path, capsys) -> None:
    source = _save_graph(tmp_path / "small.onnx", ["Relu", "Sigmoid"])
    code, out, err = _run(["convert", str(source), "--to", "caffe", "-o", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "write caffe" in out
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(source).run([x]).values()
    actual = _opencv_output(tmp_path / "out" / "small.prototxt", tmp_path / "out" / "small.caffemodel", x)
    # OpenCV DNN on the written Caffe files vs onnxruntime on the source, float32: atol 1e-5
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_convert_onnx_to_pytorch_gives_a_loadable_module(tmp_path, capsys) -> None:
    source = _save_graph(tmp_path / "small.onnx", ["Relu", "Sigmoid"])
    out_dir, report = tmp_path / "out", tmp_path / "report.json"
    code, _, err = _run(
        ["convert", str(source), "--to", "pytorch", "-o", str(out_dir), "--report", str(report)], capsys
    )
    assert code == 0, err
    network = load_torch_folder(out_dir)
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(source).run([x]).values()
    with torch.no_grad():
        actual = network.eval()(torch.from_numpy(x)).numpy()
    # generated PyTorch module vs onnxruntime on the source, float32: atol 1e-5
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    assert ["conv"] in json.loads(report.read_text())["name_map"].values()


def test_check_caffe_lists_every_unsupported_op(tmp_path, capsys) -> None:
    source = _save_graph(tmp_path / "odd.onnx", ["Sin", "Relu", "Floor", "Erf"])
    code, out, _ = _run(["check", str(source), "--to", "caffe"], capsys)
    assert code == 2
    assert all(op in out for op in ("Sin", "Floor", "Erf"))
    code, _, err = _run(["convert", str(source), "--to", "caffe", "-o", str(tmp_path / "out")], capsys)
    assert code == 2
    assert all(op in err for op in ("Sin", "Floor", "Erf")) and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_compare_two_files(tmp_path, capsys) -> None:
    first = _save_graph(tmp_path / "a.onnx", ["Relu"])
    same = tmp_path / "same.onnx"
    same.write_bytes(first.read_bytes())
    other = _save_graph(tmp_path / "b.onnx", ["Sigmoid"])
    np.save(tmp_path / "x.npy", RNG.standard_normal((1, 3, 8, 8)).astype(np.float32))
    report = tmp_path / "cmp.json"
    code, out, _ = _run(
        ["compare", str(first), "--against", str(same), "--input", str(tmp_path / "x.npy"), "--report", str(report)],
        capsys,
    )
    assert code == 0
    assert json.loads(report.read_text())["ok"] is True
    # Relu against Sigmoid of different convolutions: far beyond the default atol 1e-4
    code, out, _ = _run(["compare", str(first), "--against", str(other)], capsys)
    assert code == 1
    assert "FAIL" in out


def _parameterised_notebook(path: Path) -> Path:
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("scale = 1\nlabel = 'none'")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell("print(label, scale * 2)")]
    nbformat.write(notebook, path)
    return path


def test_record_executes_a_notebook_with_parameters(tmp_path, capsys) -> None:
    source = _parameterised_notebook(tmp_path / "n.ipynb")
    output = tmp_path / "records" / "record.ipynb"  # a folder that does not exist yet
    arguments = ["record", str(source), "-o", str(output), "-p", "scale", "21", "-p", "label", "answer", "--html"]
    code, _, err = _run(arguments, capsys)
    assert code == 0, err
    executed = nbformat.read(output, as_version=4)
    printed = "".join(o.get("text", "") for cell in executed.cells for o in cell.get("outputs", []))
    assert printed.strip() == "answer 42"
    assert "answer 42" in output.with_suffix(".html").read_text()


def test_record_refuses_to_overwrite_its_notebook(tmp_path, capsys) -> None:
    source = _parameterised_notebook(tmp_path / "n.ipynb")
    before = source.read_bytes()
    code, _, err = _run(["record", str(source), "-o", str(source)], capsys)
    assert code == 2 and "overwrite" in err
    assert source.read_bytes() == before


def test_lab_without_jupyter_says_how_to_install_it(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    code, _, err = _run(["lab"], capsys)
    assert code == 2
    assert "pip install jupyterlab" in err


@pytest.mark.slow
def test_convert_sample_net_to_onnx_matches_pytorch(tmp_path, capsys) -> None:
    code, out, err = _run(
        ["convert", "workbench.samples:sample_net", "--to", "onnx", "-o", str(tmp_path), "--fold-bn"], capsys
    )
    assert code == 0, err
    assert "fold_bn" in out
    x = RNG.standard_normal(samples.sample_net.input_shape).astype(np.float32)
    with torch.no_grad():
        expected = samples.sample_net()(torch.from_numpy(x)).numpy()
    (actual,) = OnnxRuntimeRunner(tmp_path / "sample_net.onnx").run([x]).values()
    # onnxruntime on the converted, BatchNorm-folded file vs PyTorch eval, float32: atol 1e-4
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_convert_sample_net_to_caffe_matches_pytorch(tmp_path, capsys) -> None:
    code, _out, err = _run(
        [
            "convert",
            "workbench.samples:sample_net",
            "--to",
            "caffe",
            "-o",
            str(tmp_path),
            "--fold-bn",
            "--report",
            str(tmp_path / "report.json"),
        ],
        capsys,
    )
    assert code == 0, err
    x = RNG.standard_normal(samples.sample_net.input_shape).astype(np.float32)
    with torch.no_grad():
        expected = samples.sample_net()(torch.from_numpy(x)).numpy()
    actual = _opencv_output(tmp_path / "sample_net.prototxt", tmp_path / "sample_net.caffemodel", x)
    # OpenCV DNN on the written Caffe files (BatchNorm folded) vs PyTorch eval, float32: atol 1e-4
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["name_map"]["layer1.0.conv1"] == ["layer1.0.conv1", "layer1.0.bn1"]


@pytest.mark.slow
def test_python_dash_m_workbench_converts_in_a_subprocess(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench",
            "convert",
            "workbench.samples:sample_net",
            "--to",
            "onnx",
            "-o",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sample_net.onnx").is_file()
    assert "verify" in result.stdout and "outputs match" in result.stdout


def test_caffe_folded_onto_the_same_name_is_verified_naming_both_folders(tmp_path, capsys) -> None:
    from workbench.samples_caffe import resnet_caffe

    prototxt, caffemodel = resnet_caffe(tmp_path / "source")
    out = tmp_path / "folded"
    code, printed, err = _run(
        ["convert", str(prototxt), str(caffemodel), "--to", "caffe", "--fold-bn", "-o", str(out)], capsys
    )
    assert code == 0, err
    verify = next(line for line in printed.splitlines() if line.startswith("verify"))
    # the same file names on both sides: the folders tell the original from the folded copy
    assert f"{tmp_path / 'source' / prototxt.name} + " in verify and f"{out / prototxt.name} + " in verify, verify
