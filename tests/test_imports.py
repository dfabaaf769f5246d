"""The command imports only what it runs: ``workbench --help`` and ``workbench check``
never load torch, onnxsim, plotting or Jupyter (each run in a fresh interpreter, and
the modules it loaded listed). What a module costs to import is a benchmark
(benchmarks/startup_and_memory.py), not a test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from workbench import load
from workbench.graph.builder import GraphBuilder

HEAVY = ("torch", "onnxsim", "matplotlib", "ipywidgets", "IPython", "papermill", "nbformat", "jupyter_client")
RUNTIMES = ("onnx", "onnx_ir", "onnxruntime", "onnxscript", "cv2")


def _loaded_by(code: str) -> tuple[int, set[str]]:
    """Run ``code`` (which sets ``status``) in a fresh interpreter: its status and the
    heavy or runtime modules it loaded."""
    script = (
        f"import json, sys\n{code}\nprint(json.dumps([status, [m for m in {HEAVY + RUNTIMES!r} if m in sys.modules]]))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    status, modules = json.loads(result.stdout.strip().splitlines()[-1])
    return status, set(modules)


def _cnn(path: Path) -> Path:
    """Conv → Relu → MaxPool → Flatten → Gemm: nothing for onnxsim to fold."""
    rng = np.random.default_rng(0)
    builder = GraphBuilder(path.stem)
    x = builder.add_input("x", [1, 3, 8, 8])
    weight = builder.add_initializer("conv.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    (value,) = builder.add_node("Conv", [x, weight], {"pads": [1, 1, 1, 1]}, sources=["conv"])
    (value,) = builder.add_node("Relu", [value], sources=["relu"])
    (value,) = builder.add_node("MaxPool", [value], {"kernel_shape": [2, 2], "strides": [2, 2]}, sources=["pool"])
    (value,) = builder.add_node("Flatten", [value], sources=["flatten"])
    fc = builder.add_initializer("fc.weight", rng.standard_normal((5, 64)).astype(np.float32))
    (value,) = builder.add_node("Gemm", [value, fc], {"transB": 1}, sources=["fc"])
    builder.set_outputs([value])
    ir.save(builder.build(), path)
    return path


def test_importing_the_package_loads_nothing_heavy() -> None:
    _, loaded = _loaded_by("import workbench\nstatus = 0")
    assert loaded == set()


def test_help_loads_no_runtime() -> None:
    code = "from workbench.cli import main\nstatus = main(['--help'])"
    status, loaded = _loaded_by(code)
    assert status == 0 and loaded == set()


@pytest.mark.parametrize("source", ["built", "exported"])
def test_check_loads_neither_torch_nor_onnxsim(source, tmp_path) -> None:
    if source == "built":
        path = _cnn(tmp_path / "cnn.onnx")
    else:  # a PyTorch export, as users bring them
        path = tmp_path / "resnet.onnx"
        ir.save(load("workbench.samples:resnet_tiny").ir, path)
    code = f"from workbench.cli import main\nstatus = main(['check', {str(path)!r}, '--to', 'caffe'])"
    status, loaded = _loaded_by(code)
    assert status == 0
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)
    assert {"onnx_ir", "onnxscript"} <= loaded  # the check did read and simplify the model
