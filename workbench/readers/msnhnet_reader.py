"""MsnhNet (``.msnhnet`` + ``.msnhbin``) -> graph, computing what MsnhNet 2.0 computes.

The files are read by ``workbench.formats.msnhnet`` (MsnhNet's parser and builder:
decoded keys, dimensions, weights split per layer); one converter per layer kind,
registered in ``LAYERS``, emits the ONNX nodes of a layer. Every node records its
layer as provenance, ``"index:kind"`` (``"12:conv"``: MsnhNet layers have only their
position), and every initializer the weight it came from (``"12:conv/weight"``);
the value a layer computes is named after it, so the MsnhNet runner's layer
outputs line up with the graph's. The graph has one input (``config``: batch,
channels, height, width) and outputs the last layer — what MsnhNet returns — or,
when the MsnhNet writer's provenance record is given, the layers holding the
source model's outputs, in its order.

What a layer reads is what MsnhNet hands it (as the MsnhNet runner does): the
previous layer's output, except after a ``view`` without a buffer of its own,
which passes on the shared buffer — the output of the last layer that wrote it.
MsnhNet's own rules are kept: its pooling rounding (pads chosen so ONNX's count
matches, extra windows sliced off), ``localavgpool`` dividing by the cells in the
input, ``softmax`` over contiguous groups, ``softplus`` with its threshold (0.1
unless given), ``selu``'s rounded constants, ``varop tanh`` computing tan, ``pixshf``'s
own index formula. Layers MsnhNet computes with undefined results (convolutions
whose X and Y differ, grouped deconvolution, the AVX max-pooling cases the
runner reproduces column block by column block) are reported, all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from ..errors import Problem, UnsupportedLayersError
from ..formats.msnhnet import Activation, Layer, Net, read_net, read_weights
from ..graph import Model, SourceInfo, StepReport
from ..graph.builder import GraphBuilder
from ..graph.converter import ConverterContext
from ..graph.report import timed
from ..registry import Registry
from ..writers.msnhnet.sidecar import COPY_ROLES, layer_shapes

Converter = Callable[["MsnhLayerContext"], ir.Value | None]
LAYERS: Registry[Converter] = Registry("MsnhNet reader: MsnhNet layer → ONNX ops")
"""MsnhNet layer kind -> function emitting its ONNX nodes and returning its output value."""

INT_MAX = 2**62
UNSUPPORTED_REMEDY = "convert the model from its source framework instead"


class MsnhLayerContext(ConverterContext):
    """A converter's view of one MsnhNet layer: its decoded keys, weights, the value it
    reads (``x``) and the values of the layers it names, and how it adds nodes."""

    def __init__(
        self,
        problems: list[Problem],
        builder: GraphBuilder,
        layer: Layer,
        weights: Mapping[str, np.ndarray],
        x: ir.Value,
        values: Mapping[int, ir.Value],
        net: Net,
        sources: Sequence[str] = (),
    ) -> None:
        super().__init__(problems, name=layer.name, op_type=layer.kind, source=tuple(sources) or (layer.name,))
        self.builder = builder
        self.layer = layer
        self.params = layer.params
        self.weights = weights
        self.x = x
        self.values = values
        self.net = net
        self.batch = net.batch
        self._weights: set[ir.Value] = set()

    def const(self, name: str, array: np.ndarray) -> ir.Value:
        return self.builder.add_initializer(f"{self.layer.name}/{name}", np.asarray(array))

    def weight(self, name: str, shape: Sequence[int] | None = None) -> ir.Value:
        """The layer's weight ``name`` as an initializer (recorded as its source parameter)."""
        array = self.weights[name]
        value = self.const(name, array.reshape(shape) if shape is not None else array)
        self._weights.add(value)
        return value

    def read(self, index: int) -> ir.Value:
        """The output of layer ``index`` as this layer reads it (the one before: what MsnhNet hands it)."""
        return self.x if index == self.layer.index - 1 else self.values[index]

    def emit(
        self, op_type: str, inputs: Sequence[ir.Value | None], attributes: dict | None = None, **kw: Any
    ) -> ir.Value:
        """One node of this layer; its output is named ``<layer>/<op>`` (the layer's own
        value gets the layer's name in ``finish``)."""
        params = {i: [value.name or ""] for i, value in enumerate(inputs) if value in self._weights}
        (out,) = self.builder.add_node(
            op_type,
            inputs,
            attributes,
            sources=self.subject_source,
            params=params,
            outputs=[f"{self.layer.name}/{op_type.lower()}"],
            name=f"{self.layer.name}/{op_type}",
            **kw,
        )
        return out

    def reshape(self, value: ir.Value, shape: Sequence[int]) -> ir.Value:
        target = self.builder.add_initializer(f"{self.layer.name}/shape", np.asarray(shape, np.int64))
        return self.emit("Reshape", [value, target])

    def image(self, value: ir.Value | None = None, dims: Sequence[int] | None = None) -> ir.Value:
        """``value`` (default: what the layer reads) as (N, C, H, W) of ``dims`` (default: the input's)."""
        return self.reshape(self.x if value is None else value, (self.batch, *(dims or self.layer.in_dims)))

    def activation(self, y: ir.Value, activation: Activation, prelu: str | None = "prelu") -> ir.Value | None:
        convert = ACTIVATIONS.get(activation.name)
        if convert is None:
            self.problem(
                "unsupported-activation", f"activation {activation.name} has no ONNX form here", UNSUPPORTED_REMEDY
            )
            return None
        return convert(self, y, activation)


