"""PyTorch writer, one op family at a time: a one-node (or tiny) ONNX graph built
here, written as model.py + weights.pt, imported and run, against onnxruntime
on the same graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from workbench import UnsupportedError
from workbench.graph import Model
from workbench.readers import read_onnx
from workbench.runners import load_torch_folder
from workbench.runners.onnxruntime_runner import OnnxRuntimeRunner
from workbench.writers.pytorch import find_problems, write_pytorch

RNG = np.random.default_rng(0)
INT64_MAX = np.iinfo(np.int64).max


def weights(*shape: int, positive: bool = False) -> np.ndarray:
    data = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(data) + 0.5 if positive else data


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


@dataclass(frozen=True)
class Fed:
    """A graph input given this value (op parameters taken as inputs need valid ones)."""

    array: np.ndarray


@dataclass
class Case:
    """A tiny graph: ``nodes`` over graph inputs ``x0, x1, ...`` (shapes) and
    initializers ``c0, c1, ...``; the last node's first output is ``y``."""

    id: str
    nodes: list
    inputs: list[tuple[int, ...]]
    constants: list[np.ndarray] = field(default_factory=list)
    opset: int = 17
    atol: float = 1e-5
    expect: str = ""  # text the generated model.py must contain
    positive: bool = False
    output_type: int = TensorProto.FLOAT
    feeds: dict[int, np.ndarray] = field(default_factory=dict)  # graph input index -> its value


def one(
    op: str,
    args: list,
    *,
    outputs: int = 1,
    expect: str = "",
    opset: int = 17,
    atol: float = 1e-5,
    positive: bool = False,
    output_type: int = TensorProto.FLOAT,
    **attributes,
) -> Case:
    """A one-node case; each argument is a graph input (a shape tuple, or ``Fed``
    with its value), an initializer (an array) or absent (None)."""
    names, shapes, constants, feeds = [], [], [], {}
    for arg in args:
        if arg is None:
            names.append("")
        elif isinstance(arg, (tuple, Fed)):
            names.append(f"x{len(shapes)}")
            if isinstance(arg, Fed):
                feeds[len(shapes)] = arg.array
            shapes.append(arg.array.shape if isinstance(arg, Fed) else arg)
        else:
            names.append(f"c{len(constants)}")
            constants.append(arg)
    output_names = ["y"] + [f"extra{i}" for i in range(1, outputs)]
    node = helper.make_node(op, names, output_names, name=f"{op.lower()}_node", **attributes)
    return Case("", [node], shapes, constants, opset, atol, expect, positive, output_type, feeds)


def case(id: str, built: Case) -> Case:
    built.id = id
    return built


