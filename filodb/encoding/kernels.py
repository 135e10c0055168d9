"""numba kernels: bit packing, and decoding whole chunk vectors (one or many per call).

Compiled on first use and cached on disk (``cache=True``). Byte formats are in
``docs/encoding.md``; the encoders that write them are in :mod:`filodb.encoding.codecs`.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from filodb.encoding.bits import bitlen as _bitlen
from filodb.encoding.bits import pack_bits
from filodb.encoding.bits import unpack_bits as _unpack_bits
from filodb.encoding.blocks import (
    get_sv,
    get_uv,
    put_sv,
    put_uv,
    range_decode,
    range_encode,
    sorted_sample,
)
from filodb.encoding.gorilla import F_XOR, xor_decode_into, xor_encode

TS_DOD = 1  # timestamps: first, first delta, fixed-width zigzag deltas-of-deltas
F_RAW = 0  # doubles: raw little-endian bits
F_DELTA = 2  # doubles: decimal mantissas, fixed-width zigzag deltas, raw exceptions
F_DOD = 3  # doubles: decimal mantissas, fixed-width zigzag deltas-of-deltas, raw exceptions
# F_XOR = 4: doubles, XOR with the previous value (gorilla.py)
F_DEC = 5  # doubles: decimal mantissas, varint header, range block of (d)deltas, exceptions
TS_V2 = 6  # timestamps: varint header, grid residuals or deltas-of-deltas in a range block
F_DEC_ULP = 7  # doubles: format 5, and values a few ulps off their mantissa (float sums)
NEAR_ULPS = 1 << 20  # at most this many ulps off: a near value, else a raw exception
MODE_DELTA, MODE_DOD, MODE_GRID = 1, 2, 3
XOR_TRY_ABOVE = 1.5  # bytes a value: past it the encoder also tries XOR


@nb.njit(cache=True, nogil=True)
def _u32(buf: np.ndarray, p: int) -> int:
    v = np.int64(0)
    for b in range(4):
        v |= np.int64(buf[p + b]) << np.int64(8 * b)
    return int(v)


@nb.njit(cache=True, nogil=True)
def _u64(buf: np.ndarray, p: int) -> np.uint64:
    v = np.uint64(0)
    for b in range(8):
        v |= np.uint64(buf[p + b]) << np.uint64(8 * b)
    return v


@nb.njit(cache=True, nogil=True)
def _unzigzag(u: np.uint64) -> np.int64:
    return np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1))


@nb.njit(cache=True, nogil=True)
def count_of(buf: np.ndarray, start: int, end: int) -> int:
    """Samples in the vector at ``buf[start:end]`` (-1 when it is not one)."""
    if end - start < 2:
        return -1
    if buf[start] >= F_XOR:  # the v2 formats: a varint count
        n, p = get_uv(buf, start + 1, end)
        if p < 0 or n > np.uint64(1 << 40):
            return -1
        return int(np.int64(n))
    if end - start < 5:
        return -1
    return int(np.int64(_u32(buf, start + 1)))


@nb.njit(cache=True, nogil=True)
def _unpack_patched(buf: np.ndarray, p: int, end: int, n: int, tmp: np.ndarray) -> int:
    """Read ``[width u8][n_patch u32][packed n][positions][values]`` at ``p`` into ``tmp``;
    the next position, or -1 when it does not fit in ``buf[:end]``."""
    if p + 5 > end:
        return -1
    width = int(buf[p])
    n_patch = _u32(buf, p + 1)
    p += 5
    if width > 64 or n_patch > n or p + (n * width + 7) // 8 + 12 * n_patch > end:
        return -1
    p = _unpack_bits(buf, p, n, width, tmp, 0)
    for j in range(n_patch):
        pos = _u32(buf, p + 4 * j)
        if pos >= n:
            return -1
        tmp[pos] = _u64(buf, p + 4 * n_patch + 8 * j)
    return p + 12 * n_patch


@nb.njit(cache=True, nogil=True)
def decode_ts_into(buf: np.ndarray, start: int, end: int, out: np.ndarray, at: int) -> int:
    """Decode the timestamp vector at ``buf[start:end]`` into ``out[at:]``; returns n or -1."""
    if end - start >= 2 and buf[start] == TS_V2:
        return _decode_ts_v2(buf, start, end, out, at)
    if end - start < 26 or buf[start] != TS_DOD:
        return -1
    n = _u32(buf, start + 1)
    first = np.int64(_u64(buf, start + 5))
    delta = np.int64(_u64(buf, start + 13))
    if at + n > len(out):
        return -1
    rest = max(n - 2, 0)
    tmp = np.empty(rest, np.uint64)
    if _unpack_patched(buf, start + 21, end, rest, tmp) < 0:
        return -1
    if n >= 1:
        out[at] = first
    if n >= 2:
        out[at + 1] = first + delta
    prev = first + delta
    for i in range(rest):
        delta += _unzigzag(tmp[i])
        prev += delta
        out[at + 2 + i] = prev
    return n


@nb.njit(cache=True, nogil=True)
def decode_doubles_into(buf: np.ndarray, start: int, end: int, out: np.ndarray, at: int) -> int:
    """Decode the double vector at ``buf[start:end]`` into ``out[at:]`` (as uint64 bits)."""
    if end - start < 2:
        return -1
    fmt = buf[start]
    if fmt == F_XOR:
        return xor_decode_into(buf, start, end, out, at)
    if fmt == F_DEC or fmt == F_DEC_ULP:
        return _decode_dec_into(buf, start, end, out, at)
    if end - start < 5:
        return -1
    n = _u32(buf, start + 1)
    if n < 0 or at + n > len(out):
        return -1
    if fmt == F_RAW:
        if start + 5 + 8 * n > end:
            return -1
        for i in range(n):
            out[at + i] = _u64(buf, start + 5 + 8 * i)
        return n
    if fmt != F_DELTA and fmt != F_DOD:
        return -1
    p = start + 5
    head = 2 if fmt == F_DOD else 1
    if p + 17 + 8 * (head - 1) + 4 > end:
        return -1
    k = int(buf[p])
    if k > 18:
        return -1
    scale = 10.0**k
    g = np.int64(_u64(buf, p + 1))
    m = np.int64(_u64(buf, p + 9))
    p += 17
    d = np.int64(0)
    if fmt == F_DOD:
        d = np.int64(_u64(buf, p))
        p += 8
    n_exc = _u32(buf, p)
    p += 4
    if n_exc > n or p + 12 * n_exc > end:
        return -1
    exc_at = p
    p += 12 * n_exc
    rest = max(n - head, 0)
    tmp = np.empty(rest, np.uint64)
    if _unpack_patched(buf, p, end, rest, tmp) < 0:
        return -1
    res = out[at : at + n].view(np.float64)
    if n >= 1:
        res[0] = m / scale
    if fmt == F_DOD:
        if n >= 2:
            m += d
            res[1] = m / scale
        for i in range(rest):
            d += _unzigzag(tmp[i]) * g
            m += d
            res[head + i] = m / scale
    else:
        for i in range(rest):
            m += _unzigzag(tmp[i]) * g
            res[head + i] = m / scale
    for j in range(n_exc):
        pos = _u32(buf, exc_at + 4 * j)
        if pos >= n:
            return -1
        out[at + pos] = _u64(buf, exc_at + 4 * n_exc + 8 * j)
    return n


@nb.njit(cache=True, nogil=True)
def decode_many(
    buf: np.ndarray, bounds: np.ndarray, is_ts: bool, max_total: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode every vector ``buf[bounds[i]:bounds[i+1]]``; (values, offsets, index of a bad
    vector or -1). Timestamps come back as int64 bits, doubles as uint64 bits. Claimed counts
    adding up past ``max_total`` make the last vector bad, before anything is allocated."""
    k = len(bounds) - 1
    offsets = np.zeros(k + 1, np.int64)
    for i in range(k):
        c = count_of(buf, bounds[i], bounds[i + 1])
        if c < 0 or offsets[i] + c > max_total:
            return np.zeros(0, np.uint64), offsets, i
        offsets[i + 1] = offsets[i] + c
    out = np.empty(offsets[k], np.uint64)
    for i in range(k):
        if is_ts:
            got = decode_ts_into(buf, bounds[i], bounds[i + 1], out.view(np.int64), offsets[i])
        else:
            got = decode_doubles_into(buf, bounds[i], bounds[i + 1], out, offsets[i])
        if got != offsets[i + 1] - offsets[i]:
            return out, offsets, i
    return out, offsets, -1