# ---- activations ------------------------------------------------------------------------------


def _scalar(ctx: MsnhLayerContext, name: str, value: float) -> ir.Value:
    return ctx.const(name, np.asarray(value, np.float32))


def _where_threshold(ctx: MsnhLayerContext, y: ir.Value, threshold: float) -> ir.Value:
    """MsnhNet's softplus: ``x`` above the threshold, ``exp(x)`` below its negative."""
    high = ctx.emit("Greater", [y, _scalar(ctx, "threshold", threshold)])
    low = ctx.emit("Less", [y, _scalar(ctx, "minus_threshold", -threshold)])
    soft = ctx.emit("Softplus", [y])
    return ctx.emit("Where", [high, y, ctx.emit("Where", [low, ctx.emit("Exp", [y]), soft])])


def _mul(ctx: MsnhLayerContext, a: ir.Value, b: ir.Value) -> ir.Value:
    return ctx.emit("Mul", [a, b])


ActivationConverter = Callable[[MsnhLayerContext, ir.Value, Activation], ir.Value]
ACTIVATIONS: dict[str, ActivationConverter] = {
    "none": lambda ctx, y, a: y,
    "relu": lambda ctx, y, a: ctx.emit("Relu", [y]),
    "relu6": lambda ctx, y, a: ctx.emit("Clip", [y, _scalar(ctx, "min", 0.0), _scalar(ctx, "max", 6.0)]),
    "leaky": lambda ctx, y, a: ctx.emit("LeakyRelu", [y], {"alpha": a.params[0] if a.params else 0.1}),
    "relie": lambda ctx, y, a: ctx.emit("LeakyRelu", [y], {"alpha": 0.01}),
    "logistic": lambda ctx, y, a: ctx.emit("Sigmoid", [y]),
    "tanh": lambda ctx, y, a: ctx.emit("Tanh", [y]),
    "elu": lambda ctx, y, a: ctx.emit("Elu", [y], {"alpha": 1.0}),
    "selu": lambda ctx, y, a: ctx.emit("Selu", [y], {"alpha": 1.6732, "gamma": 1.0507}),
    "hardswish": lambda ctx, y, a: ctx.emit("HardSwish", [y]),
    "hardtan": lambda ctx, y, a: ctx.emit("Clip", [y, _scalar(ctx, "min", -1.0), _scalar(ctx, "max", 1.0)]),
    "swish": lambda ctx, y, a: _mul(ctx, y, ctx.emit("Sigmoid", [y])),
    "softplus": lambda ctx, y, a: _where_threshold(ctx, y, a.params[0] if a.params else 0.1),
    "mish": lambda ctx, y, a: _mul(ctx, y, ctx.emit("Tanh", [_where_threshold(ctx, y, 20.0)])),
    "prelu": lambda ctx, y, a: ctx.emit("PRelu", [y, ctx.weight("prelu", (-1, 1, 1))]),
    "ramp": lambda ctx, y, a: ctx.emit("Add", [ctx.emit("Relu", [y]), ctx.emit("Mul", [y, _scalar(ctx, "ramp", 0.1)])]),
}


