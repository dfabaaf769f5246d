"""Windows of convolutions and poolings as Caffe holds them, and the crops that reconcile the rest.

The window itself, with ``auto_pad`` (``SAME_UPPER``/``SAME_LOWER``/``VALID``) and
explicit pads resolved from static shapes, comes from the converter contract
(``ctx.window()``, the one pad normalisation every writer shares). ONNX gives pads
as begins and ends per axis; Caffe pads both ends of an axis by the same amount.

**Aligning windows.** Along one axis, ONNX's output ``i`` reads the window that
starts at ``i*s - b`` (``b`` the begin pad). Caffe with pad ``P`` on both ends reads
windows starting at ``j*s - P``. With ``P = b + m*s`` the Caffe window ``j = i + m``
is the ONNX window ``i``, whatever the end pad ``e``: the writer picks the smallest
``m`` for which Caffe computes every window ONNX keeps, then a Slice keeps Caffe's
outputs ``[m, m + n)`` (``n`` the ONNX count). Zero padding reads the same zeros in
both (a convolution's sum, an average's sum); a max ignores padding in both. So
asymmetric pads, SAME pads and floor/ceil rounding all become one layer plus at
most one Slice per axis, exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import onnx_ir as ir

from ...graph.pads import Window
from .net import CaffeNodeContext


@dataclass(frozen=True)
class AxisPlan:
    """One axis of a window written for Caffe: its pad ``pad`` at both ends, and the
    Caffe outputs ``[first, first + count)`` (of ``total``) that the graph keeps."""

    pad: int
    first: int
    count: int
    total: int

    @property
    def cropped(self) -> bool:
        return (self.first, self.count) != (0, self.total)


def planar_window(ctx: CaffeNodeContext, kernel: Sequence[int] | None = None) -> Window | None:
    """The node's resolved window when it is 2-D (NCHW), or None after reporting why not."""
    found = ctx.window(kernel)
    if found is None:
        return None
    if found.spatial != 2:
        ctx.problem(
            "rank",
            f"{ctx.node.op_type} over {found.spatial} spatial dimension(s); the writer handles 2-D (NCHW) only",
            "reshape to a 2-D operation in the source model",
        )
        return None
    return found


def align_axis(
    begin: int, stride: int, count: int, caffe_count: Callable[[int], int], pad_limit: int | None = None
) -> AxisPlan | None:
    """The smallest pad ``begin + m*stride`` (below ``pad_limit`` when given) whose
    Caffe output, ``caffe_count(pad)`` long, holds ONNX's ``count`` windows from ``m``
    on; None when no pad does."""
    m = 0
    while pad_limit is None or begin + m * stride < pad_limit:
        pad = begin + m * stride
        total = caffe_count(pad)
        if total >= m + count:
            return AxisPlan(pad, m, count, total)
        if m > count + 2:  # a larger pad only adds windows before the kept ones
            return None
        m += 1
    return None


def conv_count(size: int, k: int, s: int, d: int, pad: int) -> int:
    """A convolution's output length with ``pad`` at both ends (Caffe and ONNX round down)."""
    return (size + 2 * pad - ((k - 1) * d + 1)) // s + 1


def crop(ctx: CaffeNodeContext, blob: str, ranges: dict[int, tuple[int, int, int]], output: ir.Value | None) -> str:
    """Keep ``[start, end)`` of ``size`` on each axis of ``ranges`` (axis -> (start, end, size))
    with one Slice per cut axis (the other pieces go to a Silence); the last top is
    ``output`` (bound to ``blob`` itself when nothing is cut). Returns the kept blob."""
    axes = [axis for axis, (start, end, size) in sorted(ranges.items()) if (start, end) != (0, size)]
    if not axes and output is not None:
        ctx.net.bind(output, blob)
    for axis in axes:
        start, end, size = ranges[axis]
        points = [p for p in (start, end) if 0 < p < size]
        kept = 1 if start > 0 else 0
        outputs: list[ir.Value | None] = [None] * (len(points) + 1)
        if axis == axes[-1]:
            outputs[kept] = output
        layer = ctx.add_layer("Slice", [blob], outputs, role=f"crop_axis{axis}")
        layer.slice_param.axis = axis
        layer.slice_param.slice_point.extend(points)
        ctx.discard([top for index, top in enumerate(layer.top) if index != kept])
        blob = str(layer.top[kept])
    return blob
