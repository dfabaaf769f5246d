"""The per-layer walk of ``compare``: both runners' layer streams consumed together.

Each side's ``run_layers`` stream is numbered by entry (name and call), and the side
that is behind (whose next needed pair comes first) is always advanced, so a
tensor is kept only until its partner arrives; what is kept per pair is
``ErrorStats``. A runner that can skip outputs is asked only for the compared
ones and for the *probes*: its outputs before the first compared one, checked for
being an affine map of the input (a preprocessing layer).

The first divergence is the first pair, in the reference's execution order, that
fails ``max_abs <= atol + rtol * max|reference|``: every compared layer before it
agrees, so its inputs agree and the layer itself is where things go wrong. Its
tensors are kept, with the shapes of the layers that had agreed when it was
settled, and handed to the cause finders (``compare_causes``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..runners import Runner
from .compare_align import Alignment, Entry, Pair
from .compare_causes import Evidence, SideEvidence, find_cause
from .compare_results import Divergence, PairComparison
from .compare_stats import ErrorStats, affine_of, error_stats

Numbered = Iterator[tuple[int | None, str, np.ndarray]]  # (entry index or None, name, array)


def _numbered(stream: Iterator[tuple[str, np.ndarray]], index: Mapping[tuple[str, int], int]) -> Numbered:
    seen: dict[str, int] = {}
    for name, array in stream:
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        yield index.get((name, occurrence)), name, array


def final_pairs(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], atol: float, rtol: float
) -> list[PairComparison]:
    """Final outputs paired by position."""
    pairs = []
    for (ref_name, a), (cand_name, b) in zip(reference.items(), candidate.items()):
        stats = error_stats(a, b)
        pairs.append(PairComparison(source=ref_name, target=cand_name, stats=stats, ok=stats.passes(atol, rtol)))
    return pairs


def _final_names(runner: Runner) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for output, layer in runner.output_layers.items():
        found.setdefault(layer, []).append(output)
    return found


@dataclass(kw_only=True)
class _Stream:
    """One side's layer outputs as they arrive."""

    runner: Runner
    feed: list[np.ndarray]
    entries: list[Entry]
    pair_of: dict[int, int]  # entry index -> pair id
    order: list[int]  # pair ids in this side's order
    probes: set[int]  # unpaired entries before the first paired one
    items: Numbered
    atol: float  # for recognising a preprocessing layer
    cursor: int = 0
    received: set[int] = field(default_factory=set)
    waiting: dict[int, np.ndarray] = field(default_factory=dict)  # pair id -> tensor whose partner has not come
    finals: dict[str, np.ndarray] = field(default_factory=dict)
    final_names: dict[str, list[str]] = field(default_factory=dict)  # run_layers name -> final outputs it holds
    preprocessing: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    done: bool = False

    @classmethod
    def open(
        cls,
        *,
        runner: Runner,
        feed: list[np.ndarray],
        entries: list[Entry],
        pairs: Sequence[Pair],
        side: int,
        atol: float,
    ) -> _Stream:
        pair_of = {pair[side]: pid for pid, pair in enumerate(pairs)}
        first = min(pair_of, default=len(entries))
        index = {(entry.name, entry.occurrence): i for i, entry in enumerate(entries)}
        # only what is compared or probed, and the final outputs (a runner that can skip the rest does)
        needed = {entries[i].name for i in [*pair_of, *range(first)]} | set(runner.output_layers.values())
        return cls(
            runner=runner,
            feed=feed,
            entries=entries,
            pair_of=pair_of,
            order=[pair_of[i] for i in sorted(pair_of)],
            probes=set(range(first)),
            items=_numbered(runner.run_layers(feed, needed), index),
            atol=atol,
            final_names=_final_names(runner),
        )

    def next_needed(self) -> float:
        """The pair id this side will deliver next (infinity when it has delivered all)."""
        while self.cursor < len(self.order) and self.order[self.cursor] in self.received:
            self.cursor += 1
        return self.order[self.cursor] if self.cursor < len(self.order) else math.inf

    def pull(self) -> tuple[int, np.ndarray] | None:
        """The next output: ``(pair id, tensor)`` when it is compared, else None
        (a final output or a probe is noted on the way)."""
        try:
            index, name, array = next(self.items)
        except StopIteration:
            self.done = True
            return None
        for output in self.final_names.get(name, ()):
            self.finals[output] = array  # the last entry of the name holds the final value
        if index in self.probes:
            self._probe(name, array)
        pid = self.pair_of.get(index) if index is not None else None
        if pid is not None:
            self.received.add(pid)
            return pid, array
        return None

    def _probe(self, name: str, array: np.ndarray) -> None:
        for given in self.feed:
            fit = affine_of(array, given, self.atol) if np.shape(given) == np.shape(array) else None
            if fit is not None:
                self.preprocessing[name] = fit

    def final_outputs(self) -> dict[str, np.ndarray]:
        """The final outputs, from the stream, or from one more run when it lacked some."""
        if set(self.finals) != set(self.runner.output_names):
            self.finals = self.runner.run(self.feed)
        return {name: self.finals[name] for name in self.runner.output_names}


