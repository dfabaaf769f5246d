"""Window attributes shared by convolution and pooling: kernel, stride, pads.

ONNX gives ``pads`` as ``[h_begin, w_begin, h_end, w_end]``; Caffe pads both
ends of an axis by the same amount, so only symmetric pads translate.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from .net import CaffeNet


@dataclass(frozen=True)
class Window:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilation: tuple[int, int]


def window(node: ir.Node, net: CaffeNet, kernel: tuple[int, ...] | None = None) -> Window | None:
    """The 2-D window of ``node``, or None after reporting why Caffe cannot hold it."""
    kernel = tuple(node.attributes.get_ints("kernel_shape", kernel or ()))
    if len(kernel) != 2:
        net.problem(
            node,
            "rank",
            f"{node.op_type} over {len(kernel)} spatial dimension(s); the writer handles 2-D (NCHW) only",
            "reshape to a 2-D operation in the source model",
        )
        return None
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        net.problem(
            node,
            "auto-pad",
            f"auto_pad={auto_pad} leaves the pads implicit",
            "export with explicit pads (PyTorch does), or run simplify with fixed shapes",
        )
        return None
    pads = tuple(node.attributes.get_ints("pads", (0, 0, 0, 0))) if auto_pad == "NOTSET" else (0, 0, 0, 0)
    if pads[:2] != pads[2:]:
        net.problem(
            node,
            "asymmetric-pads",
            f"pads {list(pads)} (begin {list(pads[:2])}, end {list(pads[2:])}) differ; Caffe pads both ends equally",
            "pad explicitly in the source model (e.g. F.pad before the layer) or use symmetric padding",
        )
        return None
    stride = tuple(node.attributes.get_ints("strides", (1, 1)))
    dilation = tuple(node.attributes.get_ints("dilations", (1, 1)))
    return Window(kernel, stride, pads[:2], dilation)  # type: ignore[arg-type]
