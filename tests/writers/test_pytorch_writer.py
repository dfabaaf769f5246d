"""PyTorch writer on whole networks: the sample networks exported from PyTorch,
the same graphs read back from ONNX files, and a GoogLeNet-style Caffe net; the
generated module against onnxruntime, the original PyTorch module and OpenCV
DNN, and the generated source checked for readability."""
from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import cv2
import numpy as np
import onnx_ir as ir
import pytest
import torch
from google.protobuf import text_format

import workbench
from workbench.formats import caffe_pb2
from workbench.graph import Model
from workbench.readers import read_onnx
from workbench.readers.caffe_reader import read_caffe
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.samples import InceptionBlock
from workbench.steps.simplify import simplify
from workbench.writers.pytorch import write_pytorch

SAMPLES = [
    "resnet_tiny",
    "mobilenet_tiny",
    "squeezenet_tiny",
    "shufflenet_tiny",
    "efficientnet_tiny",
    "segmentation_tiny",
    "inception_tiny",
    "mtcnn_tiny",
]

_simplified: dict[str, Model] = {}


def simplified(sample: str) -> Model:
    """The sample exported and simplified once per test session (export is the slow part)."""
    if sample not in _simplified:
        _simplified[sample] = simplify(workbench.load(f"workbench.samples:{sample}"))
    return _simplified[sample]