@dataclass(frozen=True)
class _Failure:
    """The earliest failing pair so far, with what its cause is looked for in."""

    pid: int
    reference: np.ndarray
    candidate: np.ndarray
    earlier_shapes: tuple[tuple[int, ...], ...]


class LayerWalk:
    """Compare every aligned pair of two runners' layer outputs, streaming."""

    def __init__(
        self,
        *,
        reference: Runner,
        candidate: Runner,
        feeds: tuple[list[np.ndarray], list[np.ndarray]],
        alignment: Alignment,
        atol: float,
        rtol: float,
    ) -> None:
        self.alignment = alignment
        self.atol, self.rtol = atol, rtol
        pairs = alignment.pairs
        self.reference = _Stream.open(
            runner=reference, feed=feeds[0], entries=alignment.reference, pairs=pairs, side=0, atol=atol
        )
        self.candidate = _Stream.open(
            runner=candidate, feed=feeds[1], entries=alignment.candidate, pairs=pairs, side=1, atol=atol
        )
        self.results: dict[int, PairComparison] = {}
        self.passed_shapes: list[tuple[int, ...]] = []
        self.failure: _Failure | None = None

    def run(self) -> LayerWalk:
        """Consume both streams, always advancing the side that is behind."""
        ref, cand = self.reference, self.candidate
        while not (ref.done and cand.done):
            if cand.done or (not ref.done and ref.next_needed() <= cand.next_needed()):
                self._advance(ref, cand, is_reference=True)
            else:
                self._advance(cand, ref, is_reference=False)
        return self

    def _advance(self, side: _Stream, other: _Stream, *, is_reference: bool) -> None:
        pulled = side.pull()
        if pulled is None:
            return
        pid, array = pulled
        partner = other.waiting.pop(pid, None)
        if partner is None:
            side.waiting[pid] = array
        else:
            self._settle(pid, *((array, partner) if is_reference else (partner, array)))

    def _settle(self, pid: int, reference: np.ndarray, candidate: np.ndarray) -> None:
        r, c = self.alignment.pairs[pid]
        ref_entry, cand_entry = self.alignment.reference[r], self.alignment.candidate[c]
        stats: ErrorStats = error_stats(reference, candidate)
        passed = stats.passes(self.atol, self.rtol)
        self.results[pid] = PairComparison(
            source=ref_entry.name,
            target=cand_entry.name,
            stats=stats,
            ok=passed,
            layers=ref_entry.sources or cand_entry.sources,
        )
        if passed and reference.shape not in self.passed_shapes:
            self.passed_shapes.append(reference.shape)
        if not passed and (self.failure is None or pid < self.failure.pid):
            self.failure = _Failure(pid, reference, candidate, tuple(self.passed_shapes))

    def layers(self) -> list[PairComparison]:
        """Every compared pair, in reference order."""
        return [self.results[pid] for pid in sorted(self.results)]

    def outputs(self) -> list[PairComparison]:
        return final_pairs(self.reference.final_outputs(), self.candidate.final_outputs(), self.atol, self.rtol)

    def divergence(self) -> Divergence | None:
        """The first failing pair, the pair that agreed before it, and the likely cause."""
        if self.failure is None:
            return None
        failure = self.failure
        pair = self.results[failure.pid]
        earlier = [self.results[pid] for pid in sorted(self.results) if pid < failure.pid]
        evidence = Evidence(
            reference=self._side_evidence(self.reference, "reference", pair.source, failure.reference),
            candidate=self._side_evidence(self.candidate, "candidate", pair.target, failure.candidate),
            atol=self.atol,
            rtol=self.rtol,
            earlier_shapes=failure.earlier_shapes,
        )
        return Divergence(pair=pair, previous=earlier[-1] if earlier else None, cause=find_cause(evidence))

    @staticmethod
    def _side_evidence(stream: _Stream, label: str, output: str, tensor: np.ndarray) -> SideEvidence:
        return SideEvidence(
            label=label,
            runner=stream.runner,
            output=output,
            feed=stream.feed,
            tensor=tensor,
            preprocessing=stream.preprocessing,
        )


__all__ = ["LayerWalk", "final_pairs"]
