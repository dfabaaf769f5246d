"""MXNet models read without MXNet, checked layer by layer against outputs recorded with real MXNet 1.9.1.

The fixtures in data/mxnet hold, for each model, the symbol and params files, an
input, and every layer's output as MXNet computed it (``<node>_output``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from workbench import InputError, UnsupportedError, load
from workbench.graph import provenance
from workbench.readers.mxnet_reader import read_mxnet, read_params
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner

DATA = Path(__file__).parents[2] / "data" / "mxnet"
MODELS = ["op_zoo", "mobilefacenet_tiny"]


def _files(name: str) -> tuple[Path, Path]:
    return DATA / f"{name}-symbol.json", DATA / f"{name}-0000.params"


def _every_layer(model) -> dict[str, np.ndarray]:
    """Run the graph in onnxruntime with every node output exposed."""
    graph = model.ir.graph
    produced = [value for node in graph for value in node.outputs]
    graph.outputs.clear()
    graph.outputs.extend(produced)
    inputs = {model.input_names[0]: np.load(DATA / f"{model.name}-input.npy")}
    return OnnxRuntimeRunner(model).run(inputs)


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_every_layer_matches_mxnet(name):
    reference = np.load(DATA / f"{name}-reference.npz")
    x = np.load(DATA / f"{name}-input.npy")
    outputs = _every_layer(read_mxnet(*_files(name), input_shapes=x.shape))
    assert set(reference.files) <= set(outputs), "every recorded MXNet layer has a value of the same name"
    for layer in reference.files:
        # onnxruntime vs recorded MXNet 1.9.1 (CPU, float32): atol 1e-5 + rtol 1e-4
        np.testing.assert_allclose(outputs[layer], reference[layer], atol=1e-5, rtol=1e-4, err_msg=layer)


def test_load_dispatches_mxnet_files():
    symbol, params = _files("op_zoo")
    model = load(params, symbol, input_shape=(1, 3, 18, 18))
    assert model.source.format == "mxnet" and model.name == "op_zoo"


def test_weights_are_bound_by_graph_inputs_not_by_names():
    """The trap: a BatchNorm named fc1 after an FC named pre_fc1 must not get fc1_weight-like params."""
    model = read_mxnet(*_files("mobilefacenet_tiny"), input_shapes=(1, 3, 28, 28))
    by_source = {provenance.sources(n)[0]: n for n in model.graph if n.op_type in ("Gemm", "BatchNormalization")}
    assert by_source["pre_fc1"].op_type == "Gemm"
    assert provenance.params(by_source["pre_fc1"]) == {1: ("pre_fc1_weight",), 2: ("pre_fc1_bias",)}
    assert by_source["fc1"].op_type == "BatchNormalization"
    assert provenance.params(by_source["fc1"])[1] == ("fc1_gamma",)


def test_fix_gamma_and_mxnet_eps_are_kept():
    model = read_mxnet(*_files("mobilefacenet_tiny"), input_shapes=(1, 3, 28, 28))
    fc1 = next(n for n in model.graph if provenance.sources(n) == ("fc1",))
    gamma = fc1.inputs[1].const_value.numpy()
    stored = read_params(_files("mobilefacenet_tiny")[1])["fc1_gamma"]
    assert np.all(gamma == 1.0) and not np.all(stored == 1.0)
    assert any("fix_gamma" in t for t in provenance.transforms(fc1))
    assert fc1.attributes["epsilon"].as_float() == pytest.approx(2e-5)
    op_zoo = read_mxnet(*_files("op_zoo"), input_shapes=(1, 3, 18, 18))
    bn0 = next(n for n in op_zoo.graph if n.op_type == "BatchNormalization")
    assert bn0.attributes["epsilon"].as_float() == pytest.approx(1e-3)  # MXNet's default, not Caffe's 1e-5


def test_preprocessing_stays_in_the_graph():
    model = read_mxnet(*_files("mobilefacenet_tiny"), input_shapes=(1, 3, 28, 28))
    first_two = [(n.op_type, provenance.sources(n)) for n in list(model.graph)[:2]]
    assert first_two == [("Sub", ("_minusscalar0",)), ("Mul", ("_mulscalar0",))]


def test_missing_input_shape_is_explained():
    with pytest.raises(InputError, match="input-shape"):
        read_mxnet(*_files("op_zoo"))


def test_truncated_params_are_an_input_error(tmp_path):
    symbol, params = _files("op_zoo")
    broken = tmp_path / "op_zoo-0000.params"
    broken.write_bytes(params.read_bytes()[:500])
    with pytest.raises(InputError, match="not a readable MXNet params file"):
        read_mxnet(symbol, broken, input_shapes=(1, 3, 18, 18))


def test_every_unsupported_op_is_listed_at_once(tmp_path):
    symbol, params = _files("op_zoo")
    data = json.loads(symbol.read_text())
    renamed = {"sig0": "Custom", "tanh0": "ROIPooling"}
    for node in data["nodes"]:
        if node["name"] in renamed:
            node["op"] = renamed[node["name"]]
    edited = tmp_path / "op_zoo-symbol.json"
    edited.write_text(json.dumps(data))
    shutil.copy(params, tmp_path / params.name)
    with pytest.raises(UnsupportedError) as error:
        read_mxnet(edited, tmp_path / params.name, input_shapes=(1, 3, 18, 18))
    assert [(p.node, p.op_type) for p in error.value.problems] == [("sig0", "Custom"), ("tanh0", "ROIPooling")]


def test_params_are_read_as_views_of_the_file_bytes():
    params = read_params(_files("op_zoo")[1])
    weight = params["conv0_weight"]
    assert weight.shape == (8, 3, 3, 3) and weight.dtype == np.float32
    assert weight.base is not None  # np.frombuffer over the file's bytes, no per-element copy
    assert isinstance(ir.tensor(weight).numpy(), np.ndarray)


def test_simplified_mxnet_model_still_matches_mxnet():
    from workbench.steps.simplify import simplify

    model = simplify(read_mxnet(*_files("mobilefacenet_tiny"), input_shapes=(1, 3, 28, 28)))
    x = np.load(DATA / "mobilefacenet_tiny-input.npy")
    got = OnnxRuntimeRunner(model).run({"data": x})["fc1_output"]
    # simplified graph in onnxruntime vs recorded MXNet 1.9.1: atol 1e-5 + rtol 1e-4
    np.testing.assert_allclose(
        got, np.load(DATA / "mobilefacenet_tiny-reference.npz")["fc1_output"], atol=1e-5, rtol=1e-4
    )
    # the preprocessing scale was folded into conv_1 by onnxsim: the report says so
    assert "_mulscalar0" in model.report.counts.get("sources_folded", [])


def test_unsupported_settings_are_listed_at_once_with_a_remedy(tmp_path):
    """Settings a converter cannot express are Problems: every one is listed, none
    stops the walk, and the nodes downstream of a refused one add no error of their own."""
    symbol, params = _files("op_zoo")
    data = json.loads(symbol.read_text())
    for node in data["nodes"]:
        if node["name"] == "pool_valid":
            node["attrs"]["pool_type"] = "lp"
        if node["name"] == "pool_full":
            node["attrs"]["pooling_convention"] = "same"
    edited = tmp_path / "op_zoo-symbol.json"
    edited.write_text(json.dumps(data))
    shutil.copy(params, tmp_path / params.name)
    with pytest.raises(UnsupportedError) as error:
        read_mxnet(edited, tmp_path / params.name, input_shapes=(1, 3, 18, 18))
    problems = error.value.problems
    # both pools feed concat0 and everything after it: those add nothing
    assert [(p.node, p.op_type, p.kind) for p in problems] == [
        ("pool_full", "Pooling", "unsupported-attribute"),
        ("pool_valid", "Pooling", "unsupported-attribute"),
    ]
    assert all(p.remedy and p.source == (p.node,) for p in problems)
    assert "2 MXNet layer(s) cannot be converted" in str(error.value)
