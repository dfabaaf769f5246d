"""Read an MXNet model (``*-symbol.json`` + ``*.params``) without MXNet installed.

The symbol file is JSON: ``nodes`` (``op``, ``name``, ``attrs``, ``inputs`` as
``[node index, output index, version]``), ``arg_nodes`` and ``heads`` (the
outputs). Variables (``op == "null"``) are either parameters found in the params
file or network inputs.

The params file is MXNet's NDArray list format, read here with NumPy because
MXNet does not install beside this stack (no maintained library reads it):

    uint64 magic 0x112, uint64 reserved, uint64 count, count x NDArray,
    uint64 count, count x (uint64 length, bytes name)   # "arg:conv0_weight"

Each NDArray is ``uint32 magic`` (0xF993FAC9 = v2, 0xF993FACA = v3, with
``int32 storage type`` after it; anything else is the v1 layout where that word
is already ``ndim``), ``ndim`` and dims (``uint32 ndim`` + ``int64`` dims; v1:
``uint32`` dims), ``int32 device type, int32 device id``, ``int32 dtype flag``,
then the raw little-endian data.

Semantics kept exactly, because they are the classic traps of MXNet conversions:
BatchNorm's ``eps`` defaults to 1e-3 and ``fix_gamma`` (default true) means the
stored gamma is ignored and 1 is used; Pooling's ``pooling_convention`` "full"
rounds output sizes up, "valid" down; average pooling counts padding unless
``count_include_pad`` is false; Deconvolution has no bias unless ``no_bias`` is
false; preprocessing written into the graph (``_minus_scalar``, ``_mul_scalar``)
stays in the graph as Sub/Mul nodes. Each graph value is named
``<mxnet node>_output`` as MXNet's ``get_internals()`` names it, so recorded
per-layer outputs line up.
"""

from __future__ import annotations

import ast
import json
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from ..errors import InputError, Problem, UnsupportedLayersError
from ..graph import Model, SourceInfo, provenance
from ..graph.builder import GraphBuilder
from ..graph.converter import ConverterContext
from ..registry import Registry

_LIST_MAGIC = 0x112
_NDARRAY_V2 = 0xF993FAC9
_NDARRAY_V3 = 0xF993FACA
_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}


def read_params(path: str | Path) -> dict[str, np.ndarray]:
    """``{"conv0_weight": array, ...}`` from an MXNet ``.params`` file (prefixes dropped)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as error:
        raise InputError(
            f"no such MXNet params file: {path}", expected="a .params file", remedy="check the path"
        ) from error
    try:
        return _parse_params(memoryview(data))
    except (struct.error, ValueError, IndexError) as error:
        raise InputError(
            f"{path} is not a readable MXNet params file",
            expected="an NDArray list saved by mx.nd.save / model.save_checkpoint",
            found=str(error),
            remedy="check that the file is complete and is the .params of this symbol",
        ) from error


def _parse_params(buffer: memoryview) -> dict[str, np.ndarray]:
    offset = 0

    def take(fmt: str) -> tuple:
        nonlocal offset
        values = struct.unpack_from(fmt, buffer, offset)
        offset += struct.calcsize(fmt)
        return values

    magic, _reserved, count = take("<QQQ")
    if magic != _LIST_MAGIC:
        raise ValueError(f"magic {magic:#x} instead of {_LIST_MAGIC:#x}")
    arrays = []
    for _ in range(count):
        (head,) = take("<I")
        if head in (_NDARRAY_V2, _NDARRAY_V3):
            (storage,) = take("<i")
            if storage != 0:
                raise ValueError(f"sparse storage type {storage} is not supported")
            (ndim,) = take("<i")
            shape = take(f"<{ndim}q")
        else:
            ndim = head
            shape = take(f"<{ndim}I")
        if ndim == 0:
            arrays.append(np.zeros((0,), np.float32))
            continue
        take("<ii")  # device type and id: irrelevant on the CPU
        (flag,) = take("<i")
        if flag not in _DTYPES:
            raise ValueError(f"unknown dtype flag {flag}")
        dtype = np.dtype(_DTYPES[flag]).newbyteorder("<")
        size = int(np.prod(shape))
        array = np.frombuffer(buffer, dtype=dtype, count=size, offset=offset).reshape(shape)
        offset += size * dtype.itemsize
        arrays.append(array)
    (name_count,) = take("<Q")
    if name_count != len(arrays):
        raise ValueError(f"{name_count} names for {len(arrays)} arrays")
    params = {}
    for array in arrays:
        (length,) = take("<Q")
        name = bytes(buffer[offset : offset + length]).decode()
        offset += length
        params[name.split(":", 1)[-1]] = array
    return params


def output_name(node_name: str) -> str:
    """MXNet's name for a node's output among the symbol's internals (``get_internals``)."""
    return f"{node_name}_output"


