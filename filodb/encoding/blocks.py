"""numba kernels of the compact (v2) vector pieces: varints and the range block.

The v2 formats (values 5, timestamps 6, ``docs/encoding.md``) write their header integers as
LEB128 varints (zigzagged when signed) instead of fixed 4/8-byte fields, and their runs of
integers as a *range block*: each value minus the low end ``lo`` of a range of ``R = span + 1``
values, ``k`` of them packed as one base-``R`` number in ``b`` bits (the smallest ``b`` with
``R**k <= 2**b``; ``k = 1`` is plain frame-of-reference packing), values outside the range
kept apart as varint patches::

    [lo: zigzag varint][span varint][k u8][b u8][n_patch varint]
    [ceil(n / k) groups x b bits, little-endian][patches]
    group = u0 + u1 R + u2 R^2 + ...     (u = value - lo; patched slots hold 0)
    patch = [position gap varint][zigzag (value - lo) varint]   (gap from the previous patch)

A range of 5 (timestamps jittering 0-4 ms on their grid) costs 7 bits for 3 values, 2.33 bits
a value instead of 3; a counter's increments in 0..19 cost 13 bits for 3, 4.33 instead of 5:
the spread of the values, not their size or a power of two. The encoder tries the full range
and ranges that leave the extremes of a 63-value sample out (a counter reset, a missed scrape).
Every read is bounds-checked and a failed one returns -1; nothing reads outside ``buf[:end]``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from filodb.encoding.bits import bitlen, pack_bits, unpack_bits


@nb.njit(cache=True, nogil=True)
def put_uv(out: np.ndarray, p: int, u: np.uint64) -> int:
    """Write ``u`` as an unsigned LEB128 varint at ``out[p]``; the next position."""
    while u >= np.uint64(0x80):
        out[p] = np.uint8((u & np.uint64(0x7F)) | np.uint64(0x80))
        u >>= np.uint64(7)
        p += 1
    out[p] = np.uint8(u)
    return p + 1


@nb.njit(cache=True, nogil=True)
def put_sv(out: np.ndarray, p: int, v: np.int64) -> int:
    """Write ``v`` zigzagged as a varint."""
    return put_uv(out, p, np.uint64((v << np.int64(1)) ^ (v >> np.int64(63))))


@nb.njit(cache=True, nogil=True)
def get_uv(buf: np.ndarray, p: int, end: int) -> tuple[np.uint64, int]:
    """(value, next position) of the varint at ``buf[p]``; position -1 when it runs past
    ``end`` or past 10 bytes."""
    v = np.uint64(0)
    for k in range(10):
        if p < 0 or p >= end:
            return v, -1
        b = np.uint64(buf[p])
        p += 1
        v |= (b & np.uint64(0x7F)) << np.uint64(7 * k)
        if b < np.uint64(0x80):
            return v, p
    return v, -1


@nb.njit(cache=True, nogil=True)
def get_sv(buf: np.ndarray, p: int, end: int) -> tuple[np.int64, int]:
    u, p = get_uv(buf, p, end)
    return np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1)), p


@nb.njit(cache=True, nogil=True)
def uv_len(u: np.uint64) -> int:
    n = 1
    while u >= np.uint64(0x80):
        u >>= np.uint64(7)
        n += 1
    return n


@nb.njit(cache=True, nogil=True)
def _radix(span: np.uint64) -> tuple[int, int]:
    """(k, b): pack k values of ``span + 1`` possible values into b bits, the fewest bits a
    value with b <= 32 and k <= 8 (k = 1, b = bitlen(span) when nothing beats it)."""
    best_k, best_b = 1, bitlen(span)
    if span == 0 or span >= np.uint64(1 << 16):
        return best_k, best_b
    r = np.uint64(span) + np.uint64(1)
    p = r
    for k in range(2, 9):
        p *= r
        b = bitlen(p - np.uint64(1))
        if b > 32:
            break
        if b * best_k < best_b * k:  # fewer bits a value
            best_k, best_b = k, b
    return best_k, best_b


@nb.njit(cache=True, nogil=True)
def _range_cost(v: np.ndarray, lo: np.int64, hi: np.int64) -> tuple[int, int]:
    """(bytes, patches) of the block of ``v`` with the range ``[lo, hi]``."""
    n = len(v)
    n_patch = 0
    for i in range(n):
        if v[i] < lo or v[i] > hi:
            n_patch += 1
    k, b = _radix(np.uint64(hi - lo))
    return ((n + k - 1) // k * b + 7) // 8 + 4 * n_patch, n_patch


@nb.njit(cache=True, nogil=True)
def sorted_sample(v: np.ndarray) -> np.ndarray:
    """Every ``len(v) // 63``-th value of ``v`` (at most ~126), sorted: by insertion into a
    fresh array (numba's ``np.sort`` recurses with the array as an argument, an atomic
    reference count increment and decrement a step: most of a chunk encoder's)."""
    step = max(1, len(v) // 63)
    m = (len(v) + step - 1) // step
    out = np.empty(m, v.dtype)
    for i in range(m):
        x = v[i * step]
        j = i
        while j > 0 and out[j - 1] > x:
            out[j] = out[j - 1]
            j -= 1
        out[j] = x
    return out


@nb.njit(cache=True, nogil=True)
def range_encode(v: np.ndarray) -> np.ndarray:
    """The range block of the int64 values ``v`` (any int64: spans are unsigned)."""
    n = len(v)
    out = np.zeros(40 + 9 * n + 20, np.uint8)
    lo = v.min() if n else np.int64(0)
    hi = v.max() if n else np.int64(0)
    if hi - lo < 0 or np.uint64(hi - lo) >= np.uint64(1 << 62):  # wraps: the whole int64 line
        lo, hi = np.int64(-(2**63)), np.int64(2**63 - 1)
    elif n >= 16:  # try leaving the sample's extremes out as patches (resets, missed scrapes)
        sample = sorted_sample(v)
        best, _ = _range_cost(v, lo, hi)
        for a in range(3):
            for z in range(3):
                if a == 0 and z == 0:
                    continue
                clo, chi = sample[a], sample[len(sample) - 1 - z]
                if chi < clo:
                    continue
                cost, _ = _range_cost(v, clo, chi)
                if cost < best:
                    best, lo, hi = cost, clo, chi
    span = np.uint64(hi - lo)
    k, b = _radix(span)
    p = put_sv(out, 0, lo)
    p = put_uv(out, p, span)
    out[p] = k
    out[p + 1] = b
    n_patch = 0
    for i in range(n):
        if v[i] < lo or v[i] > hi:
            n_patch += 1
    p = put_uv(out, p + 2, np.uint64(n_patch))
    groups = (n + k - 1) // k
    packed = np.zeros(groups, np.uint64)
    r = span + np.uint64(1)
    for g in range(groups):
        acc = np.uint64(0)
        for t in range(min(k, n - g * k) - 1, -1, -1):
            x = v[g * k + t]
            u = np.uint64(x - lo) if lo <= x <= hi else np.uint64(0)
            acc = u if k == 1 else acc * r + u
        packed[g] = acc
    p = pack_bits(packed, b, out, p)
    prev = 0
    for i in range(n):
        if v[i] < lo or v[i] > hi:
            p = put_uv(out, p, np.uint64(i - prev))
            p = put_sv(out, p, v[i] - lo)
            prev = i
    return out[:p]


@nb.njit(cache=True, nogil=True)
def range_decode(buf: np.ndarray, p: int, end: int, n: int, out: np.ndarray) -> int:
    """Read a range block of ``n`` values at ``buf[p]`` into the int64 ``out[:n]``; the next
    position, or -1 when it is not one."""
    lo, p = get_sv(buf, p, end)
    span, p = get_uv(buf, p, end)
    if p < 0 or p + 2 > end:
        return -1
    k = int(buf[p])
    b = int(buf[p + 1])
    n_patch_u, p = get_uv(buf, p + 2, end)
    if p < 0 or k < 1 or k > 8 or b > 64 or n_patch_u > np.uint64(n):
        return -1
    if k > 1 and (span >= np.uint64(1 << 16) or bitlen(span) * k > 64):
        return -1
    n_patch = int(np.int64(n_patch_u))
    groups = (n + k - 1) // k
    if p + (groups * b + 7) // 8 > end:
        return -1
    z = np.empty(groups, np.uint64)
    p = unpack_bits(buf, p, groups, b, z, 0)
    if k == 1:
        for i in range(n):
            out[i] = lo + np.int64(z[i])
    else:
        r = span + np.uint64(1)
        i = 0
        for g in range(groups):
            acc = z[g]
            for _ in range(k):
                if i < n:
                    out[i] = lo + np.int64(acc % r)
                    acc //= r
                    i += 1
    pos = 0
    for _ in range(n_patch):
        gap, p = get_uv(buf, p, end)
        if p < 0 or gap >= np.uint64(n):
            return -1
        pos += int(np.int64(gap))
        if pos >= n:
            return -1
        d, p = get_sv(buf, p, end)
        if p < 0:
            return -1
        out[pos] = lo + d
    return p
