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

from .codegen import call, ints, single_or_tuple
from .convolution import resolve_pads, torch_pad_order
from .program import EMITTERS, NodeContext


def _spatial_rank(ctx: NodeContext) -> int | None:
    rank = ctx.rank(0)
    if rank is None or rank < 3 or rank > 5:
        ctx.unsupported(
            f"{ctx.node.op_type} on an input of rank {rank}; PyTorch pools 1-d to 3-d inputs "
            "with batch and channel axes",
            "run shape inference or simplify the model first" if rank is None else "",
        )
        return None
    return rank - 2


def _pool(ctx: NodeContext, kind: str) -> None:
    kernel = [int(k) for k in ctx.attr("kernel_shape", ())]
    spatial = len(kernel)
    if spatial not in (1, 2, 3):
        ctx.unsupported(f"{ctx.node.op_type} with a {spatial}-d kernel; PyTorch pools 1-d to 3-d")
        return
    if len(ctx.node.outputs) > 1 and ctx.node.outputs[1].uses():
        ctx.unsupported("MaxPool's indices output is used", "the generated model computes values only")
        return
    strides = [int(s) for s in ctx.attr("strides", (1,) * spatial)]
    dilations = [int(d) for d in ctx.attr("dilations", (1,) * spatial)]
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    include_pad = bool(ctx.attr("count_include_pad", 0))
    if kind == "Avg" and any(d != 1 for d in dilations):
        ctx.unsupported(f"AveragePool with dilations {dilations}; nn.AvgPool has no dilation")
        return
    pads = resolve_pads(ctx, kernel, strides, dilations)
    if pads is None:
        return
    begins, ends = pads[:spatial], pads[spatial:]
    reach = [((k - 1) * d + 1) // 2 if kind == "Max" else k // 2 for k, d in zip(kernel, dilations)]
    fits = begins == ends and all(p <= r for p, r in zip(begins, reach))
    source = ctx.x(0)
    padding = begins
    if not fits:
        if kind == "Avg" and not include_pad:
            ctx.unsupported(
                f"AveragePool with pads {pads} that PyTorch cannot apply and count_include_pad=0",
                "pad the input explicitly in the source model, or use symmetric pads",
            )
            return
        fill = {"value": '-float("inf")'} if kind == "Max" else {}
        source = ctx.temporary(call("F.pad", source, ints(torch_pad_order(begins, ends)), **fill), f"{source}_padded")
        padding = [0] * spatial
    arguments = {"kernel_size": single_or_tuple(kernel), "stride": single_or_tuple(strides)}
    if any(p != 0 for p in padding):
        arguments["padding"] = single_or_tuple(padding)
    if kind == "Max" and any(d != 1 for d in dilations):
        arguments["dilation"] = single_or_tuple(dilations)
    if ceil_mode:
        arguments["ceil_mode"] = "True"
    if kind == "Avg" and any(p != 0 for p in padding) and not include_pad:
        arguments["count_include_pad"] = "False"
    layer = call(f"nn.{kind}Pool{spatial}d", **arguments)
    ctx.assign(call(ctx.module(layer), source))


@EMITTERS.register("MaxPool")
def emit_max_pool(ctx: NodeContext) -> None:
    """nn.MaxPool1d/2d/3d (pads PyTorch cannot apply: F.pad with -inf first)"""
    _pool(ctx, "Max")


@EMITTERS.register("AveragePool")
def emit_average_pool(ctx: NodeContext) -> None:
    """nn.AvgPool1d/2d/3d with ceil_mode and count_include_pad"""
    _pool(ctx, "Avg")


@EMITTERS.register("GlobalAveragePool")
def emit_global_average_pool(ctx: NodeContext) -> None:
    """nn.AdaptiveAvgPool1d/2d/3d(1)"""
    spatial = _spatial_rank(ctx)
    if spatial is not None:
        ctx.assign(call(ctx.module(call(f"nn.AdaptiveAvgPool{spatial}d", "1")), ctx.x(0)))


@EMITTERS.register("GlobalMaxPool")
def emit_global_max_pool(ctx: NodeContext) -> None:
    """nn.AdaptiveMaxPool1d/2d/3d(1)"""
    spatial = _spatial_rank(ctx)
    if spatial is not None:
        ctx.assign(call(ctx.module(call(f"nn.AdaptiveMaxPool{spatial}d", "1")), ctx.x(0)))
