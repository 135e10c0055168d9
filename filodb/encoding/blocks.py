"""numba kernels of the compact (v2) vector pieces: varints and the centred PFOR block.

The v2 formats (timestamps 2, values 4 and 5, ``docs/encoding.md``) write their header
integers as LEB128 varints (zigzagged when signed) instead of fixed 4/8-byte fields, and their
runs of integers as a *centred* PFOR block: the values minus their median, zigzagged, packed at
the width that makes the block smallest, the wider ones kept apart as varint patches::

    [center: zigzag varint][width u8][n_patch varint][n x width bits][patches]
    patch = [position gap varint][zigzag value varint]   (gap from the previous patch's position)

Centring is what makes a counter's increments (0..19, say) or a timestamp's jitter (0..4 ms)
cost the bits of their spread rather than of their size. Every read is bounds-checked and a
failed one returns -1; nothing reads outside ``buf[:end]``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from filodb.encoding.bits import bitlen, pack_bits, unpack_bits


@nb.njit(cache=True)
def put_uv(out: np.ndarray, p: int, u: np.uint64) -> int:
    """Write ``u`` as an unsigned LEB128 varint at ``out[p]``; the next position."""
    while u >= np.uint64(0x80):
        out[p] = np.uint8((u & np.uint64(0x7F)) | np.uint64(0x80))
        u >>= np.uint64(7)
        p += 1
    out[p] = np.uint8(u)
    return p + 1


@nb.njit(cache=True)
def put_sv(out: np.ndarray, p: int, v: np.int64) -> int:
    """Write ``v`` zigzagged as a varint."""
    return put_uv(out, p, np.uint64((v << np.int64(1)) ^ (v >> np.int64(63))))


@nb.njit(cache=True)
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


@nb.njit(cache=True)
def get_sv(buf: np.ndarray, p: int, end: int) -> tuple[np.int64, int]:
    u, p = get_uv(buf, p, end)
    return np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1)), p


@nb.njit(cache=True)
def uv_len(u: np.uint64) -> int:
    n = 1
    while u >= np.uint64(0x80):
        u >>= np.uint64(7)
        n += 1
    return n


@nb.njit(cache=True)
def cpfor_encode(v: np.ndarray) -> np.ndarray:
    """The centred PFOR block of the int64 values ``v`` (wrapping arithmetic: any int64)."""
    n = len(v)
    center = np.int64(0)
    if n:  # the median of at most 63 evenly spaced values: cheap, and robust to outliers
        step = max(1, n // 63)
        center = np.sort(v[::step])[len(v[::step]) // 2]
    z = np.empty(n, np.uint64)
    hist = np.zeros(65, np.int64)
    for i in range(n):
        d = v[i] - center
        u = np.uint64((d << np.int64(1)) ^ (d >> np.int64(63)))
        z[i] = u
        hist[bitlen(u)] += 1
    best_w, best_cost = 64, 1 << 62
    wider, patch_cost = n, 0
    for b in range(65):
        patch_cost += hist[b] * (2 + max(1, (b + 6) // 7))
    for w in range(65):  # patches cost about a 2-byte gap plus the value's varint
        wider -= hist[w]
        patch_cost -= hist[w] * (2 + max(1, (w + 6) // 7))
        cost = (w * n + 7) // 8 + patch_cost
        if cost < best_cost:
            best_cost, best_w = cost, w
    n_patch = n - np.sum(hist[: best_w + 1])
    out = np.zeros(10 + 1 + 10 + (best_w * n + 7) // 8 + 20 * n_patch, np.uint8)
    p = put_sv(out, 0, center)
    out[p] = best_w
    p = put_uv(out, p + 1, np.uint64(n_patch))
    packed = z.copy()
    if best_w < 64:
        for i in range(n):
            if bitlen(z[i]) > best_w:
                packed[i] = 0
    p = pack_bits(packed, best_w, out, p)
    prev = 0
    if best_w < 64:
        for i in range(n):
            if bitlen(z[i]) > best_w:
                p = put_uv(out, p, np.uint64(i - prev))
                p = put_uv(out, p, z[i])
                prev = i
    return out[:p]


@nb.njit(cache=True)
def cpfor_decode(buf: np.ndarray, p: int, end: int, n: int, out: np.ndarray) -> int:
    """Read a centred PFOR block of ``n`` values at ``buf[p]`` into the int64 ``out[:n]``;
    the next position, or -1 when it is not one."""
    center, p = get_sv(buf, p, end)
    if p < 0 or p >= end:
        return -1
    width = int(buf[p])
    n_patch_u, p = get_uv(buf, p + 1, end)
    if p < 0 or width > 64 or n_patch_u > np.uint64(n):
        return -1
    n_patch = int(np.int64(n_patch_u))
    if p + (n * width + 7) // 8 > end:
        return -1
    z = np.empty(n, np.uint64)
    p = unpack_bits(buf, p, n, width, z, 0)
    pos = 0
    for _ in range(n_patch):
        gap, p = get_uv(buf, p, end)
        if p < 0 or gap >= np.uint64(n):
            return -1
        pos += int(np.int64(gap))
        if pos >= n:
            return -1
        z[pos], p = get_uv(buf, p, end)
        if p < 0:
            return -1
    for i in range(n):
        u = z[i]
        out[i] = center + (np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1)))
    return p
