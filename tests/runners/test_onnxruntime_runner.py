"""onnxruntime's intermediate values, computed segment by segment, against PyTorch's
forward hooks and against one whole-graph session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.graph import provenance
from workbench.runners import OnnxRuntimeRunner, TorchRunner
from workbench.samples import inception_tiny, mtcnn_tiny, resnet_tiny

SAMPLES = {"resnet": resnet_tiny, "inception": inception_tiny, "mtcnn": mtcnn_tiny}
LEAVES = (
    torch.nn.Conv2d,
    torch.nn.BatchNorm2d,
    torch.nn.MaxPool2d,
    torch.nn.AvgPool2d,
    torch.nn.Linear,
    torch.nn.PReLU,
)


@pytest.mark.parametrize("factory", list(SAMPLES.values()), ids=list(SAMPLES))
def test_intermediate_values_equal_torch_hooks(factory) -> None:
    module = factory()
    x = np.random.default_rng(0).standard_normal(factory.input_shape).astype(np.float32)
    runner = OnnxRuntimeRunner(wb.export(module, x), segment_nodes=5)
    last_value_of: dict[str, str] = {}  # source layer -> value its last node computes
    for node in runner.model.graph:
        for source in provenance.sources(node):
            last_value_of[source] = node.outputs[0].name
    values = dict(runner.run_layers([x]))
    hooks = dict(TorchRunner(module).run_layers([x]))
    leaves = [n for n, m in module.named_modules() if isinstance(m, LEAVES)]
    assert leaves
    for name in leaves:
        # onnxruntime vs PyTorch, float32: atol 1e-5
        np.testing.assert_allclose(values[last_value_of[name]], hooks[name], atol=1e-5, err_msg=name)


def test_segments_give_what_one_session_gives() -> None:
    module = resnet_tiny()
    x = np.random.default_rng(1).standard_normal(resnet_tiny.input_shape).astype(np.float32)
    model = wb.export(module, x)
    whole = dict(OnnxRuntimeRunner(model, segment_nodes=10**6).run_layers([x]))
    segmented = list(OnnxRuntimeRunner(model, segment_nodes=3).run_layers([x]))
    assert [name for name, _ in segmented] == list(whole)
    for name, array in segmented:
        # the same runtime on the same nodes, cut differently: atol 1e-6
        np.testing.assert_allclose(array, whole[name], atol=1e-6, err_msg=name)


def test_value_computes_one_intermediate() -> None:
    module = resnet_tiny()
    x = np.random.default_rng(2).standard_normal(resnet_tiny.input_shape).astype(np.float32)
    runner = OnnxRuntimeRunner(wb.export(module, x))
    layers = dict(runner.run_layers([x]))
    name = next(v for v, node in runner.producer.items() if node.op_type == "Add")
    np.testing.assert_allclose(runner.value(name, {"x": x}), layers[name], atol=1e-6)  # same runtime: atol 1e-6
    assert runner.producer[name].op_type == "Add"
    assert runner.layer_sources[name] == provenance.sources(runner.producer[name])


def test_file_and_model_agree(tmp_path) -> None:
    module = resnet_tiny()
    x = np.random.default_rng(3).standard_normal(resnet_tiny.input_shape).astype(np.float32)
    model = wb.export(module, x)
    path = tmp_path / "net.onnx"
    import onnx_ir as ir

    ir.save(model.ir, path)
    from_file = OnnxRuntimeRunner(path)
    assert from_file.layer_names() == OnnxRuntimeRunner(model).layer_names()
    expected = module(torch.from_numpy(x)).detach().numpy()
    # onnxruntime vs PyTorch, float32: atol 1e-5
    np.testing.assert_allclose(from_file.run([x])[from_file.output_names[0]], expected, atol=1e-5)
