"""A shard's exemplars: a bounded ring, as Prometheus's circular exemplar storage.

``capacity`` slots are shared by every series of the shard; a new exemplar takes the oldest
slot (the ring's next one), so the store always holds the newest ``capacity`` exemplars.
As in Prometheus, an exemplar is kept only when it is newer than the newest kept exemplar of
its series (an equal one is a duplicate, an older one out of order: both are dropped and
counted). The append is one numba pass over the batch's exemplars; a query is numpy over the
ring (``capacity`` is 100 000 per dataset by default, split across its shards).

The ring's arrays grow (doubling) as exemplars come, up to ``capacity``, and wrap only
then: a shard that never sees an exemplar costs nothing for them. Allocated up front they
cost 32 bytes a slot per dataset whether used or not: 3.2 MB a dataset by default, 205 MB
for a node of 64 datasets (measured: tracemalloc of a node owning 64 x 16 shards).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from filodb.model.labels import Labels

_NONE = np.iinfo(np.int64).min


@nb.njit(cache=True)
def _place(sid, ts, last, ring_sid, ring_ts, ring_vals, vals, pos):  # pragma: no cover - numba
    """Slot of each exemplar (-1: dropped, not newer than its series' newest), and the ring's
    next position. ``last`` (newest kept timestamp per series) is updated in place."""
    cap = len(ring_ts)
    slot = np.full(len(sid), -1, np.int64)
    for i in range(len(sid)):
        s = sid[i]
        if ts[i] <= last[s]:
            continue
        last[s] = ts[i]
        ring_sid[pos] = s
        ring_ts[pos] = ts[i]
        ring_vals[pos] = vals[i]
        slot[i] = pos
        pos += 1
        if pos == cap:
            pos = 0
    return slot, pos


class ExemplarRing:
    """The newest ``capacity`` exemplars of a shard's series (0: none are kept).

    Not thread-safe on its own: the shard calls it under its lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self._sid = np.full(0, -1, np.int64)  # the ring's slots, grown to ``capacity``
        self._ts = np.zeros(0, np.int64)
        self._vals = np.zeros(0, np.float64)
        self._labels = np.empty(0, object)
        self._last = np.zeros(0, np.int64)  # newest kept timestamp per series id
        self._pos = 0
        self.added = 0
        self.dropped = 0  # duplicates and out-of-order ones

    def __len__(self) -> int:
        return int((self._sid >= 0).sum())

    def add(self, sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, labels: list[Labels]) -> int:
        """Keep the exemplars of series ids ``sid`` (arrival order); returns how many were kept."""
        if self.capacity == 0 or len(sid) == 0:
            return 0
        sid = np.asarray(sid, np.int64)
        need = int(sid.max()) + 1
        if need > len(self._last):
            grown = np.full(max(need, 2 * len(self._last)), _NONE, np.int64)
            grown[: len(self._last)] = self._last
            self._last = grown
        have = len(self._ts)
        if have < self.capacity and self._pos + len(sid) > have:  # not full yet: no wrap
            self._grow(min(self.capacity, max(2 * have, self._pos + len(sid), 256)))
        slot, self._pos = _place(sid, np.asarray(ts, np.int64), self._last, self._sid, self._ts,
                                 self._vals, np.asarray(vals, np.float64), self._pos)  # fmt: skip
        kept = slot >= 0
        lab = np.empty(len(labels), object)
        lab[:] = labels
        self._labels[slot[kept]] = lab[kept]  # a slot written twice in one batch: the last wins
        n = int(kept.sum())
        self.added += n
        self.dropped += len(sid) - n
        return n

    def _grow(self, size: int) -> None:
        """Slots for ``size`` exemplars (the ring has not wrapped: its slots are 0..pos)."""
        n = len(self._ts)
        for name, fill in (("_sid", -1), ("_ts", 0), ("_vals", 0), ("_labels", None)):
            old = getattr(self, name)
            new = np.empty(size, old.dtype)
            new[:n] = old
            new[n:] = fill
            setattr(self, name, new)

    def keep_series(self, keep: np.ndarray) -> None:
        """The shard purged the series not in the mask ``keep`` and renumbered the rest in
        order: their exemplars go, the others follow their series' new ids."""
        if self.capacity == 0:
            return
        held = self._sid >= 0
        alive = held.copy()
        alive[held] = keep[self._sid[held]]
        new_id = np.cumsum(keep) - 1
        self._sid[held & ~alive] = -1
        self._labels[held & ~alive] = None
        self._sid[alive] = new_id[self._sid[alive]]
        last = self._last[: len(keep)]
        self._last = last[keep[: len(last)]].copy()

    def select(self, ids: np.ndarray, start_ms: int, end_ms: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Labels]]:  # fmt: skip
        """Exemplars of series ``ids`` with ``start_ms <= ts <= end_ms``, ordered by series id
        then time: (series id, ts, value, labels) columns."""
        if self.capacity == 0 or len(ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), []
        hit = (self._sid >= 0) & (self._ts >= start_ms) & (self._ts <= end_ms)
        hit &= np.isin(self._sid, ids)
        at = np.flatnonzero(hit)
        order = np.lexsort((self._ts[at], self._sid[at]))
        at = at[order]
        return self._sid[at], self._ts[at], self._vals[at], self._labels[at].tolist()
