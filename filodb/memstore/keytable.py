"""A shard's series by part key: every series' part key in one byte arena and an
open-addressing hash table over them (xxh64, linear probing), so the part keys of a whole
batch are found with one numba call. Lookups compare the bytes: exact, whatever the hashes
(equal hashes of different part keys are two entries, as in any hash table).

Series ids are dense (``0 .. len - 1``, the order they were added); :meth:`PartKeyTable.keep`
renumbers them as the shard's purge does. Memory: the part keys' bytes, 16 bytes of offset
and hash per series, and 4 bytes per table slot (at most half of them used).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from filodb.model.borrow import borrowed
from filodb.model.xxh64 import _xxh64, equal_at, words


@nb.njit(cache=True, nogil=True)
def _find(w, ends, hashes, aw, aends, ahash, slots):  # pragma: no cover - numba
    """Ids of the strings of the words ``w`` (``ends``, ``hashes``) in the table whose arena
    is the words ``aw`` (``aends``, ``ahash``), -1 where absent; 8 bytes compared at a time.
    In passes of independent loads (each key's first slot, then that id's hash, then the
    bytes), as the doors' series cache looks up: a series is met once a scrape, so its slot
    and id are rarely in the CPU's caches, and one key at a time waits for each miss."""
    w, aw, aends, ahash = borrowed(w), borrowed(aw), borrowed(aends), borrowed(ahash)
    slots = borrowed(slots)  # all handed to inlined helpers a key (model/borrow.py)
    n = len(ends)
    out = np.empty(n, np.int64)
    mask = np.uint64(len(slots) - 1)
    for i in range(n):
        out[i] = slots[hashes[i] & mask]
    for i in range(n):
        s = out[i]
        if s >= 0 and ahash[s] != hashes[i]:
            out[i] = -2  # another key in the first slot: probe on
    a = 0
    for i in range(n):
        b = ends[i]
        k = b - a
        s = out[i]
        if s >= 0:
            sa = aends[s - 1] if s > 0 else 0
            if aends[s] - sa == k and equal_at(aw, sa, w, a, k):
                a = b
                continue
        if s != -1:  # not this key at its first slot: the whole probe
            out[i] = _probe(w, a, k, hashes[i], aw, aends, ahash, slots)
        a = b
    return out


@nb.njit(cache=True, nogil=True, inline="always")
def _probe(w, a, k, h, aw, aends, ahash, slots):  # pragma: no cover - numba
    """The id of the ``k`` bytes at ``a`` of the words ``w`` (xxh64 ``h``), -1 if absent."""
    mask = np.uint64(len(slots) - 1)
    p = h & mask
    while True:
        s = slots[p]
        if s < 0:
            return -1
        if ahash[s] == h:
            sa = aends[s - 1] if s > 0 else 0
            if aends[s] - sa == k and equal_at(aw, sa, w, a, k):
                return s
        p = (p + np.uint64(1)) & mask


@nb.njit(cache=True, nogil=True)
def _find_hashing(w, ends, aw, aends, ahash, slots):  # pragma: no cover - numba
    """:func:`_find` of strings whose xxh64 is computed here: (ids, hashes, ids absent)."""
    hashes = np.empty(len(ends), np.uint64)
    a = 0
    w = borrowed(w)  # handed to the hash a key (and so to _find)
    for i in range(len(ends)):
        hashes[i] = _xxh64(w, a, ends[i], np.uint64(0))
        a = ends[i]
    out = _find(w, ends, hashes, aw, aends, ahash, slots)
    missing = 0
    for i in range(len(out)):
        if out[i] < 0:
            missing += 1
    return out, hashes, missing


@nb.njit(cache=True, nogil=True)
def _place(slots, ahash, first, last):  # pragma: no cover - numba
    """Put ids ``first .. last - 1`` in the table (they are not in it)."""
    mask = np.uint64(len(slots) - 1)
    for s in range(first, last):
        p = ahash[s] & mask
        while slots[p] >= 0:
            p = (p + np.uint64(1)) & mask
        slots[p] = s


