"""Pooling as ``nn.MaxPool{n}d``, ``nn.AvgPool{n}d`` and ``nn.AdaptiveAvgPool{n}d(1)``.

PyTorch pools pad both ends of an axis by the same amount, at most half the
(dilated) kernel. Other ONNX pads become an ``F.pad`` first: with ``-inf`` for max
pooling (a padded cell never wins) and zeros for average pooling that counts the
padding (``count_include_pad = 1``). With ``ceil_mode`` the end pad is then chosen
so that windows in floor mode cover what ONNX's ceil-mode windows cover:
``out = ceil((n + begin + end - reach) / stride) + 1``, less one if the last window
would start beyond the input and its begin pad, and the end padded (or cropped) to
``(out - 1) * stride + reach``, where ``reach = (kernel - 1) * dilation + 1``.

Average pooling that PyTorch's layer cannot hold (dilated windows, and other pads
when the padding is not counted or with ``ceil_mode``) calls ``average_pool``, a
function ``model.py`` carries that divides each window's sum by its count of
counted cells (``helpers.average_pool``, where the math is stated).
ONNX's ``count_include_pad`` defaults to 0, PyTorch's to True, so it is always
written when pads are present. Global pooling is adaptive pooling to size 1. MaxPool's ``Indices`` output
(row-major, or column-major with ``storage_order``, over the whole input tensor)
is PyTorch's ``return_indices`` renumbered by ``max_pool_indices``.
"""

from __future__ import annotations

from ...graph.pads import Window, pooled_size
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


def _pool_window(ctx: TorchNodeContext) -> Window | None:
    """The pooling's resolved window, or None after reporting what PyTorch's pools cannot do."""
    found = ctx.window()
    if found is None:
        return None
    if found.spatial not in (1, 2, 3):
        ctx.unsupported(f"{ctx.node.op_type} with a {found.spatial}-d kernel; PyTorch pools 1-d to 3-d")
    return found if ctx.ok else None


def _fits_the_layer(kind: str, found: Window) -> bool:
    """Whether PyTorch's own ``padding`` holds the pads: the same at both ends and at
    most half the (dilated) kernel."""
    reach = [((k - 1) * d + 1) // 2 if kind == "Max" else k // 2 for k, d in zip(found.kernel, found.dilations)]
    return found.symmetric and all(p <= r for p, r in zip(found.begins, reach))


def _floor_mode_ends(ctx: TorchNodeContext, found: Window) -> tuple[int, ...] | None:
    """End pads after which floor-mode windows are ONNX's ceil-mode windows (see the
    module docstring); None after reporting spatial sizes that are not known."""
    shape = ctx.shape(0)
    sizes = [size for size in shape[2:] if size is not None] if shape is not None else []
    if len(sizes) != found.spatial:
        ctx.problem(
            "dynamic-shape",
            f"{ctx.node.op_type} with ceil_mode and pads {list(found.pads)} needs the input's spatial size",
            "give the model fixed input shapes and simplify it first",
        )
        return None
    ends = []
    for size, k, s, d, begin, end in zip(sizes, found.kernel, found.strides, found.dilations, found.begins, found.ends):
        reach = (k - 1) * d + 1
        out = pooled_size(size, reach, s, begin, end, ceil=True, padded=True)
        ends.append((out - 1) * s + reach - size - begin)
    return tuple(ends)


def _pool(ctx: TorchNodeContext, kind: str) -> None:
    found = _pool_window(ctx)
    if found is None:
        return
    include_pad = bool(ctx.attr("count_include_pad", 0))
    ceil = bool(ctx.attr("ceil_mode", 0))
    fits = _fits_the_layer(kind, found)
    if kind == "Avg" and (any(d != 1 for d in found.dilations) or (not fits and (ceil or not include_pad))):
        _average_pool(ctx, found, ceil, include_pad)
        return
    source = ctx.x(0)
    padding = found.begins
    if not fits:
        ends = _floor_mode_ends(ctx, found) if ceil else found.ends
        if ends is None:
            return
        fill = {"value": '-float("inf")'} if kind == "Max" else {}
        pads = ints(torch_pad_order(found.begins, ends))
        source = ctx.temporary(call("F.pad", source, pads, **fill), f"{source}_padded")
        padding, ceil = (0,) * found.spatial, False
    arguments = _pool_arguments(kind, found, padding, ceil, include_pad)
    if kind == "Max" and ctx.output_used(1):
        _max_pool_with_indices(ctx, found, arguments, source)
        return
    layer = call(f"nn.{kind}Pool{found.spatial}d", **arguments)
    ctx.assign(call(ctx.module(layer), source))


def _max_pool_with_indices(ctx: TorchNodeContext, found: Window, arguments: dict[str, Expr], source: str) -> None:
    """Values and ONNX's Indices: nn.MaxPool's return_indices renumbered by ``max_pool_indices``."""
    layer = call(f"nn.MaxPool{found.spatial}d", **arguments, return_indices="True")
    pooled = ctx.temporary(call(ctx.module(layer), source), "pooled")
    ctx.assign(f"{pooled}[0]")
    renumbering: dict[str, Expr] = {}
    if ctx.attr("storage_order", 0):
        renumbering["storage_order"] = "1"
    if source != ctx.x(0):  # pooled after an F.pad
        renumbering["padded"] = f"{source}.shape[2:]"
        renumbering["begins"] = ints(found.begins)
    sizes = f"{ctx.x(0)}.shape[2:]"
    ctx.assign(call(ctx.helper("max_pool_indices"), f"{pooled}[1]", sizes, **renumbering), 1)


def _average_pool(ctx: TorchNodeContext, found: Window, ceil: bool, include_pad: bool) -> None:
    """``average_pool(x, kernel, ...)``: ONNX's definition written out, non-defaults as keywords."""
    arguments: dict[str, Expr] = {}
    for name, values, default in (
        ("strides", found.strides, 1),
        ("dilations", found.dilations, 1),
        ("begins", found.begins, 0),
        ("ends", found.ends, 0),
    ):
        if any(value != default for value in values):
            arguments[name] = ints(values)
    if ceil:
        arguments["ceil_mode"] = "True"
    if include_pad:
        arguments["count_include_pad"] = "True"
    ctx.assign(call(ctx.helper("average_pool"), ctx.x(0), ints(found.kernel), **arguments))


def _pool_arguments(
    kind: str, found: Window, padding: tuple[int, ...], ceil: bool, include_pad: bool
) -> dict[str, Expr]:
    arguments: dict[str, Expr] = {
        "kernel_size": single_or_tuple(found.kernel),
        "stride": single_or_tuple(found.strides),
    }
    if any(p != 0 for p in padding):
        arguments["padding"] = single_or_tuple(padding)
    if kind == "Max" and any(d != 1 for d in found.dilations):
        arguments["dilation"] = single_or_tuple(found.dilations)
    if ceil:
        arguments["ceil_mode"] = "True"
    if kind == "Avg" and any(p != 0 for p in padding) and not include_pad:
        arguments["count_include_pad"] = "False"
    return arguments


@EMITTERS.register("MaxPool")
def emit_max_pool(ctx: TorchNodeContext) -> None:
    """nn.MaxPool1d/2d/3d (pads PyTorch cannot apply: F.pad with -inf first); Indices renumbered as ONNX numbers them"""
    _pool(ctx, "Max")


@EMITTERS.register("AveragePool")
def emit_average_pool(ctx: TorchNodeContext) -> None:
    """nn.AvgPool1d/2d/3d with ceil_mode and count_include_pad; average_pool() for windows the layer cannot hold"""
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