# ---- layers -------------------------------------------------------------------------------------


def _square(ctx: MsnhLayerContext) -> bool:
    p = ctx.params
    (ky, kx), (sy, sx), (py, px), (dy, dx) = p["kSize"], p["stride"], p["padding"], p["dilation"]
    if ky != kx or sy != sx or py != px or (ky > 1 and dy != dx):
        ctx.unsupported("MsnhNet's conv im2col takes kSizeX/strideX/paddingX/dilationX as the height: with X and Y "
                        "different it computes something else", UNSUPPORTED_REMEDY)  # fmt: skip
        return False
    if (ky, dy, py, sy) == (2, 2, 1, 1):
        ctx.unsupported(
            "a 2x2 kernel with dilation 2 and padding 1 takes MsnhNet's 3x3-only im2col path", UNSUPPORTED_REMEDY
        )
        return False
    if p["batchNorm"] and not p["useBias"]:
        ctx.unsupported("batchNorm: 1 with useBias: 0 leaves MsnhNet's BN bias unallocated", "write useBias: 1")
        return False
    return True


def _batch_norm(ctx: MsnhLayerContext, y: ir.Value, eps: float) -> ir.Value:
    inputs = [y, ctx.weight("scale"), ctx.weight("bias"), ctx.weight("mean"), ctx.weight("var")]
    return ctx.emit("BatchNormalization", inputs, {"epsilon": eps})


@LAYERS.register("conv")
def convert_conv(ctx: MsnhLayerContext) -> ir.Value | None:
    """Conv (+ BatchNormalization) (+ activation)"""
    if not _square(ctx):
        return None
    p = ctx.params
    k, s, pad, d = p["kSize"][0], p["stride"][0], p["padding"][0], p["dilation"][0]
    attributes = {
        "kernel_shape": [k, k],
        "strides": [s, s],
        "pads": [pad] * 4,
        "dilations": [d, d],
        "group": p["groups"],
    }
    bias = [ctx.weight("bias")] if p["useBias"] and not p["batchNorm"] else []
    y = ctx.emit("Conv", [ctx.image(), ctx.weight("weight"), *bias], attributes)
    if p["batchNorm"]:
        y = _batch_norm(ctx, y, p["eps"])
    return ctx.activation(y, p["activation"])


@LAYERS.register("deconv")
def convert_deconv(ctx: MsnhLayerContext) -> ir.Value | None:
    """ConvTranspose (+ activation); groups reported (MsnhNet computes them wrongly)"""
    p = ctx.params
    if p["groups"] != 1:
        ctx.unsupported("MsnhNet's grouped deconv multiplies the wrong blocks of weights", UNSUPPORTED_REMEDY)
        return None
    (ky, kx), (sy, sx), (py, px) = p["kSize"], p["stride"], p["padding"]
    attributes = {"kernel_shape": [ky, kx], "strides": [sy, sx], "pads": [py, px, py, px]}
    bias = [ctx.weight("bias")] if p["useBias"] else []
    y = ctx.emit("ConvTranspose", [ctx.image(), ctx.weight("weight"), *bias], attributes)
    return ctx.activation(y, p["activation"])


