"""A bounded memo for hot parse paths: label sets by raw key bytes, shards by series, ...

:class:`BoundedCache` is a ``dict`` whose ``get(key)`` is C-level ``dict.__getitem__``: a hit
costs one dict lookup, as with a plain dict. It keeps two generations. When the young one
(the dict itself) holds ``max_entries``, its entries become the old generation (the previous
old one is dropped) and the young one starts empty; a miss in the young one looks in the old
one and, when found there, moves the entry back (``__missing__``). So at most
``2 * max_entries`` entries are held, and every key a clear-when-full dict of ``max_entries``
would still hold is a hit here too, plus those of the generation before.

Values must not be None (None means "not cached"). ``put`` is not atomic: callers that share
a cache between threads hold their own lock around it (a racing ``get`` only misses).

:class:`SeenTable` is a fixed-size table of key hashes ("was this offered before?"), for
caches that admit a key only the second time it is missed: a query that reads every series
once (an ad-hoc scan, a check over everything) then leaves nothing behind and evicts nothing,
while what a dashboard reads again is kept from its second read on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V], Generic[K, V]):
    """``get(key)`` -> value or None; ``put(key, value)``; at most 2 x ``max_entries`` held."""

    __slots__ = ("max_entries", "_old")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        super().__init__()
        self.max_entries = max_entries
        self._old: dict[K, V] = {}

    get = dict.__getitem__  # type: ignore[assignment]  # a miss goes through __missing__

    def __missing__(self, key: K) -> V | None:
        value = self._old.get(key)
        if value is not None:
            self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        if len(self) >= self.max_entries and key not in self:
            self._old = dict(self)
            self.clear()
        self[key] = value

    def map_through(self, keys: Sequence[K], fn: Callable[[K], V], lock: threading.Lock,
                    seen: SeenTable | None = None) -> list[V]:  # fmt: skip
        """``[fn(k) for k in keys]`` through the cache: the hits are one C-level dict lookup
        each; the misses are computed and put under ``lock`` (``put`` is not atomic and
        threads share memos). With ``seen``, a miss is put only when its key was missed
        before (:class:`SeenTable`): a key read once is computed and not kept."""
        out = list(map(self.get, keys))
        if None in out:
            with lock:
                miss = [i for i, got in enumerate(out) if got is None]
                keep = (seen.offer(np.fromiter((hash(keys[i]) for i in miss), np.int64,
                                               len(miss))).tolist()
                        if seen is not None else [True] * len(miss))  # fmt: skip
                for i, k in zip(miss, keep, strict=True):
                    out[i] = v = fn(keys[i])
                    if k:
                        self.put(keys[i], v)
        return out

    def forget(self) -> None:
        """Drop both generations (benchmarks measure cold paths with it)."""
        self._old = {}
        self.clear()

    def discard(self, key: K) -> None:
        """Drop ``key``'s value, if held (either generation)."""
        dict.pop(self, key, None)
        self._old.pop(key, None)


class ByteBoundedCache(BoundedCache[K, V]):
    """A :class:`BoundedCache` sized by the bytes of its values (``weigh(value)``) instead of
    their number: a generation turns old once its values weigh half of ``max_bytes``, so both
    together hold at most about ``max_bytes``. A value heavier than half is not cached;
    ``max_bytes`` 0 caches nothing; it may be raised while in use. ``dropped``, when given, is
    called with each old generation as it is dropped (under the caller's lock)."""

    __slots__ = ("max_bytes", "weigh", "dropped", "_young_bytes", "_old_bytes")

    def __init__(self, max_bytes: int, weigh: Callable[[V], int],
                 dropped: Callable[[dict[K, V]], None] | None = None) -> None:  # fmt: skip
        super().__init__(1 << 62)  # the count never binds
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.weigh = weigh
        self.dropped = dropped
        self._young_bytes = 0
        self._old_bytes = 0

    @property
    def nbytes(self) -> int:
        """What the values held weigh (the old generation's until it is dropped)."""
        return self._young_bytes + self._old_bytes

    def put(self, key: K, value: V) -> None:
        w = self.weigh(value)
        half = self.max_bytes // 2
        if w > half:
            return
        had = dict.get(self, key)
        if had is not None:
            self._young_bytes -= self.weigh(had)
        if self._young_bytes + w > half:
            if self.dropped is not None and self._old:
                self.dropped(self._old)
            self._old = dict(self)
            self._old_bytes = self._young_bytes
            self.clear()
            self._young_bytes = 0
        self[key] = value
        self._young_bytes += w

    def forget(self) -> None:
        super().forget()
        self._young_bytes = self._old_bytes = 0

    def discard(self, key: K) -> None:
        """Drop ``key``'s value, if held (either generation)."""
        had = dict.pop(self, key, None)
        if had is not None:
            self._young_bytes -= self.weigh(had)
        old = self._old.pop(key, None)
        if old is not None:
            self._old_bytes -= self.weigh(old)


class SeenTable:
    """Which key hashes were offered recently: a direct-mapped table of ``2**bits`` hashes
    (8 bytes each, fixed), so remembering costs no object per key. A hash may be forgotten
    when another one lands in its slot (then its key is admitted one read later), and two keys
    whose hashes are equal but for their lowest bit count as one (then one is admitted one read early): both only move
    when a value is cached, never what it is. Not thread-safe: callers hold their cache's
    lock."""

    __slots__ = ("_table", "_bits", "_mask")

    def __init__(self, bits: int = 17) -> None:
        if not 1 <= bits <= 30:
            raise ValueError("bits must be in 1..30")
        self._table = np.zeros(1 << bits, np.uint64)
        self._bits = bits
        self._mask = np.uint64((1 << bits) - 1)

    def _slots(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.asarray(hashes, np.int64).view(np.uint64) | np.uint64(1)  # 0: an empty slot
        return h, (h ^ (h >> np.uint64(self._bits))) & self._mask

    def offer(self, hashes: np.ndarray) -> np.ndarray:
        """Whether each hash was offered before (bool array); all of them are remembered."""
        h, at = self._slots(hashes)
        was: np.ndarray = self._table[at] == h
        self._table[at] = h
        return was

    def add(self, hashes: np.ndarray) -> None:
        h, at = self._slots(hashes)
        self._table[at] = h

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        h, at = self._slots(hashes)
        got: np.ndarray = self._table[at] == h
        return got

    def clear(self) -> None:
        self._table[:] = 0
