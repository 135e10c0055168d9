"""Decoded vectors of hot chunks, kept for the next query (bounded by bytes).

A dashboard asks for the same chunks every few seconds; decoding them again each time was most
of a leaf's work once the head was gathered without copies. Decoding is a pure function of a
vector's bytes, so the cache is keyed by the encoded ``bytes`` themselves (their hash is
computed once and kept by Python): a chunk that is trimmed, merged or rebuilt has other bytes
and misses, nothing has to be invalidated. Timestamps and values are separate entries, and
series scraped together have byte-identical timestamp vectors: they share one decoded array.

Timestamps and values share one budget (keys are tagged with the column): series scraped
together share their timestamps, so values are nearly all of it, and two halves of the budget
(one per column) left the values half the room: at 10 k series x 6 h a dashboard pass missed
35 % of its vectors in 64 MB. A query whose chunks would not fit in a generation (half the
budget) decodes without the cache (a scan bigger than the cache would only churn it).

A vector is kept the second time it is decoded, not the first (a
:class:`~filodb.model.cache.SeenTable` remembers the hashes of what was decoded): a query over
every series spread over many shards fits a generation shard by shard, and kept everything
it read once (~40 MB of a node's memory after one check over 110 k series, 0.36 kB a series),
evicting what dashboards read again; a dashboard's vectors are kept from its second pass on
and hit from the third. Arrays handed out are read-only.

A node's shards share one cache (the budget is the node's: per shard, 256 shards kept 8 GB
worth of budget and a query over every series filled it): lookups and inserts take its lock,
decoding (numba, without the GIL) does not.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Sequence
from itertools import compress, repeat

import numpy as np

from filodb.encoding import decode_doubles_many, decode_timestamps_many
from filodb.memstore.chunks import Chunk, decode_chunks
from filodb.model.cache import ByteBoundedCache, SeenTable

_ENTRY_BYTES = 160  # the entry, the array object, and the key held beside the chunk's own
START_BYTES = 64 << 20  # the budget a cache starts with (it grows from there up to its cap)
SEEN_BITS = 18  # 2**18 hashes (2 MB) of vectors decoded once: kept when decoded again
GHOSTS_BITS = 18  # 2**18 hashes (2 MB) of values vectors let go


_COUNT = operator.attrgetter("count")
_TS = operator.attrgetter("ts")
_VALS = operator.attrgetter("vals")


def _plain(chunks: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ts, vals, offsets = decode_chunks(chunks)
    return ts, offsets[:-1], vals, offsets


def _weight(a: np.ndarray) -> int:
    return a.nbytes + _ENTRY_BYTES


def _hashes(objs: Sequence[object]) -> np.ndarray:
    """Python's hashes of ``objs`` (a ``bytes`` keeps its own once computed)."""
    return np.fromiter(map(hash, objs), np.int64, len(objs))