def recorded_output_sources(symbol_path: str | Path) -> dict[str, tuple[str]]:
    """``{"conv0_output": ("conv0",), ...}``: which node each output recorded from the
    symbol's internals stands for, so recordings line up with provenance."""
    nodes = json.loads(Path(symbol_path).read_text())["nodes"]
    return {output_name(node["name"]): (node["name"],) for node in nodes if node["op"] != "null"}


def _attrs(node: dict) -> dict[str, Any]:
    raw = node.get("attrs") or node.get("attr") or node.get("param") or {}
    parsed = {}
    for key, text in raw.items():
        if text in ("True", "true"):
            parsed[key] = True
        elif text in ("False", "false"):
            parsed[key] = False
        else:
            try:
                parsed[key] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed[key] = text
    return parsed


def _pair(value: Any, default: int) -> list[int]:
    if value is None or value == ():
        return [default, default]
    if isinstance(value, int):
        return [value, value]
    return [int(v) for v in value]


class MXNetNodeContext(ConverterContext):
    """What a converter needs: the builder, the node, its inputs and attributes; problems
    are reported through the converter contract (``ctx.unsupported``) and the converter
    returns None."""

    def __init__(
        self,
        problems: list[Problem],
        builder: GraphBuilder,
        node: dict[str, Any],
        inputs: list[ir.Value],
        params: list[str | None],
    ) -> None:
        super().__init__(problems, name=node["name"], op_type=node["op"], source=(node["name"],))
        self.builder = builder
        self.name = node["name"]
        self.op = node["op"]
        self.attrs = _attrs(node)
        self.inputs = inputs
        self.params = params  # source parameter name of each input, None for activations

    def emit(
        self,
        op_type: str,
        inputs: Sequence[ir.Value | None],
        attributes: dict[str, Any] | None = None,
        *,
        final: bool = True,
        params: dict[int, str | None] | None = None,
    ) -> ir.Value:
        """Add one ONNX node for this MXNet node; the final one carries the MXNet output name.

        ``params`` maps the node's input positions to source parameter names; by
        default, inputs passed through unchanged keep their own parameter name.
        """
        if params is None:
            params = {i: p for i, p in enumerate(self.params) if p and i < len(inputs) and inputs[i] is self.inputs[i]}
        name = output_name(self.name) if final else f"{self.name}_{op_type.lower()}"
        return self.builder.add_node(
            op_type,
            inputs,
            attributes,
            sources=[self.name],
            params={i: [p] for i, p in params.items() if p},
            outputs=[name],
            name=self.name,
        )[0]

    def constant(self, suffix: str, array: np.ndarray) -> ir.Value:
        return self.builder.add_initializer(f"{self.name}_{suffix}", np.asarray(array))

    def parameter(self, index: int) -> np.ndarray | None:
        """The data of input ``index``, a parameter from the params file; None after
        reporting an input that is computed instead."""
        tensor = self.inputs[index].const_value if index < len(self.inputs) else None
        if tensor is None:
            self.unsupported(
                f"{self.op} input {index} is computed in the graph; the reader expects a parameter there",
                "save the value as a parameter (an arg in the .params file)",
            )
            return None
        return tensor.numpy()


Converter = Callable[[MXNetNodeContext], ir.Value | None]
CONVERTERS: Registry[Converter] = Registry("MXNet reader: MXNet op → ONNX")


