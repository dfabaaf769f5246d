"""compare: every pair of artifacts in the chain PyTorch → ONNX → simplified →
folded → Caffe agrees layer by layer; the report has the design's format.

Each side runs in its own runtime (PyTorch, onnxruntime, OpenCV DNN), so the
per-layer statistics are measured between independent implementations.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

import workbench as wb
from workbench.errors import InputError
from workbench.graph import provenance
from workbench.runners import RecordedRunner
from workbench.samples import inception_tiny, resnet_tiny
from workbench.steps.compare import compare, layer_tensors
from workbench.steps.fold_bn import fold_bn
from workbench.steps.map_names import map_names
from workbench.steps.plots import plot_difference
from workbench.steps.simplify import simplify

ATOL, RTOL = 1e-4, 1e-3  # float32 runtimes against each other


@functools.cache
def artifacts(factory, outdir):
    module = factory()
    x = np.random.default_rng(0).standard_normal(factory.input_shape).astype(np.float32)
    exported = wb.export(module, x)
    simplified = simplify(exported)
    folded = fold_bn(simplified)
    from workbench.writers.caffe import write_caffe

    caffe = write_caffe(folded, outdir)
    return {"pytorch": module, "onnx": exported, "simplified": simplified, "folded": folded, "caffe": caffe}, x


STEPS = [
    ("pytorch", "onnx"),
    ("onnx", "simplified"),
    ("simplified", "folded"),
    ("folded", "caffe"),
    ("pytorch", "caffe"),
]


@pytest.fixture(scope="module", params=[resnet_tiny, inception_tiny], ids=["resnet", "inception"])
def chain(request, tmp_path_factory):
    return artifacts(request.param, tmp_path_factory.mktemp(request.param.__name__))


@pytest.mark.parametrize("pair", STEPS, ids=[f"{a}-{b}" for a, b in STEPS])
def test_chain_agrees_layer_by_layer(chain, pair) -> None:
    steps, x = chain
    comparison = compare(steps[pair[0]], steps[pair[1]], x, per_layer=True, atol=ATOL, rtol=RTOL)
    assert comparison.ok, comparison
    assert len(comparison.layers) >= 10
    assert all(p.ok for p in comparison.layers), comparison  # atol 1e-4 + rtol 1e-3 · max|ref|
    assert all(p.stats.cosine > 0.99999 for p in comparison.layers)
    assert comparison.first_divergence is None


def test_folded_bn_is_compared_at_the_conv_output(chain) -> None:
    steps, x = chain
    comparison = compare(steps["pytorch"], steps["folded"], x, per_layer=True)
    by_source = {p.source: p.target for p in comparison.layers}
    folded = steps["folded"]
    conv = next(n for n in folded.graph if n.op_type == "Conv" and "stem.1" in provenance.sources(n))
    assert by_source["stem.1"] == conv.outputs[0].name  # (source bn output, folded conv output)
    assert "stem.0" in comparison.unmatched_reference  # the conv alone has no counterpart


def test_report_has_the_design_format(chain, tmp_path) -> None:
    steps, x = chain
    comparison = compare(steps["onnx"], steps["caffe"], x, per_layer=True)
    report = json.loads(json.dumps(comparison.to_report(), allow_nan=False))
    assert {"ok", "outputs", "layers", "first_divergence"} <= set(report)
    assert report["ok"] is True and report["first_divergence"] is None
    assert (report["verdict"], report["outputs_ok"], report["layers_ok"]) == ("outputs match", True, True)
    for layer in report["layers"]:
        assert set(layer) == {"source", "target", "max_abs", "mean_abs", "max_rel", "cosine"}
    assert {"source", "target", "max_abs", "ok", "needed_atol"} <= set(report["outputs"][0])
    # the smallest atol that passes at this rtol is the part of the error rtol does not cover
    output = comparison.outputs[0].stats
    assert report["outputs"][0]["needed_atol"] == max(0.0, output.max_abs - comparison.rtol * output.reference_max)
    comparison.plot(tmp_path / "errors.png")
    assert (tmp_path / "errors.png").read_bytes()[:4] == b"\x89PNG"
    assert "<img" in comparison._repr_html_()


def test_final_outputs_only_without_per_layer(chain) -> None:
    steps, x = chain
    comparison = compare(steps["pytorch"], steps["caffe"], x)
    assert comparison.ok and comparison.layers == [] and comparison.first_divergence is None
    assert comparison.outputs[0].stats.max_abs <= ATOL  # PyTorch vs OpenCV DNN, float32


def test_divergence_report_is_plain_json() -> None:
    module = resnet_tiny()
    x = np.random.default_rng(0).standard_normal(resnet_tiny.input_shape).astype(np.float32)
    model = wb.export(module, x)
    broken = model.copy()
    pool = next(n for n in broken.graph if n.op_type == "MaxPool")
    pool.attributes["kernel_shape"] = ir.AttrInt64s("kernel_shape", [2, 2])
    pool.attributes["pads"] = ir.AttrInt64s("pads", [0, 0, 0, 0])
    comparison = compare(module, broken, x, per_layer=True)
    assert not comparison.ok
    report = json.loads(json.dumps(comparison.to_report(), allow_nan=False))
    assert report["first_divergence"]["source"] == "pool"
    assert report["first_divergence"]["cause"] is None  # a different kernel is no known pitfall
    assert "No known pitfall" in report["first_divergence"]["explanation"]


def test_name_map_overrides_provenance(chain) -> None:
    steps, x = chain
    name_map = map_names(steps["onnx"], steps["folded"])
    conv = next(e for e in name_map if e.kind == "blob" and e.op == "Conv" and "stem.1" in e.sources)
    name_map.set(conv.layer, ["stem.0"])  # claim the folded conv is the conv alone
    comparison = compare(steps["pytorch"], steps["folded"], x, name_map=name_map, per_layer=True)
    pair = next(p for p in comparison.layers if p.target == conv.target)
    assert pair.source == "stem.0" and not pair.ok  # conv vs conv+bn: now (wrongly) differs


def test_layer_tensors_and_difference_plot(chain, tmp_path) -> None:
    steps, x = chain
    reference, candidate = layer_tensors(steps["pytorch"], steps["caffe"], "stem.1", "stem.0", x)
    np.testing.assert_allclose(candidate, reference, atol=ATOL)  # PyTorch BN vs OpenCV folded conv
    plot_difference(reference, candidate, "stem", tmp_path / "diff.png")
    assert (tmp_path / "diff.png").stat().st_size > 0


def test_recorded_input_is_used_and_enforced() -> None:
    data = Path(__file__).resolve().parents[2] / "data" / "mxnet"
    recording = RecordedRunner(data / "op_zoo-reference.npz")
    model = wb.load(
        data / "op_zoo-symbol.json", data / "op_zoo-0000.params", input_shape=recording.inputs["data"].shape
    )
    assert compare(recording, model).ok  # MXNet 1.9.1 vs onnxruntime: atol 1e-4, rtol 1e-3
    with pytest.raises(InputError):
        compare(recording, model, np.zeros_like(recording.inputs["data"]))


def test_missing_input_shapes_ask_for_inputs() -> None:
    with pytest.raises(InputError, match="no input"):
        compare(resnet_tiny(), resnet_tiny())  # modules declare no input shape


def test_mxnet_recording_against_written_caffe_layer_by_layer(tmp_path) -> None:
    """MXNet's own recorded layer outputs against the Caffe files in OpenCV DNN: the
    recording's outputs line up with Caffe layers through the MXNet symbol's nodes."""
    data = Path(__file__).parents[2] / "data" / "mxnet"
    model = wb.load(
        data / "mobilefacenet_tiny-symbol.json", data / "mobilefacenet_tiny-0000.params", input_shape=(1, 3, 28, 28)
    )
    written = wb.write(wb.fold_bn(wb.simplify(model)), tmp_path, "caffe")
    comparison = compare(data / "mobilefacenet_tiny-reference.npz", written, per_layer=True)
    # every convolution (with its folded BatchNorm), activation and the final fc1 is compared
    assert len(comparison.layers) >= 17
    # OpenCV DNN vs recorded MXNet 1.9.1, float32: atol 1e-4 + rtol 1e-3 (the default tolerance)
    assert comparison.ok and comparison.first_divergence is None
    assert all(pair.stats.max_abs < 1e-5 for pair in comparison.layers)


@pytest.mark.slow
def test_caffe_original_against_generated_pytorch_layer_by_layer(tmp_path) -> None:
    """A Caffe-zoo-style net: the original files in OpenCV DNN against the generated
    model.py, every submodule lined up with its Caffe layer through provenance.json."""
    data = Path(__file__).parents[2] / "data" / "caffe"
    prototxt, caffemodel = data / "zoo_tiny.prototxt", data / "zoo_tiny.caffemodel"
    model = wb.load(prototxt, caffemodel)
    written = wb.write(model, tmp_path / "pytorch", "pytorch")
    comparison = compare((prototxt, caffemodel), written, wb.example_inputs(model), per_layer=True)
    compared = {layer for pair in comparison.layers for layer in pair.layers}
    # every submodule is compared (torch.cat has no module: the conv after it checks the order)
    assert {"conv1", "conv1/bn", "norm1", "inception/3x3", "inception/pool_proj", "res", "fc", "prob"} <= compared
    # generated PyTorch vs OpenCV DNN on the original, float32: default atol 1e-4 + rtol 1e-3
    assert comparison.ok and comparison.first_divergence is None
    # and every layer much closer: atol 1e-5 + rtol 1e-6 of the layer's largest value
    assert all(pair.stats.max_abs <= 1e-5 + 1e-6 * pair.stats.reference_max for pair in comparison.layers)
