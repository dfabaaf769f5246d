"""Unique names within one scope (graph values, Caffe layers and blobs, Python identifiers)."""

from __future__ import annotations

from collections.abc import Iterable


class UniqueNames:
    """Hands out names unique in one scope: a taken name gets ``_1``, ``_2``, ..."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._taken = set(reserved)

    def claim(self, base: str) -> str:
        candidate, counter = base, 0
        while candidate in self._taken:
            counter += 1
            candidate = f"{base}_{counter}"
        self._taken.add(candidate)
        return candidate

    def __contains__(self, name: str) -> bool:
        return name in self._taken
