"""Python source building blocks for the generated ``model.py``: identifiers,
literals and calls that wrap like formatted code.

A call is kept as a small tree (``Call`` with argument strings, nested calls and
lists) until it is rendered, so a long ``torch.cat([...], dim=1)`` or a
``nn.Conv2d(...)`` with many arguments breaks into one argument per line instead
of running past the line limit. Nothing here knows about graphs.
"""

from __future__ import annotations

import builtins
import json
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import SupportsFloat

import numpy as np

from ...graph.names import UniqueNames

LINE_LIMIT = 100
INDENT = "    "


@dataclass(frozen=True)
class ListOf:
    """A Python list or tuple literal whose items are expressions."""

    items: tuple[Expr, ...]
    brackets: str = "[]"


@dataclass(frozen=True)
class Call:
    """``function(arg, ..., key=value, ...)``."""

    function: str
    args: tuple[Expr, ...] = ()
    kwargs: tuple[tuple[str, Expr], ...] = field(default=())


Expr = str | Call | ListOf


def call(function: str, *args: Expr, **kwargs: Expr) -> Call:
    return Call(function, tuple(args), tuple(kwargs.items()))


def flat(expr: Expr) -> str:
    """The expression on one line."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, ListOf):
        inner = ", ".join(flat(item) for item in expr.items)
        if expr.brackets == "()" and len(expr.items) == 1:
            inner += ","
        return f"{expr.brackets[0]}{inner}{expr.brackets[1]}"
    parts = [flat(a) for a in expr.args] + [f"{k}={flat(v)}" for k, v in expr.kwargs]
    return f"{expr.function}({', '.join(parts)})"


def render(prefix: str, expr: Expr, indent: str, suffix: str = "") -> list[str]:
    """Lines for ``prefix + expr + suffix`` at ``indent``. A line too long breaks
    inside the outermost call or list: all items on one indented line if they
    fit, else one item per line (each broken the same way if need be)."""
    line = f"{indent}{prefix}{flat(expr)}{suffix}"
    if len(line) <= LINE_LIMIT or isinstance(expr, str):
        return [line]
    items: list[Expr | tuple[str, Expr]]
    if isinstance(expr, ListOf):
        opening, closing, items = expr.brackets[0], expr.brackets[1], list(expr.items)
    else:
        opening, closing = f"{expr.function}(", ")"
        items = [*expr.args, *expr.kwargs]
    inner = indent + INDENT
    parts = [f"{item[0]}={flat(item[1])}" if isinstance(item, tuple) else flat(item) for item in items]
    hugged = f"{inner}{', '.join(parts)}"
    if len(hugged) <= LINE_LIMIT:
        return [f"{indent}{prefix}{opening}", hugged, f"{indent}{closing}{suffix}"]
    lines = [f"{indent}{prefix}{opening}"]
    for item in items:
        if isinstance(item, tuple):
            lines += render(f"{item[0]}=", item[1], inner, ",")
        else:
            lines += render("", item, inner, ",")
    lines.append(f"{indent}{closing}{suffix}")
    return lines


def number(value: SupportsFloat, dtype: np.dtype | None = None) -> str:
    """A Python literal that reads back as the same value in ``dtype``.

    Floats print with the fewest digits that round-trip in their own precision
    (``1e-05`` rather than ``9.999999747378752e-06`` for a float32 epsilon).
    """
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    as_float = float(value)
    if np.isnan(as_float):
        return 'float("nan")'
    if np.isinf(as_float):
        return 'float("inf")' if as_float > 0 else '-float("inf")'
    kind = np.dtype(dtype) if dtype is not None and np.dtype(dtype).kind == "f" else np.dtype(np.float32)
    text = str(kind.type(as_float))
    if text.startswith("np."):  # numpy scalars print as np.float32(...) in some versions
        text = repr(as_float)
    if "." not in text and "e" not in text and "inf" not in text and "nan" not in text:
        text += ".0"
    return text


def string(text: str) -> str:
    """A double-quoted string literal."""
    return json.dumps(text)


def literal(array: np.ndarray) -> Expr:
    """A (nested) list literal for a small array, or a scalar literal for 0-d."""
    if array.ndim == 0:
        return number(array.item(), array.dtype)
    return ListOf(tuple(literal(item) for item in array))


def ints(values: Iterable[int]) -> ListOf:
    """A tuple literal of ints: ``(1, 2)``."""
    return ListOf(tuple(str(int(v)) for v in values), "()")


def single_or_tuple(values: Iterable[int]) -> str:
    """``3`` when all values are equal (PyTorch expands it), else ``(3, 5)``."""
    values = [int(v) for v in values]
    return str(values[0]) if len(set(values)) == 1 else flat(ints(values))


_PYTHON_NAMES = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))


def identifier(text: str, fallback: str) -> str:
    """``text`` made into a Python identifier: every run of characters that cannot
    appear in one becomes ``_`` (``conv1/3x3_reduce`` -> ``conv1_3x3_reduce``,
    ``layer1.0.conv1`` -> ``layer1_0_conv1``); a leading digit gets ``fallback_``."""
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", text).strip("_")
    if not name:
        return fallback
    if name[0].isdigit():
        name = f"{fallback}_{name}"
    return name


class Namespace(UniqueNames):
    """Unique identifiers in one scope: a taken or reserved name gets ``_1``, ``_2``, ..."""

    def __init__(self, reserved: Iterable[str] = (), *, builtins_too: bool = True) -> None:
        # locals must not shadow builtins; attributes (self.sum) only avoid keywords
        python_names = _PYTHON_NAMES if builtins_too else set(keyword.kwlist)
        super().__init__(set(python_names) | set(reserved))