def build(case: Case, path: Path) -> Model:
    inputs = [
        helper.make_tensor_value_info(
            f"x{i}",
            helper.np_dtype_to_tensor_dtype(case.feeds[i].dtype) if i in case.feeds else TensorProto.FLOAT,
            s,
        )
        for i, s in enumerate(case.inputs)
    ]
    last = case.nodes[-1]
    outputs = [helper.make_tensor_value_info(name, case.output_type, None) for name in last.output if name]
    initializers = [onnx.numpy_helper.from_array(a, f"c{i}") for i, a in enumerate(case.constants)]
    graph = helper.make_graph(case.nodes, "op_case", inputs, outputs, initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    proto.ir_version = 8
    onnx.save(proto, path)
    return read_onnx(path)


def silu(shape) -> Case:
    nodes = [
        helper.make_node("Sigmoid", ["x0"], ["s"], name="act"),
        helper.make_node("Mul", ["x0", "s"], ["y"], name="act_mul"),
    ]
    return Case("", nodes, [shape], expect="nn.SiLU()")


def matmul_add(shape, weight, bias) -> Case:
    nodes = [
        helper.make_node("MatMul", ["x0", "c0"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "c1"], ["y"], name="fc_bias"),
    ]
    return Case("", nodes, [shape], [weight, bias], expect="nn.Linear(8, 5)")


def where_greater(shape) -> Case:
    nodes = [
        helper.make_node("Greater", ["x0", "x1"], ["mask"], name="compare"),
        helper.make_node("Where", ["mask", "x0", "c0"], ["y"], name="select"),
    ]
    return Case("", nodes, [shape, shape], [np.array(0.5, dtype=np.float32)])


def cast_round_trip(shape) -> Case:
    nodes = [
        helper.make_node("Cast", ["x0"], ["as_int"], to=TensorProto.INT64, name="to_int"),
        helper.make_node("Cast", ["as_int"], ["y"], to=TensorProto.FLOAT, name="to_float"),
    ]
    return Case("", nodes, [shape], expect=".to(torch.int64)")


X = (1, 3, 8, 8)
CASES = [
    # convolution
    case(
        "conv_3x3_pad1",
        one(
            "Conv",
            [X, weights(4, 3, 3, 3), weights(4)],
            pads=[1, 1, 1, 1],
            expect="nn.Conv2d(3, 4, kernel_size=3, padding=1)",
        ),
    ),
    case("conv_no_bias_stride2", one("Conv", [X, weights(5, 3, 3, 3)], strides=[2, 2], expect="bias=False")),
    case(
        "conv_groups_dilation",
        one(
            "Conv",
            [(1, 6, 9, 9), weights(6, 2, 3, 3), weights(6)],
            group=3,
            dilations=[2, 2],
            expect="groups=3",
        ),
    ),
    case(
        "conv_asymmetric_pads",
        one("Conv", [X, weights(4, 3, 3, 3), weights(4)], pads=[0, 1, 1, 2], expect="F.pad("),
    ),
    case(
        "conv_same_upper",
        one("Conv", [(1, 3, 7, 7), weights(4, 3, 4, 4)], auto_pad="SAME_UPPER", strides=[2, 2]),
    ),
    case("conv_1d", one("Conv", [(1, 3, 10), weights(4, 3, 3), weights(4)], pads=[1, 1], expect="nn.Conv1d")),
    case(
        "conv_transpose_stride2",
        one(
            "ConvTranspose",
            [X, weights(3, 4, 3, 3), weights(4)],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            output_padding=[1, 1],
            expect="nn.ConvTranspose2d(",
        ),
    ),
    case(
        "conv_transpose_asymmetric",
        one("ConvTranspose", [X, weights(3, 2, 3, 3)], strides=[2, 2], pads=[0, 1, 1, 0]),
    ),
    case(
        "conv_transpose_output_shape",
        one("ConvTranspose", [X, weights(3, 2, 3, 3), weights(2)], strides=[2, 2], output_shape=[16, 16]),
    ),
    case(
        "conv_transpose_groups",
        one("ConvTranspose", [(1, 4, 5, 5), weights(4, 3, 2, 2)], group=2, strides=[2, 2]),
    ),
    # pooling
    case(
        "maxpool_3x3_s2_pad1",
        one("MaxPool", [X], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], expect="nn.MaxPool2d"),
    ),
    case(
        "maxpool_ceil",
        one(
            "MaxPool",
            [(1, 3, 10, 10)],
            kernel_shape=[3, 3],
            strides=[2, 2],
            ceil_mode=1,
            expect="ceil_mode=True",
        ),
    ),
    case(
        "maxpool_asymmetric_pads",
        one(
            "MaxPool",
            [X],
            kernel_shape=[2, 2],
            strides=[2, 2],
            pads=[0, 0, 1, 1],
            expect='value=-float("inf")',
        ),
    ),
    case("maxpool_dilated", one("MaxPool", [(1, 3, 11, 11)], kernel_shape=[3, 3], dilations=[2, 2])),
    case(
        "avgpool_exclude_pad",
        one("AveragePool", [X], kernel_shape=[3, 3], pads=[1, 1, 1, 1], expect="count_include_pad=False"),
    ),
    case(
        "avgpool_include_pad",
        one("AveragePool", [X], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
    ),
    case("avgpool_ceil", one("AveragePool", [(1, 3, 10, 10)], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    case(
        "avgpool_asymmetric_include_pad",
        one("AveragePool", [X], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0], count_include_pad=1),
    ),
    case("global_average_pool", one("GlobalAveragePool", [X], expect="nn.AdaptiveAvgPool2d(1)")),
    case("global_max_pool", one("GlobalMaxPool", [X], expect="nn.AdaptiveMaxPool2d(1)")),
    # normalization
    case(
        "batchnorm_eps",
        one(
            "BatchNormalization",
            [X, weights(3), weights(3), weights(3), weights(3, positive=True)],
            epsilon=1e-3,
            expect="nn.BatchNorm2d(3, eps=0.001)",
        ),
    ),
    case(
        "batchnorm_1d",
        one(
            "BatchNormalization",
            [(2, 3), weights(3), weights(3), weights(3), weights(3, positive=True)],
            expect="nn.BatchNorm1d(3)",
        ),
    ),
    case(
        "instance_norm",
        one("InstanceNormalization", [X, weights(3), weights(3)], epsilon=1e-4, expect="nn.InstanceNorm2d"),
    ),
    case(
        "layer_norm",
        one("LayerNormalization", [(2, 4, 6), weights(6), weights(6)], axis=-1, expect="nn.LayerNorm((6,)"),
    ),
    case(
        "lrn",
        one("LRN", [(1, 8, 5, 5)], size=5, alpha=1e-2, beta=0.75, bias=2.0, expect="nn.LocalResponseNorm(5"),
    ),
    # activations
    case("relu", one("Relu", [X], expect="nn.ReLU()")),
    case("leaky_relu", one("LeakyRelu", [X], alpha=0.2, expect="nn.LeakyReLU(negative_slope=0.2)")),
    case("elu", one("Elu", [X], alpha=0.5, expect="nn.ELU")),
    case("selu", one("Selu", [X], expect="nn.SELU()")),
    case("sigmoid", one("Sigmoid", [X], expect="nn.Sigmoid()")),
    case("silu_from_sigmoid_mul", silu(X)),
    case("tanh", one("Tanh", [X], expect="nn.Tanh()")),
    case("prelu_per_channel", one("PRelu", [X, weights(3, 1, 1)], expect="nn.PReLU(num_parameters=3)")),
    case("prelu_single", one("PRelu", [X, weights(1)], expect="nn.PReLU()")),
    case("prelu_other_axis", one("PRelu", [X, weights(8)], expect="torch.where")),
    case("clip_relu6", one("Clip", [X, np.array(0, np.float32), np.array(6, np.float32)], expect="nn.ReLU6()")),
    case(
        "clip_hardtanh",
        one("Clip", [X, np.array(-0.5, np.float32), np.array(0.5, np.float32)], expect="nn.Hardtanh"),
    ),
    case("clip_min_only", one("Clip", [X, np.array(0.1, np.float32)], expect="torch.clamp")),
    case("clip_opset6_attributes", one("Clip", [X], opset=6, min=-1.0, max=1.0)),
    case("hard_sigmoid_onnx_default", one("HardSigmoid", [X], expect="torch.clamp")),
    case("hard_sigmoid_torch", one("HardSigmoid", [X], alpha=1 / 6, beta=0.5, expect="nn.Hardsigmoid()")),
    case("hard_swish", one("HardSwish", [X], expect="nn.Hardswish()")),
    case("gelu_tanh", one("Gelu", [X], opset=20, approximate="tanh", expect='approximate="tanh"')),
    case("softplus", one("Softplus", [X], expect="nn.Softplus()")),
    case("softmax_axis1", one("Softmax", [X], axis=1, opset=13, expect="nn.Softmax(dim=1)")),
    case("softmax_opset11_flattening", one("Softmax", [X], axis=1, opset=11)),
    case("log_softmax", one("LogSoftmax", [(2, 7)], axis=-1, opset=13, expect="nn.LogSoftmax")),
    # linear
    case(
        "gemm_transposed_weight",
        one("Gemm", [(2, 8), weights(5, 8), weights(5)], transB=1, expect="nn.Linear(8, 5)"),
    ),
    case(
        "gemm_alpha_beta",
        one("Gemm", [(2, 8), weights(8, 5), weights(1, 5)], alpha=0.5, beta=2.0, expect="nn.Linear(8, 5)"),
    ),
    case("gemm_transposed_input", one("Gemm", [(8, 2), weights(8, 5)], transA=1)),
    case("gemm_computed_weight", one("Gemm", [(2, 8), (8, 5), weights(2, 5)], expect="torch.matmul")),
    case("matmul_constant", one("MatMul", [(2, 3, 8), weights(8, 5)], expect="nn.Linear(8, 5, bias=False)")),
    case("matmul_add_bias", matmul_add((2, 3, 8), weights(8, 5), weights(5))),
    case("matmul_batched", one("MatMul", [(2, 3, 4), (2, 4, 5)], expect="torch.matmul")),
    # elementwise
    case("add_broadcast_buffer", one("Add", [X, weights(3, 1, 1)], expect="self.c0")),
    case("sub_scalar", one("Sub", [X, np.array([0.5], np.float32)], expect="x0 - 0.5")),
    case("mul_tensors", one("Mul", [X, X])),
    case("div_scalar_first", one("Div", [np.array(2.0, np.float32), X], positive=True, expect="2.0 / x0")),
    case("pow_scalar", one("Pow", [X, np.array(2.0, np.float32)])),
    case("sqrt", one("Sqrt", [X], positive=True)),
    case("exp", one("Exp", [X])),
    case("log", one("Log", [X], positive=True)),
    case("abs", one("Abs", [X])),
    case("neg", one("Neg", [X])),
    case("erf", one("Erf", [X])),
    case("reciprocal", one("Reciprocal", [X], positive=True)),
    case("max_three", one("Max", [X, X, weights(3, 1, 1)])),
    case("min_two", one("Min", [X, X])),
    case("sum_three", one("Sum", [X, X, X])),
    case("mean_two", one("Mean", [X, X])),
    case("where_greater", where_greater(X)),
    case("cast_round_trip", cast_round_trip(X)),
    # reductions
    case("reduce_mean_attribute_axes", one("ReduceMean", [X], axes=[2, 3], keepdims=0, opset=13)),
    case("reduce_sum_input_axes", one("ReduceSum", [X, ints(1)], opset=13, expect="torch.sum")),
    case("reduce_max_opset18", one("ReduceMax", [X, ints(-1)], keepdims=1, opset=18, expect="torch.amax")),
    case("reduce_min_all_axes", one("ReduceMin", [X], opset=13)),
    case("reduce_l2", one("ReduceL2", [X], axes=[1], opset=13)),
    case("argmax", one("ArgMax", [X], axis=1, keepdims=0, output_type=TensorProto.INT64)),
    # layout
    case("reshape_zero_and_infer", one("Reshape", [X, ints(0, -1, 4)], expect="x0.reshape(1, -1, 4)")),
    case("flatten_axis1", one("Flatten", [X], expect="nn.Flatten()")),
    case("flatten_axis2", one("Flatten", [X], axis=2)),
    case("flatten_axis0", one("Flatten", [X], axis=0)),
    case("transpose", one("Transpose", [X], perm=[0, 2, 3, 1], expect=".permute(0, 2, 3, 1)")),
    case("squeeze", one("Squeeze", [(1, 3, 1, 4), ints(0, 2)], opset=13)),
    case("unsqueeze_negative", one("Unsqueeze", [(3, 4), ints(0, -1)], opset=13)),
    case(
        "concat_order",
        one(
            "Concat",
            [(1, 2, 4, 4), weights(1, 3, 4, 4), (1, 1, 4, 4)],
            axis=1,
            expect="torch.cat([x0, self.c0, x1], dim=1)",
        ),
    ),
    case("split_sizes", one("Split", [(1, 6, 4, 4), ints(1, 2, 3)], axis=1, outputs=3, opset=13)),
    case("split_num_outputs", one("Split", [(1, 7, 4, 4)], axis=1, outputs=2, num_outputs=2, opset=18)),
    case("split_opset11_equal", one("Split", [(1, 6, 4, 4)], axis=1, outputs=3, opset=11)),
    case(
        "slice_open_end_step",
        one(
            "Slice",
            [X, ints(1, -6), ints(INT64_MAX, 7), ints(1, 3), ints(1, 2)],
            expect="x0[:, 1:, :, -6:7:2]",
        ),
    ),
    case("slice_opset9", one("Slice", [X], starts=[1], ends=[3], axes=[2], opset=9)),
    case(
        "pad_constant_value",
        one("Pad", [X, ints(0, 0, 1, 2, 0, 0, 3, 0), np.array(0.5, np.float32)], expect="value=0.5"),
    ),
    case("pad_reflect", one("Pad", [X, ints(0, 0, 2, 1, 0, 0, 1, 2)], mode="reflect", expect='mode="reflect"')),
    case("pad_edge", one("Pad", [X, ints(0, 0, 1, 1, 0, 0, 1, 1)], mode="edge", expect='mode="replicate"')),
    case("gather_indices", one("Gather", [X, ints(2, 0, -1)], axis=1, expect="x0[:, [2, 0, -1]]")),
    case("gather_scalar", one("Gather", [X, np.array(1, np.int64)], axis=3)),
    case("expand", one("Expand", [(3, 1), ints(2, 1, 4)])),
    case("tile", one("Tile", [X, ints(1, 2, 1, 3)])),
    case("depth_to_space_dcr", one("DepthToSpace", [(1, 8, 3, 3)], blocksize=2)),
    case(
        "depth_to_space_crd",
        one("DepthToSpace", [(1, 8, 3, 3)], blocksize=2, mode="CRD", expect="nn.PixelShuffle(2)"),
    ),
    case(
        "resize_nearest_asymmetric",
        one(
            "Resize",
            [X, None, np.array([1, 1, 2, 2], np.float32)],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
            expect="nn.Upsample",
        ),
    ),
    case(
        "resize_nearest_half_pixel",
        one("Resize", [X, None, np.array([1, 1, 3, 3], np.float32)], mode="nearest"),
    ),
    case(
        "resize_nearest_fractional_prefer_ceil",
        one(
            "Resize",
            [X, None, np.array([1, 1, 1.5, 1.5], np.float32)],
            mode="nearest",
            nearest_mode="round_prefer_ceil",
            expect='resize(x0, scales=[1.0, 1.0, 1.5, 1.5], nearest="round_prefer_ceil")',
        ),
    ),
    case(
        "resize_bilinear",
        one(
            "Resize",
            [X, None, np.array([1, 1, 2, 2], np.float32)],
            mode="linear",
            expect='mode="bilinear", align_corners=False',
        ),
    ),
    case(
        "resize_align_corners_sizes",
        one(
            "Resize",
            [X, None, None, ints(1, 3, 13, 11)],
            mode="linear",
            coordinate_transformation_mode="align_corners",
            expect="size=(13, 11)",
        ),
    ),
    case(
        "resize_bicubic",
        one(
            "Resize",
            [X, None, np.array([1, 1, 2, 2], np.float32)],
            mode="cubic",
            cubic_coeff_a=-0.75,
            atol=1e-4,
        ),
    ),
    case(
        "resize_nearest_half_pixel_sizes",
        one("Resize", [X, None, None, ints(1, 3, 16, 24)], mode="nearest", expect="size=(16, 24)"),
    ),
    # parameters as older opsets keep them (attributes, other inputs), read through the converter contract
    case(
        "resize_opset10_nearest",
        one("Resize", [X, np.array([1, 1, 2, 2], np.float32)], mode="nearest", opset=10, expect='mode="nearest"'),
    ),
    case("upsample_opset9_fractional", one("Upsample", [X, np.array([1, 1, 1.5, 1.5], np.float32)], opset=9)),
    case("upsample_opset7_attribute", one("Upsample", [X], scales=[1.0, 1.0, 2.0, 2.0], opset=7)),
    case("pad_opset2_attributes", one("Pad", [X], pads=[0, 0, 1, 2, 0, 0, 3, 0], value=0.5, opset=2, expect="0.5")),
    case("squeeze_opset11_attribute", one("Squeeze", [(1, 3, 1, 4)], axes=[0, 2], opset=11)),
    case("split_opset11_attribute", one("Split", [(1, 6, 4, 4)], axis=1, split=[1, 2, 3], outputs=3, opset=11)),
    case("reduce_sum_opset11_attribute", one("ReduceSum", [X], axes=[1], keepdims=0, opset=11)),
    case("clip_opset11_one_bound", one("Clip", [X, None, np.array(0.5, np.float32)], opset=11, expect="max=0.5")),
    # auto_pad resolved by the shared pad normalisation
    case("maxpool_same_upper", one("MaxPool", [X], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    case(
        "avgpool_same_lower_counted",
        one("AveragePool", [(1, 3, 7, 7)], kernel_shape=[2, 2], auto_pad="SAME_LOWER", count_include_pad=1),
    ),
    case(
        "conv_transpose_same_upper",
        one("ConvTranspose", [X, weights(3, 2, 3, 3)], strides=[2, 2], auto_pad="SAME_UPPER"),
    ),
    case("identity", one("Identity", [X])),
    case("dropout", one("Dropout", [X], opset=13)),
]

F32 = np.float32
POSITIVE_3 = Fed(weights(3, positive=True))
# New formulations: weights and parameters computed at run time (functional forms),
# exact forms of what PyTorch's layers cannot hold, and the newest opsets.
CASES += [
    # convolution: weights as graph inputs
    case(
        "conv_weights_as_inputs",
        one("Conv", [X, (4, 3, 3, 3), (4,)], pads=[1, 1, 1, 1], expect="F.conv2d(x0, x1, x2, padding=1)"),
    ),
    case(
        "conv_weight_input_grouped_asymmetric",
        one("Conv", [(1, 4, 7, 7), (4, 2, 3, 3)], group=2, pads=[0, 1, 1, 0], strides=[2, 2], expect="groups=2"),
    ),
    case("conv3d_weights_as_inputs", one("Conv", [(1, 2, 5, 5, 5), (3, 2, 2, 2, 2)], expect="F.conv3d(")),
    case(
        "conv_transpose_weights_as_inputs",
        one("ConvTranspose", [X, (3, 2, 3, 3), (2,)], strides=[2, 2], pads=[0, 1, 1, 0], expect="F.conv_transpose2d("),
    ),
    case(
        "conv_transpose_constant_weight_input_bias",
        one(
            "ConvTranspose", [X, weights(3, 2, 3, 3), (2,)], strides=[2, 2], expect="F.conv_transpose2d(x0, self.c0, x1"
        ),
    ),
    case(
        "conv_transpose_output_shape_beyond_full_output",
        one(
            "ConvTranspose",
            [(1, 1, 3, 3), weights(1, 2, 3, 3), weights(2)],
            strides=[3, 2],
            output_shape=[10, 8],
            expect="output_padding=1",
        ),
    ),
    # normalization
    case(
        "batchnorm_statistics_as_inputs",
        one("BatchNormalization", [X, (3,), (3,), (3,), POSITIVE_3], epsilon=1e-3, expect="F.batch_norm("),
    ),
    case(
        "batchnorm_training_mode",
        one(
            "BatchNormalization",
            [(2, 3, 4, 5), weights(3), weights(3), weights(3), weights(3, positive=True)],
            outputs=3,
            opset=15,
            training_mode=1,
            momentum=0.8,
            expect="unbiased=False",
        ),
    ),
    case(
        "batchnorm_training_mode_statistics_as_inputs",
        one("BatchNormalization", [X, (3,), (3,), (3,), POSITIVE_3], outputs=3, opset=15, training_mode=1),
    ),
    case(
        "instance_norm_parameters_as_inputs", one("InstanceNormalization", [X, (3,), (3,)], expect="F.instance_norm(")
    ),
    case(
        "layer_norm_parameters_as_inputs",
        one("LayerNormalization", [(2, 4, 6), (6,), (6,)], axis=-1, expect="F.layer_norm(x0, (6,), x1, x2)"),
    ),
    case(
        "layer_norm_broadcast_scale_no_bias",
        one("LayerNormalization", [(2, 4, 6), (6,)], axis=1, epsilon=1e-3, expect="x1.expand((4, 6))"),
    ),
    case(
        "layer_norm_mean_and_inv_std_dev",
        one("LayerNormalization", [(2, 3, 4, 5), (4, 5), (4, 5)], axis=2, outputs=3, expect="torch.rsqrt("),
    ),
    case(
        "layer_norm_mean_only_axis0",
        one("LayerNormalization", [(3, 4), weights(3, 4)], axis=0, outputs=2, epsilon=0.1),
    ),
    case(
        "group_norm_opset21",
        one(
            "GroupNormalization",
            [(2, 4, 3, 3), weights(4), weights(4)],
            num_groups=2,
            opset=21,
            expect="nn.GroupNorm(2, 4)",
        ),
    ),
    case(
        "group_norm_opset21_parameters_as_inputs",
        one(
            "GroupNormalization",
            [(2, 4, 3, 3), (4,), (4,)],
            num_groups=2,
            epsilon=1e-3,
            opset=21,
            expect="F.group_norm(",
        ),
    ),
    case(
        "group_norm_opset18_per_group",
        one(
            "GroupNormalization",
            [(2, 6, 3, 3), weights(3), weights(3)],
            num_groups=3,
            opset=18,
            expect="nn.GroupNorm(3, 6)",
        ),
    ),
    case(
        "group_norm_opset18_per_group_inputs",
        one("GroupNormalization", [(2, 6, 3, 3), (3,), (3,)], num_groups=3, opset=18, expect=".repeat_interleave(2)"),
    ),
    case(
        "lp_norm_l1_with_a_zero_vector",
        one("LpNormalization", [Fed(np.array([[1, -2, 3], [0, 0, 0]], F32))], p=1, axis=1, expect="torch.where("),
    ),
    case("lp_norm_l2_axis0", one("LpNormalization", [(2, 3, 4)], p=2, axis=0)),
    # pooling PyTorch's layers cannot hold
    case(
        "avgpool_asymmetric_pads_excluded",  # Inception v1's last pooling
        one("AveragePool", [X], kernel_shape=[3, 3], pads=[0, 0, 1, 1], expect="average_pool("),
    ),
    case(
        "avgpool_dilated_ceil",
        one(
            "AveragePool",
            [(1, 2, 9, 9)],
            kernel_shape=[3, 3],
            dilations=[2, 2],
            strides=[2, 2],
            pads=[1, 1, 2, 2],
            ceil_mode=1,
            opset=19,
            expect="average_pool(",
        ),
    ),
    case(
        "avgpool_3d_dilated_counted",
        one(
            "AveragePool",
            [(1, 2, 7, 8, 9)],
            kernel_shape=[2, 3, 2],
            dilations=[2, 1, 2],
            strides=[3, 2, 1],
            pads=[1, 0, 1, 0, 1, 1],
            count_include_pad=1,
            ceil_mode=1,
            opset=19,
        ),
    ),
    case(
        "avgpool_counted_ceil_asymmetric",
        one(
            "AveragePool",
            [(1, 2, 7, 7)],
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[0, 0, 2, 2],
            count_include_pad=1,
            ceil_mode=1,
        ),
    ),
    case(
        "maxpool_ceil_asymmetric",
        one(
            "MaxPool",
            [(1, 2, 6, 6)],
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[0, 0, 2, 2],
            ceil_mode=1,
            expect="F.pad(",
        ),
    ),
    # activations
    case("selu_other_constants", one("Selu", [X], alpha=2.0, gamma=3.0, expect="3.0 * F.elu(x0, alpha=2.0)")),
    case("clip_without_bounds", one("Clip", [X], opset=13, expect="return x0")),
    case(
        "clip_min_greater_than_max",
        one("Clip", [X, np.array(2, F32), np.array(1, F32)], opset=13, expect="torch.clamp(x0, min=2.0, max=1.0)"),
    ),
    case("clip_bounds_as_inputs", one("Clip", [X, (), ()], opset=13, expect="torch.clamp(x0, min=x1, max=x2)")),
    case(
        "clip_one_bound_input_one_constant",
        one("Clip", [X, (), np.array(0.5, F32)], opset=13, expect="torch.clamp(x0, min=x1, max=self.c0)"),
    ),
    # layout
    case("space_to_depth", one("SpaceToDepth", [(1, 2, 4, 6)], blocksize=2, expect="nn.PixelUnshuffle(2)")),
    case("space_to_depth_crd", one("SpaceToDepth", [(2, 3, 4, 6)], blocksize=2, mode="CRD", opset=28)),
    case("depth_to_space_dcr_opset28", one("DepthToSpace", [(2, 12, 3, 2)], blocksize=2, opset=28)),
    case("dropout_ratio_as_input", one("Dropout", [X, Fed(np.array(0.3, F32))], opset=22, expect="return x0")),
    # resampling ONNX's way (resize()), and nn.Upsample where it is exact
    case(
        "resize_cubic_exclude_outside",
        one(
            "Resize",
            [X, None, np.array([1, 1, 0.6, 1.7], F32)],
            mode="cubic",
            cubic_coeff_a=-0.5,
            exclude_outside=1,
            opset=19,
            expect='mode="cubic", cubic_a=-0.5, exclude_outside=True',
        ),
    ),
    case(
        "resize_linear_antialias",
        one("Resize", [X, None, np.array([1, 1, 0.6, 0.35], F32)], mode="linear", antialias=1, opset=18),
    ),
    case(
        "resize_cubic_antialias_exclude_outside",
        one(
            "Resize", [X, None, np.array([1, 1, 0.5, 0.7], F32)], mode="cubic", antialias=1, exclude_outside=1, opset=18
        ),
    ),
    case(
        "resize_axes_keep_aspect_ratio",
        one(
            "Resize",
            [(1, 2, 5, 7), None, None, ints(9, 4)],
            axes=[3, 2],
            keep_aspect_ratio_policy="not_larger",
            opset=18,
            expect="aspect=",
        ),
    ),
    case(
        "resize_tf_crop_and_resize",
        one(
            "Resize",
            [X, np.array([0, 0, 0.2, -0.1, 1, 1, 0.9, 0.8], F32), np.array([1, 1, 2, 1.5], F32)],
            mode="linear",
            coordinate_transformation_mode="tf_crop_and_resize",
            extrapolation_value=-1.0,
            opset=13,
            expect="extrapolation=-1.0",
        ),
    ),
    case(
        "resize_scales_computed_at_run_time",
        one("Resize", [X, None, Fed(np.array([1, 1, 2, 1.5], F32))], mode="linear", opset=13, expect="scales=x1"),
    ),
    case(
        "resize_sizes_computed_at_run_time",
        one("Resize", [X, None, None, Fed(ints(1, 3, 5, 12))], mode="nearest", opset=13, expect="sizes=x1"),
    ),
    case(
        "resize_half_pixel_symmetric",
        one(
            "Resize",
            [(1, 2, 4, 5), None, np.array([1, 1, 0.6, 0.6], F32)],
            mode="linear",
            coordinate_transformation_mode="half_pixel_symmetric",
            opset=19,
        ),
    ),
    case(
        "resize_nearest_asymmetric_round",
        one(
            "Resize",
            [X, None, np.array([1, 1, 3, 3], F32)],
            coordinate_transformation_mode="asymmetric",
            nearest_mode="round_prefer_ceil",
            expect="resize(",
        ),
    ),
    case(
        "resize_bilinear_align_corners_whole",
        one(
            "Resize",
            [X, None, np.array([1, 1, 2, 2], F32)],
            mode="linear",
            coordinate_transformation_mode="align_corners",
            expect="align_corners=True",
        ),
    ),
    case(
        "tile_repeats_computed_at_run_time", one("Tile", [X, Fed(ints(1, 2, 1, 3))], expect="x0.repeat(*x1.tolist())")
    ),
    case(
        "upsample_opset9_linear_fractional",
        one("Upsample", [X, np.array([1, 1, 1.5, 2.5], F32)], mode="linear", opset=9),
    ),
]


@pytest.mark.parametrize("spec", CASES, ids=[c.id for c in CASES])
def test_generated_module_matches_onnxruntime(spec: Case, tmp_path: Path) -> None:
    model = build(spec, tmp_path / "case.onnx")
    write_pytorch(model, tmp_path / "out")
    source = (tmp_path / "out" / "model.py").read_text()
    assert spec.expect in source, source
    feeds = []
    for index, shape in enumerate(spec.inputs):
        data = RNG.standard_normal(shape).astype(np.float32)
        feeds.append(spec.feeds.get(index, np.abs(data) + 0.1 if spec.positive else data))
    expected = list(OnnxRuntimeRunner(model).run(feeds).values())
    network = load_torch_folder(tmp_path / "out")
    with torch.no_grad():
        actual = network(*(torch.from_numpy(f) for f in feeds))
    actual = list(actual) if isinstance(actual, tuple) else [actual]
    assert [tuple(a.shape) for a in actual] == [e.shape for e in expected]
    for got, want in zip(actual, expected):
        # generated PyTorch vs onnxruntime, float32: atol 1e-5 (1e-4 for bicubic), per case
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=spec.atol)


def _unsupported_graph(path: Path) -> Model:
    """Relu, then ops the writer cannot emit: a TopK, a custom-domain op, an LRN
    whose even window PyTorch centres differently, and a Reshape to a computed shape."""
    nodes = [
        helper.make_node("Relu", ["x0"], ["r"], name="relu"),
        helper.make_node("TopK", ["r", "k"], ["top", "top_index"], axis=3, name="topk"),
        helper.make_node("Frobnicate", ["top"], ["f"], domain="com.example", name="custom"),
        helper.make_node("LRN", ["f"], ["up"], size=4, name="lrn"),
        helper.make_node("Shape", ["up"], ["shape"], name="shape"),
        helper.make_node("Reshape", ["up", "shape"], ["y"], name="reshape"),
    ]
    graph = helper.make_graph(
        nodes,
        "bad",
        [helper.make_tensor_value_info("x0", TensorProto.FLOAT, (1, 3, 4, 4))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            onnx.numpy_helper.from_array(ints(2), "k"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    proto.ir_version = 8
    onnx.save(proto, path)
    return read_onnx(path)


def test_every_problem_is_listed_at_once_and_nothing_is_written(tmp_path: Path) -> None:
    model = _unsupported_graph(tmp_path / "bad.onnx")
    out = tmp_path / "out"
    with pytest.raises(UnsupportedError) as raised:
        write_pytorch(model, out)
    found = {(p.node, p.kind) for p in raised.value.problems}
    assert found == {
        ("topk", "unsupported-op"),
        ("custom", "unsupported-op"),
        ("lrn", "unsupported-attribute"),
        ("shape", "unsupported-op"),
        ("reshape", "dynamic-shape"),
    }
    assert "com.example" in str(raised.value)
    assert not out.exists() or not any(out.iterdir())


def test_find_problems_matches_what_write_refuses(tmp_path: Path) -> None:
    model = _unsupported_graph(tmp_path / "bad.onnx")
    problems = find_problems(model)
    assert sorted(p.node for p in problems if p.severity == "error") == [
        "custom",
        "lrn",
        "reshape",
        "shape",
        "topk",
    ]
    assert all(p.remedy for p in problems)


def test_symbolic_batch_is_a_warning_and_the_module_takes_other_batches(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x0", "c0"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic",
        [helper.make_tensor_value_info("x0", TensorProto.FLOAT, ("batch", 3, 8, 8))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(weights(4, 3, 3, 3), "c0")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, tmp_path / "dynamic.onnx")
    model = read_onnx(tmp_path / "dynamic.onnx")
    (warning,) = find_problems(model)
    assert (warning.severity, warning.kind) == ("warning", "dynamic-shape")
    written = write_pytorch(model, tmp_path / "out")
    assert written.report.warnings
    x = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(model).run([x]).values()
    with torch.no_grad():
        actual = load_torch_folder(tmp_path / "out")(torch.from_numpy(x)).numpy()
    # generated PyTorch vs onnxruntime at batch 3, float32: atol 1e-5
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_names_that_are_not_identifiers_or_clash_with_python_are_made_unique(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["input"], ["conv1/out"], name="train"),
        helper.make_node("Sigmoid", ["conv1/out"], ["conv1.out"], name="1x1/relu"),
        helper.make_node("Add", ["conv1/out", "conv1.out"], ["y"], name="sum"),
    ]
    graph = helper.make_graph(
        nodes,
        "names",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, (1, 2))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, tmp_path / "names.onnx")
    model = read_onnx(tmp_path / "names.onnx")
    written = write_pytorch(model, tmp_path / "out")
    names = [module["name"] for module in written.details["modules"]]
    # nn.Module.train is a method: the submodule for layer "train" must not shadow it
    assert names == ["train_1", "layer_1x1_relu"]
    source = (tmp_path / "out" / "model.py").read_text()
    assert "def forward(self, input_1):" in source
    assert "conv1_out_1 = self.layer_1x1_relu(conv1_out)" in source
    x = RNG.standard_normal((1, 2)).astype(np.float32)
    (expected,) = OnnxRuntimeRunner(model).run([x]).values()
    with torch.no_grad():
        actual = load_torch_folder(tmp_path / "out")(torch.from_numpy(x)).numpy()
    # generated PyTorch vs onnxruntime, float32: atol 1e-6
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_a_node_missing_a_required_attribute_is_reported_not_raised(tmp_path: Path) -> None:
    spec = one("LRN", [X])  # LRN requires `size`
    model = build(spec, tmp_path / "lrn.onnx")
    with pytest.raises(UnsupportedError) as raised:
        write_pytorch(model, tmp_path / "out")
    (problem,) = raised.value.problems
    assert (problem.op_type, problem.kind) == ("LRN", "malformed-node")


REFUSED = [
    ("add_opset6_axis_broadcast", one("Add", [(2, 3, 4, 5), (3, 4)], opset=6, broadcast=1, axis=1), "along axis 1"),
    ("batchnorm_per_activation", one("BatchNormalization", [X, *[weights(3)] * 4], opset=7, spatial=0), "spatial=0"),
    ("tile_opset1", one("Tile", [X, ints(2), ints(1)], opset=1), "tiles and axis"),
    ("add_uint32", one("Add", [Fed(np.ones(3, np.uint32)), Fed(np.ones(3, np.uint32))]), "no CPU arithmetic"),
]


@pytest.mark.parametrize("spec, message", [(c, m) for _, c, m in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_what_pytorch_would_compute_otherwise_is_refused(spec: Case, message: str, tmp_path: Path) -> None:
    model = build(spec, tmp_path / "case.onnx")
    with pytest.raises(UnsupportedError, match=message):
        write_pytorch(model, tmp_path / "out")


@pytest.mark.parametrize(
    "shape, attributes",
    [
        ((2, 3, 7, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        ((1, 2, 7, 6), {"kernel_shape": [2, 3], "strides": [2, 1], "pads": [0, 1, 1, 0], "storage_order": 1}),
        ((1, 2, 5, 6, 7), {"kernel_shape": [2, 2, 3], "strides": [2, 2, 2], "dilations": [1, 2, 1], "ceil_mode": 1}),
    ],
    ids=["2d-padded", "2d-column-major-asymmetric-pads", "3d-dilated-ceil"],
)
def test_max_pool_indices_match_onnxruntime(shape: tuple[int, ...], attributes: dict, tmp_path: Path) -> None:
    node = helper.make_node("MaxPool", ["x0"], ["y", "indices"], **attributes)
    graph = helper.make_graph(
        [node],
        "indices",
        [helper.make_tensor_value_info("x0", TensorProto.FLOAT, shape)],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("indices", TensorProto.INT64, None),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, tmp_path / "indices.onnx")
    model = read_onnx(tmp_path / "indices.onnx")
    write_pytorch(model, tmp_path / "out")
    x = RNG.standard_normal(shape).astype(np.float32)
    expected = list(OnnxRuntimeRunner(model).run([x]).values())
    with torch.no_grad():
        actual = [t.numpy() for t in load_torch_folder(tmp_path / "out")(torch.from_numpy(x))]
    # values exact (a max), indices equal: both pick the same cell (random data, no ties)
    np.testing.assert_array_equal(actual[0], expected[0])
    np.testing.assert_array_equal(actual[1], expected[1])
