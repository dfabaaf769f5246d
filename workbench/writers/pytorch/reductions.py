"""Reductions (``ReduceMean/Sum/Max/Min/Prod/L1/L2/SumSquare``) and ``ArgMax/ArgMin``.

The axes are an attribute up to opset 17 (``ReduceSum``: up to 12) and an input
after; the converter contract reads them wherever the model's opset keeps them.
Without axes every axis is reduced, unless ``noop_with_empty_axes = 1``, which
makes the op the identity. ``keepdims`` defaults to 1 in ONNX and to
False in PyTorch, so it is always written.
"""

from __future__ import annotations

from collections.abc import Callable

from .codegen import Expr, call, ints
from .program import EMITTERS, TorchNodeContext

_REDUCTIONS = {
    "ReduceMean": "torch.mean",
    "ReduceSum": "torch.sum",
    "ReduceMax": "torch.amax",
    "ReduceMin": "torch.amin",
    "ReduceL1": None,
    "ReduceL2": None,
    "ReduceSumSquare": None,
    "ReduceProd": "torch.prod",
}

_SUMS_OF: dict[str, Callable[[str], Expr]] = {
    # reductions written as a sum of a transformed input: x -> the summed expression
    "ReduceL1": lambda source: call("torch.abs", source),
    "ReduceSumSquare": lambda source: f"{source} * {source}",
}


def _reduced_axes(ctx: TorchNodeContext) -> list[int] | None:
    """The axes to reduce (every axis when none are given), or None after a problem."""
    axes = ctx.param("axes")
    if axes is not None and axes.size:
        return [int(a) for a in axes.reshape(-1)]
    rank = ctx.rank(0)
    if rank is None:
        ctx.unsupported(f"{ctx.node.op_type} over all axes of an input of unknown rank", "run shape inference first")
        return None
    return list(range(rank))


@EMITTERS.register(*_REDUCTIONS)
def emit_reduce(ctx: TorchNodeContext) -> None:
    """torch.mean / sum / amax / amin / prod over the axes, keepdim as in the graph"""
    op = ctx.node.op_type
    if not ctx.require_constants("axes"):
        return
    given = ctx.param("axes")
    if (given is None or given.size == 0) and ctx.attr("noop_with_empty_axes", 0):
        ctx.alias(0)
        return
    axes = _reduced_axes(ctx)
    if axes is None:
        return
    keepdim = "True" if ctx.attr("keepdims", 1) else "False"
    source = ctx.x(0)
    if op == "ReduceProd":
        if len(axes) != 1:
            ctx.unsupported(f"ReduceProd over {len(axes)} axes; torch.prod reduces one axis")
            return
        ctx.assign(call("torch.prod", source, dim=str(axes[0]), keepdim=keepdim))
    elif op == "ReduceL2":
        ctx.assign(call("torch.linalg.vector_norm", source, dim=ints(axes), keepdim=keepdim))
    elif op in _SUMS_OF:
        ctx.assign(call("torch.sum", _SUMS_OF[op](source), dim=ints(axes), keepdim=keepdim))
    else:
        ctx.assign(call(str(_REDUCTIONS[op]), source, dim=ints(axes), keepdim=keepdim))


@EMITTERS.register("ArgMax", "ArgMin")
def emit_arg_extreme(ctx: TorchNodeContext) -> None:
    """torch.argmax / torch.argmin (first index of ties)"""
    if ctx.attr("select_last_index", 0):
        ctx.unsupported(f"{ctx.node.op_type} with select_last_index=1; PyTorch returns the first index")
        return
    function = "torch.argmax" if ctx.node.op_type == "ArgMax" else "torch.argmin"
    keepdim = "True" if ctx.attr("keepdims", 1) else "False"
    ctx.assign(call(function, ctx.x(0), dim=str(int(ctx.attr("axis", 0))), keepdim=keepdim))
