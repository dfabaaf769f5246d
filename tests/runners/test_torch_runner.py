"""TorchRunner: submodule outputs through hooks, streamed from a worker thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from workbench.runners import TorchRunner
from workbench.samples import resnet_tiny


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.relu(self.bn(self.conv(x))) - 0.5)


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "TorchRunner.run_layers"]


def test_names_follow_calls_and_shared_modules_repeat() -> None:
    runner = TorchRunner(InPlace().eval())
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    names = [name for name, _ in runner.run_layers([x])]
    assert names == ["conv", "bn", "relu", "relu", "output"]
    assert runner.layer_names([x]) == names
    assert runner.layer_sources["bn"] == ("bn",)


def test_outputs_are_copies_safe_from_inplace_ops() -> None:
    module = InPlace().eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    layers = list(TorchRunner(module).run_layers({"x": x}))
    with torch.no_grad():
        bn = module.bn(module.conv(torch.from_numpy(x))).numpy()
    assert (bn < 0).any()
    np.testing.assert_array_equal(layers[1][1], bn)  # the same computation in PyTorch: exact
    np.testing.assert_array_equal(layers[-1][1], TorchRunner(module).run([x])["output"])


def test_closing_early_ends_the_worker() -> None:
    runner = TorchRunner(resnet_tiny())
    x = np.zeros(resnet_tiny.input_shape, np.float32)
    stream = runner.run_layers([x])
    next(stream)
    stream.close()
    assert not workers()
    assert all(not m._forward_hooks for m in runner.module.modules())


def test_forward_errors_reach_the_caller() -> None:
    runner = TorchRunner(resnet_tiny())
    with pytest.raises(RuntimeError):
        list(runner.run_layers([np.zeros((1, 5, 32, 32), np.float32)]))
    assert not workers()


def test_tuple_outputs_are_named_by_position() -> None:
    from workbench.samples import mtcnn_tiny

    runner = TorchRunner(mtcnn_tiny())
    outputs = runner.run([np.zeros(mtcnn_tiny.input_shape, np.float32)])
    assert list(outputs) == ["output_0", "output_1"] == runner.output_names
    assert outputs["output_0"].shape == (1, 2) and outputs["output_1"].shape == (1, 4)
