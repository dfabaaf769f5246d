"""The window of a Conv, ConvTranspose or pooling node with its pads resolved: one
normalisation for every writer.

ONNX states a window's padding in three ways: explicit ``pads = [begin_1, ...,
begin_n, end_1, ..., end_n]`` (``auto_pad = NOTSET``, the default), none (``VALID``),
or ``SAME_UPPER`` / ``SAME_LOWER``, which pad so that ``out = ceil(in / stride)``.
For a convolution or a pooling that is

    total = max((ceil(in / stride) - 1) * stride + (kernel - 1) * dilation + 1 - in, 0)

split as ``begin = total // 2`` (UPPER: the odd pixel goes to the end) or
``begin = total - total // 2`` (LOWER). A transposed convolution's output is

    out = stride * (in - 1) + output_padding + (kernel - 1) * dilation + 1 - begin - end

so with ``output_shape`` given, or with SAME (``out = in * stride``), ``total =
begin + end`` is solved from it and split the same way, the odd pixel at the
beginning unless ``SAME_UPPER`` (the ONNX spec's rule, which onnxruntime follows
also for ``NOTSET`` with ``output_shape``). An ``output_shape`` up to ``stride - 1``
beyond the full output (a negative total) extends the output at the end, which
``output_padding`` expresses.

``read_window`` returns a ``Window`` or, when the pads cannot be known (SAME with an
unknown input size) or make no sense, a ``WindowProblem`` the converter reports;
writers then decide only whether their target can hold the pads (Caffe: the same
at both ends; PyTorch: the same at both ends within the layer, else an explicit pad).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import onnx_ir as ir

SAME = ("SAME_UPPER", "SAME_LOWER")
_FIXED_SIZE_REMEDY = "give the model fixed input shapes (--input-shape) and simplify it first"


@dataclass(frozen=True)
class Window:
    """Kernel, strides, dilations and the resolved pads of one spatial window."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begins: tuple[int, ...]
    ends: tuple[int, ...]
    output_padding: tuple[int, ...] = ()  # ConvTranspose only

    @property
    def spatial(self) -> int:
        return len(self.kernel)

    @property
    def symmetric(self) -> bool:
        """True when every axis is padded by the same amount at both ends."""
        return self.begins == self.ends

    @property
    def pads(self) -> tuple[int, ...]:
        """The ONNX ``pads`` attribute these pads equal: begins, then ends."""
        return self.begins + self.ends


@dataclass(frozen=True)
class WindowProblem:
    """Why a node's window cannot be resolved; the converter reports it as a ``Problem``."""

    kind: str
    message: str
    remedy: str


def split_total(total: int, *, upper: bool) -> tuple[int, int]:
    """``(begin, end)`` of ``total`` padding: the odd pixel at the end when ``upper``."""
    begin = total // 2 if upper else total - total // 2
    return begin, total - begin