@LAYERS.register("connect")
def convert_connect(ctx: MsnhLayerContext) -> ir.Value | None:
    """Flatten + Gemm (+ BatchNormalization) (+ activation), output (N, out, 1, 1)"""
    p = ctx.params
    flat = ctx.reshape(ctx.x, (ctx.batch, ctx.layer.in_size))
    bias = [ctx.weight("bias")] if p["useBias"] and not p["batchNorm"] else []
    y = ctx.emit("Gemm", [flat, ctx.weight("weight"), *bias], {"transB": 1})
    if p["batchNorm"]:
        y = _batch_norm(ctx, y, p["bnEps"])
    y = ctx.reshape(y, (ctx.batch, p["output"], 1, 1))
    return ctx.activation(y, p["activation"])


@LAYERS.register("batchnorm")
def convert_batchnorm(ctx: MsnhLayerContext) -> ir.Value | None:
    """BatchNormalization (+ activation)"""
    y = _batch_norm(ctx, ctx.image(), ctx.params["eps"])
    return ctx.activation(y, ctx.params["activation"])


@LAYERS.register("act")
def convert_act(ctx: MsnhLayerContext) -> ir.Value | None:
    """the activation's ONNX ops (prelu: PRelu; softplus with MsnhNet's threshold)"""
    x = ctx.image() if 0 not in ctx.layer.in_dims else ctx.x
    return ctx.activation(x, ctx.params["activation"])


def _avx_pool_wrong(ctx: MsnhLayerContext) -> bool:
    """The AVX max pooling cases the runner reproduces but no ONNX pooling computes."""
    p = ctx.params
    (ky, kx), (sy, sx), px = p["kSize"], p["stride"], p["padding"][1]
    out_w = ctx.layer.dims[2]
    if sx != sy:
        return False
    if sx == 1:
        return px > 0 and out_w - 8 - (kx - 1) > 0
    return kx == 2 and sx == 2 and out_w > 4 and (px > 0 or ky != 2)