@nb.njit(cache=True, nogil=True)
def mantissas(vals: np.ndarray, max_scale: int) -> tuple[int, np.ndarray, np.ndarray, int]:
    """The decimal scale k (0..max_scale) at which the most values are ``m / 10**k`` exactly
    (``|m| < 2**53``; -0.0, NaN and ±Inf never): (k, mantissas, ok mask, count ok). Stops at
    the first k that fits every value. For finite non-zero floats numeric equality is bit
    equality, so the check is exact."""
    n = len(vals)
    best_k = 0
    best_ok = -1
    best_m = np.zeros(n, np.int64)
    best_mask = np.zeros(n, np.bool_)
    m = np.zeros(n, np.int64)
    mask = np.zeros(n, np.bool_)
    for k in range(max_scale + 1):
        scale = 10.0**k
        n_ok = 0
        for i in range(n):
            v = vals[i]
            x = v * scale
            good = False
            mi = np.int64(0)
            if (
                np.isfinite(x)
                and abs(x) < 9007199254740992.0
                and not (v == 0.0 and math.copysign(1.0, v) < 0)
            ):
                r = np.rint(x)
                if r / scale == v:
                    good = True
                    mi = np.int64(r)
            m[i] = mi
            mask[i] = good
            n_ok += good
        if n_ok > best_ok:
            best_ok = n_ok
            best_k = k
            best_m[:] = m
            best_mask[:] = mask
        if n_ok == n:
            break
    return best_k, best_m, best_mask, best_ok


