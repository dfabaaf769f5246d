"""Converter registries keyed by op or layer type, and by the version a converter applies from.

Readers and writers register one small function per op family with a decorator.
ONNX operators change between opsets (Softmax normalised a flattened input before
opset 13, Resize-10 had one coordinate transform): a converter for such a change is
registered ``since`` the opset that introduced it, and ``get(op, opset)`` picks the
newest one registered at or below the model's opset, as onnx2torch keys its
converters by (op, since-version). Formats without versions (Caffe layers, MXNet
ops) register everything since version 1 and look up without one.

Registering a key twice for the same version is an error, so two converters can
never silently compete. The README's supported-ops tables are generated from these
registries (``rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """A mapping from a key (op type, layer type) and a since-version to one converter."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[str, dict[int, F]] = {}

    def register(self, *keys: str, since: int = 1) -> Callable[[F], F]:
        """Register the decorated function for ``keys``, applying from version ``since``."""

        def decorate(function: F) -> F:
            for key in keys:
                versions = self._entries.setdefault(key, {})
                if since in versions:
                    raise ValueError(
                        f"{self.name}: {key!r} since version {since} is registered twice "
                        f"({versions[since].__qualname__} and {function.__qualname__})"
                    )
                versions[since] = function
            return function

        return decorate

    def get(self, key: str, version: int | None = None) -> F | None:
        """The converter for ``key`` at ``version`` (the newest registered since a version
        at or below it); without a version, the newest; None when there is none."""
        versions = self._entries.get(key, {})
        usable = [since for since in versions if version is None or since <= version]
        return versions[max(usable)] if usable else None

    def versions(self, key: str) -> list[int]:
        """The versions ``key`` has a converter since, oldest first."""
        return sorted(self._entries.get(key, {}))

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def rows(self) -> list[tuple[str, str]]:
        """(key, first line of each converter's docstring) for documentation tables; a key
        with converters for several versions lists each with the versions it covers."""
        return [(key, "; ".join(self._describe(key))) for key in self]

    def _describe(self, key: str) -> list[str]:
        sinces = self.versions(key)
        lines = []
        for since, following in zip(sinces, [*sinces[1:], None]):
            doc = (self._entries[key][since].__doc__ or "").strip().splitlines()
            first = doc[0] if doc else ""
            if len(sinces) == 1:
                lines.append(first)
            elif following is None:
                lines.append(f"opset {since}+: {first}")
            elif following == since + 1:
                lines.append(f"opset {since}: {first}")
            else:
                lines.append(f"opset {since}–{following - 1}: {first}")
        return lines
