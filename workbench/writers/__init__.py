"""Writers: ``Model`` -> files of a target framework.

Each target is a module of this package with ``find_problems(model, **options)``
(every op or pitfall that blocks or bends the conversion, all at once) and
``write_<target>(model, outdir, *, name=None, **options)`` returning
``WrittenFiles``. ``write`` picks the module by target name; a target whose
module is absent from this installation is reported with the ones present.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import InputError
from ..graph import Model
from ..targets import TARGET_MODULES, TARGETS
from .files import WrittenFiles, staged_output


def _load_writer(target: str) -> ModuleType | None:
    module_name = f"{__name__}.{TARGET_MODULES[target]}"
    if importlib.util.find_spec(module_name) is None:
        return None
    module = importlib.import_module(module_name)
    has_api = hasattr(module, "find_problems") and hasattr(module, f"write_{target}")
    return module if has_api else None


def available_targets() -> list[str]:
    """The targets this installation can write."""
    return [target for target in TARGETS if _load_writer(target) is not None]


def writer_module(target: str) -> ModuleType:
    """The module writing ``target``, or an InputError listing the targets there are."""
    module = _load_writer(target) if target in TARGET_MODULES else None
    if module is None:
        raise InputError(
            f"no writer for target {target!r}",
            expected=", ".join(available_targets()),
            found=target,
            remedy="choose one of the targets listed",
        )
    return module


def call_with_options(function: Callable, target: str, *args: Any, **options: Any) -> Any:
    """Call a writer's function, refusing options it does not take with the ones it does."""
    accepted = [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(
            f"the {target} writer has no option {', '.join(unknown)}",
            expected=", ".join(accepted) or "no options",
            found=", ".join(f"{k}={v!r}" for k, v in sorted(options.items())),
        )
    return function(*args, **options)


def write(model: Model, outdir: str | Path, target: str, *, name: str | None = None, **options: Any) -> WrittenFiles:
    """Write ``model`` as ``target`` files into ``outdir`` (all files or none)."""
    writer = getattr(writer_module(target), f"write_{target}")
    return call_with_options(writer, target, model, outdir, name=name, **options)


__all__ = ["TARGETS", "WrittenFiles", "available_targets", "staged_output", "write", "writer_module"]
