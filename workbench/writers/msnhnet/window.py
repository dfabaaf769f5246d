"""A convolution's or pooling's window on the (C, H, W) image MsnhNet sees."""

from __future__ import annotations

from dataclasses import dataclass

from ...graph.pads import Window
from .net import MsnhNodeContext

SIZE_REMEDY = "export the model with a fixed input shape (--input-shape) and simplify it"


@dataclass(frozen=True)
class Plane:
    """A 2-D window (Y, X): the image's size, the kernel, strides, dilations, pads."""

    size: tuple[int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    begins: tuple[int, int]
    ends: tuple[int, int]


def plane_of(ctx: MsnhNodeContext, found: Window) -> Plane | None:
    """The node's window on its (C, H, W) input: a 1-D window runs along W of (C, 1, L)."""
    shape = ctx.static_shape(0)
    if shape is None or len(shape) not in (3, 4) or found.spatial != len(shape) - 2:
        ctx.problem("dynamic-shape", f"needs a known 3-D or 4-D input, found {shape}", SIZE_REMEDY)
        return None
    if found.spatial == 1:
        return Plane(
            (1, shape[2]),
            (1, found.kernel[0]),
            (1, found.strides[0]),
            (1, found.dilations[0]),
            (0, found.begins[0]),
            (0, found.ends[0]),
        )
    return Plane(
        (shape[2], shape[3]),
        (found.kernel[0], found.kernel[1]),
        (found.strides[0], found.strides[1]),
        (found.dilations[0], found.dilations[1]),
        (found.begins[0], found.begins[1]),
        (found.ends[0], found.ends[1]),
    )