@nb.njit(cache=True, nogil=True)
def pfor_encode(d: np.ndarray, divisor: int) -> np.ndarray:
    """``[width u8][n_patch u32][packed][positions u32][values u64]`` of the zigzagged
    ``d // divisor``: the width is the one that makes the whole smallest when the values wider
    than it are stored apart as patches."""
    n = len(d)
    z = np.empty(n, np.uint64)
    hist = np.zeros(65, np.int64)
    for i in range(n):
        v = d[i] // divisor
        u = np.uint64((v << 1) ^ (v >> 63))
        z[i] = u
        hist[_bitlen(u)] += 1
    best_w = 64
    best_cost = 1 << 62
    wider = n
    for w in range(65):
        wider -= hist[w]
        cost = (w * n + 7) // 8 + 12 * wider
        if cost < best_cost:
            best_cost = cost
            best_w = w
    n_patch = 0
    for i in range(n):
        if _bitlen(z[i]) > best_w:
            n_patch += 1
    out = np.zeros(5 + (best_w * n + 7) // 8 + 12 * n_patch, np.uint8)
    out[0] = best_w
    for b in range(4):
        out[1 + b] = (n_patch >> (8 * b)) & 0xFF
    packed = z.copy()
    ppos = np.empty(n_patch, np.int64)
    j = 0
    for i in range(n):
        if _bitlen(z[i]) > best_w:
            ppos[j] = i
            packed[i] = 0
            j += 1
    p = pack_bits(packed, best_w, out, 5)
    for j in range(n_patch):
        for b in range(4):
            out[p + 4 * j + b] = (ppos[j] >> (8 * b)) & 0xFF
        v = z[ppos[j]]
        for b in range(8):
            out[p + 4 * n_patch + 8 * j + b] = np.uint8((v >> np.uint64(8 * b)) & np.uint64(0xFF))
    return out


@nb.njit(cache=True, nogil=True)
def gcd_of(d: np.ndarray) -> int:
    """The greatest common divisor of ``d`` (1 when empty, all zero, or too big)."""
    g = 0
    for i in range(len(d)):
        a = abs(d[i])
        b = g
        while b:
            a, b = b, a % b
        g = a
        if g == 1:
            return 1
    if g <= 0 or g >= (1 << 62):
        return 1
    return g


@nb.njit(cache=True, nogil=True)
def _put(out: np.ndarray, p: int, v: np.uint64, nbytes: int) -> int:
    for b in range(nbytes):
        out[p + b] = np.uint8((v >> np.uint64(8 * b)) & np.uint64(0xFF))
    return p + nbytes


@nb.njit(cache=True, nogil=True)
def encode_ts_v1(ts: np.ndarray) -> np.ndarray:
    """The timestamp vector in format 1 (no longer written; kept to test reading old data)."""
    n = len(ts)
    first = ts[0] if n else np.int64(0)
    delta = ts[1] - ts[0] if n > 1 else np.int64(0)
    dod = np.empty(max(n - 2, 0), np.int64)
    for i in range(n - 2):
        dod[i] = (ts[i + 2] - ts[i + 1]) - (ts[i + 1] - ts[i])
    body = pfor_encode(dod, 1)
    out = np.empty(21 + len(body), np.uint8)
    out[0] = TS_DOD
    p = _put(out, 1, np.uint64(n), 4)
    p = _put(out, p, np.uint64(first), 8)
    p = _put(out, p, np.uint64(delta), 8)
    out[p:] = body
    return out


@nb.njit(cache=True, nogil=True)
def _hold_exceptions(m: np.ndarray, ok: np.ndarray) -> None:
    """Give each exception (a value that is no mantissa) the mantissa before it, so it costs a
    zero difference; leading exceptions take the first mantissa. ``ok`` has at least one True."""
    first_ok = 0
    while not ok[first_ok]:
        first_ok += 1
    last = m[first_ok]
    for i in range(len(m)):
        if ok[i]:
            last = m[i]
        else:
            m[i] = last


@nb.njit(cache=True, nogil=True)
def encode_values_v1(vals: np.ndarray, max_scale: int) -> np.ndarray:
    """The double vector in formats 0/2/3 (no longer written; kept to test reading old data):
    2/3 when at least 75 % of the values are decimal mantissas at one scale, else 0 (raw)."""
    n = len(vals)
    bits = vals.view(np.uint64)
    k, m, ok, n_ok = mantissas(vals, max_scale)
    if n == 0 or n_ok * 4 < n * 3:
        out = np.empty(5 + 8 * n, np.uint8)
        out[0] = F_RAW
        p = _put(out, 1, np.uint64(n), 4)
        for i in range(n):
            p = _put(out, p, bits[i], 8)
        return out
    _hold_exceptions(m, ok)
    d1 = np.empty(n - 1, np.int64)
    for i in range(n - 1):
        d1[i] = m[i + 1] - m[i]
    d2 = np.empty(max(n - 2, 0), np.int64)
    for i in range(n - 2):
        d2[i] = d1[i + 1] - d1[i]
    g1 = gcd_of(d1)
    p1 = pfor_encode(d1, g1)
    use_dod = False
    g2 = 1
    p2 = p1
    if n > 2:
        g2 = gcd_of(d2)
        p2 = pfor_encode(d2, g2)
        use_dod = len(p2) + 8 < len(p1)
    body = p2 if use_dod else p1
    n_exc = n - n_ok
    head = 5 + 1 + 8 + 8 + (8 if use_dod else 0) + 4
    out = np.empty(head + 12 * n_exc + len(body), np.uint8)
    out[0] = F_DOD if use_dod else F_DELTA
    p = _put(out, 1, np.uint64(n), 4)
    out[p] = k
    p = _put(out, p + 1, np.uint64(g2 if use_dod else g1), 8)
    p = _put(out, p, np.uint64(m[0]), 8)
    if use_dod:
        p = _put(out, p, np.uint64(d1[0]), 8)
    p = _put(out, p, np.uint64(n_exc), 4)
    q = p + 4 * n_exc
    for i in range(n):
        if not ok[i]:
            p = _put(out, p, np.uint64(i), 4)
            q = _put(out, q, bits[i], 8)
    out[q:] = body
    return out


# --- v2 formats: varint headers, range block blocks ----------------------------------------
@nb.njit(cache=True, nogil=True)
def _decode_ts_v2(buf: np.ndarray, start: int, end: int, out: np.ndarray, at: int) -> int:
    nu, p = get_uv(buf, start + 1, end)
    if p < 0 or p >= end or nu > np.uint64(len(out) - at):
        return -1
    n = int(np.int64(nu))
    mode = buf[p]
    first, p = get_sv(buf, p + 1, end)
    second, p = get_sv(buf, p, end)
    if p < 0 or (mode != MODE_GRID and mode != MODE_DOD):
        return -1
    if n == 0:
        return 0
    rest = n - 1 if mode == MODE_GRID else max(n - 2, 0)
    r = np.empty(rest, np.int64)
    if range_decode(buf, p, end, rest, r) < 0:
        return -1
    out[at] = first
    if mode == MODE_GRID:
        t = first
        for i in range(rest):
            t += second
            out[at + 1 + i] = t + r[i]
    elif n >= 2:
        prev = first + second
        out[at + 1] = prev
        delta = second
        for i in range(rest):
            delta += r[i]
            prev += delta
            out[at + 2 + i] = prev
    return n


@nb.njit(cache=True, nogil=True)
def _ts_v2(ts: np.ndarray, mode: int) -> np.ndarray:
    n = len(ts)
    first = ts[0] if n else np.int64(0)
    if mode == MODE_GRID:
        d = np.empty(max(n - 1, 0), np.int64)
        for i in range(n - 1):
            d[i] = ts[i + 1] - ts[i]
        second = np.int64(0)
        if len(d):  # the median interval, of at most 63 evenly spaced ones
            sample = sorted_sample(d)
            second = sample[len(sample) // 2]
        r = np.empty(max(n - 1, 0), np.int64)
        t = first
        for i in range(n - 1):
            t += second
            r[i] = ts[i + 1] - t
    else:
        second = ts[1] - ts[0] if n > 1 else np.int64(0)
        r = np.empty(max(n - 2, 0), np.int64)
        for i in range(n - 2):
            r[i] = (ts[i + 2] - ts[i + 1]) - (ts[i + 1] - ts[i])
    body = range_encode(r)
    out = np.zeros(1 + 10 + 1 + 10 + 10 + len(body), np.uint8)
    out[0] = TS_V2
    p = put_uv(out, 1, np.uint64(n))
    out[p] = mode
    p = put_sv(out, p + 1, first)
    p = put_sv(out, p, second)
    out[p : p + len(body)] = body
    return out[: p + len(body)]


@nb.njit(cache=True, nogil=True)
def encode_ts(ts: np.ndarray) -> np.ndarray:
    """The timestamp vector (format 6), grid residuals or deltas-of-deltas, whichever is
    smaller."""
    a = _ts_v2(ts, MODE_GRID)
    if len(ts) < 3 or len(a) <= 32 + (len(ts) * 4 + 7) // 8:
        return a  # on the grid within 4 bits: deltas of deltas of the jitter are no smaller
    b = _ts_v2(ts, MODE_DOD)
    return a if len(a) <= len(b) else b


@nb.njit(cache=True, nogil=True)
def _positions(buf: np.ndarray, p: int, end: int, nu, n: int):  # type: ignore[no-untyped-def]
    """A count, then that many gaps (uvarints) between increasing positions below ``n``; the
    positions and the offset after them, or an empty array and -1 when malformed."""
    count, p = get_uv(buf, p, end)
    if p < 0 or count > nu:
        return np.empty(0, np.int64), -1
    out = np.empty(int(np.int64(count)), np.int64)
    pos = 0
    for j in range(len(out)):
        gap, p = get_uv(buf, p, end)
        if p < 0 or gap >= nu:
            return out, -1
        pos += int(np.int64(gap))
        if pos >= n:
            return out, -1
        out[j] = pos
    return out, p


@nb.njit(cache=True, nogil=True)
def _decode_dec_into(buf: np.ndarray, start: int, end: int, out: np.ndarray, at: int) -> int:
    nu, p = get_uv(buf, start + 1, end)
    if p < 0 or p + 2 > end or nu > np.uint64(len(out) - at):
        return -1
    n = int(np.int64(nu))
    k = int(buf[p])
    mode = buf[p + 1]
    if k > 18 or (mode != MODE_DELTA and mode != MODE_DOD):
        return -1
    gu, p = get_uv(buf, p + 2, end)
    m, p = get_sv(buf, p, end)
    d = np.int64(0)
    if mode == MODE_DOD:
        d, p = get_sv(buf, p, end)
    g = np.int64(gu)
    exc_pos, p = _positions(buf, p, end, nu, n)
    if p < 0:
        return -1
    n_exc = len(exc_pos)
    exc_at = p
    p += 8 * n_exc
    if p > end:
        return -1
    head = 2 if mode == MODE_DOD else 1
    rest = max(n - head, 0)
    r = np.empty(rest, np.int64)
    if n:
        p = range_decode(buf, p, end, rest, r)
        if p < 0:
            return -1
    near_pos = np.empty(0, np.int64)
    ulps = np.empty(0, np.int64)
    if buf[start] == F_DEC_ULP:
        near_pos, p = _positions(buf, p, end, nu, n)
        if p < 0:
            return -1
        ulps = np.empty(len(near_pos), np.int64)
        if range_decode(buf, p, end, len(ulps), ulps) < 0:
            return -1
    scale = 10.0**k
    res = out[at : at + n].view(np.float64)
    if n >= 1:
        res[0] = m / scale
    if mode == MODE_DOD:
        if n >= 2:
            m += d
            res[1] = m / scale
        for i in range(rest):
            d += r[i] * g
            m += d
            res[2 + i] = m / scale
    else:
        for i in range(rest):
            m += r[i] * g
            res[1 + i] = m / scale
    for j in range(len(near_pos)):
        out[at + near_pos[j]] = np.uint64(np.int64(out[at + near_pos[j]]) + ulps[j])
    for j in range(n_exc):
        out[at + exc_pos[j]] = _u64(buf, exc_at + 8 * j)
    return n


@nb.njit(cache=True, nogil=True)
def _near(vals: np.ndarray, k: int, m: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values that are no mantissa at scale ``k`` but within ``NEAR_ULPS`` of one (a float sum
    of decimals, ``0.1 + 0.2``), same sign: (mask, ulps off); their mantissa goes into ``m``.
    The reference is ``m / 10**k`` as the decoder computes it, so adding the ulps is exact."""
    n = len(vals)
    scale = 10.0**k
    near = np.zeros(n, np.bool_)
    if ok.all():  # the common case: every value a mantissa
        return near, np.zeros(0, np.int64)
    ref = np.zeros(n, np.float64)
    mi = np.zeros(n, np.int64)
    for i in range(n):
        x = vals[i] * scale
        if not ok[i] and np.isfinite(x) and abs(x) < 9007199254740992.0:
            mi[i] = np.int64(np.rint(x))
            ref[i] = mi[i] / scale
            near[i] = True
    vb = vals.view(np.int64)
    rb = ref.view(np.int64)
    ulps = np.zeros(n, np.int64)
    for i in range(n):
        if near[i]:
            d = vb[i] - rb[i]
            if (vb[i] < 0) != (rb[i] < 0) or d > NEAR_ULPS or d < -NEAR_ULPS:
                near[i] = False
            else:
                m[i] = mi[i]
                ulps[i] = d
    return near, ulps


@nb.njit(cache=True, nogil=True)
def _dec_v2(bits: np.ndarray, k: int, m: np.ndarray, ok: np.ndarray, n_ok: int,
            mode: int, near: np.ndarray, ulps: np.ndarray) -> np.ndarray:  # fmt: skip
    n = len(m)
    head = 2 if mode == MODE_DOD else 1
    d = np.empty(max(n - head, 0), np.int64)
    if mode == MODE_DOD:
        for i in range(n - 2):
            d[i] = (m[i + 2] - m[i + 1]) - (m[i + 1] - m[i])
    else:
        for i in range(n - 1):
            d[i] = m[i + 1] - m[i]
    g = gcd_of(d)
    for i in range(len(d)):
        d[i] //= g
    body = range_encode(d)
    n_exc = n - n_ok
    near_at = np.flatnonzero(near)
    near_body = range_encode(ulps[near_at])
    out = np.zeros(1 + 10 + 2 + 10 * 5 + 18 * n_exc + len(body) + 10 * len(near_at)
                   + len(near_body), np.uint8)  # fmt: skip
    out[0] = F_DEC_ULP if len(near_at) else F_DEC
    p = put_uv(out, 1, np.uint64(n))
    out[p] = k
    out[p + 1] = mode
    p = put_uv(out, p + 2, np.uint64(g))
    p = put_sv(out, p, m[0])
    if mode == MODE_DOD:
        p = put_sv(out, p, m[1] - m[0])
    p = put_uv(out, p, np.uint64(n_exc))
    prev = 0
    for i in range(n):
        if not ok[i]:
            p = put_uv(out, p, np.uint64(i - prev))
            prev = i
    for i in range(n):
        if not ok[i]:
            p = _put(out, p, bits[i], 8)
    out[p : p + len(body)] = body
    p += len(body)
    if len(near_at):
        p = put_uv(out, p, np.uint64(len(near_at)))
        prev = 0
        for j in range(len(near_at)):
            p = put_uv(out, p, np.uint64(near_at[j] - prev))
            prev = int(near_at[j])
        out[p : p + len(near_body)] = near_body
        p += len(near_body)
    return out[:p]


@nb.njit(cache=True, nogil=True)
def _raw(bits: np.ndarray) -> np.ndarray:
    n = len(bits)
    out = np.empty(5 + 8 * n, np.uint8)
    out[0] = F_RAW
    p = _put(out, 1, np.uint64(n), 4)
    for i in range(n):
        p = _put(out, p, bits[i], 8)
    return out


@nb.njit(cache=True, nogil=True)
def encode_values(vals: np.ndarray, max_scale: int) -> np.ndarray:
    """The double vector in one call, the smallest of: format 5 (decimal mantissas, deltas or
    deltas of deltas, when at least half the values are mantissas at one scale; format 7 when
    some of the others are a few ulps off a mantissa, as float sums of decimals are), format 4
    (XOR, tried when nothing so far is under ``XOR_TRY_ABOVE`` bytes a value) and format 0."""
    n = len(vals)
    bits = vals.view(np.uint64)
    best = _raw(bits)
    if n == 0:
        return best
    k, m, ok, n_ok = mantissas(vals, max_scale)
    near, ulps = _near(vals, k, m, ok)
    n_near = int(near.sum())
    if (n_ok + n_near) * 2 >= n:
        ok |= near
        n_ok += n_near
        _hold_exceptions(m, ok)
        best = _dec_v2(bits, k, m, ok, n_ok, MODE_DELTA, near, ulps)
        if n > 2:
            b = _dec_v2(bits, k, m, ok, n_ok, MODE_DOD, near, ulps)
            if len(b) < len(best):
                best = b
    if len(best) > XOR_TRY_ABOVE * n:
        x = xor_encode(bits)
        if len(x) < len(best):
            best = x
    return best


@nb.njit(cache=True)
def _append_u8(out: np.ndarray, at: int, src: np.ndarray) -> np.ndarray:
    """``src`` written at ``out[at:]``, ``out`` doubled first when it is too small."""
    if at + len(src) > len(out):
        bigger = np.empty(max(2 * len(out), at + len(src)), np.uint8)
        bigger[:at] = out[:at]
        out = bigger
    out[at : at + len(src)] = src
    return out


@nb.njit(cache=True)
def encode_many(
    ts: np.ndarray, vals: np.ndarray, offsets: np.ndarray, max_scale: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Encode the groups ``ts[offsets[i]:offsets[i+1]]`` (and the values beside them) as
    chunks in one call: (timestamp vectors concatenated, their bounds [k+1], value vectors
    concatenated, their bounds [k+1])."""
    k = len(offsets) - 1
    tb = np.zeros(k + 1, np.int64)
    vb = np.zeros(k + 1, np.int64)
    tout = np.empty(max(64, 2 * offsets[k]), np.uint8)
    vout = np.empty(max(64, 4 * offsets[k]), np.uint8)
    for i in range(k):
        a, b = offsets[i], offsets[i + 1]
        e = encode_ts(np.ascontiguousarray(ts[a:b]))
        tout = _append_u8(tout, tb[i], e)
        tb[i + 1] = tb[i] + len(e)
        e = encode_values(np.ascontiguousarray(vals[a:b]), max_scale)
        vout = _append_u8(vout, vb[i], e)
        vb[i + 1] = vb[i] + len(e)
    return tout[: tb[k]], tb, vout[: vb[k]], vb
