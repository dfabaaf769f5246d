"""The nine model-zoo graphs ONNX ships with its backend tests
(``onnx/backend/test/data/light``: AlexNet, DenseNet-121, Inception v1 and v2,
ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512), each converted to PyTorch
by the CLI as a user runs it, from the file as shipped (ONNX IR 3, every
initializer also listed as a graph input), and run against ONNX's own expected
output. They are fed as ONNX's backend runner feeds them
(``Runner.generate_dummy_data``: ``arange(n) / n``) and compared at the suite's
tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from workbench.cli import main
from workbench.runners import load_torch_folder

pytestmark = pytest.mark.slow

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = sorted(path.stem.removeprefix("light_") for path in LIGHT.glob("light_*.onnx"))
# ONNX's suite compares DenseNet-121 at rtol 2e-3, the others at 1e-3 (atol 1e-7 for all)
RTOL = {"densenet121": 2e-3}


def test_the_zoo_is_there() -> None:
    assert len(MODELS) == 9


@pytest.mark.parametrize("name", MODELS)
def test_light_zoo_graph_converts_and_matches_onnx_expected_output(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from onnx.backend.test.runner import Runner

    source = LIGHT / f"light_{name}.onnx"
    code = main(["convert", str(source), "--to", "pytorch", "-o", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    model = onnx.load(source)
    weights = {tensor.name for tensor in model.graph.initializer}
    inputs = [
        Runner.generate_dummy_data(value, seed=0, name=name, random=False)
        for value in model.graph.input
        if value.name not in weights
    ]
    assert len(inputs) == 1  # the IR 3 inputs that are initializers are weights, not arguments
    expected = onnx.TensorProto()
    expected.ParseFromString((LIGHT / f"light_{name}_output_0.pb").read_bytes())
    with torch.no_grad():
        output = load_torch_folder(tmp_path / "out")(torch.from_numpy(inputs[0])).numpy()
    want = numpy_helper.to_array(expected)
    assert output.shape == want.shape
    # generated PyTorch vs ONNX's expected output, float32, at the suite's own tolerance
    np.testing.assert_allclose(output, want, rtol=RTOL.get(name, 1e-3), atol=1e-7)
