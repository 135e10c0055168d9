"""The seam between the query engine and whatever holds the data.

The engine reads series only through :class:`SeriesSource`. A shard's memstore implements it,
so does the in-memory test source, and so does the web tier's fan-out source; the engine does
not know which it has (STYLE rule 1).

Data comes back as a :class:`SeriesBlock`: many series in one CSR layout, so range functions
run over all series at once with numpy instead of a Python loop per series. A source that can
also count samples per window without handing them out (:class:`WindowCountingSource`: the
memstore, from its chunks' metadata) answers ``count_over_time``/``present_over_time`` with
:class:`WindowCounts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from filodb.model.labels import Labels, Matcher

STALE_NAN_BITS = 0x7FF0000000000002  # a Prometheus stale marker: this exact NaN


def is_stale(vals: np.ndarray) -> np.ndarray:
    """Mask of Prometheus stale markers (exact NaN bit pattern)."""
    stale: np.ndarray = vals.view(np.uint64) == STALE_NAN_BITS
    return stale


@dataclass
class SeriesBlock:
    """Samples of many series, concatenated.

    Series ``i`` has label set ``labels[i]`` and samples ``ts[offsets[i]:offsets[i+1]]``
    (int64 milliseconds since the epoch, strictly increasing within a series) and
    ``vals[offsets[i]:offsets[i+1]]`` (float64; a Prometheus stale marker is kept as its exact
    NaN bit pattern). ``offsets`` has ``len(labels) + 1`` int64 entries, starting at 0.
    """

    labels: list[Labels]
    offsets: np.ndarray
    ts: np.ndarray
    vals: np.ndarray

    @classmethod
    def empty(cls) -> SeriesBlock:
        return cls([], np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))

    @classmethod
    def from_series(cls, series: Sequence[tuple[Labels, np.ndarray, np.ndarray]]) -> SeriesBlock:
        """Build a block from ``(labels, ts, vals)`` triples."""
        if not series:
            return cls.empty()
        lens = np.array([len(s[1]) for s in series], np.int64)
        offsets = np.zeros(len(series) + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        ts = np.concatenate([np.asarray(s[1], np.int64) for s in series])
        vals = np.concatenate([np.asarray(s[2], np.float64) for s in series])
        return cls([s[0] for s in series], offsets, ts, vals)

    @staticmethod
    def concat(blocks: Sequence[SeriesBlock]) -> SeriesBlock:
        """Concatenate blocks (e.g. the answers of several shards)."""
        blocks = [b for b in blocks if b.labels]
        if not blocks:
            return SeriesBlock.empty()
        if len(blocks) == 1:
            return blocks[0]
        labels: list[Labels] = []
        offs = [np.zeros(1, np.int64)]
        base = 0
        for b in blocks:
            labels.extend(b.labels)
            offs.append(b.offsets[1:] + base)
            base += int(b.offsets[-1])
        return SeriesBlock(
            labels,
            np.concatenate(offs),
            np.concatenate([b.ts for b in blocks]),
            np.concatenate([b.vals for b in blocks]),
        )

    def __len__(self) -> int:
        return len(self.labels)

    def series(self, i: int) -> tuple[Labels, np.ndarray, np.ndarray]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.labels[i], self.ts[a:b], self.vals[a:b]


class SeriesSource(Protocol):
    """Where the engine gets series from. Times are int64 ms, both bounds inclusive."""

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> SeriesBlock:
        """Samples with ``start_ms <= ts <= end_ms`` of every series matching all matchers.

        Series with no sample in the range may be left out.
        """
        ...

    def series(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Labels]:
        """Label sets of the series matching all matchers that have data in the range."""
        ...

    def label_names(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[str]:
        """Sorted label names of the matching series (all series when ``matchers`` is empty)."""
        ...

    def label_values(
        self, name: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> list[str]:
        """Sorted values of label ``name`` among the matching series."""
        ...


@dataclass
class WindowCounts:
    """Per series and window ``(t - range, t]`` of a range selector, how many samples are not
    stale markers (``counts``: int64 [series, steps]); the series are those with a sample in
    ``[times[0] - range + 1, times[-1]]`` (stale markers included: what a select of that
    range would return), and ``samples`` how many samples that select would read."""

    labels: list[Labels]
    counts: np.ndarray
    samples: int

    @staticmethod
    def concat(parts: Sequence[WindowCounts], n_steps: int) -> WindowCounts:
        parts = [p for p in parts if p.labels]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return WindowCounts([], np.zeros((0, n_steps), np.int64), 0)
        return WindowCounts([lb for p in parts for lb in p.labels],
                            np.concatenate([p.counts for p in parts]),
                            sum(p.samples for p in parts))  # fmt: skip


@runtime_checkable
class WindowCountingSource(Protocol):
    """A source that counts samples per window without handing them out."""

    def window_counts(self, matchers: Sequence[Matcher], times: np.ndarray, range_ms: int
                      ) -> WindowCounts | None:  # fmt: skip
        """:class:`WindowCounts` of the matching series at ``times`` (non-decreasing int64
        ms), or None when this source cannot answer (the caller selects instead)."""
        ...


class UnionSource:
    """The union of disjoint sources (the shards one node serves) as one :class:`SeriesSource`:
    every series lives in exactly one of them, so a selection is their concatenation."""

    def __init__(self, sources: Sequence[SeriesSource]) -> None:
        self.sources = list(sources)

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> SeriesBlock:
        return SeriesBlock.concat([s.select(matchers, start_ms, end_ms) for s in self.sources])

    def window_counts(self, matchers: Sequence[Matcher], times: np.ndarray, range_ms: int
                      ) -> WindowCounts | None:  # fmt: skip
        """Each source's counts, one after the other (no samples are concatenated); None
        unless every source counts."""
        parts = []
        for s in self.sources:
            if not isinstance(s, WindowCountingSource):
                return None
            got = s.window_counts(matchers, times, range_ms)
            if got is None:
                return None
            parts.append(got)
        return WindowCounts.concat(parts, len(times))

    def series(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Labels]:
        return sorted({lb for s in self.sources for lb in s.series(matchers, start_ms, end_ms)})

    def label_names(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[str]:
        return sorted({n for s in self.sources for n in s.label_names(matchers, start_ms, end_ms)})

    def label_values(
        self, name: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> list[str]:
        return sorted(
            {v for s in self.sources for v in s.label_values(name, matchers, start_ms, end_ms)}
        )
