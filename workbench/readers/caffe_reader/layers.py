"""One converter per Caffe layer type: a Caffe layer -> ONNX nodes with Caffe's exact math.

Each converter receives a ``LayerContext`` (the converter contract of
``workbench.graph.converter``, plus the layer, its input values with static
shapes and its blobs) and emits nodes through it; every node gets the layer
name as provenance, and every initializer made from a blob records the blob as
``"<layer>/<blob index>"`` (``"conv1/0"`` is conv1's weight, ``"conv1/1"`` its bias).
A layer the reader cannot express is reported with ``ctx.problem`` (a blob that
does not fit the layer with kind ``"weights"``) and the converter returns; the
helpers that check a setting (``axis``, ``blob``, ``per_axis``) report and
return None, and ``@bottoms(n)`` checks the number of bottoms before a converter runs.

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

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx_ir as ir

from ...errors import Problem
from ...graph.converter import ConverterContext
from ...graph.pads import pooled_size
from ...graph.shapes import static_shape
from ...registry import Registry
from .prototxt import pooling_rounds_up

Shape = tuple[int, ...]

SETTING_REMEDY = (
    "correct the layer in the prototxt (its settings must fit its inputs), or replace it by layers the reader converts"
)
AXIS_REMEDY = "use an axis within the input's rank (negative axes count from the end)"
WEIGHTS_KIND = "weights"
WEIGHTS_REMEDY = "pass the caffemodel trained with this prototxt"
"""The kind of problem a blob that does not fit its layer is reported with (bad input, not unsupported)."""


class LayerContext(ConverterContext):
    """What a converter sees of one layer, and how it adds nodes for it.

    ``emit`` is supplied by the network walk: it adds a node and names its outputs
    (tops get their planned names; other values get fresh names).
    """

    def __init__(
        self,
        problems: list[Problem],
        layer: Any,
        inputs: list[ir.Value],
        blobs: list[np.ndarray],
        emit: Callable[..., list[ir.Value]],
        initializer: Callable[[str, np.ndarray], ir.Value],
    ) -> None:
        super().__init__(problems, name=layer.name, op_type=layer.type, source=(layer.name,))
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
        shape = static_shape(self.inputs[index])
        assert shape is not None  # the network walk gives every value its static shape
        return shape

    def expect_bottoms(self, low: int, high: float | None = None) -> bool:
        """True for exactly ``low`` bottoms, or ``low`` to ``high`` (``math.inf``: no upper bound)."""
        high = low if high is None else high
        count = len(self.inputs)
        if low <= count <= high:
            return True
        wanted = str(low) if low == high else f"at least {low}" if high == math.inf else f"{low} to {high}"
        self.problem(
            "bottoms", f"takes {wanted} bottom blob(s), found {count}", "give the layer the bottoms its type takes"
        )
        return False

    def axis(self, axis: int, rank: int, *, what: str = "axis") -> int | None:
        """Caffe's CanonicalAxisIndex: -rank <= axis < rank, negative from the end."""
        if not -rank <= axis < rank:
            self.problem("axis", f"{what} {axis} is out of range for a {rank}-d input", AXIS_REMEDY)
            return None
        return axis % rank

    def blob(self, index: int, shape: Sequence[int]) -> np.ndarray | None:
        """Blob ``index`` reshaped to ``shape`` (legacy 4-d blobs hold the same values)."""
        if index >= len(self._blobs):
            self.problem(WEIGHTS_KIND, f"needs blob {index}, the caffemodel holds {len(self._blobs)}", WEIGHTS_REMEDY)
            return None
        array = self._blobs[index]
        if array.size != math.prod(shape):
            self.problem(
                WEIGHTS_KIND,
                f"blob {index} has shape {list(array.shape)} ({array.size} values), "
                f"expected {list(shape)} ({math.prod(shape)} values)",
                WEIGHTS_REMEDY,
            )
            return None
        return array.reshape(tuple(shape))

    def setting(self, message: str, remedy: str = SETTING_REMEDY) -> None:
        """Report a layer setting the reader cannot convert: invalid for the layer's inputs,
        or a form it does not express."""
        self.problem("setting", message, remedy)

    # ---- emitting ----------------------------------------------------------
    def weight(self, array: np.ndarray, from_blobs: Sequence[int]) -> ir.Value:
        """An initializer computed from the layer's blobs ``from_blobs``."""
        names = [f"{self.name}/{index}" for index in from_blobs]
        value = self._initializer(names[0], array)
        self._param_names[id(value)] = names
        return value

    def constant(self, label: str, data: npt.ArrayLike) -> ir.Value:
        """An initializer that is not a Caffe blob (shapes, unit scales, divisors)."""
        array = np.asarray(data)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        return self._initializer(f"{self.name}/{label}", array)

    def _add(
        self,
        op_type: str,
        inputs: Sequence[ir.Value | None],
        attributes: dict[str, Any] | None,
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


def bottoms(low: int, high: float | None = None) -> Callable[[Converter], Converter]:
    """Run the decorated converter only for ``low`` (to ``high``) bottoms; report any other count."""

    def decorate(convert: Converter) -> Converter:
        @functools.wraps(convert)
        def checked(ctx: LayerContext) -> None:
            if ctx.expect_bottoms(low, high):
                convert(ctx)

        return checked

    return decorate


def needs_weights(layer: Any) -> bool:
    """Whether the layer cannot run without trained blobs from the caffemodel."""
    if layer.type == "Scale":
        return len(layer.bottom) == 1 or layer.scale_param.bias_term
    return layer.type in _WEIGHTED_TYPES


def per_axis(
    ctx: LayerContext, values: Sequence[int], spatial: int, default: int | None, what: str
) -> list[int] | None:
    """A repeated per-axis setting: one value for all axes, or one per axis (None after a problem)."""
    found = [int(v) for v in values]
    if not found:
        if default is None:
            ctx.setting(f"sets no {what}")
            return None
        return [default] * spatial
    if len(found) == 1:
        return found * spatial
    if len(found) != spatial:
        ctx.setting(f"{what} has {len(found)} values for {spatial} spatial axes")
        return None
    return found


def _geometry(ctx: LayerContext, param: Any, spatial: int, name: str, default: int | None) -> list[int] | None:
    """A convolution setting in Caffe's spellings: ``name_h``/``name_w`` when either is
    set (2-d only), else repeated ``kernel_size``/``pad``/``stride``."""
    repeated = "kernel_size" if name == "kernel" else name
    if param.HasField(f"{name}_h") or param.HasField(f"{name}_w"):
        if spatial != 2:
            ctx.setting(f"{name}_h/{name}_w apply to 2-d inputs only")
            return None
        return [getattr(param, f"{name}_h"), getattr(param, f"{name}_w")]
    return per_axis(ctx, getattr(param, repeated), spatial, default, repeated)


def _conv_geometry(ctx: LayerContext, param: Any, spatial: int) -> tuple[list[int], ...] | None:
    """kernel, pads, strides and dilations of a convolution, or None after the first problem."""
    found = []
    for name, default in (("kernel", None), ("pad", 0), ("stride", 1)):
        setting = _geometry(ctx, param, spatial, name, default)
        if setting is None:
            return None
        found.append(setting)
    dilations = per_axis(ctx, param.dilation, spatial, 1, "dilation")
    return None if dilations is None else (*found, dilations)


def _conv_sizes(ctx: LayerContext, shape: Shape, geometry: tuple[list[int], ...]) -> list[int] | None:
    """The output's spatial size (Caffe's arithmetic), or None after a problem."""
    param = ctx.layer.convolution_param
    kernel, pads, strides, dilations = geometry
    if shape[1] % param.group or param.num_output % param.group:
        ctx.setting(
            f"group {param.group} does not divide {shape[1]} input and {param.num_output} output channels",
        )
        return None
    reach = [d * (k - 1) + 1 for d, k in zip(dilations, kernel)]
    transposed = ctx.layer.type == "Deconvolution"
    sizes = [
        s * (n - 1) + r - 2 * p if transposed else (n + 2 * p - r) // s + 1
        for n, p, r, s in zip(shape[2:], pads, reach, strides)
    ]
    if min(sizes) < 1:
        ctx.setting(f"output size {sizes} is empty for input {list(shape)}")
        return None
    return sizes


@LAYERS.register("Convolution", "Deconvolution")
@bottoms(1)
def convert_convolution(ctx: LayerContext) -> None:
    """Conv / ConvTranspose (group, dilation, per-axis pad/kernel/stride)."""
    param = ctx.layer.convolution_param
    shape = ctx.shape()
    axis = ctx.axis(param.axis, len(shape))
    if axis is not None and axis != 1:
        ctx.setting(f"convolution over axis {param.axis} (only the channel axis 1 is supported)")
    geometry = _conv_geometry(ctx, param, len(shape) - 2) if ctx.ok else None
    sizes = _conv_sizes(ctx, shape, geometry) if geometry is not None else None
    if geometry is None or sizes is None:
        return
    kernel, pads, strides, dilations = geometry
    group, outputs, channels = param.group, param.num_output, shape[1]
    transposed = ctx.layer.type == "Deconvolution"
    weight_shape = (channels, outputs // group) if transposed else (outputs, channels // group)
    weight = ctx.blob(0, (*weight_shape, *kernel))
    bias = ctx.blob(1, (outputs,)) if param.bias_term else None
    if not ctx.ok or weight is None:
        return
    inputs = [ctx.inputs[0], ctx.weight(weight, [0])] + ([ctx.weight(bias, [1])] if bias is not None else [])
    ctx.output(
        "ConvTranspose" if transposed else "Conv",
        inputs,
        (shape[0], outputs, *sizes),
        kernel_shape=kernel,
        pads=pads + pads,
        strides=strides,
        dilations=dilations,
        group=group,
    )


def _pooling_window(ctx: LayerContext, param: Any) -> tuple[list[int], list[int], list[int]] | None:
    """kernel, pads and strides of a (non-global) pooling, or None after a problem."""
    if param.HasField("kernel_size") == (param.HasField("kernel_h") or param.HasField("kernel_w")):
        ctx.setting("sets kernel_size or kernel_h and kernel_w (exactly one of the two)")
        return None
    # Caffe's PoolingLayer reads the _h/_w pair only when the _h field is set
    kernel = [param.kernel_size] * 2 if param.HasField("kernel_size") else [param.kernel_h, param.kernel_w]
    pads = [param.pad_h, param.pad_w] if param.HasField("pad_h") else [param.pad] * 2
    strides = [param.stride_h, param.stride_w] if param.HasField("stride_h") else [param.stride] * 2
    return kernel, pads, strides


def _pooled_sizes(ctx: LayerContext, shape: Shape, window: tuple[list[int], list[int], list[int]]) -> list[int] | None:
    """Caffe's output size per spatial axis, or None after reporting a window Caffe cannot pool with."""
    kernel, pads, strides = window
    rounds_up, padded = pooling_rounds_up(ctx.layer.pooling_param), any(pads)
    sizes = []
    for n, k, p, s in zip(shape[2:], kernel, pads, strides):
        out = pooled_size(n, k, s, p, p, ceil=rounds_up, padded=padded)
        if p >= k:
            ctx.setting(f"pad {p} is not smaller than kernel {k}")
        elif out < 1:
            ctx.setting(f"kernel {k} is larger than the padded input {n + 2 * p}")
        elif (out - 1) * s - p >= n:
            ctx.setting(
                f"the last window starts past the input (size {n}, kernel {k}, stride {s}); "
                "Caffe's output there is not a pooled value",
                "use round_mode: FLOOR (ceil_mode: false) or a kernel at least the stride",
            )
        sizes.append(out)
    return sizes if ctx.ok else None


@LAYERS.register("Pooling")
@bottoms(1)
def convert_pooling(ctx: LayerContext) -> None:
    """MaxPool / AveragePool with Caffe's output size and divisor; global pooling."""
    param = ctx.layer.pooling_param
    shape = ctx.shape()
    method = {0: "MAX", 1: "AVE"}.get(param.pool)
    if len(shape) != 4:
        ctx.setting(f"pooling needs a 4-d input, found {list(shape)}")
    elif method is None:
        ctx.setting(
            "STOCHASTIC pooling is random at training and a weighted sum at test; not supported",
            "replace it by AVE pooling if an approximation is acceptable",
        )
    elif param.global_pooling:
        op_type = "GlobalMaxPool" if method == "MAX" else "GlobalAveragePool"
        ctx.output(op_type, [ctx.inputs[0]], (shape[0], shape[1], 1, 1))
        return
    window = _pooling_window(ctx, param) if ctx.ok else None
    sizes = _pooled_sizes(ctx, shape, window) if window is not None else None
    if window is None or sizes is None:
        return
    if method == "MAX":
        _max_pooling(ctx, shape, window, sizes)
    else:
        _average_pooling(ctx, shape, window, sizes)


def _max_pooling(
    ctx: LayerContext, shape: Shape, window: tuple[list[int], list[int], list[int]], sizes: list[int]
) -> None:
    # out is either the floor size or ONNX's ceil size (Caffe's clip only drops a
    # window ONNX drops too), and padding never wins a max.
    kernel, pads, strides = window
    floor_sizes = [(n + 2 * p - k) // s + 1 for n, k, p, s in zip(shape[2:], kernel, pads, strides)]
    ctx.output(
        "MaxPool",
        [ctx.inputs[0]],
        (shape[0], shape[1], *sizes),
        kernel_shape=kernel,
        pads=pads + pads,
        strides=strides,
        ceil_mode=int(sizes != floor_sizes),
    )


def _average_pooling(
    ctx: LayerContext, shape: Shape, window: tuple[list[int], list[int], list[int]], sizes: list[int]
) -> None:
    kernel, pads, strides = window
    out_shape = (shape[0], shape[1], *sizes)
    floor_sizes = [(n + 2 * p - k) // s + 1 for n, k, p, s in zip(shape[2:], kernel, pads, strides)]
    if sizes == floor_sizes:
        extra = {"count_include_pad": 1} if any(pads) else {}
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
@bottoms(1)
def convert_inner_product(ctx: LayerContext) -> None:
    """Gemm (axis 1), or Reshape + MatMul + Add for another axis."""
    param = ctx.layer.inner_product_param
    shape = ctx.shape()
    axis = ctx.axis(param.axis, len(shape))
    if axis is None:
        return
    inner, outputs = math.prod(shape[axis:]), param.num_output
    weight = ctx.blob(0, (inner, outputs) if param.transpose else (outputs, inner))
    bias = ctx.blob(1, (outputs,)) if param.bias_term else None
    if weight is None or not ctx.ok:
        return
    out_shape = (*shape[:axis], outputs)
    if axis == 1:
        flat = ctx.inputs[0]
        if len(shape) > 2:
            flat = ctx.node("Flatten", [flat], (shape[0], inner), axis=1)
        inputs = [flat, ctx.weight(weight, [0])] + ([ctx.weight(bias, [1])] if bias is not None else [])
        ctx.output("Gemm", inputs, out_shape, transB=0 if param.transpose else 1)
        return
    rows = ctx.node(
        "Reshape",
        [ctx.inputs[0], ctx.constant("shape", np.array([*shape[:axis], inner], np.int64))],
        (*shape[:axis], inner),
    )
    matrix = ctx.weight(weight if param.transpose else np.ascontiguousarray(weight.T), [0])
    if bias is None:
        ctx.output("MatMul", [rows, matrix], out_shape)
        return
    product = ctx.node("MatMul", [rows, matrix], out_shape)
    ctx.output("Add", [product, ctx.weight(bias, [1])], out_shape)


@LAYERS.register("BatchNorm")
@bottoms(1)
def convert_batch_norm(ctx: LayerContext) -> None:
    """BatchNormalization with the stored statistics divided by the scale factor."""
    param = ctx.layer.batch_norm_param
    if param.HasField("use_global_stats") and not param.use_global_stats:
        ctx.setting(
            "use_global_stats: false normalises each batch by its own statistics",
            "set use_global_stats: true to use the trained statistics (what deployment expects)",
        )
        return
    shape = ctx.shape()
    channels = shape[1]
    stored_mean, stored_variance, factors = ctx.blob(0, (channels,)), ctx.blob(1, (channels,)), ctx.blob(2, (1,))
    if stored_mean is None or stored_variance is None or factors is None:
        return
    factor = factors[0]
    inverse = np.float32(0.0) if factor == 0 else np.float32(1.0) / factor
    mean = ctx.weight(stored_mean * inverse, [0, 2])
    variance = ctx.weight(stored_variance * inverse, [1, 2])
    unit = ctx.constant("unit_scale", np.ones(channels, np.float32))
    zero = ctx.constant("zero_bias", np.zeros(channels, np.float32))
    ctx.output("BatchNormalization", [ctx.inputs[0], unit, zero, mean, variance], shape, epsilon=float(param.eps))


def _trailing_ones(array: np.ndarray, trailing: int) -> np.ndarray:
    return array.reshape(array.shape + (1,) * trailing)


def _axes_span(ctx: LayerContext, shape: Shape, axis: int, num_axes: int) -> tuple[Shape, int] | None:
    """The shape of a Scale/Bias parameter over ``num_axes`` axes from ``axis``
    (-1: to the end), and how many trailing axes it is broadcast over."""
    count = len(shape) - axis if num_axes == -1 else num_axes
    if count < 0 or axis + count > len(shape):
        ctx.setting(f"num_axes {num_axes} does not fit a {len(shape)}-d input from axis {axis}")
        return None
    return shape[axis : axis + count], len(shape) - axis - count


def _broadcast_input(ctx: LayerContext, index: int, axis: int) -> ir.Value | None:
    """Bottom ``index`` (matching bottom 0 from ``axis``) unsqueezed to broadcast over it."""
    shape, operand_shape = ctx.shape(0), ctx.shape(index)
    if shape[axis : axis + len(operand_shape)] != operand_shape:
        ctx.setting(f"second input {list(operand_shape)} does not match {list(shape)} from axis {axis}")
        return None
    trailing = len(shape) - axis - len(operand_shape)
    if not trailing:
        return ctx.inputs[index]
    axes = ctx.constant("unsqueeze_axes", np.arange(len(operand_shape), len(operand_shape) + trailing))
    return ctx.node("Unsqueeze", [ctx.inputs[index], axes], operand_shape + (1,) * trailing)


def _blob_along(ctx: LayerContext, index: int, span: tuple[Shape, int]) -> ir.Value | None:
    """Blob ``index`` shaped to broadcast along ``span`` (its axes and the trailing count)."""
    shape, trailing = span
    array = ctx.blob(index, shape)
    return None if array is None else ctx.weight(_trailing_ones(array, trailing), [index])


@LAYERS.register("Scale")
@bottoms(1, 2)
def convert_scale(ctx: LayerContext) -> None:
    """Mul (+ Add for the bias) broadcast over axis..axis+num_axes; two-bottom form."""
    param = ctx.layer.scale_param
    shape = ctx.shape()
    axis = ctx.axis(param.axis, len(shape))
    if axis is None:
        return
    if len(ctx.inputs) == 2:
        factor = _broadcast_input(ctx, 1, axis)
        span: tuple[Shape, int] | None = (ctx.shape(1), len(shape) - axis - len(ctx.shape(1)))
        bias_blob = 0
    else:
        span = _axes_span(ctx, shape, axis, param.num_axes)
        factor = _blob_along(ctx, 0, span) if span is not None else None
        bias_blob = 1
    bias = _blob_along(ctx, bias_blob, span) if param.bias_term and span is not None else None
    if factor is None or span is None or not ctx.ok:
        return
    if bias is None:
        ctx.output("Mul", [ctx.inputs[0], factor], shape)
        return
    scaled = ctx.node("Mul", [ctx.inputs[0], factor], shape)
    ctx.output("Add", [scaled, bias], shape)


@LAYERS.register("Bias")
@bottoms(1, 2)
def convert_bias(ctx: LayerContext) -> None:
    """Add, broadcast over axis..axis+num_axes; the bias is blob 0 or the second bottom."""
    param = ctx.layer.bias_param
    shape = ctx.shape()
    axis = ctx.axis(param.axis, len(shape))
    if axis is None:
        return
    if len(ctx.inputs) == 2:
        bias = _broadcast_input(ctx, 1, axis)
    else:
        span = _axes_span(ctx, shape, axis, param.num_axes)
        bias = _blob_along(ctx, 0, span) if span is not None else None
    if bias is not None:
        ctx.output("Add", [ctx.inputs[0], bias], shape)


@LAYERS.register("ReLU")
@bottoms(1)
def convert_relu(ctx: LayerContext) -> None:
    """Relu, or LeakyRelu with negative_slope."""
    slope = ctx.layer.relu_param.negative_slope
    if slope:
        ctx.output("LeakyRelu", [ctx.inputs[0]], ctx.shape(), alpha=float(slope))
    else:
        ctx.output("Relu", [ctx.inputs[0]], ctx.shape())


@LAYERS.register("ReLU6", "Clip")
@bottoms(1)
def convert_clip(ctx: LayerContext) -> None:
    """Clip to [0, 6] (ReLU6, OpenCV's Caffe) or to clip_param's [min, max]."""
    low, high = (0.0, 6.0) if ctx.layer.type == "ReLU6" else (ctx.layer.clip_param.min, ctx.layer.clip_param.max)
    bounds = [ctx.constant("min", np.float32(low)), ctx.constant("max", np.float32(high))]
    ctx.output("Clip", [ctx.inputs[0], *bounds], ctx.shape())


@LAYERS.register("PReLU")
@bottoms(1)
def convert_prelu(ctx: LayerContext) -> None:
    """PRelu with one slope per channel (axis 1) or one shared slope."""
    shape = ctx.shape()
    if ctx.layer.prelu_param.channel_shared:
        slope = ctx.blob(0, (1,))
    else:
        channels = shape[1] if len(shape) > 1 else 1
        found = ctx.blob(0, (channels,))
        slope = _trailing_ones(found, max(len(shape) - 2, 0)) if found is not None else None
    if slope is not None:
        ctx.output("PRelu", [ctx.inputs[0], ctx.weight(slope, [0])], shape)


@LAYERS.register("ELU")
@bottoms(1)
def convert_elu(ctx: LayerContext) -> None:
    """Elu with alpha."""
    ctx.output("Elu", [ctx.inputs[0]], ctx.shape(), alpha=float(ctx.layer.elu_param.alpha))


def _unary(op_type: str) -> Converter:
    @bottoms(1)
    def convert(ctx: LayerContext) -> None:
        ctx.output(op_type, [ctx.inputs[0]], ctx.shape())

    convert.__doc__ = f"{op_type}."
    convert.__name__ = convert.__qualname__ = f"convert_{op_type.lower()}"
    return convert


LAYERS.register("Sigmoid")(_unary("Sigmoid"))
LAYERS.register("TanH")(_unary("Tanh"))
LAYERS.register("AbsVal")(_unary("Abs"))


@LAYERS.register("Power")
@bottoms(1)
def convert_power(ctx: LayerContext) -> None:
    """(shift + scale * x) ^ power as Mul, Add, Pow (each only when not the identity)."""
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


def _eltwise_settings(ctx: LayerContext) -> tuple[str, list[float]] | None:
    """The operation and SUM coefficients of an Eltwise layer, or None after a problem."""
    param = ctx.layer.eltwise_param
    shape = ctx.shape()
    coefficients = [float(c) for c in param.coeff]
    operation = {0: "PROD", 1: "SUM", 2: "MAX"}[param.operation]
    if any(ctx.shape(i) != shape for i in range(len(ctx.inputs))):
        ctx.setting(f"inputs differ in shape: {[list(ctx.shape(i)) for i in range(len(ctx.inputs))]}")
    elif coefficients and operation != "SUM":
        ctx.setting(f"coeff applies to SUM only, found it with {operation}")
    elif coefficients and len(coefficients) != len(ctx.inputs):
        ctx.setting(f"{len(coefficients)} coeff values for {len(ctx.inputs)} inputs")
    return (operation, coefficients) if ctx.ok else None


@LAYERS.register("Eltwise")
@bottoms(2, math.inf)
def convert_eltwise(ctx: LayerContext) -> None:
    """SUM (Add/Sub/Sum, coefficients as Mul), PROD (Mul), MAX (Max)."""
    settings = _eltwise_settings(ctx)
    if settings is None:
        return
    operation, coefficients = settings
    shape = ctx.shape()
    inputs = list(ctx.inputs)
    if operation == "MAX":
        ctx.output("Max", inputs, shape)
    elif operation == "PROD":
        value = inputs[0]
        for other in inputs[1:-1]:
            value = ctx.node("Mul", [value, other], shape)
        ctx.output("Mul", [value, inputs[-1]], shape)
    elif coefficients == [1.0, -1.0]:
        ctx.output("Sub", inputs, shape)
    else:
        for index, coefficient in enumerate(coefficients):
            if coefficient != 1.0:
                weight = ctx.constant(f"coeff{index}", np.float32(coefficient))
                inputs[index] = ctx.node("Mul", [inputs[index], weight], shape)
        ctx.output("Add" if len(inputs) == 2 else "Sum", inputs, shape)


@LAYERS.register("Concat")
@bottoms(1, math.inf)
def convert_concat(ctx: LayerContext) -> None:
    """Concat along axis (or the V1 concat_dim)."""
    param = ctx.layer.concat_param
    shape = ctx.shape()
    axis = ctx.axis(param.concat_dim if param.HasField("concat_dim") else param.axis, len(shape))
    if axis is None:
        return
    shapes = [ctx.shape(i) for i in range(len(ctx.inputs))]
    if any(len(s) != len(shape) or s[:axis] + s[axis + 1 :] != shape[:axis] + shape[axis + 1 :] for s in shapes):
        ctx.setting(f"inputs {[list(s) for s in shapes]} differ outside axis {axis}")
        return
    out_shape = (*shape[:axis], sum(s[axis] for s in shapes), *shape[axis + 1 :])
    ctx.output("Concat", ctx.inputs, out_shape, axis=axis)


def _slice_sizes(ctx: LayerContext, length: int, axis: int) -> list[int] | None:
    """The sizes of the Slice layer's pieces along ``axis``, or None after a problem."""
    param = ctx.layer.slice_param
    tops = len(ctx.layer.top)
    if not param.slice_point:
        if length % tops:
            ctx.setting(f"axis {axis} of size {length} does not split into {tops} equal parts")
            return None
        return [length // tops] * tops
    points = [0, *(int(p) for p in param.slice_point), length]
    if len(points) - 1 != tops or any(b <= a for a, b in itertools.pairwise(points)):
        ctx.setting(f"slice_point {list(param.slice_point)} does not cut {length} into {tops} parts")
        return None
    return [b - a for a, b in itertools.pairwise(points)]


@LAYERS.register("Slice")
@bottoms(1)
def convert_slice(ctx: LayerContext) -> None:
    """Split at slice_point along axis (or slice_dim); equal parts without points."""
    param = ctx.layer.slice_param
    shape = ctx.shape()
    axis = ctx.axis(param.slice_dim if param.HasField("slice_dim") else param.axis, len(shape))
    sizes = _slice_sizes(ctx, shape[axis], axis) if axis is not None else None
    if axis is None or sizes is None:
        return
    shapes = [(*shape[:axis], size, *shape[axis + 1 :]) for size in sizes]
    ctx.outputs_of("Split", [ctx.inputs[0], ctx.constant("split", np.array(sizes, np.int64))], shapes, axis=axis)


@LAYERS.register("Split")
@bottoms(1)
def convert_split(ctx: LayerContext) -> None:
    """Every top is the bottom (no node)."""
    ctx.alias([ctx.inputs[0]] * len(ctx.layer.top))


@LAYERS.register("Silence")
@bottoms(1, math.inf)
def convert_silence(ctx: LayerContext) -> None:
    """Consumes its bottoms so they are not network outputs (no node)."""
    ctx.alias([])


@LAYERS.register("Dropout")
@bottoms(1)
def convert_dropout(ctx: LayerContext) -> None:
    """The identity at test time (no node)."""
    ctx.alias([ctx.inputs[0]])


def _reshape(ctx: LayerContext, target: Sequence[int], out_shape: Shape) -> None:
    ctx.output("Reshape", [ctx.inputs[0], ctx.constant("shape", np.array(target, np.int64))], out_shape)


@LAYERS.register("Flatten")
@bottoms(1)
def convert_flatten(ctx: LayerContext) -> None:
    """Flatten (axis 1 to the end), else Reshape to the static shape."""
    param = ctx.layer.flatten_param
    shape = ctx.shape()
    axis = ctx.axis(param.axis, len(shape))
    end = ctx.axis(param.end_axis, len(shape), what="end_axis")
    if axis is None or end is None:
        return
    out_shape = (*shape[:axis], math.prod(shape[axis : end + 1]), *shape[end + 1 :])
    if axis == 1 and end == len(shape) - 1:
        ctx.output("Flatten", [ctx.inputs[0]], out_shape, axis=1)
    else:
        _reshape(ctx, out_shape, out_shape)


def _reshaped_span(ctx: LayerContext, shape: Shape) -> tuple[int, int] | None:
    """The axes ``[start, end)`` a Reshape layer replaces, or None after a problem."""
    param = ctx.layer.reshape_param
    rank = len(shape)
    if not -(rank + 1) <= param.axis <= rank:
        ctx.problem("axis", f"axis {param.axis} is out of range for a {rank}-d input", AXIS_REMEDY)
        return None
    start = param.axis if param.axis >= 0 else rank + 1 + param.axis
    end = rank if param.num_axes == -1 else start + param.num_axes
    if param.num_axes < -1 or end > rank:
        ctx.setting(f"num_axes {param.num_axes} does not fit a {rank}-d input from axis {start}")
        return None
    return start, end


def _reshape_error(middle: list[int], total: int) -> str | None:
    """Why the sizes ``middle`` (0 already copied, at most one -1) cannot hold ``total`` values."""
    known = math.prod(d for d in middle if d != -1)
    if middle.count(-1) > 1 or any(d < -1 for d in middle):
        return "has more than one -1 or a negative size"
    if -1 in middle:
        return f"cannot hold {total} values" if known == 0 or total % known else None
    return f"holds {known} values, the input axes hold {total}" if known != total else None


def _reshaped_middle(ctx: LayerContext, shape: Shape, start: int, end: int) -> list[int] | None:
    """The new sizes of axes ``[start, end)``: 0 copied, -1 inferred; None after a problem."""
    dims = [int(d) for d in ctx.layer.reshape_param.shape.dim]
    middle = [shape[start + i] if d == 0 else d for i, d in enumerate(dims)]
    total = math.prod(shape[start:end])
    error = _reshape_error(middle, total)
    if error is not None:
        ctx.setting(f"shape {dims} (axes {start}..{end}) {error}")
        return None
    if -1 in middle:
        middle[middle.index(-1)] = total // math.prod(d for d in middle if d != -1)
    return middle


@LAYERS.register("Reshape")
@bottoms(1)
def convert_reshape(ctx: LayerContext) -> None:
    """Reshape; Caffe's 0 (copy) and -1 (infer) kept when the whole shape is given."""
    shape = ctx.shape()
    span = _reshaped_span(ctx, shape)
    middle = _reshaped_middle(ctx, shape, *span) if span is not None else None
    if span is None or middle is None:
        return
    start, end = span
    out_shape = (*shape[:start], *middle, *shape[end:])
    dims = [int(d) for d in ctx.layer.reshape_param.shape.dim]
    _reshape(ctx, dims if (start, end) == (0, len(shape)) else out_shape, out_shape)


@LAYERS.register("Softmax")
@bottoms(1)
def convert_softmax(ctx: LayerContext) -> None:
    """Softmax along axis."""
    shape = ctx.shape()
    axis = ctx.axis(ctx.layer.softmax_param.axis, len(shape))
    if axis is not None:
        ctx.output("Softmax", [ctx.inputs[0]], shape, axis=axis)


@LAYERS.register("LRN")
@bottoms(1)
def convert_lrn(ctx: LayerContext) -> None:
    """LRN across channels; within a channel as x * (1 + alpha * avg(x^2))^-beta."""
    param = ctx.layer.lrn_param
    shape = ctx.shape()
    size = param.local_size
    if size % 2 == 0:
        ctx.setting(f"local_size {size} is even; Caffe's LRN needs an odd size")
    elif param.norm_region == 0:
        ctx.output(
            "LRN",
            [ctx.inputs[0]],
            shape,
            size=size,
            alpha=float(param.alpha),
            beta=float(param.beta),
            bias=float(param.k),
        )
    elif len(shape) != 4:
        ctx.setting(f"WITHIN_CHANNEL LRN needs a 4-d input, found {list(shape)}")
    else:
        _lrn_within_channel(ctx, param, shape)


def _lrn_within_channel(ctx: LayerContext, param: Any, shape: Shape) -> None:
    size = param.local_size
    pad = (size - 1) // 2
    square = ctx.node("Mul", [ctx.inputs[0], ctx.inputs[0]], shape)
    mean = ctx.node(
        "AveragePool", [square], shape, kernel_shape=[size, size], pads=[pad] * 4, strides=[1, 1], count_include_pad=1
    )
    scaled = ctx.node("Mul", [mean, ctx.constant("alpha", np.float32(param.alpha))], shape)
    base = ctx.node("Add", [scaled, ctx.constant("one", np.float32(1.0))], shape)
    factor = ctx.node("Pow", [base, ctx.constant("minus_beta", np.float32(-param.beta))], shape)
    ctx.output("Mul", [ctx.inputs[0], factor], shape)


def _crop_offsets(ctx: LayerContext, shape: Shape, reference: Shape, axis: int) -> list[int] | None:
    """The start of the crop on each axis from ``axis``, or None after a problem."""
    offsets = [int(o) for o in ctx.layer.crop_param.offset]
    cropped = len(shape) - axis
    if len(offsets) not in (0, 1, cropped):
        ctx.setting(f"{len(offsets)} offsets for {cropped} cropped axes")
        return None
    offsets = offsets * cropped if len(offsets) == 1 else offsets or [0] * cropped
    if any(o + reference[axis + i] > shape[axis + i] for i, o in enumerate(offsets)):
        ctx.setting(f"crop {list(reference[axis:])} at offsets {offsets} exceeds {list(shape[axis:])}")
        return None
    return offsets


@LAYERS.register("Crop")
@bottoms(2)
def convert_crop(ctx: LayerContext) -> None:
    """Slice the first bottom to the second's shape from axis on, at the offsets."""
    shape, reference = ctx.shape(0), ctx.shape(1)
    if len(shape) != len(reference):
        ctx.setting(f"bottoms have ranks {len(shape)} and {len(reference)}")
        return
    axis = ctx.axis(ctx.layer.crop_param.axis, len(shape))
    offsets = _crop_offsets(ctx, shape, reference, axis) if axis is not None else None
    if axis is None or offsets is None:
        return
    ends = [o + reference[axis + i] for i, o in enumerate(offsets)]
    ctx.output(
        "Slice",
        [
            ctx.inputs[0],
            ctx.constant("starts", np.array(offsets, np.int64)),
            ctx.constant("ends", np.array(ends, np.int64)),
            ctx.constant("axes", np.arange(axis, len(shape), dtype=np.int64)),
        ],
        (*shape[:axis], *reference[axis:]),
    )


@LAYERS.register("Permute")
@bottoms(1)
def convert_permute(ctx: LayerContext) -> None:
    """Transpose; axes the order leaves out follow in their own order."""
    shape = ctx.shape()
    order = [ctx.axis(int(a), len(shape), what="order entry") for a in ctx.layer.permute_param.order]
    axes = [a for a in order if a is not None]
    if len(axes) != len(order):
        return
    if len(set(axes)) != len(axes):
        ctx.setting(f"order {axes} repeats an axis")
        return
    perm = axes + [a for a in range(len(shape)) if a not in axes]
    ctx.output("Transpose", [ctx.inputs[0]], tuple(shape[a] for a in perm), perm=perm)
