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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

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

    def map_through(self, keys: Sequence[K], fn: Callable[[K], V], lock: threading.Lock
                    ) -> list[V]:  # fmt: skip
        """``[fn(k) for k in keys]`` through the cache: the hits are one C-level dict lookup
        each; the misses are computed and put under ``lock`` (``put`` is not atomic and
        threads share memos)."""
        out = list(map(self.get, keys))
        if None in out:
            with lock:
                for i, got in enumerate(out):
                    if got is None:
                        out[i] = v = fn(keys[i])
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
