"""The PyTorch writer on ONNX's own backend test cases (``onnx.backend.test``, shipped
in the onnx package): every single-node case of the ops whose exact forms the writer
writes out (functional convolutions and normalizations, ``resize``, ``average_pool``,
Clip, Selu, SpaceToDepth, Dropout...), in every type the cases use. Each case model
is written as model.py + weights.pt, run on the case's inputs and compared with
the case's expected outputs at the case's own tolerance, as ONNX's runner compares
them: the reference is ONNX's, nobody on the project wrote it (where onnxruntime
departs from the ONNX definition, as in Resize's align_corners when shrinking by a
fraction, these outputs are the ones to match)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from workbench import UnsupportedError
from workbench.readers import read_onnx
from workbench.runners import load_torch_folder
from workbench.writers.pytorch import write_pytorch

OPS = {
    "Conv",
    "ConvTranspose",
    "AveragePool",
    "MaxPool",
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "LpNormalization",
    "Clip",
    "Selu",
    "SpaceToDepth",
    "DepthToSpace",
    "Dropout",
    "Resize",
    "Upsample",
    "Split",
}
# ONNX's Dropout in training mode draws its mask from NumPy's generator; PyTorch draws
# another (test_dropout_training_keeps_or_scales checks what such a mask must satisfy)
RANDOM = {
    "test_training_dropout",
    "test_training_dropout_default",
    "test_training_dropout_default_mask",
    "test_training_dropout_mask",
}
# cases the writer refuses, and why (each refusal is a check error naming the op)
REFUSED: dict[str, str] = {}


def _cases() -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators overflow casts on purpose
        cases = collect_testcases()
    found = [case for case in cases if len(case.model.graph.node) == 1 and case.model.graph.node[0].op_type in OPS]
    return sorted(found, key=lambda case: case.name)


CASES = _cases()


def _array(item: object) -> np.ndarray:
    return numpy_helper.to_array(item) if isinstance(item, onnx.TensorProto) else np.asarray(item)


def _write_and_run(case: object, folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The case model written and run on the case's inputs: (outputs, expected)."""
    (inputs, expected), *_ = case.data_sets
    onnx.save(case.model, folder / "case.onnx")
    write_pytorch(read_onnx(folder / "case.onnx"), folder / "out")
    network = load_torch_folder(folder / "out")
    with torch.no_grad():
        result = network(*(torch.from_numpy(np.ascontiguousarray(_array(x))) for x in inputs))
    outputs = [t.numpy() for t in (result if isinstance(result, tuple) else (result,))]
    return outputs, [_array(x) for x in expected]


def test_the_selection_holds_every_op() -> None:
    assert {case.model.graph.node[0].op_type for case in CASES} == OPS
    assert len(CASES) > 150


@pytest.mark.parametrize("case", [c for c in CASES if c.name not in RANDOM], ids=lambda c: c.name)
def test_written_model_gives_the_cases_expected_outputs(case: object, tmp_path: Path) -> None:
    if case.name in REFUSED:
        with pytest.raises(UnsupportedError, match=REFUSED[case.name]):
            _write_and_run(case, tmp_path)
        return
    outputs, expected = _write_and_run(case, tmp_path)
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected):
        assert (got.shape, got.dtype) == (want.shape, want.dtype)
        # the case's own tolerance (rtol 1e-3, atol 1e-7 for all of these), as ONNX's runner applies it
        np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_dropout_training_keeps_or_scales(name: str, tmp_path: Path) -> None:
    """Where the mask is random, what it must satisfy: each value kept (scaled by
    1 / (1 - ratio)) or dropped to 0, the mask saying which, about 1 - ratio kept."""
    (case,) = [c for c in CASES if c.name == name]
    (inputs, _), *_ = case.data_sets
    x, ratio = _array(inputs[0]), float(_array(inputs[1])) if len(inputs) > 1 else 0.5
    outputs, expected = _write_and_run(case, tmp_path)
    assert [(o.shape, o.dtype) for o in outputs] == [(e.shape, e.dtype) for e in expected]
    kept = outputs[1] if len(outputs) > 1 else outputs[0] != 0
    # float32 scaling by 1 / (1 - ratio): rtol 1e-6
    np.testing.assert_allclose(outputs[0], np.where(kept, x / (1 - ratio), 0), rtol=1e-6)
    assert abs(kept.mean() - (1 - ratio)) < 0.3  # 60 draws: a loose bound that still catches an inverted mask
