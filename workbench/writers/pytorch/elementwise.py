"""Elementwise ops as Python operators and ``torch`` functions.

ONNX broadcasting is NumPy's, as is PyTorch's, so a binary op is the operator
itself; a one-element constant operand is written as a number (``x * 0.5``).
Before opset 7, ``broadcast = 1`` with ``axis`` aligned B with A from ``axis`` on;
where that is not NumPy's alignment (A's last axes) the node is refused.
Unsigned integers wider than 8 bits are refused: PyTorch stores them but has
almost no CPU kernels for them. ONNX ``Div`` of integers truncates towards zero, which PyTorch spells
``torch.div(a, b, rounding_mode="trunc")``; ``Pow`` keeps the base's type, where
PyTorch promotes an integer base to a float exponent's type; ``Mod`` follows the divisor's sign
unless ``fmod = 1`` (``torch.remainder`` / ``torch.fmod``).
"""

from __future__ import annotations

import onnx_ir as ir

from .codegen import Expr, call, flat, string
from .program import EMITTERS, TorchNodeContext, torch_dtype

_OPERATORS = {
    "Add": "+",
    "Sub": "-",
    "Mul": "*",
    "Equal": "==",
    "Greater": ">",
    "Less": "<",
    "GreaterOrEqual": ">=",
    "LessOrEqual": "<=",
}

_FUNCTIONS = {
    "Pow": "torch.pow",
    "And": "torch.logical_and",
    "Or": "torch.logical_or",
    "Xor": "torch.logical_xor",
}

_UNARY = {
    "Sqrt": "torch.sqrt",
    "Exp": "torch.exp",
    "Log": "torch.log",
    "Abs": "torch.abs",
    "Erf": "torch.erf",
    "Reciprocal": "torch.reciprocal",
    "Floor": "torch.floor",
    "Ceil": "torch.ceil",
    "Round": "torch.round",
    "Sign": "torch.sign",
    "Sin": "torch.sin",
    "Cos": "torch.cos",
    "Tan": "torch.tan",
    "Atan": "torch.atan",
    "Not": "torch.logical_not",
    "IsNaN": "torch.isnan",
}


# unsigned integer types PyTorch stores but has almost no CPU arithmetic for
_NO_ARITHMETIC = ("uint16", "uint32", "uint64")
_COMPUTED_ON_ANY_TYPE = ("Mul", "Pow", "Equal")


def _computable(ctx: TorchNodeContext) -> bool:
    """False after reporting an input of a type PyTorch cannot compute this op on."""
    if ctx.node.op_type in _COMPUTED_ON_ANY_TYPE:
        return True
    for index in range(len(ctx.node.inputs)):
        dtype = ctx.dtype(index)
        if dtype is not None and dtype.name in _NO_ARITHMETIC:
            ctx.unsupported(
                f"{ctx.node.op_type} on {dtype.name}: PyTorch has no CPU arithmetic for that type",
                "cast to int64 (or a signed type wide enough) around the op in the source model",
            )
            return False
    return True


def _binary(ctx: TorchNodeContext) -> tuple[str, str]:
    return ctx.operand(0, 1), _legacy_broadcast(ctx, ctx.operand(1, 0))


def _legacy_broadcast(ctx: TorchNodeContext, right: str) -> str:
    """Before opset 7, ``broadcast = 1`` with ``axis`` lines B up with A's axes from
    ``axis`` on; NumPy lines it up with A's last axes. Where the two differ the node is
    refused: no runtime at hand runs these opsets to check a rewritten form against."""
    axis = ctx.attr("axis", None) if ctx.opset < 7 and ctx.attr("broadcast", 0) else None
    constant = ctx.const(1)
    if axis is None or (constant is not None and constant.size == 1):
        return right
    rank, other = ctx.rank(0), ctx.rank(1)
    if rank is None or other is None or rank - (int(axis) % rank) - other != 0:
        ctx.unsupported(
            f"{ctx.node.op_type} (opset {ctx.opset}) broadcasting B along axis {axis} of A, "
            "which NumPy-style broadcasting does not line up the same way",
            "re-export the model with opset 7 or later",
        )
    return right


@EMITTERS.register(*_OPERATORS)
def emit_operator(ctx: TorchNodeContext) -> None:
    """a + b, a - b, a * b, a == b, a > b, ... (NumPy broadcasting in both)"""
    if not _computable(ctx):
        return
    left, right = _binary(ctx)
    ctx.assign(f"{left} {_OPERATORS[ctx.node.op_type]} {right}")