class DecodedChunks:
    """:func:`~filodb.memstore.chunks.decode_chunks` through a cache of at most ``max_bytes``:
    it starts with ``start_bytes`` (at most ``max_bytes``) and grows by what queries ask for
    again soon after it let it go."""

    def __init__(self, max_bytes: int, start_bytes: int = START_BYTES) -> None:
        self.cap = max(0, int(max_bytes))
        # keys: (True, timestamps vector) or (False, values vector)
        self._cache: ByteBoundedCache[tuple[bool, bytes], np.ndarray] = ByteBoundedCache(
            min(self.cap, max(0, int(start_bytes))), _weight, self._dropped
        )
        self.hits = 0
        self.misses = 0
        self.grown = 0  # times the budget grew
        # hashes of values vectors recently let go: dropped with an old generation, or decoded
        # around the cache by a query bigger than a generation
        self._ghosts = SeenTable(GHOSTS_BITS)
        self._seen = SeenTable(SEEN_BITS)  # hashes of (column, vector) decoded, not kept
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        """The budget now (grows up to ``cap``)."""
        return self._cache.max_bytes

    @property
    def nbytes(self) -> int:
        return self._cache.nbytes

    def forget(self) -> None:
        with self._lock:
            self._cache.forget()
            self._ghosts.clear()
            self._seen.clear()

    def _dropped(self, old: dict[tuple[bool, bytes], np.ndarray]) -> None:
        self._remember([k[1] for k in old if not k[0]])

    def _remember(self, vectors: list[bytes]) -> None:
        self._ghosts.add(_hashes(vectors))

    def _grow_to(self, want: int) -> None:
        """Raise the budget towards ``want`` (never past ``cap``); under the lock."""
        want = min(self.cap, want)
        if want > self._cache.max_bytes:
            self._cache.max_bytes = want
            self.grown += 1

    def decode(self, chunks: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Timestamps and values of ``chunks`` concatenated, and ``offsets`` (one more entry)."""
        uts, tpos, vals, offsets = self.columns(chunks)
        lens = np.diff(offsets)
        at = np.repeat(tpos - offsets[:-1], lens) + np.arange(len(vals))
        return uts[at], vals, offsets

    def columns(self, chunks: Sequence[Chunk]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """:meth:`decode` without copying shared timestamps again: ``(ts, tpos, vals,
        offsets)``, where chunk ``c``'s values are ``vals[offsets[c]:offsets[c + 1]]`` and its
        timestamps the as many from ``ts[tpos[c]]`` on (series scraped together share one
        decoded timestamp vector: ``ts`` holds each once)."""
        if not chunks or not self._fits(chunks):
            return _plain(chunks)
        return (*self._timestamps(chunks), *self._values(chunks))

    def timestamps(self, chunks: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray]:
        """The timestamps half of :meth:`columns`: ``(ts, tpos)`` (no value is decoded)."""
        if not chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if not self._fits(chunks):
            ts, offsets = decode_timestamps_many([c.ts for c in chunks])
            return ts, offsets[:-1]
        return self._timestamps(chunks)

    def values(self, chunks: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray]:
        """The values half of :meth:`columns`: ``(vals, offsets)`` (no timestamp is decoded)."""
        if not chunks:
            return np.zeros(0, np.float64), np.zeros(1, np.int64)
        if not self._fits(chunks):
            return decode_doubles_many([c.vals for c in chunks])
        return self._values(chunks)

    def _fits(self, chunks: Sequence[Chunk]) -> bool:
        """Whether ``chunks`` go through the cache: a query whose chunks would not fit in a
        generation decodes around it (asked again soon after, the budget grows instead)."""
        need = sum(map(_COUNT, chunks)) * 8 + len(chunks) * _ENTRY_BYTES
        if need > self.max_bytes // 2:
            if need > self.cap // 2:
                return False  # a scan bigger than the cache would only churn it
            vectors = [c.vals for c in chunks]
            with self._lock:  # asked again soon after: grow so that it fits a generation
                again = int(self._ghosts.contains(_hashes(vectors)).sum())
                if 2 * again >= len(vectors):
                    self._grow_to(2 * (need + need // 8))
                else:
                    self._remember(vectors)
                    self._seen.add(_hashes([(True, c.ts) for c in chunks]))  # decoded once
            if need > self.max_bytes // 2:
                return False
        return True

    def _values(self, chunks: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray]:
        vals = self._column(list(zip(repeat(False), map(_VALS, chunks))), False)  # C-level
        offsets = np.zeros(len(vals) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, vals), np.int64, len(vals)), out=offsets[1:])
        return np.concatenate(vals), offsets

    def _timestamps(self, chunks: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray]:
        ts = self._column(list(zip(repeat(True), map(_TS, chunks))), True)  # C-level loops
        # one copy of each distinct timestamps array (the cache hands out one object per
        # vector's bytes), found by identity at C speed
        keys = list(map(id, ts))
        first = dict(zip(keys, range(len(keys)), strict=True))
        uniq = list(first.values())  # a position of each distinct array
        ulens = np.fromiter(map(len, map(ts.__getitem__, uniq)), np.int64, len(uniq))
        ustart = np.zeros(len(uniq), np.int64)
        np.cumsum(ulens[:-1], out=ustart[1:])
        slot = dict(zip(first.keys(), ustart.tolist(), strict=True))
        tpos = np.fromiter(map(slot.__getitem__, keys), np.int64, len(keys))
        return np.concatenate(list(map(ts.__getitem__, uniq))), tpos

    def _column(self, keys: list[tuple[bool, bytes]], is_ts: bool) -> list[np.ndarray]:
        cache = self._cache
        with self._lock:
            got: list[np.ndarray | None] = list(map(cache.get, keys))
            miss = list(compress(range(len(got)), map(operator.is_, got, repeat(None))))
            self.hits += len(got) - len(miss)
            self.misses += len(miss)
        if miss:
            todo = list(dict.fromkeys(keys[i] for i in miss))  # identical vectors decode once
            decode = decode_timestamps_many if is_ts else decode_doubles_many
            flat, offs = decode([k[1] for k in todo])
            flat.flags.writeable = False  # what is handed out as it is: read-only views
            bounds = offs.tolist()
            with self._lock:  # decoded before: kept now (see the module's docstring)
                keep = self._seen.offer(_hashes(todo))
                if not is_ts:  # let go, asked again: kept, and the budget was short
                    again = self._ghosts.contains(_hashes([k[1] for k in todo]))
                    if again.any():
                        keep |= again
                        more = int(np.diff(offs)[again].sum()) * 8 + _ENTRY_BYTES * int(again.sum())
                        self._grow_to(cache.max_bytes + 2 * more)
            done = {}
            kept = []
            for j, (k, kp) in enumerate(zip(todo, keep.tolist(), strict=True)):
                a = flat[bounds[j] : bounds[j + 1]]
                if kp:  # copies: a kept vector must not pin the whole batch
                    a = a.copy()
                    a.flags.writeable = False
                    kept.append((k, a))
                done[k] = a
            if kept:
                with self._lock:
                    for k, a in kept:
                        cache.put(k, a)
            for i in miss:
                got[i] = done[keys[i]]
        return got  # type: ignore[return-value]
