"""One converter per Caffe layer type: a Caffe layer -> ONNX nodes with Caffe's exact math.

Each converter receives a ``LayerContext`` (the layer, its input values with
static shapes, its blobs) and emits nodes through it; every node gets the layer
name as provenance, and every initializer made from a blob records the blob as
``"<layer>/<blob index>"`` (``"conv1/0"`` is conv1's weight, ``"conv1/1"`` its bias).

Where Caffe and ONNX differ, the formulation is exact:

* Pooling output size (Caffe): ``out = ceil((in + 2p - k) / s) + 1`` (``floor`` with
  ``round_mode: FLOOR`` / ``ceil_mode: false``), then, if any padding is set and
  ``(out - 1) * s >= in + p``, ``out -= 1``. MAX pooling is ONNX MaxPool with the
  same pads and ``ceil_mode`` chosen so ONNX's rule gives that size. AVE pooling
  divides by the window clipped to the padded input, ``min(start + k, in + p) -
  start``: when every window lies in the padded input that is ``k`` (AveragePool
  with ``count_include_pad=1``); when the last window hangs past it, the pads are
  extended with zeros to cover it (divisor ``k``) and a constant ``Mul`` by
  ``k / clipped size`` corrects those windows.
* BatchNorm: ``mean = blob0 / blob2``, ``var = blob1 / blob2`` (a zero factor gives
  zero statistics), then ONNX BatchNormalization with unit scale and zero bias.
* LRN within a channel: ``x * (1 + alpha * avgpool_n(x^2))^-beta`` with a zero-padded
  ``n x n`` average (Caffe builds it from a Pooling and a Power layer; ``k`` unused).
* Power: ``(shift + scale * x) ^ power``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import onnx_ir as ir

from ...registry import Registry
from .prototxt import pooling_rounds_up

Shape = tuple[int, ...]


class LayerProblem(Exception):
    """A layer this reader cannot express: what is wrong, and a remedy when there is one."""

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy


class WeightsProblem(LayerProblem):
    """The caffemodel's blobs do not fit the layer (missing, or the wrong size)."""


class LayerContext:
    """What a converter sees of one layer, and how it adds nodes for it.

    ``emit`` is supplied by the network walk: it adds a node and names its outputs
    (tops get their planned names; other values get fresh names).
    """

    def __init__(
        self,
        layer: Any,
        inputs: list[ir.Value],
        blobs: list[np.ndarray],
        emit: Callable[..., list[ir.Value]],
        initializer: Callable[[str, np.ndarray], ir.Value],
    ) -> None:
        self.layer = layer
        self.name: str = layer.name
        self.inputs = inputs
        self._blobs = blobs
        self._emit = emit
        self._initializer = initializer
        self._param_names: dict[int, list[str]] = {}  # id(value) -> source parameter names
        self.outputs: list[ir.Value] | None = None

    # ---- reading the layer -------------------------------------------------
    def shape(self, index: int = 0) -> Shape:
        return tuple(self.inputs[index].shape)

    def expect_bottoms(self, low: int, high: float | None = None) -> None:
        """Exactly ``low`` bottoms, or ``low`` to ``high`` (``math.inf``: no upper bound)."""
        high = low if high is None else high
        count = len(self.inputs)
        if not low <= count <= high:
            wanted = str(low) if low == high else f"at least {low}" if high == math.inf else f"{low} to {high}"
            raise LayerProblem(f"takes {wanted} bottom blob(s), found {count}")

    def axis(self, axis: int, rank: int, *, what: str = "axis") -> int:
        """Caffe's CanonicalAxisIndex: -rank <= axis < rank, negative from the end."""
        if not -rank <= axis < rank:
            raise LayerProblem(f"{what} {axis} is out of range for a {rank}-d input")
        return axis % rank

    def blob(self, index: int, shape: Sequence[int]) -> np.ndarray:
        """Blob ``index`` reshaped to ``shape`` (legacy 4-d blobs hold the same values)."""
        if index >= len(self._blobs):
            raise WeightsProblem(f"needs blob {index}, the caffemodel holds {len(self._blobs)}")
        array = self._blobs[index]
        if array.size != math.prod(shape):
            raise WeightsProblem(
                f"blob {index} has shape {list(array.shape)} ({array.size} values), "
                f"expected {list(shape)} ({math.prod(shape)} values)"
            )
        return array.reshape(tuple(shape))

    # ---- emitting ----------------------------------------------------------
    def weight(self, array: np.ndarray, from_blobs: Sequence[int]) -> ir.Value:
        """An initializer computed from the layer's blobs ``from_blobs``."""
        names = [f"{self.name}/{index}" for index in from_blobs]
        value = self._initializer(names[0], array)
        self._param_names[id(value)] = names
        return value

    def constant(self, label: str, array: np.ndarray | float | Sequence[int]) -> ir.Value:
        """An initializer that is not a Caffe blob (shapes, unit scales, divisors)."""
        array = np.asarray(array)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        return self._initializer(f"{self.name}/{label}", array)

    def _add(
        self,
        op_type: str,
        inputs: Sequence[ir.Value | None],
        attributes: dict | None,
        shapes: Sequence[Shape],
        tops: Sequence[int] | None,
    ) -> list[ir.Value]:
        params = {
            index: self._param_names[id(value)]
            for index, value in enumerate(inputs)
            if value is not None and id(value) in self._param_names
        }
        return self._emit(self.name, op_type, list(inputs), attributes or {}, params, list(shapes), tops)

    def node(self, op_type: str, inputs: Sequence[ir.Value | None], shape: Shape, **attributes: Any) -> ir.Value:
        """An intermediate node of this layer (one output)."""
        return self._add(op_type, inputs, attributes, [shape], None)[0]

    def output(self, op_type: str, inputs: Sequence[ir.Value | None], shape: Shape, **attributes: Any) -> None:
        """The node that produces the layer's top blob."""
        self.outputs = self._add(op_type, inputs, attributes, [shape], [0])

    def outputs_of(
        self, op_type: str, inputs: Sequence[ir.Value | None], shapes: Sequence[Shape], **attributes: Any
    ) -> None:
        """The node that produces all the layer's top blobs, one output each."""
        self.outputs = self._add(op_type, inputs, attributes, shapes, list(range(len(shapes))))

    def alias(self, values: Sequence[ir.Value]) -> None:
        """The tops are the given values (layers that copy their input)."""
        self.outputs = list(values)


