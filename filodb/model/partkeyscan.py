"""Many part keys decoded at once: what a shard does with the series it has not seen yet.

:func:`~filodb.model.partkey.labels_of` decodes one part key with msgpack and interns its
pairs: ~3 us a series. Here a batch's part keys are read by numba kernels instead, and only
the strings no other key of the batch has already are made in Python:

1. :func:`unique_spans` numbers byte strings of an arena by first appearance (xxh64 and an
   open-addressing table, bytes compared: exact), so repeated keys are decoded once;
2. :func:`_scan` walks each key as the flat msgpack list :func:`~filodb.model.partkey.part_key`
   writes (an array of an even number of ``str``, every header the shortest msgpack has for
   its length) and gives the byte spans of each (name, value) pair;
3. the pairs are numbered by their bytes (1.), their names by theirs, and each distinct name
   and pair is decoded (UTF-8) once; pairs are interned
   (:func:`~filodb.model.labels.intern_labels`) and the label sets assembled from them.

A key of another shape (a longer header than needed, a non-string item, trailing bytes, bad
UTF-8) makes :func:`decode_part_keys` answer None: the caller decodes the batch one key at a
time with :func:`~filodb.model.partkey.labels_of`, which gives the same label sets, or the
error. Because every accepted key is canonical, it is byte for byte the ``part_key`` of the
label set decoded from it.

:func:`groups_of` is :func:`~filodb.model.partkey.group_of` of many part keys in one call
(XXH32, bit-identical to ``xxhash.xxh32_intdigest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from filodb.model.labels import Labels, intern_labels
from filodb.model.xxh64 import _xxh64, equal_at, u64_at, words


@nb.njit(cache=True, nogil=True)
def _unique(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> Any:  # pragma: no cover - numba
    """Strings ``[a[i], b[i])`` of the words ``w`` numbered by first appearance: per string
    its number; per number its first string and its xxh64."""
    n = len(a)
    cap = 16
    while cap < 2 * n:
        cap <<= 1
    mask = np.uint64(cap - 1)
    slots = np.full(cap, -1, np.int64)
    group = np.empty(n, np.int64)
    first = np.empty(n, np.int64)
    hashes = np.empty(n, np.uint64)
    g = 0
    for i in range(n):
        size = b[i] - a[i]
        h = _xxh64(w, a[i], b[i], np.uint64(0))
        p = h & mask
        while True:
            s = slots[p]
            if s < 0:
                slots[p] = g
                first[g] = i
                hashes[g] = h
                group[i] = g
                g += 1
                break
            j = first[s]
            if hashes[s] == h and b[j] - a[j] == size and equal_at(w, a[i], w, a[j], size):
                group[i] = s
                break
            p = (p + np.uint64(1)) & mask
    return group, first[:g], hashes[:g]


def unique_spans(w: np.ndarray, a: np.ndarray, b: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The byte strings ``[a[i], b[i])`` of an arena (as :func:`~filodb.model.xxh64.words`)
    numbered ``0, 1, ...`` in order of first appearance, equal strings alike: (per string its
    number, per number the index of its first string, per number the string's xxh64)."""
    group, first, hashes = _unique(w, np.asarray(a, np.int64), np.asarray(b, np.int64))
    return group, first, hashes


@nb.njit(cache=True, nogil=True, inline="always")
def _be(data: np.ndarray, p: int, n: int) -> int:  # pragma: no cover - numba
    """The ``n``-byte big-endian unsigned integer at ``p``."""
    x = 0
    for k in range(n):
        x = (x << 8) | int(data[p + k])
    return x


@nb.njit(cache=True, nogil=True, inline="always")
def _str_at(data: np.ndarray, p: int, e: int) -> tuple[int, int]:  # pragma: no cover
    """The payload ``(start, end)`` of the msgpack ``str`` at ``p`` (before ``e``) when its
    header is the shortest for its length, else ``(-1, -1)``."""
    if p >= e:
        return -1, -1
    h = int(data[p])
    if 0xA0 <= h <= 0xBF:
        size, p, least = h & 0x1F, p + 1, 0
    elif h == 0xD9 and p + 2 <= e:
        size, p, least = _be(data, p + 1, 1), p + 2, 32
    elif h == 0xDA and p + 3 <= e:
        size, p, least = _be(data, p + 1, 2), p + 3, 256
    elif h == 0xDB and p + 5 <= e:
        size, p, least = _be(data, p + 1, 4), p + 5, 65536
    else:
        return -1, -1
    if size < least or p + size > e:
        return -1, -1
    return p, p + size