@CONVERTERS.register("Convolution")
def convert_convolution(ctx: MXNetNodeContext) -> ir.Value | None:
    """Conv: kernel, stride, pad, dilate, num_group; bias unless no_bias."""
    kernel = _pair(ctx.attrs.get("kernel"), 1)
    pads = _pair(ctx.attrs.get("pad"), 0)
    inputs = ctx.inputs[:2] if ctx.attrs.get("no_bias", False) else ctx.inputs[:3]
    return ctx.emit(
        "Conv",
        inputs,
        {
            "kernel_shape": kernel,
            "strides": _pair(ctx.attrs.get("stride"), 1),
            "dilations": _pair(ctx.attrs.get("dilate"), 1),
            "pads": pads + pads,
            "group": int(ctx.attrs.get("num_group", 1)),
        },
    )


@CONVERTERS.register("Deconvolution")
def convert_deconvolution(ctx: MXNetNodeContext) -> ir.Value | None:
    """ConvTranspose: weight (in, out/group, kh, kw); MXNet's default is no bias."""
    pads = _pair(ctx.attrs.get("pad"), 0)
    has_bias = not ctx.attrs.get("no_bias", True)
    if ctx.attrs.get("target_shape"):
        ctx.unsupported("Deconvolution with target_shape", "give explicit pad and adj instead")
        return None
    return ctx.emit(
        "ConvTranspose",
        ctx.inputs[:3] if has_bias else ctx.inputs[:2],
        {
            "kernel_shape": _pair(ctx.attrs.get("kernel"), 1),
            "strides": _pair(ctx.attrs.get("stride"), 1),
            "dilations": _pair(ctx.attrs.get("dilate"), 1),
            "pads": pads + pads,
            "output_padding": _pair(ctx.attrs.get("adj"), 0),
            "group": int(ctx.attrs.get("num_group", 1)),
        },
    )


@CONVERTERS.register("BatchNorm")
def convert_batchnorm(ctx: MXNetNodeContext) -> ir.Value | None:
    """BatchNormalization with MXNet's defaults: eps 1e-3, fix_gamma true (gamma := 1)."""
    if int(ctx.attrs.get("axis", 1)) != 1:
        ctx.unsupported("BatchNorm over an axis other than 1", "transpose to NCHW first")
        return None
    data, gamma, beta, mean, var = ctx.inputs[:5]
    fixed = ctx.attrs.get("fix_gamma", True)
    stored_gamma = ctx.parameter(1) if fixed else None
    if fixed and stored_gamma is None:
        return None
    if stored_gamma is not None:
        gamma = ctx.constant("gamma_fixed", np.ones(stored_gamma.shape, np.float32))
    value = ctx.emit(
        "BatchNormalization",
        [data, gamma, beta, mean, var],
        {"epsilon": float(ctx.attrs.get("eps", 1e-3))},
        params=dict(enumerate(ctx.params)),
    )
    producer = value.producer()
    if fixed and producer is not None:
        provenance.add_transform(producer, f"fix_gamma: stored {ctx.params[1]} ignored, gamma = 1")
    return value


_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softrelu": "Softplus", "softsign": "Softsign"}


@CONVERTERS.register("Activation")
def convert_activation(ctx: MXNetNodeContext) -> ir.Value | None:
    """Relu, Sigmoid, Tanh, Softplus (softrelu), Softsign."""
    kind = ctx.attrs.get("act_type")
    if kind not in _ACTIVATIONS:
        ctx.unsupported(f"Activation act_type={kind}")
        return None
    return ctx.emit(_ACTIVATIONS[kind], ctx.inputs[:1])


@CONVERTERS.register("LeakyReLU")
def convert_leaky_relu(ctx: MXNetNodeContext) -> ir.Value | None:
    """leaky → LeakyRelu, prelu → PRelu (per-channel slope), elu → Elu, selu → Selu."""
    kind = ctx.attrs.get("act_type", "leaky")
    slope = float(ctx.attrs.get("slope", 0.25))
    if kind == "leaky":
        return ctx.emit("LeakyRelu", ctx.inputs[:1], {"alpha": slope})
    if kind == "prelu":
        # ONNX PRelu broadcasts the slope from the right: (C,) must become (C, 1, 1)
        stored = ctx.parameter(1)
        if stored is None:
            return None
        slopes = ctx.constant("gamma_chw", stored.reshape(-1, 1, 1))
        return ctx.emit("PRelu", [ctx.inputs[0], slopes], params={1: ctx.params[1]})
    if kind == "elu":
        return ctx.emit("Elu", ctx.inputs[:1], {"alpha": slope})
    if kind == "selu":
        return ctx.emit("Selu", ctx.inputs[:1])
    ctx.unsupported(f"LeakyReLU act_type={kind}")
    return None