Converter = Callable[[LayerContext], None]
LAYERS: Registry[Converter] = Registry("Caffe reader: Caffe layer → ONNX")

_WEIGHTED_TYPES = {"Convolution", "Deconvolution", "InnerProduct", "BatchNorm", "PReLU"}


def needs_weights(layer: Any) -> bool:
    """Whether the layer cannot run without trained blobs from the caffemodel."""
    if layer.type == "Scale":
        return len(layer.bottom) == 1 or layer.scale_param.bias_term
    return layer.type in _WEIGHTED_TYPES


def _per_axis(values: Sequence[int], spatial: int, default: int | None, what: str) -> list[int]:
    """A repeated per-axis setting: one value for all axes, or one per axis."""
    values = [int(v) for v in values]
    if not values:
        if default is None:
            raise LayerProblem(f"sets no {what}")
        return [default] * spatial
    if len(values) == 1:
        return values * spatial
    if len(values) != spatial:
        raise LayerProblem(f"{what} has {len(values)} values for {spatial} spatial axes")
    return values


def _geometry(param: Any, spatial: int, name: str, default: int | None) -> list[int]:
    """A convolution setting in Caffe's spellings: ``name_h``/``name_w`` when either is
    set (2-d only), else repeated ``kernel_size``/``pad``/``stride``."""
    repeated = "kernel_size" if name == "kernel" else name
    if param.HasField(f"{name}_h") or param.HasField(f"{name}_w"):
        if spatial != 2:
            raise LayerProblem(f"{name}_h/{name}_w apply to 2-d inputs only")
        return [getattr(param, f"{name}_h"), getattr(param, f"{name}_w")]
    return _per_axis(getattr(param, repeated), spatial, default, repeated)


