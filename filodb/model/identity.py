"""Series identity resolved once at a door: the raw bytes a protocol carries for a series (the
protobuf Label fields of remote write) map to a small int *slot*; per slot the door keeps the
label set, the part key, the key (xxh64 of the part key) and the route (shard-key hash << 32 |
part-key hash, :func:`~filodb.model.shardkey.shards_of_routes`). A request of series seen
before costs a dict lookup per series and a few numpy gathers: no label set is built or hashed.

The table is bounded: past ``max_series`` slots a new generation starts (series seen again are
parsed again). A lookup works on the generation it started in, so slots never mix
generations; threads share a table (inserts take a lock, lookups do not).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from filodb.model.batch import pick, series_identity
from filodb.model.labels import Labels


@dataclass
class Identities:
    """The identity of each series of a request, in request order."""

    series: list[Labels]
    pks: list[bytes]
    keys: np.ndarray  # uint64
    routes: np.ndarray  # uint64


class _Gen:
    __slots__ = ("slots", "labels", "pks", "keys", "routes")

    def __init__(self) -> None:
        self.slots: dict[bytes, int] = {}
        self.labels: list[Labels] = []
        self.pks: list[bytes] = []
        self.keys = np.zeros(1024, np.uint64)
        self.routes = np.zeros(1024, np.uint64)


class SeriesTable:
    """Raw series bytes -> slot -> identity; bounded by ``max_series`` per generation."""

    def __init__(self, max_series: int = 1_000_000) -> None:
        self.max_series = max_series
        self._gen = _Gen()
        self._lock = threading.Lock()

    def lookup(self, raws: list[bytes], parse: Callable[[bytes, int], Labels]) -> Identities:
        """The identities of ``raws``; ``parse(raw, i)`` builds (and checks: it raises on bad
        input) the label set of a series not seen before, ``i`` its place in the request."""
        g = self._gen
        get = g.slots.get
        slots = [get(r) for r in raws]
        if None in slots:
            for i, s in enumerate(slots):
                if s is None:
                    slots[i] = self._insert(g, raws[i], parse(raws[i], i))
        ints: list[int] = slots  # type: ignore[assignment]
        at = np.array(ints, np.int64)
        return Identities(pick(g.labels, ints), pick(g.pks, ints), g.keys[at], g.routes[at])

    def _insert(self, g: _Gen, raw: bytes, labels: Labels) -> int:
        pk, key, route = series_identity(labels)
        with self._lock:
            s = g.slots.get(raw)
            if s is not None:
                return s
            s = len(g.labels)
            if s >= len(g.keys):
                g.keys = np.concatenate([g.keys, np.zeros(len(g.keys), np.uint64)])
                g.routes = np.concatenate([g.routes, np.zeros(len(g.routes), np.uint64)])
            g.keys[s] = key
            g.routes[s] = route
            g.labels.append(labels)
            g.pks.append(pk)
            g.slots[raw] = s  # last: a lookup that finds the slot finds its identity
            if s + 1 >= self.max_series and self._gen is g:
                self._gen = _Gen()  # later lookups start afresh; this one finishes in g
            return s

    def forget(self) -> None:
        """Start a new generation (benchmarks measure cold paths with it)."""
        self._gen = _Gen()
