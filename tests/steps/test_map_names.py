"""map_names: every converted layer and parameter traced to its source through
provenance, after simplify + fold_bn and through the Caffe writer's record."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.errors import InputError
from workbench.graph import provenance
from workbench.samples import inception_tiny, mobilenet_tiny, resnet_tiny
from workbench.steps.fold_bn import fold_bn
from workbench.steps.map_names import AMBIGUOUS, UNMATCHED, NameMap, map_names
from workbench.steps.simplify import simplify

SAMPLES = {"resnet": resnet_tiny, "mobilenet": mobilenet_tiny, "inception": inception_tiny}


@functools.cache
def chain(factory):
    """(module, exported, simplified + folded); shared by the tests, which only read them."""
    module = factory()
    exported = wb.export(module, np.zeros(factory.input_shape, np.float32))
    return module, exported, fold_bn(simplify(exported))


@pytest.fixture(scope="module", params=list(SAMPLES), ids=list(SAMPLES))
def folded_chain(request):
    return chain(SAMPLES[request.param])


def test_every_conv_maps_to_its_torch_conv_and_bn_params(folded_chain) -> None:
    module, exported, folded = folded_chain
    name_map = map_names(exported, folded)
    layers = dict(module.named_modules())
    convs = [e for e in name_map if e.kind == "layer" and e.op == "Conv"]
    assert convs and all(e.status == "matched" for e in convs)
    for entry in convs:
        conv_names = [s for s in entry.sources if isinstance(layers.get(s), torch.nn.Conv2d)]
        bn_names = [s for s in entry.sources if isinstance(layers.get(s), torch.nn.BatchNorm2d)]
        assert len(conv_names) == 1, entry
        assert f"{conv_names[0]}.weight" in entry.params
        for bn in bn_names:  # folded: the BN's four tensors are sources of the weights
            for tensor in ("weight", "bias", "running_mean", "running_var"):
                assert f"{bn}.{tensor}" in entry.params
            assert any("folded BatchNormalization" in t for t in entry.transforms)
    folded_bns = {s for e in convs for s in e.sources if isinstance(layers.get(s), torch.nn.BatchNorm2d)}
    all_bns = {n for n, m in layers.items() if isinstance(m, torch.nn.BatchNorm2d)}
    assert folded_bns == all_bns  # every BatchNorm of these samples follows a conv


def test_weight_parameters_keep_source_shapes(folded_chain) -> None:
    module, exported, folded = folded_chain
    name_map = map_names(exported, folded)
    state = module.state_dict()
    weights = [
        e for e in name_map if e.kind == "parameter" and e.op == "Conv" and e.target_shape and len(e.target_shape) == 4
    ]
    assert weights
    for entry in weights:
        source = next(p for p in entry.params if p.endswith(".weight") and state[p].ndim == 4)
        assert entry.target_shape == list(state[source].shape)
        assert entry.source_shapes[source] == list(state[source].shape)


def test_no_source_layer_with_weights_is_lost(folded_chain) -> None:
    _, exported, folded = folded_chain
    assert map_names(exported, folded).unmatched_sources == []


def test_unmatched_and_ambiguous_entries_are_listed() -> None:
    _, exported, folded = chain(resnet_tiny)
    edited = folded.copy()
    nodes = [n for n in edited.graph if n.op_type == "Conv"]
    provenance.set_sources(nodes[0], [])  # a node a tool made without provenance
    provenance.set_sources(nodes[1], ["layer1.0.conv1", "layer1.0.conv2"])
    edited.graph[edited.graph.index(nodes[1])].metadata_props.pop(provenance.TRANSFORMS_KEY, None)
    name_map = map_names(exported, edited)
    assert nodes[0].name in {e.target for e in name_map.unmatched if e.kind == "layer"}
    assert [e.target for e in name_map.ambiguous if e.kind == "layer"] == [nodes[1].name]
    assert name_map.find(nodes[1].name, "layer")[0].status == AMBIGUOUS
    assert "stem.0" in name_map.unmatched_sources  # its only conv lost provenance
    name_map.set(nodes[0].name, ["stem.0", "stem.1"])
    assert name_map.find(nodes[0].name, "layer")[0].status == "corrected"
    assert name_map.sources_of(nodes[0].outputs[0].name) == ("stem.0", "stem.1")


def test_json_round_trip(tmp_path) -> None:
    _, exported, folded = chain(mobilenet_tiny)
    name_map = map_names(exported, folded)
    name_map.set(next(e.target for e in name_map if e.kind == "layer"), ["features.0.0"])
    path = tmp_path / "names.json"
    name_map.save(path)
    loaded = NameMap.load(path)
    assert loaded.to_dict() == name_map.to_dict()
    assert json.loads(path.read_text())["counts"]["corrected"] >= 1
    assert "<table>" in loaded._repr_html_()


def test_load_refuses_other_json(tmp_path) -> None:
    path = tmp_path / "other.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError):
        NameMap.load(path)


def test_caffe_layers_map_through_the_writer_record(tmp_path) -> None:
    from workbench.writers.caffe import write_caffe

    module, exported, folded = chain(resnet_tiny)
    written = write_caffe(folded, tmp_path)
    name_map = map_names(exported, written)
    layers = [e for e in name_map if e.kind == "layer"]
    assert not [e for e in layers if e.status == UNMATCHED]
    conv = name_map.find("stem.0", "layer")[0]
    assert conv.sources == ["stem.0", "stem.1"]
    blobs = [e for e in name_map.find("stem.0[0]", "parameter")]
    assert blobs and blobs[0].target_shape == list(module.stem[0].weight.shape)
    from_files = map_names(exported, [written.path(".prototxt"), written.path(".caffemodel")])
    assert [e.to_dict() for e in from_files] == [e.to_dict() for e in name_map]


def test_generated_pytorch_folder_maps_to_caffe_layers(tmp_path) -> None:
    from pathlib import Path

    import torch

    data = Path(__file__).parents[2] / "data" / "caffe"
    source = wb.load(data / "zoo_tiny.prototxt", data / "zoo_tiny.caffemodel")
    written = wb.write(source, tmp_path / "pytorch", "pytorch")
    name_map = wb.map_names(source, written)
    assert name_map.sources_of("inception_3x3") == ("inception/3x3",)
    state = torch.load(tmp_path / "pytorch" / "weights.pt", weights_only=True)
    parameters = {entry.target: entry for entry in name_map if entry.kind == "parameter"}
    # every weight tensor of the generated module is accounted for, with its real shape
    assert {k for k in state if not k.endswith("num_batches_tracked")} <= set(parameters)
    assert parameters["fc.weight"].target_shape == list(state["fc.weight"].shape) == [10, 24]
    assert parameters["fc.weight"].params == ["fc/0"] and parameters["fc.bias"].params == ["fc/1"]
    # a Caffe BatchNorm's mean and variance are stored divided by its third blob (the scale factor)
    assert parameters["conv1_bn.running_mean"].params == ["conv1/bn/0", "conv1/bn/2"]
    assert not name_map.unmatched and not name_map.ambiguous
    assert wb.map_names(source, tmp_path / "pytorch").to_dict() == name_map.to_dict()


def test_each_caffe_blob_names_its_own_source_parameters(tmp_path) -> None:
    folded = fold_bn(simplify(wb.load("workbench.samples:resnet_tiny")))
    written = wb.write(folded, tmp_path, "caffe")
    blobs = {entry.target: entry for entry in map_names(folded, written) if entry.kind == "parameter"}
    # the folded weight comes from the conv weight and the BatchNorm's gamma and variance
    assert blobs["layer1.0.conv1[0]"].params == [
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.bn1.running_var",
    ]
    assert "layer1.0.bn1.bias" in blobs["layer1.0.conv1[1]"].params
    assert "layer1.0.conv1.weight" not in blobs["layer1.0.conv1[1]"].params
    assert blobs["fc[0]"].params == ["fc.weight"] and blobs["fc[1]"].params == ["fc.bias"]
    # shapes come from the caffemodel itself: the Caffe blob and the source parameter agree
    assert blobs["fc[0]"].target_shape == blobs["fc[0]"].source_shapes["fc.weight"] == [10, 32]
