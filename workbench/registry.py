"""Converter registries keyed by op or layer type.

Readers and writers register one small function per op family with a decorator.
Registering a key twice is an error, so two converters can never silently compete.
The README's supported-ops tables are generated from these registries.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A mapping from a key (op type, layer type) to one converter function."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[str, F] = {}

    def register(self, *keys: str) -> Callable[[F], F]:
        def decorate(function: F) -> F:
            for key in keys:
                if key in self._entries:
                    raise ValueError(
                        f"{self.name}: {key!r} is registered twice "
                        f"({self._entries[key].__qualname__} and {function.__qualname__})"
                    )
                self._entries[key] = function
            return function

        return decorate

    def get(self, key: str) -> F | None:
        return self._entries.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def rows(self) -> list[tuple[str, str]]:
        """(key, first line of the converter's docstring) for documentation tables."""
        rows = []
        for key in self:
            doc = (self._entries[key].__doc__ or "").strip().splitlines()
            rows.append((key, doc[0] if doc else ""))
        return rows