def same_pads(
    sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], *, upper: bool
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Begins and ends of a convolution's or pooling's ``SAME_UPPER`` / ``SAME_LOWER`` pads."""
    pairs = [
        split_total(max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0), upper=upper)
        for size, k, s, d in zip(sizes, kernel, strides, dilations)
    ]
    return tuple(b for b, _ in pairs), tuple(e for _, e in pairs)


def transposed_totals(
    sizes: Sequence[int],
    window: Window,
    targets: Sequence[int],
) -> list[int]:
    """``begin + end`` per axis that gives a transposed convolution the ``targets`` sizes."""
    return [
        s * (size - 1) + extra + (k - 1) * d + 1 - target
        for size, k, s, d, extra, target in zip(
            sizes, window.kernel, window.strides, window.dilations, window.output_padding, targets
        )
    ]


def _ints(node: ir.Node, name: str, default: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in node.attributes.get_ints(name, default))


def read_window(
    node: ir.Node, input_shape: Sequence[int | None] | None, kernel: Sequence[int] | None = None
) -> Window | WindowProblem:
    """The window of ``node`` with ``auto_pad`` and ``output_shape`` resolved from
    ``input_shape``. ``kernel`` is the weights' spatial shape for a convolution
    (``kernel_shape``, when the node has it, wins)."""
    kernel_shape = _ints(node, "kernel_shape", kernel or ())
    spatial = len(kernel_shape)
    unpadded = Window(
        kernel_shape,
        _ints(node, "strides", (1,) * spatial),
        _ints(node, "dilations", (1,) * spatial),
        (0,) * spatial,
        (0,) * spatial,
        _ints(node, "output_padding", (0,) * spatial) if node.op_type == "ConvTranspose" else (),
    )
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    if node.op_type == "ConvTranspose" and ("output_shape" in node.attributes or auto_pad in SAME):
        return _solved_transposed(node, unpadded, input_shape, auto_pad)
    if auto_pad == "NOTSET":
        return _explicit(node, unpadded)
    if auto_pad == "VALID":
        return unpadded
    if auto_pad not in SAME:
        return WindowProblem(
            "unsupported-attribute", f"auto_pad={auto_pad} is not an ONNX padding mode", "use NOTSET (explicit pads)"
        )
    sizes = _spatial_sizes(input_shape, spatial)
    if sizes is None:
        return _unknown_size(f"auto_pad={auto_pad}")
    begins, ends = same_pads(
        sizes, unpadded.kernel, unpadded.strides, unpadded.dilations, upper=auto_pad == "SAME_UPPER"
    )
    return Window(unpadded.kernel, unpadded.strides, unpadded.dilations, begins, ends, unpadded.output_padding)


def _explicit(node: ir.Node, unpadded: Window) -> Window | WindowProblem:
    pads = _ints(node, "pads", (0,) * (2 * unpadded.spatial))
    if len(pads) != 2 * unpadded.spatial:
        return WindowProblem(
            "malformed-node",
            f"pads {list(pads)} do not hold a begin and an end for each of {unpadded.spatial} spatial axes",
            "check the model with onnx.checker.check_model(model, full_check=True)",
        )
    spatial = unpadded.spatial
    return Window(
        unpadded.kernel, unpadded.strides, unpadded.dilations, pads[:spatial], pads[spatial:], unpadded.output_padding
    )


def _solved_transposed(
    node: ir.Node, unpadded: Window, input_shape: Sequence[int | None] | None, auto_pad: str
) -> Window | WindowProblem:
    sizes = _spatial_sizes(input_shape, unpadded.spatial)
    if sizes is None:
        return _unknown_size("ConvTranspose output_shape / auto_pad")
    if "output_shape" in node.attributes:
        targets = list(_ints(node, "output_shape", ()))[-unpadded.spatial :]
    else:
        targets = [size * stride for size, stride in zip(sizes, unpadded.strides)]
    totals = transposed_totals(sizes, unpadded, targets)
    # an output_shape beyond the full output extends it at the end, as output_padding does;
    # by less than a stride, or the input would have had another row (onnxruntime refuses it)
    extensions = [max(-total, 0) for total in totals]
    if any(extra >= stride for extra, stride in zip(extensions, unpadded.strides)):
        return WindowProblem(
            "malformed-node",
            f"ConvTranspose output_shape {targets} is a stride or more beyond the full output",
            "give an output_shape the transposed convolution can reach",
        )
    pairs = [split_total(max(total, 0), upper=auto_pad == "SAME_UPPER") for total in totals]
    return Window(
        unpadded.kernel,
        unpadded.strides,
        unpadded.dilations,
        tuple(b for b, _ in pairs),
        tuple(e for _, e in pairs),
        tuple(padding + extra for padding, extra in zip(unpadded.output_padding, extensions)),
    )


def _spatial_sizes(input_shape: Sequence[int | None] | None, spatial: int) -> list[int] | None:
    if input_shape is None or len(input_shape) != spatial + 2:
        return None
    sizes = list(input_shape[2:])
    return [int(size) for size in sizes if size is not None] if None not in sizes else None


def _unknown_size(what: str) -> WindowProblem:
    return WindowProblem(
        "dynamic-shape", f"{what} needs the input's spatial size, which is not known", _FIXED_SIZE_REMEDY
    )


def pooled_size(size: int, kernel: int, stride: int, begin: int, end: int, *, ceil: bool, padded: bool) -> int:
    """Output length of a pooling along one axis, by the rule ONNX (onnxruntime), PyTorch
    and Caffe share: ``out = floor or ceil((size + begin + end - kernel) / stride) + 1``,
    less a last window that would start past the input and its begin padding, when the
    pooling is ``padded`` (Caffe asks whether any axis is padded, ONNX this one)."""
    span = size + begin + end - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if padded and (out - 1) * stride >= size + begin:
        out -= 1
    return out
