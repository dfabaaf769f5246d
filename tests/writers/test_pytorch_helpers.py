"""The functions generated models carry (``resize``, ``average_pool``) against
onnxruntime over grids of modes, transforms, roundings, scales, windows and pads;
and the generated source carrying them, and nothing else, as standalone code.

Where onnxruntime departs from ONNX's definition (``align_corners`` and
``tf_crop_and_resize`` when ``n_in * scale`` is not whole), the grid keeps to
whole target lengths; ONNX's own expected outputs cover the other cases
(test_pytorch_onnx_cases.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from workbench import UnsupportedError
from workbench.readers import read_onnx
from workbench.runners import load_torch_folder
from workbench.writers.pytorch import program, write_pytorch
from workbench.writers.pytorch.helpers import HELPERS, average_pool, resize

RNG = np.random.default_rng(0)


def _model(
    nodes: list[onnx.NodeProto], shape: tuple[int, ...], initializers: dict[str, np.ndarray], opset: int
) -> onnx.ModelProto:
    """``nodes`` from graph input ``x`` of ``shape`` to output ``y``."""
    graph = helper.make_graph(
        nodes,
        "helpers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(array, name) for name, array in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


# (H, W) = (4, 8) resized by scales whose target lengths n_in * scale are whole
SCALES = [(2.0, 2.0), (1.5, 0.25), (0.5, 2.5), (3.0, 0.75)]
TRANSFORMS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]
ROUNDINGS = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
NEAREST = [("nearest", t, r, {}) for t in TRANSFORMS for r in ROUNDINGS]
INTERPOLATING = [
    (mode, transform, "round_prefer_floor", options)
    for mode in ("linear", "cubic")
    for transform in TRANSFORMS
    for options in ({}, {"antialias": 1}, {"antialias": 1, "exclude_outside": 1})
]
CUBIC_OPTIONS = [("cubic", "half_pixel", "round_prefer_floor", {"cubic_coeff_a": -0.5, "exclude_outside": 1})]


@pytest.mark.parametrize("mode, transform, rounding, options", NEAREST + INTERPOLATING + CUBIC_OPTIONS)
def test_resize_matches_onnxruntime(mode: str, transform: str, rounding: str, options: dict) -> None:
    x = RNG.standard_normal((1, 2, 4, 8)).astype(np.float32)
    for height, width in SCALES:
        scales = np.array([1, 1, height, width], np.float32)
        node = helper.make_node(
            "Resize",
            ["x", "", "scales"],
            ["y"],
            mode=mode,
            coordinate_transformation_mode=transform,
            nearest_mode=rounding,
            **options,
        )
        expected = _onnxruntime(_model([node], x.shape, {"scales": scales}, 19), x)
        got = resize(
            torch.from_numpy(x),
            scales=scales.tolist(),
            mode=mode,
            transform=transform,
            nearest=rounding,
            cubic_a=options.get("cubic_coeff_a", -0.75),
            antialias=bool(options.get("antialias")),
            exclude_outside=bool(options.get("exclude_outside")),
        ).numpy()
        assert got.shape == expected.shape
        # float32 data, weights from float64 coordinates vs onnxruntime's float32: atol 1e-5
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5, err_msg=f"scales {height}, {width}")


def test_resize_tf_crop_and_resize_with_axes_and_extrapolation() -> None:
    x = RNG.standard_normal((1, 2, 5, 9)).astype(np.float32)
    roi = np.array([0.2, -0.25, 0.8, 1.0], np.float32)  # axes (3, 2): W from 0.2 to 0.8, H from -0.25 to 1
    # W: 9 -> 18, H: 5 -> 10 (onnxruntime leaves an axis of scale 1 uncropped, unlike ONNX's definition)
    scales = np.array([2.0, 2.0], np.float32)
    node = helper.make_node(
        "Resize",
        ["x", "roi", "scales"],
        ["y"],
        mode="linear",
        coordinate_transformation_mode="tf_crop_and_resize",
        axes=[3, 2],
        extrapolation_value=-2.0,
    )
    expected = _onnxruntime(_model([node], x.shape, {"roi": roi, "scales": scales}, 19), x)
    got = resize(
        torch.from_numpy(x),
        roi=torch.from_numpy(roi),
        scales=torch.from_numpy(scales),
        axes=(3, 2),
        mode="linear",
        transform="tf_crop_and_resize",
        extrapolation=-2.0,
    ).numpy()
    assert (expected == -2.0).any()  # some samples fall outside the input
    # float32 data, weights from float64 coordinates vs onnxruntime's float32: atol 1e-5
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


POOLS = list(
    itertools.product(
        [(1, 2, 7, 8), (1, 1, 6, 5, 7)],  # 2-d and 3-d
        [2, 3],  # kernel
        [1, 2, 3],  # stride
        [1, 2],  # dilation
        ["none", "end", "wide"],  # pads: none, one at the end, kernel - 1 at the start
        [0, 1],  # ceil_mode
        [0, 1],  # count_include_pad
    )
)


@pytest.mark.parametrize("shape, k, s, d, pads, ceil, counted", POOLS)
def test_average_pool_matches_onnxruntime(shape, k, s, d, pads, ceil, counted) -> None:
    spatial = len(shape) - 2
    begin = {"none": 0, "end": 0, "wide": k - 1}[pads]
    end = {"none": 0, "end": 1, "wide": 1}[pads]
    node = helper.make_node(
        "AveragePool",
        ["x"],
        ["y"],
        kernel_shape=[k] * spatial,
        strides=[s] * spatial,
        dilations=[d] * spatial,
        pads=[begin] * spatial + [end] * spatial,
        ceil_mode=ceil,
        count_include_pad=counted,
    )
    x = RNG.standard_normal(shape).astype(np.float32)
    expected = _onnxruntime(_model([node], x.shape, {}, 19), x)
    got = average_pool(
        torch.from_numpy(x),
        (k,) * spatial,
        (s,) * spatial,
        (d,) * spatial,
        (begin,) * spatial,
        (end,) * spatial,
        ceil_mode=bool(ceil),
        count_include_pad=bool(counted),
    ).numpy()
    assert got.shape == expected.shape
    # float32 sums in another order: atol 1e-5
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_generated_source_carries_only_the_helpers_it_calls(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[3, 3], pads=[0, 0, 1, 1]),
        helper.make_node("Resize", ["p", "", "s"], ["y"], mode="linear", coordinate_transformation_mode="asymmetric"),
    ]
    model = _model(nodes, (1, 2, 6, 6), {"s": np.array([1, 1, 1.5, 2], np.float32)}, 19)
    onnx.save(model, tmp_path / "m.onnx")
    write_pytorch(read_onnx(tmp_path / "m.onnx"), tmp_path / "out")
    source = (tmp_path / "out" / "model.py").read_text()
    defined = {line.split("(")[0].removeprefix("def ") for line in source.splitlines() if line.startswith("def ")}
    assert defined == {function.__name__ for name in ("resize", "average_pool") for function in HELPERS[name]}
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import torch", "from torch import nn", "from torch.nn import functional as F"]
    x = RNG.standard_normal((1, 2, 6, 6)).astype(np.float32)
    with torch.no_grad():
        got = load_torch_folder(tmp_path / "out")(torch.from_numpy(x)).numpy()
    # generated PyTorch vs onnxruntime, float32: atol 1e-5
    np.testing.assert_allclose(got, _onnxruntime(model, x), rtol=0, atol=1e-5)


def test_an_output_the_generated_code_leaves_out_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], (1, 2), {}, 17)
    onnx.save(model, tmp_path / "m.onnx")
    lookup = program.EMITTERS.get
    # a converter that writes nothing for its node
    monkeypatch.setattr(
        program.EMITTERS, "get", lambda op, version=None: (lambda ctx: None) if op == "Relu" else lookup(op, version)
    )
    with pytest.raises(UnsupportedError, match="output y of Relu is not computed"):
        write_pytorch(read_onnx(tmp_path / "m.onnx"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
