"""The window of a convolution or pooling as Caffe holds it: 2-D, the same pad at both ends.

The window itself, with ``auto_pad`` (``SAME_UPPER``/``SAME_LOWER``/``VALID``) and
explicit pads resolved from static shapes, comes from the converter contract
(``ctx.window()``, the one pad normalisation every writer shares). ONNX gives pads
as begins and ends per axis; Caffe pads both ends of an axis by the same amount,
so only symmetric pads translate here (pooling reconciles a longer end by its
rounding, see ``pooling``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...graph.pads import Window
from .net import CaffeNodeContext


@dataclass(frozen=True)
class CaffeWindow:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilation: tuple[int, int]


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


def window(ctx: CaffeNodeContext, kernel: Sequence[int] | None = None) -> CaffeWindow | None:
    """The 2-D window of the node with the same pad at both ends, or None after reporting why Caffe cannot hold it."""
    found = planar_window(ctx, kernel)
    if found is None:
        return None
    if not found.symmetric:
        report_asymmetric(ctx, found)
        return None
    return caffe_window(found, found.begins)


def caffe_window(found: Window, pad: Sequence[int]) -> CaffeWindow:
    """``found`` as Caffe's 2-D window with ``pad`` at both ends of each axis."""
    return CaffeWindow(
        (found.kernel[0], found.kernel[1]),
        (found.strides[0], found.strides[1]),
        (pad[0], pad[1]),
        (found.dilations[0], found.dilations[1]),
    )


def report_asymmetric(ctx: CaffeNodeContext, found: Window) -> None:
    ctx.problem(
        "asymmetric-pads",
        f"pads {list(found.pads)} (begin {list(found.begins)}, end {list(found.ends)}) differ; "
        "Caffe pads both ends equally",
        "pad explicitly in the source model (e.g. F.pad before the layer) or use symmetric padding",
    )