class PartKeyTable:
    """Part keys (bytes) -> dense ids, for batches of part keys at once."""

    def __init__(self) -> None:
        self._data = np.zeros(1 << 12, np.uint8)  # the arena, grown by doubling
        self._ends = np.zeros(1 << 8, np.int64)  # per id: where its part key ends
        self._hash = np.zeros(1 << 8, np.uint64)  # per id: its xxh64
        self._slots = np.full(1 << 9, -1, np.int32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return self._data.nbytes + self._ends.nbytes + self._hash.nbytes + self._slots.nbytes

    def find(self, data: np.ndarray, ends: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """The id of each part key of the arena ``data`` (uint8; key ``i`` ends at ``ends[i]``,
        its xxh64 ``hashes[i]``), -1 where it is not held."""
        n = self._n
        return _find(words(data), ends, hashes, self._data.view(np.uint64), self._ends[:n],
                     self._hash[:n], self._slots)  # fmt: skip

    def find_hashing(self, data: np.ndarray, ends: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
        """:meth:`find` of part keys whose hashes are not known yet, in one numba call:
        (ids, their xxh64, how many are not held)."""
        n = self._n
        return _find_hashing(words(data), ends, self._data.view(np.uint64), self._ends[:n],
                             self._hash[:n], self._slots)  # fmt: skip

    def add(self, data: np.ndarray, ends: np.ndarray, hashes: np.ndarray) -> int:
        """Add part keys not held yet (distinct); they get the next ids. Returns the first."""
        first, k = self._n, len(ends)
        if k == 0:
            return first
        used = int(self._ends[first - 1]) if first else 0
        size = int(ends[-1])
        self._data = _room(self._data, _words_len(used + size))
        self._data[used : used + size] = data[:size]
        self._ends = _room(self._ends, first + k)
        self._hash = _room(self._hash, first + k)
        self._ends[first : first + k] = ends + used
        self._hash[first : first + k] = hashes
        self._n = first + k
        if 2 * self._n > len(self._slots):
            self._rehash()
        else:
            _place(self._slots, self._hash, first, self._n)
        return first

    def part_key(self, i: int) -> bytes:
        a = int(self._ends[i - 1]) if i else 0
        return self._data[a : int(self._ends[i])].tobytes()

    def keep(self, keep: np.ndarray) -> None:
        """Keep the ids where ``keep`` (bool, one per id) is True, renumbered densely."""
        n = self._n
        ends = self._ends[:n]
        starts = np.r_[0, ends[:-1]]
        lens = (ends - starts)[keep]
        new_ends = np.cumsum(lens)
        total = int(new_ends[-1]) if len(lens) else 0
        # byte positions of the kept keys: each key's start, repeated, plus 0 .. len - 1
        pos = np.repeat(starts[keep] - (new_ends - lens), lens) + np.arange(total)
        kept = self._data[pos]
        self._data = _room(np.zeros(0, np.uint8), _words_len(total))
        self._data[:total] = kept
        m = len(lens)
        self._ends = _room(np.zeros(0, np.int64), m)
        self._ends[:m] = new_ends
        hashes = self._hash[:n][keep]
        self._hash = _room(np.zeros(0, np.uint64), m)
        self._hash[:m] = hashes
        self._n = m
        self._rehash()

    def _rehash(self) -> None:
        cap = 1 << 9
        while cap < 2 * self._n:
            cap <<= 1
        self._slots = np.full(cap, -1, np.int32)
        _place(self._slots, self._hash, 0, self._n)


def _words_len(n: int) -> int:
    """Bytes of an arena holding ``n``: a multiple of 8 with a spare word (read as words)."""
    return (n // 8 + 2) * 8


def _room(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with room for ``n`` items (the same array, or a copy twice as large)."""
    if n <= len(a):
        return a
    out = np.zeros(max(n, 2 * len(a), 16), a.dtype)  # multiples of 8 stay multiples of 8
    out[: len(a)] = a
    return out