@CONVERTERS.register("Pooling")
def convert_pooling(ctx: MXNetNodeContext) -> ir.Value | None:
    """Max/avg/sum pooling; "full" convention = ceil rounding, "valid" = floor; global pooling."""
    kind = ctx.attrs.get("pool_type", "max")
    if kind not in ("max", "avg", "sum"):
        ctx.unsupported(f"Pooling pool_type={kind}")
        return None
    if ctx.attrs.get("global_pool", False):
        if kind == "sum":
            ctx.unsupported("global sum pooling", "use avg pooling and multiply by the window size")
            return None
        return ctx.emit("GlobalMaxPool" if kind == "max" else "GlobalAveragePool", ctx.inputs[:1])
    convention = ctx.attrs.get("pooling_convention", "valid")
    if convention not in ("valid", "full"):
        ctx.unsupported(f"Pooling pooling_convention={convention}", "use valid or full")
        return None
    kernel = _pair(ctx.attrs.get("kernel"), 1)
    pads = _pair(ctx.attrs.get("pad"), 0)
    attributes = {
        "kernel_shape": kernel,
        "strides": _pair(ctx.attrs.get("stride"), 1),
        "pads": pads + pads,
        "ceil_mode": int(convention == "full"),
    }
    if kind == "max":
        return ctx.emit("MaxPool", ctx.inputs[:1], attributes)
    attributes["count_include_pad"] = int(ctx.attrs.get("count_include_pad", True) or kind == "sum")
    if kind == "avg":
        return ctx.emit("AveragePool", ctx.inputs[:1], attributes)
    average = ctx.emit("AveragePool", ctx.inputs[:1], attributes, final=False)
    window = ctx.constant("window", np.array(kernel[0] * kernel[1], np.float32))
    return ctx.emit("Mul", [average, window])


@CONVERTERS.register("Flatten")
def convert_flatten(ctx: MXNetNodeContext) -> ir.Value | None:
    """Flatten all but the batch axis."""
    return ctx.emit("Flatten", ctx.inputs[:1], {"axis": 1})


@CONVERTERS.register("FullyConnected")
def convert_fully_connected(ctx: MXNetNodeContext) -> ir.Value | None:
    """Gemm with transB (after Flatten when flatten=true, MXNet's default)."""
    data = ctx.inputs[0]
    if not ctx.attrs.get("flatten", True):
        ctx.unsupported("FullyConnected with flatten=False")
        return None
    data = ctx.emit("Flatten", [data], {"axis": 1}, final=False)
    has_bias = not ctx.attrs.get("no_bias", False)
    inputs = [data, ctx.inputs[1]] + ([ctx.inputs[2]] if has_bias else [])
    return ctx.emit("Gemm", inputs, {"transB": 1}, params=dict(enumerate(ctx.params)))


@CONVERTERS.register("Concat")
def convert_concat(ctx: MXNetNodeContext) -> ir.Value | None:
    """Concat along dim (default 1), inputs in the symbol's order."""
    return ctx.emit("Concat", ctx.inputs, {"axis": int(ctx.attrs.get("dim", 1))})


@CONVERTERS.register("softmax", "SoftmaxActivation", "SoftmaxOutput")
def convert_softmax(ctx: MXNetNodeContext) -> ir.Value | None:
    """Softmax: ``softmax`` over ``axis`` (default -1); the others over the channel axis."""
    if ctx.op == "softmax":
        axis = int(ctx.attrs.get("axis", -1))
    elif ctx.op == "SoftmaxActivation" and ctx.attrs.get("mode", "instance") == "instance":
        flat = ctx.emit("Flatten", ctx.inputs[:1], {"axis": 1}, final=False)
        return ctx.emit("Softmax", [flat], {"axis": 1})
    else:
        axis = 1
    return ctx.emit("Softmax", ctx.inputs[:1], {"axis": axis})


