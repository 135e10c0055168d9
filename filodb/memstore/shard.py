"""One shard's in-memory store: series registry, tag index, per-series sample buffers.

Ingest takes :class:`SampleBatch` columns and appends them with numpy; the only Python loops
run once per *series* of a batch (registry lookup, buffer slice copy), never per sample.
A sample whose timestamp is not newer than the newest of its series (in the store or earlier
in the same batch) is rejected and counted, as Prometheus does: nothing is reordered.

Queries read through the :class:`~filodb.query.source.SeriesSource` methods. One lock guards
the shard: the ingest thread and query tasks of the worker share it.

This first version keeps raw arrays; compressed chunks, flush and eviction come with the
storage engine.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from filodb.memstore.index import TagIndex
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, Matcher
from filodb.query.source import SeriesBlock

_INITIAL_CAPACITY = 64
_NO_TS = np.iinfo(np.int64).min


@dataclass
class IngestStats:
    """Counts of one :meth:`TimeSeriesShard.ingest` call."""

    accepted: int = 0
    out_of_order: int = 0
    new_series: int = 0


class TimeSeriesShard:
    """Series and samples of one shard of one dataset."""

    def __init__(self, dataset: str, shard: int) -> None:
        self.dataset = dataset
        self.shard = shard
        self._lock = threading.RLock()
        self._ids: dict[Labels, int] = {}
        self._labels: list[Labels] = []
        self._index = TagIndex()
        self._ts: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._count = np.zeros(0, np.int64)
        self._first = np.zeros(0, np.int64)
        self._last = np.zeros(0, np.int64)
        self.samples_ingested = 0
        self.samples_rejected = 0

    # --- ingest ---------------------------------------------------------------------------
    @property
    def num_series(self) -> int:
        return len(self._labels)

    def _series_ids(self, series: Sequence[Labels]) -> tuple[np.ndarray, int]:
        ids = np.empty(len(series), np.int64)
        new = 0
        for i, lb in enumerate(series):
            sid = self._ids.get(lb)
            if sid is None:
                sid = self._ids[lb] = len(self._labels)
                self._labels.append(lb)
                self._index.add(sid, lb)
                self._ts.append(np.empty(_INITIAL_CAPACITY, np.int64))
                self._vals.append(np.empty(_INITIAL_CAPACITY, np.float64))
                new += 1
            ids[i] = sid
        if new:
            grow = len(self._labels) - len(self._count)
            self._count = np.concatenate([self._count, np.zeros(grow, np.int64)])
            self._first = np.concatenate([self._first, np.full(grow, _NO_TS, np.int64)])
            self._last = np.concatenate([self._last, np.full(grow, _NO_TS, np.int64)])
        return ids, new

    def ingest(self, batch: SampleBatch) -> IngestStats:
        """Append a batch; returns how many samples were accepted and rejected."""
        if len(batch) == 0:
            return IngestStats()
        with self._lock:
            ids, new = self._series_ids(batch.series)
            sid = ids[batch.sidx]
            order = np.argsort(sid, kind="stable")  # arrival order kept within a series
            sid, ts, vals = sid[order], batch.ts[order], batch.vals[order]
            ok = _in_order(sid, ts, self._last)
            sid, ts, vals = sid[ok], ts[ok], vals[ok]
            self._append_grouped(sid, ts, vals)
            stats = IngestStats(int(ok.sum()), int(len(ok) - ok.sum()), new)
            self.samples_ingested += stats.accepted
            self.samples_rejected += stats.out_of_order
            return stats

    def _append_grouped(self, sid: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        if len(sid) == 0:
            return
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        ends = np.r_[starts[1:], len(sid)]
        uniq = sid[starts]
        for s, a, b in zip(uniq.tolist(), starts.tolist(), ends.tolist(), strict=True):
            n = int(self._count[s])
            need = n + (b - a)
            if need > len(self._ts[s]):
                cap = max(need, 2 * len(self._ts[s]))
                self._ts[s] = _grow(self._ts[s], n, cap)
                self._vals[s] = _grow(self._vals[s], n, cap)
            self._ts[s][n:need] = ts[a:b]
            self._vals[s][n:need] = vals[a:b]
        counts = ends - starts
        first_time = self._count[uniq] == 0
        self._first[uniq[first_time]] = ts[starts[first_time]]
        self._count[uniq] += counts
        self._last[uniq] = ts[ends - 1]

    # --- SeriesSource ---------------------------------------------------------------------
    def _ids_in_range(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> np.ndarray:
        ids = self._index.match(matchers)
        if len(ids) == 0:
            return ids
        keep = (self._count[ids] > 0) & (self._first[ids] <= end_ms) & (self._last[ids] >= start_ms)
        return ids[keep]

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> SeriesBlock:
        with self._lock:
            out = []
            for s in self._ids_in_range(matchers, start_ms, end_ms).tolist():
                n = int(self._count[s])
                ts = self._ts[s][:n]
                a = int(np.searchsorted(ts, start_ms, "left"))
                b = int(np.searchsorted(ts, end_ms, "right"))
                if b > a:
                    out.append((self._labels[s], ts[a:b].copy(), self._vals[s][a:b].copy()))
        return SeriesBlock.from_series(out)

    def series(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Labels]:
        with self._lock:
            return [self._labels[s] for s in self._ids_in_range(matchers, start_ms, end_ms).tolist()]

    def label_names(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[str]:
        return sorted({k for lb in self.series(matchers, start_ms, end_ms) for k, _ in lb})

    def label_values(
        self, name: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> list[str]:
        vals = {v for lb in self.series(matchers, start_ms, end_ms) for k, v in lb if k == name}
        return sorted(vals)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "series": self.num_series,
                "samples": int(self._count.sum()),
                "samples_ingested": self.samples_ingested,
                "samples_rejected": self.samples_rejected,
            }


def _grow(arr: np.ndarray, n: int, cap: int) -> np.ndarray:
    out = np.empty(cap, arr.dtype)
    out[:n] = arr[:n]
    return out


def _in_order(sid: np.ndarray, ts: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Mask of samples newer than everything before them in their series.

    ``sid`` is grouped (stable-sorted); ``last`` is each series' newest stored timestamp.
    Within a group the running maximum of earlier timestamps is computed with one
    ``maximum.accumulate`` over group-separated dense ranks.
    """
    n = len(ts)
    uniq, rank = np.unique(ts, return_inverse=True)
    starts = np.r_[True, sid[1:] != sid[:-1]]
    group = np.cumsum(starts) - 1
    u = len(uniq)
    key = group.astype(np.int64) * u + rank
    running = np.maximum.accumulate(key) - group * u  # rank of the max so far, incl. self
    prev_rank = np.empty(n, np.int64)
    prev_rank[1:] = running[:-1]
    prev_rank[starts] = -1
    prev_ts = np.where(prev_rank >= 0, uniq[np.maximum(prev_rank, 0)], _NO_TS)
    return ts > np.maximum(prev_ts, last[sid])
