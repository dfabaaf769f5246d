"""Large ONNX files keep their weights in the file: mapped, equal to what onnx parses,
and models saved with external data convert, verify and write like any other
(checked against onnxruntime running the original files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

from workbench import InputError, convert, load
from workbench.graph.builder import GraphBuilder
from workbench.readers import onnx_reader
from workbench.readers.onnx_mapped import load_mapped
from workbench.runners import open_runner
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner

RNG = np.random.default_rng(0)


def _network() -> ir.Model:
    """Conv → Relu → MaxPool → Flatten → Gemm, weights large enough to be mapped."""
    builder = GraphBuilder("mapped")
    x = builder.add_input("x", [1, 3, 16, 16])
    weight = builder.add_initializer("conv.weight", RNG.standard_normal((64, 3, 3, 3)).astype(np.float32))
    bias = builder.add_initializer("conv.bias", RNG.standard_normal(64).astype(np.float32))
    (value,) = builder.add_node("Conv", [x, weight, bias], {"pads": [1, 1, 1, 1]}, sources=["conv"])
    (value,) = builder.add_node("Relu", [value], sources=["relu"])
    (value,) = builder.add_node("MaxPool", [value], {"kernel_shape": [2, 2], "strides": [2, 2]}, sources=["pool"])
    (value,) = builder.add_node("Flatten", [value], sources=["flatten"])
    fc_weight = builder.add_initializer("fc.weight", RNG.standard_normal((10, 64 * 8 * 8)).astype(np.float32))
    fc_bias = builder.add_initializer("fc.bias", RNG.standard_normal(10).astype(np.float32))
    (value,) = builder.add_node("Gemm", [value, fc_weight, fc_bias], {"transB": 1}, sources=["fc"])
    builder.set_outputs([value])
    return builder.build()


@pytest.fixture
def inline_file(tmp_path) -> Path:
    path = tmp_path / "inline.onnx"
    onnx.save_model(ir.to_proto(_network()), path)
    return path


@pytest.fixture
def external_file(tmp_path) -> Path:
    """The network saved the way models over 2 GB must be: weights in model.onnx.data."""
    path = tmp_path / "source" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(
        ir.to_proto(_network()), path, save_as_external_data=True, location="model.onnx.data", size_threshold=0
    )
    return path


def test_large_weights_are_mapped_and_equal_to_what_onnx_parses(inline_file) -> None:
    mapped = load_mapped(inline_file)
    assert mapped is not None
    parsed = {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load(inline_file).graph.initializer}
    kinds = {name: type(value.const_value).__name__ for name, value in mapped.graph.initializers.items()}
    assert kinds["conv.weight"] == kinds["fc.weight"] == "ExternalTensor"  # 6.9 kB and 164 kB
    assert kinds["fc.bias"] == "TensorProtoTensor"  # 40 bytes: parsed
    for name, value in mapped.graph.initializers.items():
        np.testing.assert_array_equal(value.const_value.numpy(), parsed[name])  # the same bytes: exact
    assert [node.op_type for node in mapped.graph] == [node.op_type for node in onnx.load(inline_file).graph.node]


def test_reading_maps_large_files_only(inline_file, monkeypatch) -> None:
    assert not any(isinstance(v.const_value, ir.ExternalTensor) for v in load(inline_file).graph.initializers.values())
    monkeypatch.setattr(onnx_reader, "MAPPED_FILE_BYTES", 0)
    model = load(inline_file)
    assert isinstance(model.graph.initializers["fc.weight"].const_value, ir.ExternalTensor)
    model.release_weights()  # unmapped; read again on demand
    assert model.graph.initializers["fc.weight"].const_value.numpy().shape == (10, 4096)


def test_links_and_broken_files_are_parsed_whole(inline_file, tmp_path, monkeypatch) -> None:
    link = tmp_path / "link.onnx"
    link.symlink_to(inline_file)
    assert load_mapped(link) is None  # onnx-ir maps only files inside the model's own folder
    hard = tmp_path / "hard.onnx"
    os.link(inline_file, hard)
    assert load_mapped(hard) is None  # and refuses files with several links
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(inline_file.read_bytes()[:5000])
    assert load_mapped(broken) is None
    monkeypatch.setattr(onnx_reader, "MAPPED_FILE_BYTES", 0)
    with pytest.raises(InputError, match="not a readable ONNX model"):
        load(broken)


@pytest.mark.parametrize("target", ["caffe", "onnx", "pytorch"])
def test_a_model_with_external_data_converts_and_verifies(external_file, target, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # external data is found beside the model, not in the working folder
    x = RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)
    chain = convert([external_file], target, tmp_path / "out", inputs=[x])
    assert chain.ok
    assert isinstance(chain.source_model.graph.initializers["fc.weight"].const_value, ir.ExternalTensor)
    (expected,) = OnnxRuntimeRunner(external_file).run([x]).values()
    (actual,) = open_runner(chain.written).run([x]).values()
    # the written files in their runtime against onnxruntime on the original files, float32: atol 1e-4
    np.testing.assert_allclose(actual.reshape(expected.shape), expected, atol=1e-4, rtol=1e-4)


def test_written_onnx_stands_alone_when_the_source_is_gone(external_file, tmp_path) -> None:
    x = RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(external_file).run([x]).values()
    chain = convert([external_file], "onnx", tmp_path / "out", inputs=[x])
    for path in external_file.parent.iterdir():
        path.unlink()
    (actual,) = OnnxRuntimeRunner(chain.written.path(".onnx")).run([x]).values()
    np.testing.assert_array_equal(actual, expected)  # the same graph and weights in onnxruntime: exact
