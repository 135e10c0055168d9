"""Prometheus's XOR chunk (Gorilla encoding), the chunk remote read streams.

Remote read's STREAMED_XOR_CHUNKS answer carries each series as chunks in the format of
Prometheus's ``tsdb/chunkenc/xor.go``, bits written most significant first::

    u16 big-endian   number of samples n
    sample 0         timestamp: signed varint (zigzag, as Go's binary.PutVarint)
                     value: the 64 bits of the float64
    sample 1         timestamp delta t1 - t0: unsigned varint
                     value: XOR with the previous value (below)
    sample i >= 2    timestamp delta of delta dod = (ti - ti-1) - (ti-1 - ti-2):
                       dod == 0                        '0'
                       -(2^13 - 1) <= dod <= 2^13      '10'   + 14 bits
                       -(2^16 - 1) <= dod <= 2^16      '110'  + 17 bits
                       -(2^19 - 1) <= dod <= 2^19      '1110' + 20 bits
                       otherwise                       '1111' + 64 bits
                     (two's complement in the field width)
                     value: XOR with the previous value (below)

    value XOR x = bits(v) ^ bits(previous v):
        x == 0                                         '0'
        x fits the previous window (leading >= L, trailing >= T)
                                                       '10' + (64 - L - T) bits of x >> T
        otherwise                                      '11' + 5 bits leading (capped at 31)
                                                       + 6 bits significant count (64 -> 0)
                                                       + that many bits of x >> trailing

The window starts unset, so the first non-zero XOR always takes the '11' form. The last byte
is zero-padded. Encoder and decoder are numba kernels (one call per chunk); the decoder is
bounds-checked and returns -1 on a truncated chunk.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from filodb.errors import BadInputError

MAX_SAMPLES_PER_CHUNK = 120


@nb.njit(cache=True, nogil=True)
def _put(out: np.ndarray, pos: int, value: np.uint64, nbits: int) -> int:
    """Write the low ``nbits`` of ``value`` at bit ``pos`` (MSB first); returns the new pos."""
    for k in range(nbits - 1, -1, -1):
        if (value >> np.uint64(k)) & np.uint64(1):
            out[pos >> 3] |= np.uint8(0x80 >> (pos & 7))
        pos += 1
    return pos


@nb.njit(cache=True, nogil=True)
def _put_uvarint(out: np.ndarray, pos: int, u: np.uint64) -> int:
    while u >= np.uint64(0x80):
        pos = _put(out, pos, (u & np.uint64(0x7F)) | np.uint64(0x80), 8)
        u >>= np.uint64(7)
    return _put(out, pos, u, 8)


@nb.njit(cache=True, nogil=True)
def _clz(x: np.uint64) -> int:
    n = 0
    while n < 64 and not (x >> np.uint64(63 - n)) & np.uint64(1):
        n += 1
    return n


@nb.njit(cache=True, nogil=True)
def _ctz(x: np.uint64) -> int:
    n = 0
    while n < 64 and not (x >> np.uint64(n)) & np.uint64(1):
        n += 1
    return n


@nb.njit(cache=True, nogil=True)
def _encode(ts: np.ndarray, bits: np.ndarray) -> np.ndarray:
    n = len(ts)
    out = np.zeros(2 + 20 + n * 20, np.uint8)  # worst case: 4 + 64 + 2 + 5 + 6 + 64 bits a sample
    out[0] = np.uint8((n >> 8) & 0xFF)
    out[1] = np.uint8(n & 0xFF)
    pos = 16
    lead, trail = 0xFF, 0
    delta = np.int64(0)
    for i in range(n):
        if i == 0:
            t = ts[0]
            pos = _put_uvarint(out, pos, np.uint64((t << np.int64(1)) ^ (t >> np.int64(63))))
            pos = _put(out, pos, bits[0], 64)
            continue
        d = ts[i] - ts[i - 1]
        if i == 1:
            pos = _put_uvarint(out, pos, np.uint64(d))
        else:
            dod = d - delta
            if dod == 0:
                pos = _put(out, pos, np.uint64(0), 1)
            elif -8191 <= dod <= 8192:
                pos = _put(out, pos, np.uint64(0b10), 2)
                pos = _put(out, pos, np.uint64(dod), 14)
            elif -65535 <= dod <= 65536:
                pos = _put(out, pos, np.uint64(0b110), 3)
                pos = _put(out, pos, np.uint64(dod), 17)
            elif -524287 <= dod <= 524288:
                pos = _put(out, pos, np.uint64(0b1110), 4)
                pos = _put(out, pos, np.uint64(dod), 20)
            else:
                pos = _put(out, pos, np.uint64(0b1111), 4)
                pos = _put(out, pos, np.uint64(dod), 64)
        delta = d
        x = bits[i] ^ bits[i - 1]
        if x == 0:
            pos = _put(out, pos, np.uint64(0), 1)
            continue
        pos = _put(out, pos, np.uint64(1), 1)
        lz, tz = _clz(x), _ctz(x)
        if lz >= 32:
            lz = 31
        if lead != 0xFF and lz >= lead and tz >= trail:
            pos = _put(out, pos, np.uint64(0), 1)
            pos = _put(out, pos, x >> np.uint64(trail), 64 - lead - trail)
        else:
            lead, trail = lz, tz
            sig = 64 - lz - tz
            pos = _put(out, pos, np.uint64(1), 1)
            pos = _put(out, pos, np.uint64(lz), 5)
            pos = _put(out, pos, np.uint64(sig & 63), 6)
            pos = _put(out, pos, x >> np.uint64(tz), sig)
    return out[: (pos + 7) >> 3]


@nb.njit(cache=True, nogil=True)
def _get(buf: np.ndarray, pos: int, nbits: int) -> tuple[np.uint64, int]:
    """Read ``nbits`` at bit ``pos``; pos -1 when past the end."""
    if pos < 0 or pos + nbits > len(buf) * 8:
        return np.uint64(0), -1
    v = np.uint64(0)
    for _ in range(nbits):
        v = (v << np.uint64(1)) | np.uint64((buf[pos >> 3] >> (7 - (pos & 7))) & 1)
        pos += 1
    return v, pos


@nb.njit(cache=True, nogil=True)
def _get_uvarint(buf: np.ndarray, pos: int) -> tuple[np.uint64, int]:
    v = np.uint64(0)
    for k in range(10):
        b, pos = _get(buf, pos, 8)
        if pos < 0:
            return v, -1
        v |= (b & np.uint64(0x7F)) << np.uint64(7 * k)
        if b < np.uint64(0x80):
            return v, pos
    return v, -1


@nb.njit(cache=True, nogil=True)
def _signed(u: np.uint64, nbits: int) -> np.int64:
    if nbits < 64 and u > (np.uint64(1) << np.uint64(nbits - 1)):
        return np.int64(u) - (np.int64(1) << np.int64(nbits))
    return np.int64(u)


_DOD_WIDTHS = np.array([0, 14, 17, 20, 64], np.int64)


@nb.njit(cache=True, nogil=True)
def _decode(buf: np.ndarray, ts: np.ndarray, bits: np.ndarray) -> int:
    """Fill ``ts`` and ``bits`` (len n each); returns the bit position after, -1 if truncated."""
    n = len(ts)
    pos = 16
    lead, trail = 0, 0
    delta = np.int64(0)
    for i in range(n):
        if i == 0:
            u, pos = _get_uvarint(buf, pos)
            ts[0] = np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1))
            bits[0], pos = _get(buf, pos, 64)
            if pos < 0:
                return -1
            continue
        if i == 1:
            u, pos = _get_uvarint(buf, pos)
            delta = np.int64(u)
        else:
            k = 0
            while k < 4:
                b, pos = _get(buf, pos, 1)
                if pos < 0:
                    return -1
                if b == 0:
                    break
                k += 1
            if k > 0:
                w = _DOD_WIDTHS[k]
                u, pos = _get(buf, pos, w)
                delta += _signed(u, w)
        if pos < 0:
            return -1
        ts[i] = ts[i - 1] + delta
        b, pos = _get(buf, pos, 1)
        if pos < 0:
            return -1
        if b == 0:
            bits[i] = bits[i - 1]
            continue
        b, pos = _get(buf, pos, 1)
        if b == 1:
            u, pos = _get(buf, pos, 5)
            lead = int(u)
            u, pos = _get(buf, pos, 6)
            sig = int(u)
            if sig == 0:
                sig = 64
            trail = 64 - lead - sig
            if trail < 0:
                return -1
        if pos < 0:
            return -1
        x, pos = _get(buf, pos, 64 - lead - trail)
        if pos < 0:
            return -1
        bits[i] = bits[i - 1] ^ (x << np.uint64(trail))
    return pos


def encode_chunk(ts: np.ndarray, vals: np.ndarray) -> bytes:
    """One XOR chunk of up to 65535 samples (remote read uses at most 120 a chunk)."""
    ts = np.ascontiguousarray(ts, np.int64)
    if len(ts) > 0xFFFF:
        raise ValueError("an XOR chunk holds at most 65535 samples")
    bits = np.ascontiguousarray(vals, np.float64).view(np.uint64)
    return _encode(ts, bits).tobytes()


def decode_chunk(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(ts int64 ms, vals float64) of an XOR chunk; BadInputError when it is truncated."""
    buf = np.frombuffer(data, np.uint8)
    if len(buf) < 2:
        raise BadInputError("XOR chunk shorter than its 2-byte header")
    n = (int(buf[0]) << 8) | int(buf[1])
    ts = np.empty(n, np.int64)
    bits = np.empty(n, np.uint64)
    if n and _decode(buf, ts, bits) < 0:
        raise BadInputError("truncated XOR chunk")
    return ts, bits.view(np.float64)


def split_chunks(ts: np.ndarray, vals: np.ndarray, per_chunk: int = MAX_SAMPLES_PER_CHUNK
                 ) -> list[tuple[int, int, bytes]]:  # fmt: skip
    """``(min_time_ms, max_time_ms, chunk bytes)`` for consecutive runs of ``per_chunk`` samples."""
    out = []
    for a in range(0, len(ts), per_chunk):
        t, v = ts[a : a + per_chunk], vals[a : a + per_chunk]
        out.append((int(t[0]), int(t[-1]), encode_chunk(t, v)))
    return out