@nb.njit(cache=True, nogil=True)
def _scan(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Any:  # pragma: no cover
    """Each key ``data[starts[i]:ends[i]]`` as a canonical flat msgpack list of strings: (the
    first key that is not one, or -1; pairs per key; per pair where it starts, where its name
    starts and ends, where its value starts and ends)."""
    k = len(starts)
    total = 0
    for i in range(k):
        total += ends[i] - starts[i]
    cap = total // 2 + 1  # a pair takes 2 bytes at least
    ps = np.empty(cap, np.int64)
    na = np.empty(cap, np.int64)
    nz = np.empty(cap, np.int64)
    va = np.empty(cap, np.int64)
    vz = np.empty(cap, np.int64)
    counts = np.zeros(k, np.int64)
    m = 0
    for i in range(k):
        p, e = starts[i], ends[i]
        if p >= e:
            return i, counts, ps[:0], na[:0], nz[:0], va[:0], vz[:0]
        h = int(data[p])
        if 0x90 <= h <= 0x9F:
            n, p, least = h & 0x0F, p + 1, 0
        elif h == 0xDC and p + 3 <= e:
            n, p, least = _be(data, p + 1, 2), p + 3, 16
        elif h == 0xDD and p + 5 <= e:
            n, p, least = _be(data, p + 1, 4), p + 5, 65536
        else:
            return i, counts, ps[:0], na[:0], nz[:0], va[:0], vz[:0]
        if n < least or n % 2:
            return i, counts, ps[:0], na[:0], nz[:0], va[:0], vz[:0]
        for _ in range(n // 2):
            ps[m] = p
            na[m], nz[m] = _str_at(data, p, e)
            if na[m] < 0:
                return i, counts, ps[:0], na[:0], nz[:0], va[:0], vz[:0]
            va[m], vz[m] = _str_at(data, nz[m], e)
            if va[m] < 0:
                return i, counts, ps[:0], na[:0], nz[:0], va[:0], vz[:0]
            p = vz[m]
            m += 1
        if p != e:
            return i, counts, ps[:0], na[:0], nz[:0], va[:0], vz[:0]
        counts[i] = n // 2
    return -1, counts, ps[:m], na[:m], nz[:m], va[:m], vz[:m]


@dataclass
class DecodedKeys:
    """Label sets of many part keys, and their pairs as the tag index takes them
    (:meth:`~filodb.memstore.index.TagIndex.add_many`)."""

    labels: list[Labels]  # per key, its pairs interned
    counts: np.ndarray  # per key: its number of pairs
    pair_of: np.ndarray  # per pair of each key (keys in order): its distinct pair's number
    names: list[str]  # the distinct label names, by first appearance
    name_of: np.ndarray  # per distinct pair (numbered by first appearance): its name's number
    values: list[str]  # per distinct pair: its value


def decode_part_keys(data: np.ndarray, starts: np.ndarray, ends: np.ndarray
                     ) -> DecodedKeys | None:  # fmt: skip
    """The label sets of the part keys ``data[starts[i]:ends[i]]`` (``data`` uint8), as
    :func:`~filodb.model.partkey.labels_of` would give them; None when a key is not a
    canonical part key (then nothing is decoded: the caller goes key by key)."""
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    bad, counts, ps, na, nz, va, vz = _scan(data, starts, ends)
    if bad >= 0:
        return None
    w = words(data)
    pair_of, first, _ = _unique(w, ps, vz)
    name_of, name_first, _ = _unique(w, na[first], nz[first])
    raw = data.tobytes()
    nf = first[name_first]
    try:
        names = _strings(raw, na[nf], nz[nf])
        values = _strings(raw, va[first], vz[first])
    except UnicodeDecodeError:
        return None
    pairs = intern_labels(zip(map(names.__getitem__, name_of.tolist()), values, strict=True))
    labels = _assemble(np.fromiter(pairs, object, len(pairs))[pair_of], counts)
    return DecodedKeys(labels, counts, pair_of, names, name_of, values)


def _assemble(flat: np.ndarray, counts: np.ndarray) -> list[Labels]:
    """The tuples of ``counts[i]`` items of ``flat`` (an object array) in turn: made by
    ``zip`` (in C) for the keys of each number of pairs."""
    if not len(counts):
        return []
    c0 = int(counts[0])
    if (counts == c0).all():
        return list(zip(*[iter(flat.tolist())] * c0, strict=True)) if c0 else [()] * len(counts)
    out = np.empty(len(counts), object)
    owner = np.repeat(counts, counts)  # per pair: its key's number of pairs
    for c in np.unique(counts).tolist():
        keys = counts == c
        part = (
            list(zip(*[iter(flat[owner == c].tolist())] * c, strict=True))
            if c
            else [()] * int(keys.sum())
        )
        out[keys] = np.fromiter(part, object, len(part))
    got: list[Labels] = out.tolist()
    return got


def _strings(raw: bytes, a: np.ndarray, b: np.ndarray) -> list[str]:
    """``raw[a[i]:b[i]]`` decoded as UTF-8 (UnicodeDecodeError where one is not)."""
    return [raw[x:y].decode() for x, y in zip(a.tolist(), b.tolist(), strict=True)]


_Q1 = np.uint64(0x9E3779B1)
_Q2 = np.uint64(0x85EBCA77)
_Q3 = np.uint64(0xC2B2AE3D)
_Q4 = np.uint64(0x27D4EB2F)
_Q5 = np.uint64(0x165667B1)
_M32 = np.uint64(0xFFFFFFFF)


@nb.njit(cache=True, nogil=True, inline="always")
def _rotl32(x: Any, r: int) -> Any:
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & _M32


@nb.njit(cache=True, nogil=True, inline="always")
def _lane(v: Any, x: Any) -> Any:
    return (_rotl32((v + x * _Q2) & _M32, 13) * _Q1) & _M32


@nb.njit(cache=True, nogil=True)
def _xxh32_many(w: np.ndarray, a: np.ndarray, b: np.ndarray, num_groups: Any
                ) -> np.ndarray:  # fmt: skip  # pragma: no cover - numba
    """``xxh32(string) % num_groups`` of the strings ``[a[i], b[i])`` of the words ``w``."""
    out = np.empty(len(a), np.int64)
    for i in range(len(a)):
        p, e = a[i], b[i]
        if e - p >= 16:
            v1 = (_Q1 + _Q2) & _M32
            v2 = _Q2
            v3 = np.uint64(0)
            v4 = (np.uint64(1 << 32) - _Q1) & _M32
            while p + 16 <= e:
                v1 = _lane(v1, u64_at(w, p) & _M32)
                v2 = _lane(v2, u64_at(w, p + 4) & _M32)
                v3 = _lane(v3, u64_at(w, p + 8) & _M32)
                v4 = _lane(v4, u64_at(w, p + 12) & _M32)
                p += 16
            h = (_rotl32(v1, 1) + _rotl32(v2, 7) + _rotl32(v3, 12) + _rotl32(v4, 18)) & _M32
        else:
            h = _Q5
        h = (h + np.uint64(e - a[i])) & _M32
        while p + 4 <= e:
            h = (_rotl32((h + (u64_at(w, p) & _M32) * _Q3) & _M32, 17) * _Q4) & _M32
            p += 4
        while p < e:
            byte = (w[p >> 3] >> np.uint64((p & 7) * 8)) & np.uint64(0xFF)
            h = (_rotl32((h + byte * _Q5) & _M32, 11) * _Q1) & _M32
            p += 1
        h ^= h >> np.uint64(15)
        h = (h * _Q2) & _M32
        h ^= h >> np.uint64(13)
        h = (h * _Q3) & _M32
        h ^= h >> np.uint64(16)
        out[i] = np.int64(h % np.uint64(num_groups))
    return out


def groups_of(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, num_groups: int
              ) -> np.ndarray:  # fmt: skip
    """:func:`~filodb.model.partkey.group_of` of the part keys ``data[starts[i]:ends[i]]``
    (int64), in one numba call."""
    out: np.ndarray = _xxh32_many(words(data), np.asarray(starts, np.int64),
                                  np.asarray(ends, np.int64), np.uint64(num_groups))  # fmt: skip
    return out