@CONVERTERS.register("Dropout")
def convert_dropout(ctx: MXNetNodeContext) -> ir.Value | None:
    """Identity at inference."""
    return ctx.emit("Identity", ctx.inputs[:1])


_ELEMENTWISE = {
    "elemwise_add": "Add",
    "_Plus": "Add",
    "_plus": "Add",
    "broadcast_add": "Add",
    "_add": "Add",
    "elemwise_sub": "Sub",
    "_Minus": "Sub",
    "_minus": "Sub",
    "broadcast_sub": "Sub",
    "_sub": "Sub",
    "elemwise_mul": "Mul",
    "_Mul": "Mul",
    "_mul": "Mul",
    "broadcast_mul": "Mul",
    "elemwise_div": "Div",
    "_Div": "Div",
    "_div": "Div",
    "broadcast_div": "Div",
    "broadcast_maximum": "Max",
    "_maximum": "Max",
    "broadcast_minimum": "Min",
    "_minimum": "Min",
}


@CONVERTERS.register(*_ELEMENTWISE)
def convert_elementwise(ctx: MXNetNodeContext) -> ir.Value | None:
    """Binary elementwise ops (Add, Sub, Mul, Div, Max, Min), with broadcasting."""
    return ctx.emit(_ELEMENTWISE[ctx.op], ctx.inputs[:2])


@CONVERTERS.register("add_n", "ElementWiseSum")
def convert_add_n(ctx: MXNetNodeContext) -> ir.Value | None:
    """Sum of all inputs."""
    return ctx.emit("Sum", ctx.inputs)


_SCALAR = {
    "_plus_scalar": ("Add", False),
    "_minus_scalar": ("Sub", False),
    "_rminus_scalar": ("Sub", True),
    "_mul_scalar": ("Mul", False),
    "_div_scalar": ("Div", False),
    "_rdiv_scalar": ("Div", True),
}


@CONVERTERS.register(*_SCALAR)
def convert_scalar(ctx: MXNetNodeContext) -> ir.Value | None:
    """x op scalar (or scalar op x for the _r forms): preprocessing written into the graph."""
    op, reverse = _SCALAR[ctx.op]
    scalar = ctx.constant("scalar", np.array(float(ctx.attrs["scalar"]), np.float32))
    operands = [scalar, ctx.inputs[0]] if reverse else [ctx.inputs[0], scalar]
    return ctx.emit(op, operands)


@CONVERTERS.register("clip")
def convert_clip(ctx: MXNetNodeContext) -> ir.Value | None:
    """Clip between a_min and a_max."""
    low = ctx.constant("min", np.array(float(ctx.attrs["a_min"]), np.float32))
    high = ctx.constant("max", np.array(float(ctx.attrs["a_max"]), np.float32))
    return ctx.emit("Clip", [ctx.inputs[0], low, high])


@CONVERTERS.register("Reshape")
def convert_reshape(ctx: MXNetNodeContext) -> ir.Value | None:
    """Reshape; 0 (copy) and -1 (infer) mean the same in ONNX; -2/-3/-4 are not supported."""
    shape = [int(d) for d in ctx.attrs.get("shape", ())]
    if any(d < -1 for d in shape) or ctx.attrs.get("reverse", False):
        ctx.unsupported("Reshape with special values -2/-3/-4 or reverse", "rewrite with 0 and -1")
        return None
    return ctx.emit("Reshape", [ctx.inputs[0], ctx.constant("shape", np.array(shape, np.int64))])


@CONVERTERS.register("transpose")
def convert_transpose(ctx: MXNetNodeContext) -> ir.Value | None:
    """Transpose by axes (reversed when none are given)."""
    axes = ctx.attrs.get("axes")
    return ctx.emit("Transpose", ctx.inputs[:1], {"perm": [int(a) for a in axes]} if axes else None)


@CONVERTERS.register("UpSampling")
def convert_upsampling(ctx: MXNetNodeContext) -> ir.Value | None:
    """Nearest upsampling by an integer scale."""
    if ctx.attrs.get("sample_type", "nearest") != "nearest":
        ctx.unsupported("bilinear UpSampling")
        return None
    scale = float(ctx.attrs.get("scale", 1))
    scales = ctx.constant("scales", np.array([1, 1, scale, scale], np.float32))
    return ctx.emit("Resize", [ctx.inputs[0], None, scales], {"mode": "nearest"})


