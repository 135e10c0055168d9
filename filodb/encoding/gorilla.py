"""numba kernels of the XOR (Gorilla) value vector, format 4: for gauges with no short decimal
form (ratios, averages, rates computed upstream), which would otherwise be stored raw.

Layout (``docs/encoding.md``): ``[fmt=4][n varint][first value u64][bit stream]``, the bit
stream little-endian (bit k of the stream is bit ``k % 8`` of byte ``k // 8``), each later value
as its XOR ``x`` with the previous one::

    x == 0                                   0
    x fits the current window (lead, sig)    1 0  + sig bits of x >> trail
    otherwise                                1 1  + lead (6 bits) + sig - 1 (6 bits) + sig bits

(a two-bit control is written as the value 0b01 or 0b11 in 2 bits). Unlike Prometheus's chunk
(``xor.py``, whose format is fixed by remote read) the leading-zero count is not capped at 31,
and the encoder leaves a window that wastes more than the 12 bits a new one costs.
Bit-exact for every float64 pattern: the stream carries bits, never float arithmetic.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from filodb.encoding.blocks import get_uv, put_uv

F_XOR = 4


@nb.njit(cache=True, nogil=True)
def _clz(x: np.uint64) -> int:
    if x == 0:
        return 64
    n = 0
    for s in (32, 16, 8, 4, 2, 1):
        if x >> np.uint64(64 - s) == 0:
            n += s
            x <<= np.uint64(s)
    return n


@nb.njit(cache=True, nogil=True)
def _ctz(x: np.uint64) -> int:
    if x == 0:
        return 64
    n = 0
    for s in (32, 16, 8, 4, 2, 1):
        if x & ((np.uint64(1) << np.uint64(s)) - np.uint64(1)) == 0:
            n += s
            x >>= np.uint64(s)
    return n


@nb.njit(cache=True, nogil=True)
def _wb(out: np.ndarray, bp: int, v: np.uint64, nbits: int) -> int:
    """Write the low ``nbits`` (1..64) of ``v`` at bit ``bp`` (zeroed buffer); the next bp."""
    if nbits < 64:
        v &= (np.uint64(1) << np.uint64(nbits)) - np.uint64(1)
    while nbits > 0:
        byte, off = bp >> 3, bp & 7
        take = min(8 - off, nbits)
        out[byte] |= np.uint8((v << np.uint64(off)) & np.uint64(0xFF))
        v >>= np.uint64(take)
        bp += take
        nbits -= take
    return bp


@nb.njit(cache=True, nogil=True)
def _rb(buf: np.ndarray, end: int, bp: int, nbits: int) -> tuple[np.uint64, int]:
    """Read ``nbits`` (1..64) at bit ``bp``; bp -1 when that runs past byte ``end``."""
    if bp < 0 or bp + nbits > end * 8:
        return np.uint64(0), -1
    byte, off = bp >> 3, bp & 7
    v = np.uint64(buf[byte]) >> np.uint64(off)
    got = 8 - off
    byte += 1
    while got < nbits:
        v |= np.uint64(buf[byte]) << np.uint64(got)
        got += 8
        byte += 1
    if nbits < 64:
        v &= (np.uint64(1) << np.uint64(nbits)) - np.uint64(1)
    return v, bp + nbits


@nb.njit(cache=True, nogil=True)
def xor_encode(bits: np.ndarray) -> np.ndarray:
    """The format-4 vector of the float64 bit patterns ``bits`` (uint64)."""
    n = len(bits)
    out = np.zeros(1 + 10 + 8 + (n * 78 + 7) // 8 + 1, np.uint8)
    out[0] = F_XOR
    p = put_uv(out, 1, np.uint64(n))
    if n == 0:
        return out[:p]
    for b in range(8):
        out[p + b] = np.uint8((bits[0] >> np.uint64(8 * b)) & np.uint64(0xFF))
    bp = (p + 8) * 8
    lead, trail = -1, 0
    for i in range(1, n):
        x = bits[i] ^ bits[i - 1]
        if x == 0:
            bp += 1  # a zero bit
            continue
        lz, tz = _clz(x), _ctz(x)
        if lead >= 0 and lz >= lead and tz >= trail and (lz - lead) + (tz - trail) <= 12:
            bp = _wb(out, bp, np.uint64(1), 2)
            bp = _wb(out, bp, x >> np.uint64(trail), 64 - lead - trail)
        else:
            lead, trail = lz, tz
            sig = 64 - lz - tz
            bp = _wb(out, bp, np.uint64(3), 2)
            bp = _wb(out, bp, np.uint64(lz), 6)
            bp = _wb(out, bp, np.uint64(sig - 1), 6)
            bp = _wb(out, bp, x >> np.uint64(tz), sig)
    return out[: (bp + 7) >> 3]


@nb.njit(cache=True, nogil=True)
def xor_decode_into(buf: np.ndarray, start: int, end: int, out: np.ndarray, at: int) -> int:
    """Decode the format-4 vector at ``buf[start:end]`` into ``out[at:]`` (uint64 bits);
    n, or -1 when it is not one."""
    if end - start < 2 or buf[start] != F_XOR:
        return -1
    nu, p = get_uv(buf, start + 1, end)
    if p < 0 or nu > np.uint64(len(out) - at):
        return -1
    n = int(np.int64(nu))
    if n == 0:
        return 0
    if p + 8 > end:
        return -1
    prev = np.uint64(0)
    for b in range(8):
        prev |= np.uint64(buf[p + b]) << np.uint64(8 * b)
    out[at] = prev
    bp = (p + 8) * 8
    lead, trail = -1, 0
    for i in range(1, n):
        c, bp = _rb(buf, end, bp, 1)
        if bp < 0:
            return -1
        if c == 0:
            out[at + i] = prev
            continue
        c, bp = _rb(buf, end, bp, 1)
        if c == 1:
            lz, bp = _rb(buf, end, bp, 6)
            s, bp = _rb(buf, end, bp, 6)
            sig = int(np.int64(s)) + 1
            lead = int(np.int64(lz))
            trail = 64 - lead - sig
            if trail < 0:
                return -1
        elif lead < 0:
            return -1
        x, bp = _rb(buf, end, bp, 64 - lead - trail)
        if bp < 0:
            return -1
        prev ^= x << np.uint64(trail)
        out[at + i] = prev
    return n