def _pool(ctx: MsnhLayerContext, op: str, extra: dict) -> ir.Value:
    """MsnhNet's windows as ONNX pooling: the end pad chosen so ONNX counts as many
    windows (never negative: extra windows are sliced off)."""
    p = ctx.params
    (ky, kx), (sy, sx), (py, px) = p["kSize"], p["stride"], p["padding"]
    h, w = ctx.layer.in_dims[1:]
    out = ctx.layer.dims[1:]
    ends = [max((o - 1) * s + k - size - b, 0) for o, s, k, size, b in zip(out, (sy, sx), (ky, kx), (h, w), (py, px))]
    attributes = {"kernel_shape": [ky, kx], "strides": [sy, sx], "pads": [py, px, *ends], **extra}
    y = ctx.emit(op, [ctx.image()], attributes)
    counts = [(size + b + e - k) // s + 1 for size, b, e, k, s in zip((h, w), (py, px), ends, (ky, kx), (sy, sx))]
    if counts != list(out):
        starts, ends_ = ctx.const("starts", np.zeros(2, np.int64)), ctx.const("ends", np.asarray(out, np.int64))
        y = ctx.emit("Slice", [y, starts, ends_, ctx.const("axes", np.asarray([2, 3], np.int64))])
    return y


@LAYERS.register("maxpool")
def convert_maxpool(ctx: MsnhLayerContext) -> ir.Value | None:
    """MaxPool with MsnhNet's window count (maxPoolDepth: ReduceMax over channel groups)"""
    p = ctx.params
    if p["maxPoolDepth"]:
        c, h, w = ctx.layer.in_dims
        groups = p["outChannels"]
        if c % groups:
            ctx.unsupported(f"maxPoolDepth over {c} channels in {groups} groups", UNSUPPORTED_REMEDY)
            return None
        grouped = ctx.reshape(ctx.x, (ctx.batch, c // groups, groups, h, w))
        return ctx.emit("ReduceMax", [grouped], {"axes": [1], "keepdims": 0})  # axes an attribute until opset 18
    if _avx_pool_wrong(ctx):
        ctx.unsupported("MsnhNet's AVX max pooling (equal strides: stride 1 with X padding, or 2-wide stride 2) reads "
                        "cells outside the window", UNSUPPORTED_REMEDY)  # fmt: skip
        return None
    return _pool(ctx, "MaxPool", {})


@LAYERS.register("localavgpool")
def convert_localavgpool(ctx: MsnhLayerContext) -> ir.Value | None:
    """AveragePool without counting padding, with MsnhNet's window count"""
    return _pool(ctx, "AveragePool", {"count_include_pad": 0})


@LAYERS.register("globalavgpool")
def convert_globalavgpool(ctx: MsnhLayerContext) -> ir.Value | None:
    """GlobalAveragePool"""
    return ctx.emit("GlobalAveragePool", [ctx.image()])


@LAYERS.register("route")
def convert_route(ctx: MsnhLayerContext) -> ir.Value | None:
    """Concat of the flattened layers (addModel: Sum; groups: a Slice of each) (+ activation)"""
    p = ctx.params
    parts = [ctx.reshape(ctx.read(i), (ctx.batch, -1)) for i in ctx.layer.inputs]
    if p["groups"] != 1:
        parts = [_group(ctx, part, index) for part, index in zip(parts, ctx.layer.inputs)]
    y = ctx.emit("Sum", parts) if p["addModel"] == 1 else ctx.emit("Concat", parts, {"axis": 1})
    dims = ctx.layer.dims
    y = ctx.reshape(y, (ctx.batch, *dims)) if int(np.prod(dims)) == ctx.layer.size else y
    return ctx.activation(y, p["activation"])


def _group(ctx: MsnhLayerContext, flat: ir.Value, index: int) -> ir.Value:
    p = ctx.params
    size = ctx.net.layers[index].size // p["groups"]
    starts = ctx.const("starts", np.asarray([size * p["groupsId"]], np.int64))
    ends = ctx.const("ends", np.asarray([size * (p["groupsId"] + 1)], np.int64))
    return ctx.emit("Slice", [flat, starts, ends, ctx.const("axes", np.asarray([1], np.int64))])


_BINARY = {"add": ("Add", False), "sub": ("Sub", False), "subInv": ("Sub", True), "mul": ("Mul", False)}
_BINARY |= {"div": ("Div", False), "divInv": ("Div", True)}
_UNARY = {"abs": "Abs", "acos": "Acos", "asin": "Asin", "atan": "Atan", "cos": "Cos", "cosh": "Cosh", "sin": "Sin"}
_UNARY |= {
    "sinh": "Sinh",
    "tan": "Tan",
    "tanh": "Tan",
    "exp": "Exp",
    "log": "Log",
    "sqrt": "Sqrt",
}  # tanh: MsnhNet calls tanf


def _varop_const(ctx: MsnhLayerContext, kind: str, x: ir.Value) -> ir.Value:
    c = _scalar(ctx, "constVal", ctx.params["constVal"])
    if kind == "pow":
        return ctx.emit("Pow", [x, c])
    if kind == "log10":
        return ctx.emit("Div", [ctx.emit("Log", [x]), _scalar(ctx, "ln10", float(np.log(np.float32(10))))])
    op, inverse = _BINARY[kind.replace("Const", "")]
    return ctx.emit(op, [c, x] if inverse else [x, c])


@LAYERS.register("varop")
def convert_varop(ctx: MsnhLayerContext) -> ir.Value | None:
    """Add/Sub/Mul/Div of layers or a constant, the unary math op (tanh: Tan, as MsnhNet computes)"""
    kind = ctx.params["type"]
    if 0 in ctx.layer.in_dims:
        ctx.unsupported("a varop after a softmax computes nothing in MsnhNet (no dimensions)", UNSUPPORTED_REMEDY)
        return None
    x = ctx.image()
    if kind in _BINARY:
        refs = [ctx.image(ctx.read(i)) for i in ctx.layer.inputs]
        a, b = (refs[0], refs[1]) if len(refs) == 2 else (x, refs[0])
        op, inverse = _BINARY[kind]
        return ctx.emit(op, [b, a] if inverse else [a, b])
    if kind in _UNARY:
        return ctx.emit(_UNARY[kind], [x])
    return _varop_const(ctx, kind, x)


@LAYERS.register("softmax")
def convert_softmax(ctx: MsnhLayerContext) -> ir.Value | None:
    """Softmax over contiguous groups of the flattened sample (output (N, count))"""
    groups, temperature = ctx.params["groups"], ctx.params["temperature"]
    grouped = ctx.reshape(ctx.x, (ctx.batch, groups, -1))
    if temperature != 1.0:
        grouped = ctx.emit("Div", [grouped, _scalar(ctx, "temperature", temperature)])
    return ctx.reshape(ctx.emit("Softmax", [grouped], {"axis": -1}), (ctx.batch, ctx.layer.size))


@LAYERS.register("upsample")
def convert_upsample(ctx: MsnhLayerContext) -> ir.Value | None:
    """Resize nearest (asymmetric, floor; times scale) or linear (half-pixel / align_corners)"""
    p = ctx.params
    roi = ctx.const("roi", np.zeros(0, np.float32))
    if p["type"] == "nearest":
        scales = ctx.const("scales", np.asarray([1, 1, p["strideY"], p["strideX"]], np.float32))
        attributes = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        y = ctx.emit("Resize", [ctx.image(), roi, scales], attributes)
        return y if p["scaleX"] == 1.0 else ctx.emit("Mul", [y, _scalar(ctx, "scale", p["scaleX"])])
    sizes = ctx.const("sizes", np.asarray([ctx.batch, *ctx.layer.dims], np.int64))
    transform = "align_corners" if p["alignCorners"] else "half_pixel"
    return ctx.emit(
        "Resize", [ctx.image(), roi, None, sizes], {"mode": "linear", "coordinate_transformation_mode": transform}
    )


@LAYERS.register("padding")
def convert_padding(ctx: MsnhLayerContext) -> ir.Value | None:
    """Pad (constant; negative pads crop)"""
    p = ctx.params
    pads = ctx.const("pads", np.asarray([0, 0, p["top"], p["left"], 0, 0, p["down"], p["right"]], np.int64))
    return ctx.emit("Pad", [ctx.image(), pads, _scalar(ctx, "value", p["paddingVal"])])


@LAYERS.register("view")
def convert_view(ctx: MsnhLayerContext) -> ir.Value | None:
    """Reshape to (dim2, dim1, dim0) as (C, H, W)"""
    return ctx.image(ctx.x, ctx.layer.dims)


@LAYERS.register("permute")
def convert_permute(ctx: MsnhLayerContext) -> ir.Value | None:
    """Transpose of (C, H, W)"""
    order = [0, *(1 + ctx.params[f"dim{i}"] for i in range(3))]
    return ctx.emit("Transpose", [ctx.image()], {"perm": order})


@LAYERS.register("slice")
def convert_slice(ctx: MsnhLayerContext) -> ir.Value | None:
    """Slice (start and step per C, H, W, to the end)"""
    p = ctx.params
    starts = ctx.const("starts", np.asarray([p[f"start{i}"] for i in range(3)], np.int64))
    ends = ctx.const("ends", np.full(3, INT_MAX, np.int64))
    axes = ctx.const("axes", np.asarray([1, 2, 3], np.int64))
    steps = ctx.const("steps", np.asarray([p[f"step{i}"] for i in range(3)], np.int64))
    return ctx.emit("Slice", [ctx.image(), starts, ends, axes, steps])


@LAYERS.register("pixshf")
def convert_pixshf(ctx: MsnhLayerContext) -> ir.Value | None:
    """Gather on the flattened sample by MsnhNet's own index formula (not PyTorch's pixel shuffle)"""
    f = ctx.params["factor"]
    _, h, w = ctx.layer.in_dims
    oc, oh, ow = ctx.layer.dims
    cc, hh, ww = np.meshgrid(np.arange(oc), np.arange(oh), np.arange(ow), indexing="ij")
    index = (cc * f * w * h + hh * w + (ww % f) * w * h + ww // f).astype(np.int64)
    flat = ctx.reshape(ctx.x, (ctx.batch, -1))
    return ctx.emit("Gather", [flat, ctx.const("index", index)], {"axis": 1})


@LAYERS.register("clip")
def convert_clip(ctx: MsnhLayerContext) -> ir.Value | None:
    """Clip"""
    return ctx.emit(
        "Clip", [ctx.image(), _scalar(ctx, "min", ctx.params["min"]), _scalar(ctx, "max", ctx.params["max"])]
    )


@LAYERS.register("reduction")
def convert_reduction(ctx: MsnhLayerContext) -> ir.Value | None:
    """ReduceSum / ReduceMean over C, H, W (axis -1: all three)"""
    axis = ctx.params["axis"]
    axes = [1, 2, 3] if axis == -1 else [axis + 1]
    if ctx.params["type"] == "mean":  # ReduceMean takes axes as an attribute until opset 18, ReduceSum as an input
        return ctx.emit("ReduceMean", [ctx.image()], {"axes": axes, "keepdims": 1})
    return ctx.emit("ReduceSum", [ctx.image(), ctx.const("axes", np.asarray(axes, np.int64))], {"keepdims": 1})


# ---- the walk -------------------------------------------------------------------------------------


def _owned(net: Net) -> set[int]:
    owned: set[int] = set()
    for layer in net.layers:
        if layer.kind in ("route", "varop"):
            owned.update(i for i in layer.inputs if layer.kind == "varop" or i != layer.index - 1)
    return owned


class _Reader:
    def __init__(
        self, net: Net, weights: list[dict[str, np.ndarray]], name: str, record: Mapping[str, Any] | None
    ) -> None:
        self.net = net
        recorded = {
            int(r["index"]): tuple(r.get("sources", ()))
            for r in (record or {}).get("layers", ())
            if r.get("role") not in COPY_ROLES
        }
        self.sources = {layer.index: recorded.get(layer.index) or (layer.name,) for layer in net.layers}
        self.shapes = layer_shapes(record or {})
        self.weights = weights
        self.builder = GraphBuilder(name)
        self.problems: list[Problem] = []

    def _reads(self, layer: Layer, owned: set[int], own: int, shared: int | None) -> int | None:
        """The layer (-1: the input) whose output MsnhNet hands ``layer``."""
        if layer.kind == "view" and layer.index not in owned:
            return shared
        return own if layer.index == 0 or layer.index - 1 in owned else shared

    def convert(self) -> list[ir.Value]:
        """Every layer's value (a stand-in for a reported layer)."""
        owned = _owned(self.net)
        value_of: dict[int, ir.Value] = {-1: self.builder.add_input("input", (self.net.batch, *self.net.dims))}
        own, shared = -1, None  # the last layer writing its own buffer / the shared buffer
        for layer in self.net.layers:
            source = self._reads(layer, owned, own, shared)
            value_of[layer.index] = self._layer(layer, value_of[source if source is not None else -1], source, value_of)
            if layer.kind == "view" and layer.index not in owned:
                continue
            if layer.index in owned:
                own = layer.index
            else:
                shared = layer.index
        return [value_of[layer.index] for layer in self.net.layers]

    def _stand_in(self, layer: Layer) -> ir.Value:
        """Zeros of the layer's output shape for a layer that was reported, so that the
        layers after it are converted (and their problems listed) too."""
        shape = (self.net.batch, *layer.dims) if 0 not in layer.dims else (self.net.batch, layer.size)
        zero = self.builder.add_initializer(f"{layer.name}/stand_in", np.zeros((), np.float32))
        target = self.builder.add_initializer(f"{layer.name}/stand_in_shape", np.asarray(shape, np.int64))
        (value,) = self.builder.add_node("Expand", [zero, target], sources=[layer.name], outputs=[layer.name])
        return value

    def _layer(self, layer: Layer, x: ir.Value, source: int | None, value_of: dict[int, ir.Value]) -> ir.Value:
        ctx = MsnhLayerContext(
            self.problems,
            self.builder,
            layer,
            self.weights[layer.index],
            x,
            value_of,
            self.net,
            self.sources[layer.index],
        )
        if source is None:
            ctx.unsupported("reads MsnhNet's shared buffer before any layer wrote it", UNSUPPORTED_REMEDY)
        converter = LAYERS.get(layer.kind)
        out = converter(ctx) if converter is not None and ctx.ok else None
        if out is None or not ctx.ok:
            return self._stand_in(layer)
        shape = self.shapes.get(layer.index)
        if shape is not None and int(np.prod(shape)) == self.net.batch * layer.size:
            target = self.builder.add_initializer(f"{layer.name}/value_shape", np.asarray(shape, np.int64))
            inputs, op = [out, target], "Reshape"
        else:
            inputs, op = [out], "Identity"
        (named,) = self.builder.add_node(
            op, inputs, sources=self.sources[layer.index], outputs=[layer.name], name=f"{layer.name}/{op}"
        )
        return named

    def outputs(self, values: list[ir.Value], record: Mapping[str, Any] | None) -> list[ir.Value]:
        """The last layer, or the recorded graph outputs (named and shaped as in the source)."""
        recorded = [item for item in (record or {}).get("outputs") or [] if 0 <= int(item["layer"]) < len(values)]
        if not recorded:
            return [values[-1]]
        found = []
        for item in recorded:
            index, shape = int(item["layer"]), tuple(item.get("shape") or ())
            value = values[index]
            layer = self.net.layers[index]
            if shape and int(np.prod(shape)) == self.net.batch * layer.size:
                target = self.builder.add_initializer(f"{layer.name}/output_shape", np.asarray(shape, np.int64))
                sources = self.sources[index]
                (value,) = self.builder.add_node(
                    "Reshape", [value, target], sources=sources, outputs=[item["name"]], name=f"{layer.name}/output"
                )
            found.append(value)
        return found


def read_msnhnet(msnhnet: str | Path, msnhbin: str | Path, *, record: Mapping[str, Any] | None = None) -> Model:
    """Read a MsnhNet network and its weights into a ``Model``. ``record`` (the MsnhNet
    writer's provenance sidecar) gives every layer's source layers and the graph
    outputs to keep, named and shaped as in the source model."""
    msnhnet, msnhbin = Path(msnhnet), Path(msnhbin)
    report = StepReport("read_msnhnet")
    with timed(report):
        net = read_net(msnhnet)
        weights = read_weights(msnhbin, net)
        reader = _Reader(net, weights, msnhnet.stem, record)
        values = reader.convert()
        if reader.problems:
            raise UnsupportedLayersError("MsnhNet", reader.problems, remedy=UNSUPPORTED_REMEDY)
        reader.builder.set_outputs(reader.outputs(values, record))
        model = reader.builder.build()
    report.summary = f"{len(net.layers)} MsnhNet layers -> {len(model.graph)} nodes, {net.weight_count:,} weights"
    return Model(model, SourceInfo("msnhnet", (str(msnhnet), str(msnhbin)), msnhnet.stem), [report])