def load_generated(folder: Path):
    """Import model.py by path and load weights.pt as a user would."""
    spec = importlib.util.spec_from_file_location(f"generated_{abs(hash(folder))}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    network = module.Model()
    network.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    return network


def run_generated(folder: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        result = load_generated(folder)(*(torch.from_numpy(x) for x in inputs))
    return [t.numpy() for t in (result if isinstance(result, tuple) else (result,))]


def cat_input_sources(folder: Path) -> list[list[str]]:
    """For each torch.cat line of model.py, the source layers of the lines that
    assigned its operands, in the order the operands appear."""
    record = json.loads((folder / "provenance.json").read_text())
    assigned = {line["code"].split(" = ")[0]: line["sources"] for line in record["forward"]}
    found = []
    for line in record["forward"]:
        match = re.search(r"torch\.cat\(\[([^\]]*)\]", line["code"])
        if match:
            found.append([assigned[name.strip()][-1] for name in match.group(1).split(",")])
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sample", SAMPLES)
def test_sample_network_matches_onnxruntime_and_pytorch(sample: str, tmp_path: Path) -> None:
    model = simplified(sample)
    written = write_pytorch(model, tmp_path)
    assert [p.name for p in written.paths] == ["model.py", "weights.pt", "provenance.json"]
    inputs = list(workbench.example_inputs(model).values())
    actual = run_generated(tmp_path, inputs)
    expected = list(OnnxRuntimeRunner(model).run(inputs).values())
    factory = getattr(workbench.samples, sample)
    with torch.no_grad():
        original = factory()(*(torch.from_numpy(x) for x in inputs))
    original = [t.numpy() for t in (original if isinstance(original, tuple) else (original,))]
    assert len(actual) == len(expected) == len(original)
    for got, want, source in zip(actual, expected, original):
        # generated PyTorch vs onnxruntime on the same graph, float32: atol 1e-5
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        # generated PyTorch vs the original PyTorch module, float32: atol 1e-5
        np.testing.assert_allclose(got, source, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("sample", ["resnet_tiny", "segmentation_tiny", "mtcnn_tiny"])
def test_graph_read_back_from_an_onnx_file_converts_the_same(sample: str, tmp_path: Path) -> None:
    path = tmp_path / f"{sample}.onnx"
    ir.save(simplified(sample).ir, path)
    model = read_onnx(path)
    write_pytorch(model, tmp_path / "out")
    inputs = list(workbench.example_inputs(model).values())
    expected = list(OnnxRuntimeRunner(path).run(inputs).values())
    for got, want in zip(run_generated(tmp_path / "out", inputs), expected):
        # generated PyTorch vs onnxruntime on the ONNX file, float32: atol 1e-5
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert path.exists() and path.stat().st_size > 0  # the source file is left alone


@pytest.mark.slow
@pytest.mark.parametrize("sample", SAMPLES)
def test_generated_source_is_readable(sample: str, tmp_path: Path) -> None:
    model = simplified(sample)
    written = write_pytorch(model, tmp_path)
    source = (tmp_path / "model.py").read_text()
    ast.parse(source)
    lines = source.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].startswith('"""PyTorch model generated by workbench')
    conv_nodes = sum(1 for node in model.graph if node.op_type == "Conv")
    assert source.count("nn.Conv2d(") == conv_nodes
    linear_nodes = sum(1 for node in model.graph if node.op_type == "Gemm")
    assert source.count("nn.Linear(") == linear_nodes
    names = [module["name"] for module in written.details["modules"]]
    assert len(names) == len(set(names))
    for module in written.details["modules"]:
        assert module["nodes"] and module["sources"], module
        assert f"self.{module['name']} = {module['type']}(" in source
    record = json.loads((tmp_path / "provenance.json").read_text())
    covered = {node for entry in [*record["modules"], *record["forward"]] for node in entry["nodes"]}
    inlined = {entry["node"]: entry["op_type"] for entry in record["inlined"]}
    assert covered | set(inlined) == {node.name for node in model.graph}  # every node is accounted for
    assert set(inlined.values()) <= {"Constant", "Identity", "Dropout"}
    for entry in record["forward"]:
        # each forward line recorded in provenance.json is where it says
        assert lines[entry["line"] - 1].strip().startswith(entry["code"].split(" = ")[0] + " = ")


@pytest.mark.slow
def test_submodules_are_named_after_pytorch_module_paths(tmp_path: Path) -> None:
    written = write_pytorch(simplified("resnet_tiny"), tmp_path)
    by_name = {module["name"]: module for module in written.details["modules"]}
    assert by_name["layer1_0_conv1"]["sources"] == ["layer1.0.conv1"]
    assert by_name["layer1_0_conv1"]["type"] == "nn.Conv2d"
    assert by_name["layer2_0_downsample_1"]["type"] == "nn.BatchNorm2d"
    # the block's ReLU module runs twice in the source; it is one submodule here too
    assert len(by_name["layer1_0_relu"]["nodes"]) == 2
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    source_state = workbench.samples.resnet_tiny().state_dict()
    # the state dict holds the source weights under the flattened names
    torch.testing.assert_close(
        state["layer1_0_conv1.weight"], source_state["layer1.0.conv1.weight"], rtol=0, atol=0
    )


@pytest.mark.slow
def test_concat_keeps_the_branch_order_of_an_inception_block(tmp_path: Path) -> None:
    block = InceptionBlock(16)
    torch.manual_seed(11)
    for parameter in block.parameters():
        parameter.data.normal_()
    block.eval()
    x = np.random.default_rng(3).standard_normal((1, 16, 6, 6)).astype(np.float32)
    model = simplify(workbench.export(block, [x], name="inception_block"))
    write_pytorch(model, tmp_path)
    order = cat_input_sources(tmp_path)
    assert order == [["branch1.2", "branch3.1.2", "branch5.1.2", "branch_pool.1.2"]]
    with torch.no_grad():
        expected = block(torch.from_numpy(x)).numpy()
    # generated PyTorch vs the original PyTorch block, float32: atol 1e-4 (unit-variance weights)
    np.testing.assert_allclose(run_generated(tmp_path, [x])[0], expected, rtol=0, atol=1e-4)


GOOGLENET_BLOCK = """
name: "googlenet_block"
input: "data"
input_shape { dim: 1 dim: 3 dim: 19 dim: 19 }
layer { name: "conv1/7x7_s2" type: "Convolution" bottom: "data" top: "conv1/7x7_s2"
        convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "conv1/relu_7x7" type: "ReLU" bottom: "conv1/7x7_s2" top: "conv1/7x7_s2" }
layer { name: "pool1/3x3_s2" type: "Pooling" bottom: "conv1/7x7_s2" top: "pool1/3x3_s2"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "inception_3a/1x1" type: "Convolution" bottom: "pool1/3x3_s2" top: "inception_3a/1x1"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "inception_3a/relu_1x1" type: "ReLU" bottom: "inception_3a/1x1" top: "inception_3a/1x1" }
layer { name: "inception_3a/3x3_reduce" type: "Convolution" bottom: "pool1/3x3_s2"
        top: "inception_3a/3x3_reduce" convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "inception_3a/relu_3x3_reduce" type: "ReLU" bottom: "inception_3a/3x3_reduce"
        top: "inception_3a/3x3_reduce" }
layer { name: "inception_3a/3x3" type: "Convolution" bottom: "inception_3a/3x3_reduce"
        top: "inception_3a/3x3" convolution_param { num_output: 5 kernel_size: 3 pad: 1 } }
layer { name: "inception_3a/relu_3x3" type: "ReLU" bottom: "inception_3a/3x3" top: "inception_3a/3x3" }
layer { name: "inception_3a/pool" type: "Pooling" bottom: "pool1/3x3_s2" top: "inception_3a/pool"
        pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "inception_3a/pool_proj" type: "Convolution" bottom: "inception_3a/pool"
        top: "inception_3a/pool_proj" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "inception_3a/relu_pool_proj" type: "ReLU" bottom: "inception_3a/pool_proj"
        top: "inception_3a/pool_proj" }
layer { name: "inception_3a/output" type: "Concat" top: "inception_3a/output"
        bottom: "inception_3a/1x1" bottom: "inception_3a/3x3" bottom: "inception_3a/pool_proj" }
layer { name: "loss3/classifier" type: "InnerProduct" bottom: "inception_3a/output"
        top: "loss3/classifier" inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "loss3/classifier" top: "prob" }
"""


def googlenet_block(folder: Path) -> tuple[Path, Path]:
    """The prototxt above and a caffemodel with random weights for it."""
    net = text_format.Parse(GOOGLENET_BLOCK, caffe_pb2.NetParameter())
    prototxt = folder / "deploy.prototxt"
    prototxt.write_text(GOOGLENET_BLOCK)
    rng = np.random.default_rng(5)
    channels = {"data": 3}
    for layer in net.layer:
        inputs = channels.get(layer.bottom[0], 0) if layer.bottom else 0
        if layer.type == "Convolution":
            param = layer.convolution_param
            shapes = [
                (param.num_output, inputs, param.kernel_size[0], param.kernel_size[0]),
                (param.num_output,),
            ]
            channels[layer.top[0]] = param.num_output
        elif layer.type == "InnerProduct":
            outputs = layer.inner_product_param.num_output
            shapes = [(outputs, inputs * 5 * 5), (outputs,)]  # 5 x 5 after the ceil-mode pool
        else:
            channels[layer.top[0]] = (
                sum(channels[b] for b in layer.bottom) if layer.type == "Concat" else inputs
            )
            continue
        for shape in shapes:
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend(
                rng.standard_normal(shape).astype(np.float32).ravel() * 0.3
            )  # tiny test blobs only
    caffemodel = folder / "net.caffemodel"
    caffemodel.write_bytes(net.SerializeToString())
    return prototxt, caffemodel


@pytest.mark.slow
def test_caffe_net_converts_with_layer_names_and_concat_order(tmp_path: Path) -> None:
    prototxt, caffemodel = googlenet_block(tmp_path)
    model = read_caffe(prototxt, caffemodel)
    written = write_pytorch(model, tmp_path / "out")
    names = {module["name"]: module["sources"] for module in written.details["modules"]}
    assert names["inception_3a_3x3_reduce"] == ["inception_3a/3x3_reduce"]
    assert names["conv1_7x7_s2"] == ["conv1/7x7_s2"]
    assert "ceil_mode=True" in (tmp_path / "out" / "model.py").read_text()  # Caffe pools round up
    assert cat_input_sources(tmp_path / "out") == [
        ["inception_3a/relu_1x1", "inception_3a/relu_3x3", "inception_3a/relu_pool_proj"]
    ]
    x = np.random.default_rng(2).standard_normal((1, 3, 19, 19)).astype(np.float32)
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(x)
    expected = net.forward("prob")
    # generated PyTorch vs OpenCV DNN on the Caffe files, float32: atol 1e-5
    np.testing.assert_allclose(run_generated(tmp_path / "out", [x])[0], expected, rtol=0, atol=1e-5)