@CONVERTERS.register("L2Normalization")
def convert_l2_normalization(ctx: MXNetNodeContext) -> ir.Value | None:
    """instance mode: x / sqrt(sum over all non-batch axes of x² + eps)."""
    if ctx.attrs.get("mode", "instance") != "instance":
        ctx.unsupported(f"L2Normalization mode={ctx.attrs.get('mode')}")
        return None
    x = ctx.inputs[0]
    flat = ctx.emit("Flatten", [x], {"axis": 1}, final=False)
    squares = ctx.emit(
        "ReduceSumSquare", [flat, ctx.constant("axes", np.array([1], np.int64))], {"keepdims": 1}, final=False
    )
    shifted = ctx.emit(
        "Add", [squares, ctx.constant("eps", np.array(float(ctx.attrs.get("eps", 1e-10)), np.float32))], final=False
    )
    norm = ctx.emit("Sqrt", [shifted], final=False)
    normalized = ctx.emit("Div", [flat, norm], final=False)
    shape = ctx.emit("Shape", [x], final=False)
    return ctx.emit("Reshape", [normalized, shape])


def _read_symbol(symbol_path: Path) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """The ``nodes`` and ``heads`` of a symbol file."""
    try:
        symbol = json.loads(symbol_path.read_text())
        return symbol["nodes"], symbol["heads"]
    except FileNotFoundError as error:
        raise InputError(
            f"no such MXNet symbol file: {symbol_path}", expected="a *-symbol.json", remedy="check the path"
        ) from error
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(
            f"{symbol_path} is not an MXNet symbol file",
            expected="JSON with 'nodes' and 'heads' (saved by sym.save / export)",
            found=str(error),
            remedy="pass the *-symbol.json written together with the .params",
        ) from error


_UNSUPPORTED_REMEDY = "convert them to supported ops in MXNet before exporting, or extend the reader"


def _unsupported_ops(nodes: list[dict[str, Any]]) -> list[Problem]:
    """A problem for every node whose op has no converter (all of them, before converting any)."""
    problems: list[Problem] = []
    for node in nodes:
        if node["op"] != "null" and node["op"] not in CONVERTERS:
            ConverterContext(problems, name=node["name"], op_type=node["op"], source=(node["name"],)).problem(
                "unsupported-op",
                f"MXNet op {node['op']} has no converter",
                "convert it to supported ops in MXNet before exporting, or extend the reader",
            )
    return problems


class _SymbolWalk:
    """The walk over a symbol's nodes: (node index, output index) -> value, problems collected."""

    def __init__(self, builder: GraphBuilder, nodes: list[dict[str, Any]], labels: set[int]) -> None:
        self.builder = builder
        self.nodes = nodes
        self.labels = labels  # SoftmaxOutput label variables: training-only inputs, left out
        self.values: dict[tuple[int, int], ir.Value] = {}
        self.param_names: dict[int, str] = {}
        self.problems: list[Problem] = []
        self.failed: set[int] = set()  # nodes not converted (reported), and the nodes that use them

    def add_variables(self, shapes: dict[str, tuple[int, ...]], params: dict[str, np.ndarray]) -> None:
        for index, node in enumerate(self.nodes):
            if node["op"] != "null":
                continue
            if node["name"] in shapes:
                self.values[(index, 0)] = self.builder.add_input(node["name"], shapes[node["name"]])
            elif node["name"] in params:
                self.values[(index, 0)] = self.builder.add_initializer(node["name"], params[node["name"]])
                self.param_names[index] = node["name"]

    def convert(self) -> None:
        for index, node in enumerate(self.nodes):
            if node["op"] != "null":
                self._convert_node(index, node)

    def _convert_node(self, index: int, node: dict[str, Any]) -> None:
        entries = [entry for entry in node["inputs"] if entry[0] not in self.labels]
        if any(entry[0] in self.failed for entry in entries):
            self.failed.add(index)  # the problem upstream is already reported
            return
        missing = [self.nodes[entry[0]]["name"] for entry in entries if (entry[0], entry[1]) not in self.values]
        if missing:
            raise InputError(
                f"MXNet node {node['name']} uses {', '.join(missing)}, which the params file does not hold",
                remedy="check that the .params belongs to this symbol (same epoch and prefix)",
            )
        inputs = [self.values[(entry[0], entry[1])] for entry in entries]
        sources = [self.param_names.get(entry[0]) for entry in entries]
        converter = CONVERTERS.get(node["op"])
        assert converter is not None  # unsupported ops were reported before the walk
        value = converter(MXNetNodeContext(self.problems, self.builder, node, inputs, sources))
        if value is None:
            self.failed.add(index)
        else:
            self.values[(index, 0)] = value


