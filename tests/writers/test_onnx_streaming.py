"""The ONNX writer streams weights: the file it composes is the message protobuf would
serialise, and with external data every weight lies aligned in NAME.onnx.data;
both run in onnxruntime exactly like the model written."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from workbench.graph import Model, SourceInfo
from workbench.graph.builder import GraphBuilder
from workbench.readers import onnx_reader, read_onnx
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.writers import onnx_writer
from workbench.writers.onnx_writer import write_onnx

RNG = np.random.default_rng(1)


@pytest.fixture
def model() -> Model:
    """Large and small weights, float32 and float16 (a Cast), a name with a slash."""
    builder = GraphBuilder("streamed")
    x = builder.add_input("x", [2, 512])
    weight = builder.add_initializer("fc/weight", RNG.standard_normal((256, 512)).astype(np.float16))
    bias = builder.add_initializer("fc.bias", RNG.standard_normal(256).astype(np.float32))
    (value,) = builder.add_node("Cast", [weight], {"to": ir.DataType.FLOAT}, sources=["fc"])
    (value,) = builder.add_node("Gemm", [x, value, bias], {"transB": 1}, sources=["fc"])
    builder.set_outputs([value])
    return Model(builder.build(), SourceInfo("onnx", (), "streamed"))


def test_the_composed_file_is_the_message_protobuf_would_write(model, tmp_path) -> None:
    written = write_onnx(model, tmp_path)
    assert [path.name for path in written.paths] == ["streamed.onnx"]
    reread = onnx.load(written.path(".onnx"))
    expected = ir.to_proto(model.ir)
    assert reread.graph.initializer == expected.graph.initializer  # raw bytes, dims, names, order
    assert reread.graph.node == expected.graph.node
    assert (reread.graph.input, reread.graph.output) == (expected.graph.input, expected.graph.output)
    onnx.checker.check_model(reread, full_check=True)


def test_weights_over_the_limit_go_to_an_aligned_data_file(model, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_writer, "EXTERNAL_DATA_BYTES", 0)
    written = write_onnx(model, tmp_path)
    assert [path.name for path in written.paths] == ["streamed.onnx", "streamed.onnx.data"]
    offsets = [
        int(entry.value)
        for tensor in onnx.load(written.path(".onnx"), load_external_data=False).graph.initializer
        for entry in tensor.external_data
        if entry.key == "offset"
    ]
    assert offsets and all(offset % onnx_writer.DATA_ALIGNMENT == 0 for offset in offsets)
    x = RNG.standard_normal((2, 512)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(model).run([x]).values()
    (actual,) = OnnxRuntimeRunner(written.path(".onnx")).run([x]).values()
    np.testing.assert_array_equal(actual, expected)  # the same graph and weights in onnxruntime: exact


def test_weights_mapped_from_the_source_are_copied(model, tmp_path, monkeypatch) -> None:
    source = write_onnx(model, tmp_path / "source").path(".onnx")
    monkeypatch.setattr(onnx_reader, "MAPPED_FILE_BYTES", 0)
    mapped = read_onnx(source)
    assert isinstance(mapped.graph.initializers["fc/weight"].const_value, ir.ExternalTensor)
    copy = write_onnx(mapped, tmp_path / "copy").path(".onnx")
    x = RNG.standard_normal((2, 512)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(source).run([x]).values()
    source.unlink()
    (actual,) = OnnxRuntimeRunner(copy).run([x]).values()
    np.testing.assert_array_equal(actual, expected)  # exact: the bytes were copied, not referenced
