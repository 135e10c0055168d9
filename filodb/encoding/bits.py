"""numba bit primitives shared by the chunk codecs: little-endian bit packing of fixed-width
unsigned values, and bit lengths."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def pack_bits(u: np.ndarray, width: int, out: np.ndarray, pos: int) -> int:
    """Write each value of ``u`` in ``width`` bits at byte ``pos`` of ``out``; the next pos."""
    if width == 0:
        return pos
    acc = np.uint64(0)
    nacc = 0
    for i in range(len(u)):
        v = u[i]
        done = 0
        while done < width:
            take = min(width - done, 64 - nacc)
            if take == 64:
                chunk = v
            else:
                chunk = (v >> np.uint64(done)) & ((np.uint64(1) << np.uint64(take)) - np.uint64(1))
            acc |= chunk << np.uint64(nacc)
            nacc += take
            done += take
            if nacc == 64:
                for b in range(8):
                    out[pos] = np.uint8((acc >> np.uint64(8 * b)) & np.uint64(0xFF))
                    pos += 1
                acc = np.uint64(0)
                nacc = 0
    nb_ = (nacc + 7) // 8
    for b in range(nb_):
        out[pos] = np.uint8((acc >> np.uint64(8 * b)) & np.uint64(0xFF))
        pos += 1
    return pos


@nb.njit(cache=True, nogil=True)
def unpack_bits(buf: np.ndarray, pos: int, n: int, width: int, out: np.ndarray, at: int) -> int:
    """Read ``n`` values of ``width`` bits from byte ``pos``; returns the next byte pos."""
    if width == 0:
        for i in range(n):
            out[at + i] = np.uint64(0)
        return pos
    bitpos = 0
    mask = (
        np.uint64(0xFFFFFFFFFFFFFFFF)
        if width == 64
        else (np.uint64(1) << np.uint64(width)) - np.uint64(1)
    )
    for i in range(n):
        v = np.uint64(0)
        got = 0
        while got < width:
            byte = np.uint64(buf[pos + (bitpos >> 3)])
            off = bitpos & 7
            take = min(8 - off, width - got)
            bits = (byte >> np.uint64(off)) & ((np.uint64(1) << np.uint64(take)) - np.uint64(1))
            v |= bits << np.uint64(got)
            got += take
            bitpos += take
        out[at + i] = v & mask
    return pos + (bitpos + 7) // 8


@nb.njit(cache=True, nogil=True)
def bitlen(u: np.uint64) -> int:
    n = 0
    while u:
        u >>= np.uint64(1)
        n += 1
    return n
