"""ONNX writer: files run in onnxruntime like the PyTorch source, keep provenance,
and bad graphs are refused whole with every problem listed."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch
from torch import nn

from workbench import InputError, UnsupportedError
from workbench.graph import Model, SourceInfo, provenance
from workbench.graph.builder import GraphBuilder
from workbench.readers import export, read_onnx
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.writers import write
from workbench.writers.onnx_writer import find_problems, write_onnx


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


@pytest.fixture(scope="module")
def small_net() -> tuple[nn.Module, Model, np.ndarray]:
    module = SmallNet().eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    return module, export(module, [x], name="small"), x


def _graph_with(ops: list[tuple[str, str]]) -> Model:
    """A chain of one-input nodes of the given (domain, op type)."""
    builder = GraphBuilder("odd-ops")
    value = builder.add_input("x", [1, 3])
    for index, (domain, op) in enumerate(ops):
        (value,) = builder.add_node(op, [value], domain=domain, sources=[f"layer{index}"], outputs=[f"v{index}"])
    value.type, value.shape = ir.TensorType(ir.DataType.FLOAT), ir.Shape([1, 3])
    builder.set_outputs([value])
    model = builder.build()
    for domain in {d for d, _ in ops if d}:
        model.graph.opset_imports[domain] = 1
        model.opset_imports[domain] = 1
    return Model(model, SourceInfo("onnx", (), "odd"))


def test_written_file_runs_like_the_pytorch_module(small_net, tmp_path) -> None:
    module, model, x = small_net
    written = write(model, tmp_path, "onnx")
    assert [p.name for p in written.paths] == ["small.onnx"]
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    (actual,) = OnnxRuntimeRunner(written.path(".onnx")).run([x]).values()
    # onnxruntime on the written file vs PyTorch eval, float32: atol 1e-5
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


def test_provenance_and_history_survive_the_file(small_net, tmp_path) -> None:
    _, model, _ = small_net
    written = write_onnx(model, tmp_path, name="traced")
    reread = read_onnx(written.path(".onnx"))
    assert provenance.source_map(reread.ir) == provenance.source_map(model.ir)
    metadata = {p.key: p.value for p in onnx.load(written.path(".onnx")).metadata_props}
    assert metadata["workbench.source_format"] == "pytorch"
    assert "export" in metadata["workbench.steps"]
    records = {record["name"]: tuple(record["sources"]) for record in written.details["layers"]}
    assert records == provenance.source_map(model.ir)


def test_every_unsupported_node_is_listed_and_nothing_is_written(tmp_path) -> None:
    model = _graph_with([("", "Relu"), ("", "NoSuchOp"), ("my.domain", "Custom"), ("", "AlsoMissing")])
    problems = find_problems(model)
    assert sorted((p.kind, p.op_type) for p in problems) == [
        ("custom-domain-op", "Custom"),
        ("unknown-op", "AlsoMissing"),
        ("unknown-op", "NoSuchOp"),
    ]
    assert {p.source for p in problems} == {("layer1",), ("layer2",), ("layer3",)}
    with pytest.raises(UnsupportedError) as raised:
        write_onnx(model, tmp_path / "out")
    message = str(raised.value)
    assert all(op in message for op in ("NoSuchOp", "Custom", "AlsoMissing"))
    assert not (tmp_path / "out").exists()


def test_onnxruntime_contrib_ops_are_a_warning() -> None:
    model = _graph_with([("com.microsoft", "Gelu")])
    (problem,) = find_problems(model)
    assert (problem.severity, problem.kind) == ("warning", "runtime-specific-op")


def test_a_source_file_is_never_overwritten(small_net, tmp_path) -> None:
    _, model, _ = small_net
    source = write_onnx(model, tmp_path).path(".onnx")
    original = source.read_bytes()
    reread = read_onnx(source)
    with pytest.raises(InputError, match="overwrite"):
        write_onnx(reread, tmp_path, name=source.stem)
    assert source.read_bytes() == original


def test_a_name_with_folders_is_refused(small_net, tmp_path) -> None:
    _, model, _ = small_net
    with pytest.raises(InputError, match="plain file name"):
        write_onnx(model, tmp_path, name="../escape")