@LAYERS.register("Convolution", "Deconvolution")
def convert_convolution(ctx: LayerContext) -> None:
    """Conv / ConvTranspose (group, dilation, per-axis pad/kernel/stride)."""
    ctx.expect_bottoms(1)
    param = ctx.layer.convolution_param
    shape = ctx.shape()
    if ctx.axis(param.axis, len(shape)) != 1:
        raise LayerProblem(f"convolution over axis {param.axis} (only the channel axis 1 is supported)")
    spatial = len(shape) - 2
    kernel = _geometry(param, spatial, "kernel", None)
    pads = _geometry(param, spatial, "pad", 0)
    strides = _geometry(param, spatial, "stride", 1)
    dilations = _per_axis(param.dilation, spatial, 1, "dilation")
    group, outputs, channels = param.group, param.num_output, shape[1]
    if channels % group or outputs % group:
        raise LayerProblem(f"group {group} does not divide {channels} input and {outputs} output channels")
    reach = [d * (k - 1) + 1 for d, k in zip(dilations, kernel)]
    if ctx.layer.type == "Convolution":
        weight_shape = (outputs, channels // group, *kernel)
        sizes = [(n + 2 * p - r) // s + 1 for n, p, r, s in zip(shape[2:], pads, reach, strides)]
        op_type = "Conv"
    else:
        weight_shape = (channels, outputs // group, *kernel)
        sizes = [s * (n - 1) + r - 2 * p for n, p, r, s in zip(shape[2:], pads, reach, strides)]
        op_type = "ConvTranspose"
    if min(sizes) < 1:
        raise LayerProblem(f"output size {sizes} is empty for input {list(shape)}")
    inputs = [ctx.inputs[0], ctx.weight(ctx.blob(0, weight_shape), [0])]
    if param.bias_term:
        inputs.append(ctx.weight(ctx.blob(1, (outputs,)), [1]))
    ctx.output(
        op_type,
        inputs,
        (shape[0], outputs, *sizes),
        kernel_shape=kernel,
        pads=pads + pads,
        strides=strides,
        dilations=dilations,
        group=group,
    )


def _pooled_size(size: int, kernel: int, pad: int, stride: int, rounds_up: bool, any_pad: bool) -> int:
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if rounds_up else span // stride) + 1
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@LAYERS.register("Pooling")
def convert_pooling(ctx: LayerContext) -> None:
    """MaxPool / AveragePool with Caffe's output size and divisor; global pooling."""
    ctx.expect_bottoms(1)
    param = ctx.layer.pooling_param
    shape = ctx.shape()
    if len(shape) != 4:
        raise LayerProblem(f"pooling needs a 4-d input, found {list(shape)}")
    method = {0: "MAX", 1: "AVE"}.get(param.pool)
    if method is None:
        raise LayerProblem(
            "STOCHASTIC pooling is random at training and a weighted sum at test; not supported",
            remedy="replace it by AVE pooling if an approximation is acceptable",
        )
    if param.global_pooling:
        ctx.output(
            "GlobalMaxPool" if method == "MAX" else "GlobalAveragePool", [ctx.inputs[0]], (shape[0], shape[1], 1, 1)
        )
        return
    if param.HasField("kernel_size") == (param.HasField("kernel_h") or param.HasField("kernel_w")):
        raise LayerProblem("sets kernel_size or kernel_h and kernel_w (exactly one of the two)")
    # Caffe's PoolingLayer reads the _h/_w pair only when the _h field is set
    kernel = [param.kernel_size] * 2 if param.HasField("kernel_size") else [param.kernel_h, param.kernel_w]
    pads = [param.pad_h, param.pad_w] if param.HasField("pad_h") else [param.pad] * 2
    strides = [param.stride_h, param.stride_w] if param.HasField("stride_h") else [param.stride] * 2
    rounds_up, any_pad = pooling_rounds_up(param), any(pads)
    sizes, floor_sizes = [], []
    for n, k, p, s in zip(shape[2:], kernel, pads, strides):
        if p >= k:
            raise LayerProblem(f"pad {p} is not smaller than kernel {k}")
        out = _pooled_size(n, k, p, s, rounds_up, any_pad)
        if out < 1:
            raise LayerProblem(f"kernel {k} is larger than the padded input {n + 2 * p}")
        if (out - 1) * s - p >= n:
            raise LayerProblem(
                f"the last window starts past the input (size {n}, kernel {k}, stride {s}); "
                "Caffe's output there is not a pooled value",
                remedy="use round_mode: FLOOR (ceil_mode: false) or a kernel at least the stride",
            )
        sizes.append(out)
        floor_sizes.append((n + 2 * p - k) // s + 1)
    out_shape = (shape[0], shape[1], *sizes)
    if method == "MAX":
        # out is either the floor size or ONNX's ceil size (Caffe's clip only drops a
        # window ONNX drops too), and padding never wins a max.
        ctx.output(
            "MaxPool",
            [ctx.inputs[0]],
            out_shape,
            kernel_shape=kernel,
            pads=pads + pads,
            strides=strides,
            ceil_mode=int(sizes != floor_sizes),
        )
        return
    if sizes == floor_sizes:
        extra = {"count_include_pad": 1} if any_pad else {}
        ctx.output(
            "AveragePool", [ctx.inputs[0]], out_shape, kernel_shape=kernel, pads=pads + pads, strides=strides, **extra
        )
        return
    end_pads = [max(0, (o - 1) * s + k - n - p) for n, k, p, s, o in zip(shape[2:], kernel, pads, strides, sizes)]
    pooled = ctx.node(
        "AveragePool",
        [ctx.inputs[0]],
        out_shape,
        kernel_shape=kernel,
        pads=pads + end_pads,
        strides=strides,
        count_include_pad=1,
    )
    factors = []
    for n, k, p, s, o in zip(shape[2:], kernel, pads, strides, sizes):
        starts = np.arange(o) * s - p
        clipped = np.minimum(starts + k, n + p) - starts
        factors.append(k / clipped)
    correction = np.outer(factors[0], factors[1]).astype(np.float32).reshape(1, 1, *sizes)
    ctx.output("Mul", [pooled, ctx.constant("window_correction", correction)], out_shape)


@LAYERS.register("InnerProduct")
def convert_inner_product(ctx: LayerContext) -> None:
    """Gemm (axis 1), or Reshape + MatMul + Add for another axis."""
    ctx.expect_bottoms(1)
    param = ctx.layer.inner_product_param
    shape = ctx.shape()
    axis = ctx.axis(param.axis, len(shape))
    inner, outputs = math.prod(shape[axis:]), param.num_output
    weight = ctx.blob(0, (inner, outputs) if param.transpose else (outputs, inner))
    out_shape = (*shape[:axis], outputs)
    if axis == 1:
        flat = ctx.inputs[0]
        if len(shape) > 2:
            flat = ctx.node("Flatten", [flat], (shape[0], inner), axis=1)
        inputs = [flat, ctx.weight(weight, [0])]
        if param.bias_term:
            inputs.append(ctx.weight(ctx.blob(1, (outputs,)), [1]))
        ctx.output("Gemm", inputs, out_shape, transB=0 if param.transpose else 1)
        return
    rows = ctx.node(
        "Reshape",
        [ctx.inputs[0], ctx.constant("shape", np.array([*shape[:axis], inner], np.int64))],
        (*shape[:axis], inner),
    )
    matrix = ctx.weight(weight if param.transpose else np.ascontiguousarray(weight.T), [0])
    if not param.bias_term:
        ctx.output("MatMul", [rows, matrix], out_shape)
        return
    product = ctx.node("MatMul", [rows, matrix], out_shape)
    ctx.output("Add", [product, ctx.weight(ctx.blob(1, (outputs,)), [1])], out_shape)


@LAYERS.register("BatchNorm")
def convert_batch_norm(ctx: LayerContext) -> None:
    """BatchNormalization with the stored statistics divided by the scale factor."""
    ctx.expect_bottoms(1)
    param = ctx.layer.batch_norm_param
    if param.HasField("use_global_stats") and not param.use_global_stats:
        raise LayerProblem(
            "use_global_stats: false normalises each batch by its own statistics",
            remedy="set use_global_stats: true to use the trained statistics (what deployment expects)",
        )
    shape = ctx.shape()
    channels = shape[1]
    factor = ctx.blob(2, (1,))[0]
    inverse = np.float32(0.0) if factor == 0 else np.float32(1.0) / factor
    mean = ctx.weight(ctx.blob(0, (channels,)) * inverse, [0, 2])
    variance = ctx.weight(ctx.blob(1, (channels,)) * inverse, [1, 2])
    unit = ctx.constant("unit_scale", np.ones(channels, np.float32))
    zero = ctx.constant("zero_bias", np.zeros(channels, np.float32))
    ctx.output("BatchNormalization", [ctx.inputs[0], unit, zero, mean, variance], shape, epsilon=float(param.eps))


def _trailing_ones(array: np.ndarray, trailing: int) -> np.ndarray:
    return array.reshape(array.shape + (1,) * trailing)


def _axes_span(shape: Shape, axis: int, num_axes: int) -> tuple[Shape, int]:
    """The shape of a Scale/Bias parameter over ``num_axes`` axes from ``axis``
    (-1: to the end), and how many trailing axes it is broadcast over."""
    count = len(shape) - axis if num_axes == -1 else num_axes
    if count < 0 or axis + count > len(shape):
        raise LayerProblem(f"num_axes {num_axes} does not fit a {len(shape)}-d input from axis {axis}")
    return shape[axis : axis + count], len(shape) - axis - count


def _broadcast_input(ctx: LayerContext, index: int, axis: int) -> ir.Value:
    """Bottom ``index`` (matching bottom 0 from ``axis``) unsqueezed to broadcast over it."""
    shape, operand_shape = ctx.shape(0), ctx.shape(index)
    if shape[axis : axis + len(operand_shape)] != operand_shape:
        raise LayerProblem(f"second input {list(operand_shape)} does not match {list(shape)} from axis {axis}")
    trailing = len(shape) - axis - len(operand_shape)
    if not trailing:
        return ctx.inputs[index]
    axes = ctx.constant("unsqueeze_axes", np.arange(len(operand_shape), len(operand_shape) + trailing))
    return ctx.node("Unsqueeze", [ctx.inputs[index], axes], operand_shape + (1,) * trailing)


@LAYERS.register("Scale")
def convert_scale(ctx: LayerContext) -> None:
    """Mul (+ Add for the bias) broadcast over axis..axis+num_axes; two-bottom form."""
    ctx.expect_bottoms(1, 2)
    param = ctx.layer.scale_param
    shape = ctx.shape()
    axis = ctx.axis(param.axis, len(shape))
    if len(ctx.inputs) == 2:
        factor = _broadcast_input(ctx, 1, axis)
        factor_shape, trailing = ctx.shape(1), len(shape) - axis - len(ctx.shape(1))
        bias_blob = 0
    else:
        factor_shape, trailing = _axes_span(shape, axis, param.num_axes)
        factor = ctx.weight(_trailing_ones(ctx.blob(0, factor_shape), trailing), [0])
        bias_blob = 1
    if not param.bias_term:
        ctx.output("Mul", [ctx.inputs[0], factor], shape)
        return
    scaled = ctx.node("Mul", [ctx.inputs[0], factor], shape)
    bias = ctx.weight(_trailing_ones(ctx.blob(bias_blob, factor_shape), trailing), [bias_blob])
    ctx.output("Add", [scaled, bias], shape)


@LAYERS.register("Bias")
def convert_bias(ctx: LayerContext) -> None:
    """Add, broadcast over axis..axis+num_axes; the bias is blob 0 or the second bottom."""
    ctx.expect_bottoms(1, 2)
    param = ctx.layer.bias_param
    shape = ctx.shape()
    axis = ctx.axis(param.axis, len(shape))
    if len(ctx.inputs) == 2:
        ctx.output("Add", [ctx.inputs[0], _broadcast_input(ctx, 1, axis)], shape)
        return
    bias_shape, trailing = _axes_span(shape, axis, param.num_axes)
    ctx.output("Add", [ctx.inputs[0], ctx.weight(_trailing_ones(ctx.blob(0, bias_shape), trailing), [0])], shape)


@LAYERS.register("ReLU")
def convert_relu(ctx: LayerContext) -> None:
    """Relu, or LeakyRelu with negative_slope."""
    ctx.expect_bottoms(1)
    slope = ctx.layer.relu_param.negative_slope
    if slope:
        ctx.output("LeakyRelu", [ctx.inputs[0]], ctx.shape(), alpha=float(slope))
    else:
        ctx.output("Relu", [ctx.inputs[0]], ctx.shape())


@LAYERS.register("ReLU6", "Clip")
def convert_clip(ctx: LayerContext) -> None:
    """Clip to [0, 6] (ReLU6, OpenCV's Caffe) or to clip_param's [min, max]."""
    ctx.expect_bottoms(1)
    low, high = (0.0, 6.0) if ctx.layer.type == "ReLU6" else (ctx.layer.clip_param.min, ctx.layer.clip_param.max)
    bounds = [ctx.constant("min", np.float32(low)), ctx.constant("max", np.float32(high))]
    ctx.output("Clip", [ctx.inputs[0], *bounds], ctx.shape())


@LAYERS.register("PReLU")
def convert_prelu(ctx: LayerContext) -> None:
    """PRelu with one slope per channel (axis 1) or one shared slope."""
    ctx.expect_bottoms(1)
    shape = ctx.shape()
    if ctx.layer.prelu_param.channel_shared:
        slope = ctx.blob(0, (1,))
    else:
        channels = shape[1] if len(shape) > 1 else 1
        slope = _trailing_ones(ctx.blob(0, (channels,)), max(len(shape) - 2, 0))
    ctx.output("PRelu", [ctx.inputs[0], ctx.weight(slope, [0])], shape)


@LAYERS.register("ELU")
def convert_elu(ctx: LayerContext) -> None:
    """Elu with alpha."""
    ctx.expect_bottoms(1)
    ctx.output("Elu", [ctx.inputs[0]], ctx.shape(), alpha=float(ctx.layer.elu_param.alpha))


def _unary(op_type: str) -> Converter:
    def convert(ctx: LayerContext) -> None:
        ctx.expect_bottoms(1)
        ctx.output(op_type, [ctx.inputs[0]], ctx.shape())

    convert.__doc__ = f"{op_type}."
    convert.__name__ = convert.__qualname__ = f"convert_{op_type.lower()}"
    return convert


LAYERS.register("Sigmoid")(_unary("Sigmoid"))
LAYERS.register("TanH")(_unary("Tanh"))
LAYERS.register("AbsVal")(_unary("Abs"))


@LAYERS.register("Power")
def convert_power(ctx: LayerContext) -> None:
    """(shift + scale * x) ^ power as Mul, Add, Pow (each only when not the identity)."""
    ctx.expect_bottoms(1)
    param = ctx.layer.power_param
    shape = ctx.shape()
    steps = [
        ("Mul", "scale", param.scale, 1.0),
        ("Add", "shift", param.shift, 0.0),
        ("Pow", "power", param.power, 1.0),
    ]
    steps = [step for step in steps if step[2] != step[3]]
    value = ctx.inputs[0]
    if not steps:
        ctx.output("Identity", [value], shape)
        return
    for index, (op_type, label, number, _) in enumerate(steps):
        operand = ctx.constant(label, np.float32(number))
        if index == len(steps) - 1:
            ctx.output(op_type, [value, operand], shape)
        else:
            value = ctx.node(op_type, [value, operand], shape)


@LAYERS.register("Eltwise")
def convert_eltwise(ctx: LayerContext) -> None:
    """SUM (Add/Sub/Sum, coefficients as Mul), PROD (Mul), MAX (Max)."""
    ctx.expect_bottoms(2, math.inf)
    param = ctx.layer.eltwise_param
    shape = ctx.shape()
    if any(ctx.shape(i) != shape for i in range(len(ctx.inputs))):
        raise LayerProblem(f"inputs differ in shape: {[list(ctx.shape(i)) for i in range(len(ctx.inputs))]}")
    coefficients = [float(c) for c in param.coeff]
    operation = {0: "PROD", 1: "SUM", 2: "MAX"}[param.operation]
    if coefficients and operation != "SUM":
        raise LayerProblem(f"coeff applies to SUM only, found it with {operation}")
    if coefficients and len(coefficients) != len(ctx.inputs):
        raise LayerProblem(f"{len(coefficients)} coeff values for {len(ctx.inputs)} inputs")
    inputs = list(ctx.inputs)
    if operation == "MAX":
        ctx.output("Max", inputs, shape)
        return
    if operation == "PROD":
        value = inputs[0]
        for index, other in enumerate(inputs[1:], start=2):
            if index == len(inputs):
                ctx.output("Mul", [value, other], shape)
            else:
                value = ctx.node("Mul", [value, other], shape)
        return
    if coefficients == [1.0, -1.0]:
        ctx.output("Sub", inputs, shape)
        return
    for index, coefficient in enumerate(coefficients):
        if coefficient != 1.0:
            weight = ctx.constant(f"coeff{index}", np.float32(coefficient))
            inputs[index] = ctx.node("Mul", [inputs[index], weight], shape)
    ctx.output("Add" if len(inputs) == 2 else "Sum", inputs, shape)


@LAYERS.register("Concat")
def convert_concat(ctx: LayerContext) -> None:
    """Concat along axis (or the V1 concat_dim)."""
    ctx.expect_bottoms(1, math.inf)
    param = ctx.layer.concat_param
    shape = ctx.shape()
    axis = ctx.axis(param.concat_dim if param.HasField("concat_dim") else param.axis, len(shape))
    shapes = [ctx.shape(i) for i in range(len(ctx.inputs))]
    if any(len(s) != len(shape) or s[:axis] + s[axis + 1 :] != shape[:axis] + shape[axis + 1 :] for s in shapes):
        raise LayerProblem(f"inputs {[list(s) for s in shapes]} differ outside axis {axis}")
    out_shape = (*shape[:axis], sum(s[axis] for s in shapes), *shape[axis + 1 :])
    ctx.output("Concat", ctx.inputs, out_shape, axis=axis)


@LAYERS.register("Slice")
def convert_slice(ctx: LayerContext) -> None:
    """Split at slice_point along axis (or slice_dim); equal parts without points."""
    ctx.expect_bottoms(1)
    param = ctx.layer.slice_param
    shape = ctx.shape()
    axis = ctx.axis(param.slice_dim if param.HasField("slice_dim") else param.axis, len(shape))
    tops, length = len(ctx.layer.top), shape[axis]
    if param.slice_point:
        points = [0, *(int(p) for p in param.slice_point), length]
        if len(points) - 1 != tops or any(b <= a for a, b in zip(points, points[1:])):
            raise LayerProblem(f"slice_point {list(param.slice_point)} does not cut {length} into {tops} parts")
        sizes = [b - a for a, b in zip(points, points[1:])]
    else:
        if length % tops:
            raise LayerProblem(f"axis {axis} of size {length} does not split into {tops} equal parts")
        sizes = [length // tops] * tops
    shapes = [(*shape[:axis], size, *shape[axis + 1 :]) for size in sizes]
    ctx.outputs_of("Split", [ctx.inputs[0], ctx.constant("split", np.array(sizes, np.int64))], shapes, axis=axis)


@LAYERS.register("Split")
def convert_split(ctx: LayerContext) -> None:
    """Every top is the bottom (no node)."""
    ctx.expect_bottoms(1)
    ctx.alias([ctx.inputs[0]] * len(ctx.layer.top))


@LAYERS.register("Silence")
def convert_silence(ctx: LayerContext) -> None:
    """Consumes its bottoms so they are not network outputs (no node)."""
    ctx.expect_bottoms(1, math.inf)
    ctx.alias([])


@LAYERS.register("Dropout")
def convert_dropout(ctx: LayerContext) -> None:
    """The identity at test time (no node)."""
    ctx.expect_bottoms(1)
    ctx.alias([ctx.inputs[0]])


def _reshape(ctx: LayerContext, target: Sequence[int], out_shape: Shape) -> None:
    ctx.output("Reshape", [ctx.inputs[0], ctx.constant("shape", np.array(target, np.int64))], out_shape)


@LAYERS.register("Flatten")
def convert_flatten(ctx: LayerContext) -> None:
    """Flatten (axis 1 to the end), else Reshape to the static shape."""
    ctx.expect_bottoms(1)
    param = ctx.layer.flatten_param
    shape = ctx.shape()
    axis = ctx.axis(param.axis, len(shape))
    end = ctx.axis(param.end_axis, len(shape), what="end_axis")
    out_shape = (*shape[:axis], math.prod(shape[axis : end + 1]), *shape[end + 1 :])
    if axis == 1 and end == len(shape) - 1:
        ctx.output("Flatten", [ctx.inputs[0]], out_shape, axis=1)
    else:
        _reshape(ctx, out_shape, out_shape)


@LAYERS.register("Reshape")
def convert_reshape(ctx: LayerContext) -> None:
    """Reshape; Caffe's 0 (copy) and -1 (infer) kept when the whole shape is given."""
    ctx.expect_bottoms(1)
    param = ctx.layer.reshape_param
    shape = ctx.shape()
    rank = len(shape)
    if not -(rank + 1) <= param.axis <= rank:
        raise LayerProblem(f"axis {param.axis} is out of range for a {rank}-d input")
    start = param.axis if param.axis >= 0 else rank + 1 + param.axis
    end = rank if param.num_axes == -1 else start + param.num_axes
    if param.num_axes < -1 or end > rank:
        raise LayerProblem(f"num_axes {param.num_axes} does not fit a {rank}-d input from axis {start}")
    dims = [int(d) for d in param.shape.dim]
    middle = [shape[start + i] if d == 0 else d for i, d in enumerate(dims)]
    if middle.count(-1) > 1 or any(d < -1 for d in middle):
        raise LayerProblem(f"shape {dims} has more than one -1 or a negative size")
    known = math.prod(d for d in middle if d != -1)
    total = math.prod(shape[start:end])
    if -1 in middle:
        if known == 0 or total % known:
            raise LayerProblem(f"shape {dims} cannot hold {total} values")
        middle[middle.index(-1)] = total // known
    elif known != total:
        raise LayerProblem(f"shape {dims} holds {known} values, the input axes {start}..{end} hold {total}")
    out_shape = (*shape[:start], *middle, *shape[end:])
    _reshape(ctx, dims if (start, end) == (0, rank) else out_shape, out_shape)


@LAYERS.register("Softmax")
def convert_softmax(ctx: LayerContext) -> None:
    """Softmax along axis."""
    ctx.expect_bottoms(1)
    shape = ctx.shape()
    ctx.output("Softmax", [ctx.inputs[0]], shape, axis=ctx.axis(ctx.layer.softmax_param.axis, len(shape)))


@LAYERS.register("LRN")
def convert_lrn(ctx: LayerContext) -> None:
    """LRN across channels; within a channel as x * (1 + alpha * avg(x^2))^-beta."""
    ctx.expect_bottoms(1)
    param = ctx.layer.lrn_param
    shape = ctx.shape()
    size = param.local_size
    if size % 2 == 0:
        raise LayerProblem(f"local_size {size} is even; Caffe's LRN needs an odd size")
    if param.norm_region == 0:
        ctx.output(
            "LRN",
            [ctx.inputs[0]],
            shape,
            size=size,
            alpha=float(param.alpha),
            beta=float(param.beta),
            bias=float(param.k),
        )
        return
    if len(shape) != 4:
        raise LayerProblem(f"WITHIN_CHANNEL LRN needs a 4-d input, found {list(shape)}")
    pad = (size - 1) // 2
    square = ctx.node("Mul", [ctx.inputs[0], ctx.inputs[0]], shape)
    mean = ctx.node(
        "AveragePool", [square], shape, kernel_shape=[size, size], pads=[pad] * 4, strides=[1, 1], count_include_pad=1
    )
    scaled = ctx.node("Mul", [mean, ctx.constant("alpha", np.float32(param.alpha))], shape)
    base = ctx.node("Add", [scaled, ctx.constant("one", np.float32(1.0))], shape)
    factor = ctx.node("Pow", [base, ctx.constant("minus_beta", np.float32(-param.beta))], shape)
    ctx.output("Mul", [ctx.inputs[0], factor], shape)


@LAYERS.register("Crop")
def convert_crop(ctx: LayerContext) -> None:
    """Slice the first bottom to the second's shape from axis on, at the offsets."""
    ctx.expect_bottoms(2)
    param = ctx.layer.crop_param
    shape, reference = ctx.shape(0), ctx.shape(1)
    if len(shape) != len(reference):
        raise LayerProblem(f"bottoms have ranks {len(shape)} and {len(reference)}")
    axis = ctx.axis(param.axis, len(shape))
    offsets = [int(o) for o in param.offset]
    cropped = len(shape) - axis
    if len(offsets) not in (0, 1, cropped):
        raise LayerProblem(f"{len(offsets)} offsets for {cropped} cropped axes")
    offsets = offsets * cropped if len(offsets) == 1 else offsets or [0] * cropped
    ends = [o + reference[axis + i] for i, o in enumerate(offsets)]
    if any(end > shape[axis + i] for i, end in enumerate(ends)):
        raise LayerProblem(f"crop {list(reference[axis:])} at offsets {offsets} exceeds {list(shape[axis:])}")
    out_shape = (*shape[:axis], *reference[axis:])
    ctx.output(
        "Slice",
        [
            ctx.inputs[0],
            ctx.constant("starts", np.array(offsets, np.int64)),
            ctx.constant("ends", np.array(ends, np.int64)),
            ctx.constant("axes", np.arange(axis, len(shape), dtype=np.int64)),
        ],
        out_shape,
    )


@LAYERS.register("Permute")
def convert_permute(ctx: LayerContext) -> None:
    """Transpose; axes the order leaves out follow in their own order."""
    ctx.expect_bottoms(1)
    shape = ctx.shape()
    order = [ctx.axis(int(a), len(shape), what="order entry") for a in ctx.layer.permute_param.order]
    if len(set(order)) != len(order):
        raise LayerProblem(f"order {order} repeats an axis")
    perm = order + [a for a in range(len(shape)) if a not in order]
    ctx.output("Transpose", [ctx.inputs[0]], tuple(shape[a] for a in perm), perm=perm)