def read_mxnet(
    symbol_path: str | Path,
    params_path: str | Path,
    *,
    input_shapes: dict[str, Sequence[int]] | Sequence[int] | None = None,
) -> Model:
    """Read ``*-symbol.json`` + ``*.params`` into a Model.

    ``input_shapes``: ``{input name: shape}``, or one shape for a single input.
    """
    symbol_path, params_path = Path(symbol_path), Path(params_path)
    nodes, heads = _read_symbol(symbol_path)
    params = read_params(params_path)
    labels = _labels(nodes)
    shapes = _input_shapes(_data_names(nodes, params, labels), input_shapes, nodes)
    problems = _unsupported_ops(nodes)
    if problems:
        raise UnsupportedLayersError("MXNet", problems, remedy=_UNSUPPORTED_REMEDY)
    walk = _SymbolWalk(GraphBuilder(symbol_path.name.removesuffix("-symbol.json")), nodes, labels)
    walk.add_variables(shapes, params)
    walk.convert()
    if walk.problems:
        raise UnsupportedLayersError("MXNet", walk.problems, remedy=_UNSUPPORTED_REMEDY)
    walk.builder.set_outputs([walk.values[(head[0], head[1])] for head in heads])
    model = walk.builder.build()
    for value in model.graph.inputs:
        value.type = ir.TensorType(ir.DataType.FLOAT)
    return Model(model, SourceInfo("mxnet", (str(symbol_path), str(params_path)), walk.builder.name))


def _labels(nodes: list[dict[str, Any]]) -> set[int]:
    """The variables SoftmaxOutput reads as labels (training inputs, not network inputs)."""
    return {node["inputs"][1][0] for node in nodes if node["op"] == "SoftmaxOutput" and len(node["inputs"]) > 1}


def _data_names(nodes: list[dict[str, Any]], params: dict[str, np.ndarray], labels: set[int]) -> list[str]:
    """The network inputs: variables that are neither parameters nor labels."""
    return [
        node["name"]
        for index, node in enumerate(nodes)
        if node["op"] == "null" and node["name"] not in params and index not in labels
    ]


def declared_inputs(symbol_path: str | Path, params_path: str | Path) -> dict[str, tuple[int, ...] | None]:
    """The network's inputs in order, each with the shape its ``__shape__`` attribute
    declares (None when the symbol leaves it open)."""
    nodes, _ = _read_symbol(Path(symbol_path))
    names = _data_names(nodes, read_params(params_path), _labels(nodes))
    shapes: dict[str, tuple[int, ...] | None] = dict.fromkeys(names)
    for node in nodes:
        declared = _attrs(node).get("__shape__") if node["name"] in shapes else None
        if declared:
            shapes[node["name"]] = tuple(int(d) for d in declared)
    return shapes


def _input_shapes(
    names: list[str],
    given: dict[str, Sequence[int]] | Sequence[int] | None,
    nodes: list[dict[str, Any]],
) -> dict[str, tuple[int, ...]]:
    if isinstance(given, dict):
        shapes = {k: tuple(int(d) for d in v) for k, v in given.items()}
    elif given is not None and len(names) == 1:
        shapes = {names[0]: tuple(int(d) for d in given)}
    else:
        shapes = {}
        for node in nodes:
            declared = _attrs(node).get("__shape__")
            if node["name"] in names and declared:
                shapes[node["name"]] = tuple(int(d) for d in declared)
    missing = [name for name in names if name not in shapes]
    if missing:
        raise InputError(
            f"MXNet input(s) {', '.join(missing)} need a shape",
            expected="--input-shape N,C,H,W (one input) or shapes for every input",
            remedy="give --input-shape, e.g. 1,3,112,112",
        )
    return shapes
