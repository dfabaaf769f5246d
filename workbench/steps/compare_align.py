"""Alignment: which reference output each candidate output is compared with.

Each side lists the outputs its runner will yield, in execution order, as ``Entry``
(name, which call of that name, the source layers it stands for). Named rules
propose pairs ``(reference index, candidate index)``; one merge turns the proposals
into the pairs compared.

The rules:

* ``provenance``: a candidate entry that is the last to stand for some source layers
  (an earlier one is inside the layer: the Flatten before an InnerProduct a BatchNorm
  was folded into) is paired with the reference's last entry for each of them. A
  reference entry without provenance stands for its own name.
* ``recorded name``: a reference output without provenance (a recording) is paired
  with the candidate output of its name (the MXNet reader names values as MXNet does).
* ``shared name``: a candidate output without provenance is paired with the
  reference's last output of that name.
* ``same value``: two artifacts of one graph share value names, so an entry with the
  same name, call and sources on both sides (the first call of a shared ReLU) is
  paired.

The merge. The first three rules *anchor* pairs: they rest on provenance or on
recorded names, so they hold whatever order each runtime runs branches in. Of the
reference entries proposed for one candidate entry the latest wins (a convolution
with a BatchNorm folded in, sources ``conv, bn``, is compared with the reference's
``bn`` output, never with its ``conv`` output, which has no counterpart); of the
candidate entries proposed for one reference entry the last wins (a Linear exported
as MatMul + Add ends at the Add). The ``same value`` rule only *fills in*: its pairs
are taken in reference order where both entries are free and the pair keeps the
order of every pair taken before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..runners import Runner

Pair = tuple[int, int]  # (reference entry index, candidate entry index)


@dataclass(frozen=True)
class Entry:
    """One output ``run_layers`` will yield: its name, which call of that name, and
    the source layers it stands for."""

    name: str
    occurrence: int
    sources: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return self.sources or (self.name,)


class SourceNames(Protocol):
    """A corrected map of output names to source layers (``map_names``' ``NameMap``)."""

    def sources_of(self, target: str) -> tuple[str, ...] | None: ...


def layer_entries(runner: Runner, feed: Sequence[np.ndarray], name_map: SourceNames | None = None) -> list[Entry]:
    """The runner's layer outputs in order, with provenance (``name_map`` first)."""
    names = runner.layer_names(list(feed))
    known = runner.layer_sources  # after the names: a runner may build its graph for the feed first
    seen: dict[str, int] = {}
    entries = []
    for name in names:
        sources = tuple(name_map.sources_of(name) or ()) if name_map is not None else ()
        entries.append(Entry(name, seen.get(name, 0), sources or tuple(known.get(name, ()))))
        seen[name] = seen.get(name, 0) + 1
    return entries


# ---------------------------------------------------------------- rules


def _boundaries(candidate: Sequence[Entry]) -> Iterator[tuple[int, Entry, list[str]]]:
    """Candidate entries that end a layer, with the source layers they end: entries
    without provenance, and the last entry standing for each source layer."""
    last = {source: index for index, entry in enumerate(candidate) for source in entry.sources}
    for index, entry in enumerate(candidate):
        ending = [source for source in entry.sources if last[source] == index]
        if ending or not entry.sources:
            yield index, entry, ending


def by_provenance(reference: Sequence[Entry], candidate: Sequence[Entry]) -> Iterator[Pair]:
    position = {source: index for index, entry in enumerate(reference) for source in entry.keys}
    for index, _, ending in _boundaries(candidate):
        yield from ((position[source], index) for source in ending if source in position)


def by_recorded_name(reference: Sequence[Entry], candidate: Sequence[Entry]) -> Iterator[Pair]:
    unsourced = {entry.name: index for index, entry in enumerate(reference) if not entry.sources}
    for index, entry, _ in _boundaries(candidate):
        if entry.name in unsourced:
            yield unsourced[entry.name], index


def by_shared_name(reference: Sequence[Entry], candidate: Sequence[Entry]) -> Iterator[Pair]:
    named = {entry.name: index for index, entry in enumerate(reference)}
    for index, entry, _ in _boundaries(candidate):
        if not entry.sources and entry.name in named:
            yield named[entry.name], index


def by_same_value(reference: Sequence[Entry], candidate: Sequence[Entry]) -> Iterator[Pair]:
    same = {(entry.name, entry.occurrence, entry.keys): index for index, entry in enumerate(candidate)}
    for index, entry in enumerate(reference):
        match = same.get((entry.name, entry.occurrence, entry.keys))
        if match is not None:
            yield index, match


@dataclass(frozen=True)
class Rule:
    name: str
    propose: Callable[[Sequence[Entry], Sequence[Entry]], Iterable[Pair]]
    anchors: bool  # True: its pairs hold in any order; False: taken only where they keep the order


RULES = (
    Rule("provenance", by_provenance, anchors=True),
    Rule("recorded name", by_recorded_name, anchors=True),
    Rule("shared name", by_shared_name, anchors=True),
    Rule("same value", by_same_value, anchors=False),
)


# ---------------------------------------------------------------- merge


def _keeps_order(chosen: dict[int, int], reference: int, candidate: int) -> bool:
    return all(c < candidate for r, c in chosen.items() if r < reference) and all(
        c > candidate for r, c in chosen.items() if r > reference
    )


def merge(proposals: Sequence[tuple[Rule, Sequence[Pair]]]) -> list[Pair]:
    """The pairs compared, in reference order (see the module docstring)."""
    latest: dict[int, int] = {}  # candidate -> latest reference an anchoring rule proposes
    for rule, pairs in proposals:
        for reference, candidate in pairs if rule.anchors else ():
            latest[candidate] = max(latest.get(candidate, reference), reference)
    chosen = {latest[candidate]: candidate for candidate in sorted(latest)}
    taken = set(chosen.values())
    for rule, pairs in proposals:
        for reference, candidate in sorted(pairs) if not rule.anchors else ():
            if reference not in chosen and candidate not in taken and _keeps_order(chosen, reference, candidate):
                chosen[reference] = candidate
                taken.add(candidate)
    return sorted(chosen.items())


def align(reference: Sequence[Entry], candidate: Sequence[Entry], rules: Sequence[Rule] = RULES) -> list[Pair]:
    """``(reference index, candidate index)`` pairs in reference order."""
    return merge([(rule, list(rule.propose(reference, candidate))) for rule in rules])


@dataclass(frozen=True)
class Alignment:
    """Both sides' entries and the pairs compared."""

    reference: list[Entry]
    candidate: list[Entry]
    pairs: list[Pair]

    @classmethod
    def of(
        cls,
        reference: Runner,
        candidate: Runner,
        feeds: tuple[list[np.ndarray], list[np.ndarray]],
        name_map: SourceNames | None = None,
    ) -> Alignment:
        ref_entries = layer_entries(reference, feeds[0])
        cand_entries = layer_entries(candidate, feeds[1], name_map)
        return cls(ref_entries, cand_entries, align(ref_entries, cand_entries))

    def unmatched(self) -> tuple[list[str], list[str]]:
        """The names of the entries on each side that no pair holds."""
        paired_ref = {r for r, _ in self.pairs}
        paired_cand = {c for _, c in self.pairs}
        return (
            [e.name for i, e in enumerate(self.reference) if i not in paired_ref],
            [e.name for i, e in enumerate(self.candidate) if i not in paired_cand],
        )


__all__ = ["RULES", "Alignment", "Entry", "Rule", "align", "layer_entries", "merge"]