@EMITTERS.register("Div")
def emit_div(ctx: TorchNodeContext) -> None:
    """a / b; truncating torch.div for integers"""
    if not _computable(ctx):
        return
    left, right = _binary(ctx)
    dtype = ctx.dtype(0)
    if dtype is not None and dtype.kind in "iu":
        ctx.assign(call("torch.div", left, right, rounding_mode='"trunc"'))
    else:
        ctx.assign(f"{left} / {right}")


@EMITTERS.register("Mod")
def emit_mod(ctx: TorchNodeContext) -> None:
    """torch.remainder, or torch.fmod when fmod = 1"""
    if not _computable(ctx):
        return
    function = "torch.fmod" if ctx.attr("fmod", 0) else "torch.remainder"
    ctx.assign(call(function, ctx.x(0), ctx.operand(1, 0)))


@EMITTERS.register("Pow", "And", "Or", "Xor")
def emit_binary_function(ctx: TorchNodeContext) -> None:
    """torch.pow, torch.logical_and / or / xor"""
    if not _computable(ctx):
        return
    left = ctx.x(0)
    right = _legacy_broadcast(ctx, ctx.operand(1, 0)) if ctx.node.op_type == "Pow" else ctx.x(1)
    result = call(_FUNCTIONS[ctx.node.op_type], left, right)
    base, exponent = ctx.dtype(0), ctx.dtype(1)
    if ctx.node.op_type == "Pow" and base is not None and exponent is not None and base != exponent:
        # ONNX's Pow has the base's type; PyTorch promotes an integer base to the exponent's float type
        target = torch_dtype(base)
        if target is not None:
            result = call(f"{flat(result)}.to", target)
    ctx.assign(result)


@EMITTERS.register(*_UNARY)
def emit_unary(ctx: TorchNodeContext) -> None:
    """torch.sqrt, torch.exp, torch.erf, ... (the same function in both)"""
    if not _computable(ctx):
        return
    ctx.assign(call(_UNARY[ctx.node.op_type], ctx.x(0)))


@EMITTERS.register("Neg")
def emit_neg(ctx: TorchNodeContext) -> None:
    """-x"""
    if not _computable(ctx):
        return
    ctx.assign(f"-{ctx.x(0)}")


@EMITTERS.register("Max", "Min")
def emit_extreme(ctx: TorchNodeContext) -> None:
    """torch.maximum / torch.minimum, folded over every input"""
    if not _computable(ctx):
        return
    function = "torch.maximum" if ctx.node.op_type == "Max" else "torch.minimum"
    operands = [ctx.x(i) for i in range(len(ctx.node.inputs))]
    if len(operands) == 1:
        ctx.alias(0)
        return
    folded: Expr = operands[0]
    for operand in operands[1:]:
        folded = call(function, folded, operand)
    ctx.assign(folded)


@EMITTERS.register("Sum", "Mean")
def emit_sum(ctx: TorchNodeContext) -> None:
    """a + b + ..., divided by the count for Mean"""
    if not _computable(ctx):
        return
    operands = [ctx.x(i) for i in range(len(ctx.node.inputs))]
    total = " + ".join(operands)
    if ctx.node.op_type == "Mean" and len(operands) > 1:
        total = f"({total}) / {len(operands)}"
    ctx.assign(total)


@EMITTERS.register("Where")
def emit_where(ctx: TorchNodeContext) -> None:
    """torch.where(condition, a, b)"""
    ctx.assign(call("torch.where", ctx.x(0), ctx.operand(1, 2), ctx.operand(2, 1)))


@EMITTERS.register("Cast")
def emit_cast(ctx: TorchNodeContext) -> None:
    """x.to(dtype)"""
    target = torch_dtype(ir.DataType(int(ctx.attr("to"))))
    if target is None:
        ctx.unsupported(f"Cast to {ir.DataType(int(ctx.attr('to'))).name}, which PyTorch has no dtype for")
        return
    ctx.assign(call(f"{ctx.x(0)}.to", target))


@EMITTERS.register("CastLike")
def emit_cast_like(ctx: TorchNodeContext) -> None:
    """x.to(other.dtype)"""
    ctx.assign(call(f"{ctx.x(0)}.to", f"{ctx.x(1)}.dtype"))


@EMITTERS.register("Einsum")
def emit_einsum(ctx: TorchNodeContext) -> None:
    """torch.einsum(equation, ...)"""
    operands = [ctx.x(i) for i in range(len(ctx.node.inputs))]
    ctx.assign(call("torch.einsum", string(ctx.attr("equation")), *operands))
