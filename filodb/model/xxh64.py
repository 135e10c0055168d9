"""xxh64 of many byte strings at once: one numba call over an arena (the strings back to back,
``ends[i]`` where string ``i`` ends), bit-identical to :func:`xxhash.xxh64_intdigest`.

A log record's part keys are such an arena: a memstore finds its series by their xxh64
(``SampleBatch.keys``) without a Python step per series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba as nb
import numpy as np

_P1 = np.uint64(11400714785074694791)
_P2 = np.uint64(14029467366897019727)
_P3 = np.uint64(1609587929392839161)
_P4 = np.uint64(9650029242287828579)
_P5 = np.uint64(2870177450012600261)


@nb.njit(cache=True, nogil=True, inline="always")
def _rotl(x: Any, r: int) -> Any:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@nb.njit(cache=True, nogil=True, inline="always")
def u64_at(w: np.ndarray, p: int) -> Any:
    """The 8 bytes at ``p`` (little-endian) from the aligned words ``w`` (one spare word)."""
    i = p >> 3
    s = np.uint64((p & 7) * 8)
    if s == 0:
        return w[i]
    return (w[i] >> s) | (w[i + 1] << (np.uint64(64) - s))


@nb.njit(cache=True, nogil=True, inline="always")
def equal_at(wa: np.ndarray, a: int, wb: np.ndarray, b: int, n: int) -> bool:  # pragma: no cover
    """Whether the ``n`` bytes at ``a`` of the words ``wa`` equal those at ``b`` of ``wb``
    (8 bytes compared at a time)."""
    k = 0
    while k + 8 <= n:
        if u64_at(wa, a + k) != u64_at(wb, b + k):
            return False
        k += 8
    if k < n:
        tail = (np.uint64(1) << np.uint64(8 * (n - k))) - np.uint64(1)
        if (u64_at(wa, a + k) ^ u64_at(wb, b + k)) & tail:
            return False
    return True


@nb.njit(cache=True, nogil=True, inline="always")
def _u32(w: np.ndarray, p: int) -> Any:
    return u64_at(w, p) & np.uint64(0xFFFFFFFF)


@nb.njit(cache=True, nogil=True, inline="always")
def _round(acc: Any, x: Any) -> Any:
    acc = acc + x * _P2
    return _rotl(acc, 31) * _P1


@nb.njit(cache=True, nogil=True, inline="always")
def _merge(acc: Any, v: Any) -> Any:
    acc = acc ^ _round(np.uint64(0), v)
    return acc * _P1 + _P4


@nb.njit(cache=True, nogil=True, inline="always")
def _xxh64(w: np.ndarray, a: int, b: int, seed: Any) -> Any:
    p = a
    n = b - a
    if n >= 32:
        v1 = seed + _P1 + _P2
        v2 = seed + _P2
        v3 = seed
        v4 = seed - _P1
        while p + 32 <= b:
            v1 = _round(v1, u64_at(w, p))
            v2 = _round(v2, u64_at(w, p + 8))
            v3 = _round(v3, u64_at(w, p + 16))
            v4 = _round(v4, u64_at(w, p + 24))
            p += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = seed + _P5
    h = h + np.uint64(n)
    while p + 8 <= b:
        h = h ^ _round(np.uint64(0), u64_at(w, p))
        h = _rotl(h, 27) * _P1 + _P4
        p += 8
    if p + 4 <= b:
        h = h ^ (_u32(w, p) * _P1)
        h = _rotl(h, 23) * _P2 + _P3
        p += 4
    while p < b:
        h = h ^ ((w[p >> 3] >> np.uint64((p & 7) * 8)) & np.uint64(0xFF)) * _P5
        h = _rotl(h, 11) * _P1
        p += 1
    h = h ^ (h >> np.uint64(33))
    h = h * _P2
    h = h ^ (h >> np.uint64(29))
    h = h * _P3
    return h ^ (h >> np.uint64(32))


@nb.njit(cache=True, nogil=True)
def _many(w: np.ndarray, ends: np.ndarray, seed: Any) -> np.ndarray:  # pragma: no cover
    n = len(ends)
    out = np.empty(n, np.uint64)
    a = 0
    for i in range(n):
        b = ends[i]
        out[i] = _xxh64(w, a, b, seed)
        a = b
    return out


def xxh64_many(data: np.ndarray, ends: np.ndarray, seed: int = 0) -> np.ndarray:
    """The xxh64 of each string of the arena ``data`` (uint8), string ``i`` ending at
    ``ends[i]`` (int64, ascending, the last at most ``len(data)``)."""
    return _many(words(data), ends, np.uint64(seed))


def words(data: np.ndarray) -> np.ndarray:
    """``data`` (uint8) as aligned little-endian words, one spare word at the end: the 8
    bytes at any position are :func:`u64_at` of it."""
    w = np.zeros(len(data) // 8 + 2, np.uint64)
    w.view(np.uint8)[: len(data)] = data
    return w


def arena(parts: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``parts`` back to back (uint8) and where each ends (int64)."""
    ends = np.cumsum(np.fromiter(map(len, parts), np.int64, len(parts)))
    return np.frombuffer(b"".join(parts), np.uint8), ends
