"""Reductions (``ReduceMean/Sum/Max/Min/Prod/L1/L2/SumSquare``) and ``ArgMax/ArgMin``.

The axes are an attribute up to opset 17 (``ReduceSum``: up to 12) and an input
after. Without axes every axis is reduced, unless ``noop_with_empty_axes = 1``,
which makes the op the identity. ``keepdims`` defaults to 1 in ONNX and to
False in PyTorch, so it is always written.
"""

from __future__ import annotations

from .codegen import call, ints
from .program import EMITTERS, NodeContext

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

# the opset from which each reduction takes its axes as an input
_AXES_INPUT_SINCE = {op: 13 if op == "ReduceSum" else 18 for op in _REDUCTIONS}


@EMITTERS.register(*_REDUCTIONS)
def emit_reduce(ctx: NodeContext) -> None:
    """torch.mean / sum / amax / amin / prod over the axes, keepdim as in the graph"""
    op = ctx.node.op_type
    if not ctx.needs_constant(1, "the reduction axes"):
        return
    axes = ctx.param(1, "axes", since=_AXES_INPUT_SINCE[op])
    keepdim = "True" if ctx.attr("keepdims", 1) else "False"
    if axes is None or axes.size == 0:
        if ctx.attr("noop_with_empty_axes", 0):
            ctx.alias(0)
            return
        rank = ctx.rank(0)
        if rank is None:
            ctx.unsupported(f"{op} over all axes of an input of unknown rank", "run shape inference first")
            return
        axes_list = list(range(rank))
    else:
        axes_list = [int(a) for a in axes.reshape(-1)]
    dims = ints(axes_list)
    source = ctx.x(0)
    if op == "ReduceProd":
        if len(axes_list) != 1:
            ctx.unsupported(f"ReduceProd over {len(axes_list)} axes; torch.prod reduces one axis")
            return
        ctx.assign(call("torch.prod", source, dim=str(axes_list[0]), keepdim=keepdim))
    elif op == "ReduceL1":
        ctx.assign(call("torch.sum", call("torch.abs", source), dim=dims, keepdim=keepdim))
    elif op == "ReduceL2":
        ctx.assign(call("torch.linalg.vector_norm", source, dim=dims, keepdim=keepdim))
    elif op == "ReduceSumSquare":
        ctx.assign(call("torch.sum", f"{source} * {source}", dim=dims, keepdim=keepdim))
    else:
        ctx.assign(call(_REDUCTIONS[op], source, dim=dims, keepdim=keepdim))


@EMITTERS.register("ArgMax", "ArgMin")
def emit_arg_extreme(ctx: NodeContext) -> None:
    """torch.argmax / torch.argmin (first index of ties)"""
    if ctx.attr("select_last_index", 0):
        ctx.unsupported(f"{ctx.node.op_type} with select_last_index=1; PyTorch returns the first index")
        return
    function = "torch.argmax" if ctx.node.op_type == "ArgMax" else "torch.argmin"
    keepdim = "True" if ctx.attr("keepdims", 1) else "False"
    ctx.assign(call(function, ctx.x(0), dim=str(int(ctx.attr("axis", 0))), keepdim=keepdim))
