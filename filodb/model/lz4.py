"""LZ4 block format in numba, so a kernel that writes or reads hundreds of small log records
compresses or decompresses each in its loop instead of a Python call per record
(:mod:`filodb.model.recordpack`). The blocks are the LZ4 block format (what
``cramjam.lz4.compress_block`` writes and ``decompress_block`` reads): sequences of a token
(literal length, match length - 4), extra length bytes of 255, literals, a 2-byte offset; the
last 5 bytes are literals and the last match starts 12 bytes or more before the end.

The compressor is LZ4's greedy one (a hash of 4 bytes to the last position they were seen,
step 1, growing by one every 64 positions without a match, as LZ4's): on log payloads it is within a few percent of the reference ``lz4`` at its default
level. The decompressor checks every length and offset against both buffers and says whether
the block filled its output exactly: malformed input is refused, never read or written past.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from filodb.model.loads import u32_le as _u32
from filodb.model.loads import u64_le as _load_u64

HASH_BITS = 12
MIN_MATCH = 4
LAST_LITERALS = 5
MF_LIMIT = 12
MAX_OFFSET = 65535


@nb.njit(cache=True, nogil=True)
def bound(n: int) -> int:  # pragma: no cover - numba
    """The most bytes a block of ``n`` input bytes takes."""
    return n + n // 255 + 16


def new_table() -> np.ndarray:
    """A compressor's hash table: positions (any value below the input's start is empty)."""
    return np.full(1 << HASH_BITS, -1, np.int64)


@nb.njit(cache=True, nogil=True, inline="always")
def _hash(
    a: np.ndarray, i: int, mask32: np.uint64, shift: np.uint64
) -> int:  # pragma: no cover - numba
    return int(((np.uint64(_u32(a, i)) * np.uint64(2654435761)) & mask32) >> shift)


@nb.njit(cache=True, nogil=True, inline="always")
def _length(dst: np.ndarray, o: int, n: int) -> int:  # pragma: no cover - numba
    """The bytes past a token's 15 of a length ``n`` (n >= 15)."""
    n -= 15
    while n >= 255:
        dst[o] = 255
        o += 1
        n -= 255
    dst[o] = n
    return o + 1


@nb.njit(cache=True, nogil=True, inline="always")
def _sequence(src: np.ndarray, lit0: int, lit: int, dst: np.ndarray, o: int, off: int,
              ml: int) -> int:  # fmt: skip  # pragma: no cover - numba
    """One sequence (``ml`` 0: the last, literals only); returns the output's end."""
    tok = o
    o += 1
    t = (15 if lit >= 15 else lit) << 4
    if lit >= 15:
        o = _length(dst, o, lit)
    dst[o : o + lit] = src[lit0 : lit0 + lit]
    o += lit
    if ml:
        dst[o] = off & 255
        dst[o + 1] = off >> 8
        o += 2
        m = ml - MIN_MATCH
        t |= 15 if m >= 15 else m
        if m >= 15:
            o = _length(dst, o, m)
    dst[tok] = t
    return o


@nb.njit(cache=True, nogil=True)
def compress(src: np.ndarray, start: int, n: int, dst: np.ndarray, o: int,
             table: np.ndarray) -> int:  # fmt: skip  # pragma: no cover - numba
    """``src[start:start+n]`` as an LZ4 block at ``dst[o:]`` (room: :func:`bound`); returns
    the block's end. ``table`` (:func:`new_table`) may be reused for inputs at increasing
    positions of one ``src``: entries below ``start`` are ignored."""
    end = start + n
    anchor = start
    i = start
    shift = np.uint64(32 - HASH_BITS)
    mask32 = np.uint64(0xFFFFFFFF)
    if n >= MF_LIMIT + 1:
        limit = end - MF_LIMIT
        match_end = end - LAST_LITERALS
        misses = 0  # since the last match: past 64, the search steps faster (as LZ4's)
        while i < limit:
            seq = _u32(src, i)
            h = _hash(src, i, mask32, shift)
            ref = table[h]
            table[h] = i
            if start <= ref < i and i - ref <= MAX_OFFSET and _u32(src, ref) == seq:
                ml = MIN_MATCH
                while i + ml + 8 <= match_end:  # 8 bytes a step, then the differing byte
                    x = _load_u64(src, i + ml) ^ _load_u64(src, ref + ml)
                    if x:
                        while not x & np.uint64(255):
                            x >>= np.uint64(8)
                            ml += 1
                        break
                    ml += 8
                else:
                    while i + ml < match_end and src[ref + ml] == src[i + ml]:
                        ml += 1
                while i > anchor and ref > start and src[i - 1] == src[ref - 1]:
                    i -= 1
                    ref -= 1
                    ml += 1
                o = _sequence(src, anchor, i - anchor, dst, o, i - ref, ml)
                i += ml
                anchor = i
                if i - 2 < limit:  # as LZ4: the position before the next search is known
                    table[_hash(src, i - 2, mask32, shift)] = i - 2
                misses = 0
            else:
                i += 1 + (misses >> 6)
                misses += 1
    return _sequence(src, anchor, end - anchor, dst, o, 0, 0)


@nb.njit(cache=True, nogil=True)
def decompress(src: np.ndarray, s: int, e: int, dst: np.ndarray, d: int, dend: int,
               cpy: Any) -> bool:  # fmt: skip  # pragma: no cover - numba
    """Decode the block ``src[s:e]`` into ``dst[d:dend]``; True when it is well formed and
    fills exactly that. ``cpy``: libc's memcpy (:mod:`filodb.model.libc`)."""
    d0 = d
    ps, pd = src.ctypes.data, dst.ctypes.data
    while s < e:
        tok = int(src[s])
        s += 1
        lit = tok >> 4
        if lit == 15:
            while True:
                if s >= e:
                    return False
                b = int(src[s])
                s += 1
                lit += b
                if b != 255:
                    break
        if s + lit > e or d + lit > dend:
            return False
        if lit:
            cpy(pd + d, ps + s, lit)
        s += lit
        d += lit
        if s == e:
            return d == dend
        if s + 2 > e:
            return False
        off = int(src[s]) | (int(src[s + 1]) << 8)
        s += 2
        if off == 0 or d - off < d0:
            return False
        ml = tok & 15
        if ml == 15:
            while True:
                if s >= e:
                    return False
                b = int(src[s])
                s += 1
                ml += b
                if b != 255:
                    break
        ml += MIN_MATCH
        if d + ml > dend:
            return False
        if off >= ml:
            cpy(pd + d, pd + d - off, ml)
        else:  # the match overlaps what it makes: a repeating pattern, byte by byte
            for k in range(ml):
                dst[d + k] = dst[d - off + k]
        d += ml
    return False
