"""Pooling as ``nn.MaxPool{n}d``, ``nn.AvgPool{n}d`` and ``nn.AdaptiveAvgPool{n}d(1)``.

PyTorch pools pad both ends of an axis by the same amount, at most half the
(dilated) kernel. Other ONNX pads become an ``F.pad`` first: with ``-inf`` for max
pooling (a padded cell never wins) and zeros for average pooling that counts the
padding (``count_include_pad = 1``). Average pooling that excludes the padding
cannot be written that way and is reported. ONNX's ``count_include_pad``
defaults to 0, PyTorch's to True, so it is always written when pads are present.
Global pooling is adaptive pooling to size 1.
"""

from __future__ import annotations

from ...graph.pads import Window
from .codegen import Expr, call, ints, single_or_tuple
from .convolution import torch_pad_order
from .program import EMITTERS, TorchNodeContext


def _spatial_rank(ctx: TorchNodeContext) -> int | None:
    rank = ctx.rank(0)
    if rank is None or rank < 3 or rank > 5:
        ctx.unsupported(
            f"{ctx.node.op_type} on an input of rank {rank}; PyTorch pools 1-d to 3-d inputs "
            "with batch and channel axes",
            "run shape inference or simplify the model first" if rank is None else "",
        )
        return None
    return rank - 2


def _pool_window(ctx: TorchNodeContext, kind: str) -> Window | None:
    """The pooling's resolved window, or None after reporting what PyTorch's pools cannot do."""
    found = ctx.window()
    if found is None:
        return None
    if found.spatial not in (1, 2, 3):
        ctx.unsupported(f"{ctx.node.op_type} with a {found.spatial}-d kernel; PyTorch pools 1-d to 3-d")
    elif len(ctx.node.outputs) > 1 and ctx.node.outputs[1].uses():
        ctx.unsupported("MaxPool's indices output is used", "the generated model computes values only")
    elif kind == "Avg" and any(d != 1 for d in found.dilations):
        ctx.unsupported(f"AveragePool with dilations {list(found.dilations)}; nn.AvgPool has no dilation")
    return found if ctx.ok else None


def _fits_the_layer(kind: str, found: Window) -> bool:
    """Whether PyTorch's own ``padding`` holds the pads: the same at both ends and at
    most half the (dilated) kernel."""
    reach = [((k - 1) * d + 1) // 2 if kind == "Max" else k // 2 for k, d in zip(found.kernel, found.dilations)]
    return found.symmetric and all(p <= r for p, r in zip(found.begins, reach))


def _pool(ctx: TorchNodeContext, kind: str) -> None:
    found = _pool_window(ctx, kind)
    if found is None:
        return
    include_pad = bool(ctx.attr("count_include_pad", 0))
    source = ctx.x(0)
    padding = found.begins
    if not _fits_the_layer(kind, found):
        if kind == "Avg" and not include_pad:
            ctx.unsupported(
                f"AveragePool with pads {list(found.pads)} that PyTorch cannot apply and count_include_pad=0",
                "pad the input explicitly in the source model, or use symmetric pads",
            )
            return
        fill = {"value": '-float("inf")'} if kind == "Max" else {}
        pads = ints(torch_pad_order(found.begins, found.ends))
        source = ctx.temporary(call("F.pad", source, pads, **fill), f"{source}_padded")
        padding = (0,) * found.spatial
    layer = call(f"nn.{kind}Pool{found.spatial}d", **_pool_arguments(ctx, kind, found, padding, include_pad))
    ctx.assign(call(ctx.module(layer), source))


def _pool_arguments(
    ctx: TorchNodeContext, kind: str, found: Window, padding: tuple[int, ...], include_pad: bool
) -> dict[str, Expr]:
    arguments: dict[str, Expr] = {
        "kernel_size": single_or_tuple(found.kernel),
        "stride": single_or_tuple(found.strides),
    }
    if any(p != 0 for p in padding):
        arguments["padding"] = single_or_tuple(padding)
    if kind == "Max" and any(d != 1 for d in found.dilations):
        arguments["dilation"] = single_or_tuple(found.dilations)
    if ctx.attr("ceil_mode", 0):
        arguments["ceil_mode"] = "True"
    if kind == "Avg" and any(p != 0 for p in padding) and not include_pad:
        arguments["count_include_pad"] = "False"
    return arguments


@EMITTERS.register("MaxPool")
def emit_max_pool(ctx: TorchNodeContext) -> None:
    """nn.MaxPool1d/2d/3d (pads PyTorch cannot apply: F.pad with -inf first)"""
    _pool(ctx, "Max")


@EMITTERS.register("AveragePool")
def emit_average_pool(ctx: TorchNodeContext) -> None:
    """nn.AvgPool1d/2d/3d with ceil_mode and count_include_pad"""
    _pool(ctx, "Avg")


@EMITTERS.register("GlobalAveragePool")
def emit_global_average_pool(ctx: TorchNodeContext) -> None:
    """nn.AdaptiveAvgPool1d/2d/3d(1)"""
    spatial = _spatial_rank(ctx)
    if spatial is not None:
        ctx.assign(call(ctx.module(call(f"nn.AdaptiveAvgPool{spatial}d", "1")), ctx.x(0)))


@EMITTERS.register("GlobalMaxPool")
def emit_global_max_pool(ctx: TorchNodeContext) -> None:
    """nn.AdaptiveMaxPool1d/2d/3d(1)"""
    spatial = _spatial_rank(ctx)
    if spatial is not None:
        ctx.assign(call(ctx.module(call(f"nn.AdaptiveMaxPool{spatial}d", "1")), ctx.x(0)))
