"""Version 4 log records, many at a time: the numba kernels that write every shard's record of
a batch in one call (the door) and read many records into one set of columns in one call (the
worker). With a body's series spread over hundreds of shards a record holds a few series, so
what costs is a record's fixed Python steps (a msgpack header, numpy slicing, a compression
call): here they are loop iterations of one kernel.

Layout (docs/architecture.md, "Log record format"): ``u32 LE header length | msgpack header |
payload``. The header is a msgpack map whose first five entries have a fixed form, so the
kernels write and read it at fixed places: ``{"v":4, "n":u32, "s":u32, "z":u32, "c":0|1}``
(uint32 values always in msgpack's 5-byte form; ``c``: 1 when the payload is an LZ4 block with
its size first, as version 3's, 0 when it is the payload itself). Further entries (``types``,
``x``) follow; a record with any is read by :func:`~filodb.model.record.read_record` one at a
time. The LZ4 blocks are made and read by :mod:`filodb.model.lz4` inside the kernels. The payload is version 3's: sidx and ts
as differences from the previous sample's, the values' bytes in 8 planes (byte 0 of every
value, then byte 1, ...), each part key's length (u32 LE), the part keys. The differences,
lengths and planes are what make LZ4 take a live record to about zstd's size: a live record's
sidx counts up by one, part-key ends only grow, and a column of doubles shares its high
bytes.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from filodb.model.lz4 import HASH_BITS, bound, compress, decompress

VERSION = 4
HEAD = 28  # the fixed part of the header: fixmap byte + 4 entries of 7 bytes ("v" has 3) + "c"
_KEYS = (ord("v"), ord("n"), ord("s"), ord("z"), ord("c"))
# byte offsets in the header of each u32's first byte (after its 0xce marker)
N_AT, S_AT, Z_AT, C_AT = 7, 14, 21, 27
LZ4_MIN = 64  # payloads smaller than this are stored as they are
# Payloads from this size are compressed by the LZ4 library (cramjam) after the kernel: it is
# ~3x this numba compressor per byte, which shows on the few large records of a body whose
# series are on few shards; below, a call per record costs more than the numba compression.
LZ4_LIBRARY_MIN = 8192


@nb.njit(cache=True, nogil=True, inline="always")
def _put_u32be(buf: np.ndarray, o: int, v: int) -> None:  # pragma: no cover - numba
    buf[o] = (v >> 24) & 255
    buf[o + 1] = (v >> 16) & 255
    buf[o + 2] = (v >> 8) & 255
    buf[o + 3] = v & 255


@nb.njit(cache=True, nogil=True, inline="always")
def _get_u32be(buf: np.ndarray, o: int) -> Any:  # pragma: no cover - numba
    return (
        (np.int64(buf[o]) << 24) | (np.int64(buf[o + 1]) << 16) | (np.int64(buf[o + 2]) << 8)
    ) | np.int64(buf[o + 3])


@nb.njit(cache=True, nogil=True, inline="always")
def _u32le(buf: np.ndarray, o: int) -> Any:  # pragma: no cover - numba
    return (
        (np.int64(buf[o + 3]) << 24) | (np.int64(buf[o + 2]) << 16) | (np.int64(buf[o + 1]) << 8)
    ) | np.int64(buf[o])


@nb.njit(cache=True, nogil=True)
def shard_layout(of: np.ndarray, sidx: np.ndarray, ts: np.ndarray, vals: np.ndarray,
                 pk_start: np.ndarray, pk_end: np.ndarray, num_shards: int
                 ) -> tuple[np.ndarray, ...]:  # fmt: skip  # pragma: no cover - numba
    """A batch laid out per shard for :func:`write_records`, in one pass over its series and
    one over its samples (stable counting sorts by shard: the order two stable argsorts give).
    ``of``: each series' shard; ``sidx``, ``ts``, ``vals``: the samples; ``pk_start``,
    ``pk_end``: each series' part key in its arena. Returns the shards with series (ascending),
    ``s_bounds`` and ``n_bounds`` (each such shard's series and samples, as
    :func:`write_records` takes them), each series' index within its shard (``rank``), and
    the samples (``sidx`` as ranks) and part keys in shard order."""
    ns, n = len(of), len(sidx)
    s_count = np.zeros(num_shards, np.int64)
    for i in range(ns):
        if not 0 <= of[i] < num_shards:
            raise ValueError("a series' shard is out of range")
        s_count[of[i]] += 1
    n_count = np.zeros(num_shards, np.int64)
    for k in range(n):
        n_count[of[sidx[k]]] += 1
    m = 0
    for sh in range(num_shards):
        m += s_count[sh] > 0
    shards = np.empty(m, np.int64)
    s_bounds = np.zeros(m + 1, np.int64)
    n_bounds = np.zeros(m + 1, np.int64)
    s_at = np.empty(num_shards, np.int64)  # where a shard's next series goes
    n_at = np.empty(num_shards, np.int64)  # and its next sample
    j = sa = na = 0
    for sh in range(num_shards):
        s_at[sh], n_at[sh] = sa, na
        if s_count[sh]:
            shards[j] = sh
            sa += s_count[sh]
            na += n_count[sh]
            j += 1
            s_bounds[j], n_bounds[j] = sa, na
    s_first = s_at.copy()
    rank = np.empty(ns, np.int32)
    o_start = np.empty(ns, np.int64)
    o_end = np.empty(ns, np.int64)
    for i in range(ns):
        sh = of[i]
        p = s_at[sh]
        s_at[sh] = p + 1
        rank[i] = p - s_first[sh]
        o_start[p], o_end[p] = pk_start[i], pk_end[i]
    o_sidx = np.empty(n, np.int32)
    o_ts = np.empty(n, np.int64)
    o_vals = np.empty(n, np.float64)
    for k in range(n):
        j = sidx[k]
        sh = of[j]
        p = n_at[sh]
        n_at[sh] = p + 1
        o_sidx[p], o_ts[p], o_vals[p] = rank[j], ts[k], vals[k]
    return shards, s_bounds, n_bounds, rank, o_sidx, o_ts, o_vals, o_start, o_end


@nb.njit(cache=True, nogil=True)
def write_records(sidx: np.ndarray, ts: np.ndarray, vals: np.ndarray, arena: np.ndarray,
                  pk_start: np.ndarray, pk_end: np.ndarray, s_bounds: np.ndarray,
                  n_bounds: np.ndarray, extra: np.ndarray, x_bounds: np.ndarray,
                  x_count: np.ndarray, lz4_max: int, cpy: Any
                  ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip  # pragma: no cover - numba
    """Records ``r = 0..k-1`` back to back and where each ends: record ``r`` holds the
    samples ``n_bounds[r]:n_bounds[r+1]`` (``sidx`` counting from 0 within the record) and
    the series ``s_bounds[r]:s_bounds[r+1]`` (part key ``arena[pk_start[j]:pk_end[j]]``);
    its header ends with ``x_count[r]`` more entries, the msgpack bytes
    ``extra[x_bounds[r]:x_bounds[r+1]]``. A payload of :data:`LZ4_MIN` bytes or more and
    less than ``lz4_max`` is an LZ4 block when that is smaller (``c`` 1). ``cpy``: libc's
    memcpy (:mod:`filodb.model.libc`)."""
    buf, raw_ends = _write_raw(sidx, ts, vals, arena, pk_start, pk_end, s_bounds, n_bounds,
                               extra, x_bounds, x_count, cpy)  # fmt: skip
    k = len(raw_ends)
    o = 0
    for r in range(k):  # no payload for this kernel's compressor: the raw records as they are
        z = raw_ends[r] - o - 4 - HEAD - (x_bounds[r + 1] - x_bounds[r])
        if LZ4_MIN <= z < lz4_max:
            break
        o = raw_ends[r]
    else:
        return buf, raw_ends  # (a live body's records: ~70 us of copying saved a body)
    room = 0
    o = 0
    for r in range(k):
        room += 4 + bound(raw_ends[r] - o)
        o = raw_ends[r]
    out = np.empty(room, np.uint8)
    ends = np.empty(k, np.int64)
    table = np.full(1 << HASH_BITS, -1, np.int64)
    o_in, o = 0, 0
    for r in range(k):
        hl = HEAD + x_bounds[r + 1] - x_bounds[r]
        out[o : o + 4 + hl] = buf[o_in : o_in + 4 + hl]
        p, q = o_in + 4 + hl, o + 4 + hl
        z = raw_ends[r] - p
        packed = False
        if LZ4_MIN <= z < lz4_max:
            e = compress(buf, p, z, out, q + 4, table)
            if e - q < z:
                for b in range(4):
                    out[q + b] = (z >> (8 * b)) & 255
                out[o + 4 + C_AT] = 1
                o = e
                packed = True
        if not packed:
            out[q : q + z] = buf[p : p + z]
            o = q + z
        ends[r] = o
        o_in = raw_ends[r]
    return out[:o], ends


@nb.njit(cache=True, nogil=True)
def _write_raw(sidx: np.ndarray, ts: np.ndarray, vals: np.ndarray, arena: np.ndarray,
                  pk_start: np.ndarray, pk_end: np.ndarray, s_bounds: np.ndarray,
                  n_bounds: np.ndarray, extra: np.ndarray, x_bounds: np.ndarray,
                  x_count: np.ndarray, cpy: Any) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip  # pragma: no cover - numba
    """:func:`write_records`'s records with their payloads as they are (``c`` 0)."""
    k = len(s_bounds) - 1
    ends = np.empty(k, np.int64)
    total = 0
    for r in range(k):
        pk = 0
        for j in range(s_bounds[r], s_bounds[r + 1]):
            pk += pk_end[j] - pk_start[j]
        n = n_bounds[r + 1] - n_bounds[r]
        s = s_bounds[r + 1] - s_bounds[r]
        total += 4 + HEAD + (x_bounds[r + 1] - x_bounds[r]) + 20 * n + 4 * s + pk
        ends[r] = total
    buf = np.empty(total, np.uint8)
    vb = vals.view(np.uint8)
    pa, pb = arena.ctypes.data, buf.ctypes.data
    o = 0
    for r in range(k):
        n0, n1, s0, s1 = n_bounds[r], n_bounds[r + 1], s_bounds[r], s_bounds[r + 1]
        n, s = n1 - n0, s1 - s0
        xl = x_bounds[r + 1] - x_bounds[r]
        hl = HEAD + xl
        z = ends[r] - o - 4 - hl
        buf[o] = hl & 255
        buf[o + 1] = (hl >> 8) & 255
        buf[o + 2] = (hl >> 16) & 255
        buf[o + 3] = (hl >> 24) & 255
        h = o + 4
        buf[h] = 0x85 + x_count[r]
        # "v": 4
        buf[h + 1] = 0xA1
        buf[h + 2] = _KEYS[0]
        buf[h + 3] = VERSION
        for e, v in ((1, n), (2, s), (3, z)):
            q = h + 4 + 7 * (e - 1)
            buf[q] = 0xA1
            buf[q + 1] = _KEYS[e]
            buf[q + 2] = 0xCE
            _put_u32be(buf, q + 3, v)
        buf[h + 25] = 0xA1
        buf[h + 26] = _KEYS[4]
        buf[h + 27] = 0
        for j in range(xl):
            buf[h + HEAD + j] = extra[x_bounds[r] + j]
        p = h + hl
        # sidx and ts as differences, vals as byte planes, part key lengths, part keys
        prev_i = np.int32(0)
        prev_t = np.int64(0)
        for i in range(n):
            d = np.int32(sidx[n0 + i] - prev_i)
            prev_i = sidx[n0 + i]
            q = p + 4 * i
            for b in range(4):
                buf[q + b] = (d >> (8 * b)) & 255
            t = ts[n0 + i]
            dt = t - prev_t
            prev_t = t
            q = p + 4 * n + 8 * i
            for b in range(8):
                buf[q + b] = (dt >> (8 * b)) & 255
            q = p + 12 * n + i
            for b in range(8):
                buf[q + b * n] = vb[8 * (n0 + i) + b]
        q = p + 20 * n
        for j in range(s):
            ln = pk_end[s0 + j] - pk_start[s0 + j]
            for b in range(4):
                buf[q + 4 * j + b] = (ln >> (8 * b)) & 255
        q += 4 * s
        for j in range(s0, s1):
            ln = pk_end[j] - pk_start[j]
            cpy(pb + q, pa + pk_start[j], ln)
            q += ln
        o = ends[r]
    return buf, ends


@nb.njit(cache=True, nogil=True)
def _bounds(lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """Where each record of ``lens`` bytes starts and ends, back to back."""
    k = len(lens)
    ends = np.empty(k, np.int64)
    starts = np.empty(k, np.int64)
    o = 0
    for r in range(k):
        starts[r] = o
        o += lens[r]
        ends[r] = o
    return starts, ends


@nb.njit(cache=True, nogil=True)
def decode_records(buf: np.ndarray, lens: np.ndarray, cpy: Any
                   ) -> tuple[np.ndarray, ...]:  # fmt: skip  # pragma: no cover - numba
    """Records ``lens[r]`` bytes each, back to back in ``buf``, read at once: which were read
    (:func:`_scan`: the others are left to :func:`~filodb.model.record.read_record`), the
    end of each record's samples and series in the columns, and the columns of those read
    (:func:`read_payloads`). ``cpy``: libc's memcpy (:mod:`filodb.model.libc`)."""
    starts, ends = _bounds(lens)
    ok, ns, ss, _, pay, pstarts, _, _ = _scan(buf, starts, ends, cpy, np.iinfo(np.int64).max)
    sidx, ts, vals, pk_data, pk_ends = read_payloads(pay, pstarts, ns, ss, cpy)
    return ok, np.cumsum(ns), np.cumsum(ss), sidx, ts, vals, pk_data, pk_ends


@nb.njit(cache=True, nogil=True)
def scan_records(buf: np.ndarray, lens: np.ndarray, cpy: Any, lib_min: int
                 ) -> tuple[Any, ...]:  # fmt: skip  # pragma: no cover - numba
    """:func:`decode_records`'s first half (:func:`_scan`) for large records: LZ4 payloads
    of ``lib_min`` bytes or more are left to the LZ4 library (~10x this kernel's speed on
    large blocks): ``defer`` marks them (the last item: how many), their room in ``pay``
    (from ``pstarts``, ``zs`` bytes) is reserved; the caller decompresses them there, then
    calls :func:`check_deferred` and :func:`read_payloads`."""
    starts, ends = _bounds(lens)
    return _scan(buf, starts, ends, cpy, lib_min)


@nb.njit(cache=True, nogil=True)
def _valid(pay: np.ndarray, o: int, n: int, s: int, z: int) -> bool:  # pragma: no cover - numba
    """A payload's series indexes are in range and its part key lengths add up."""
    acc = np.int32(0)
    for i in range(n):
        d = np.int32(np.uint32(_u32le(pay, o + 4 * i)))
        acc = np.int32(acc + d)
        if acc < 0 or acc >= s:
            return False
    pk = 0
    q = o + 20 * n
    for j in range(s):
        pk += _u32le(pay, q + 4 * j)
    return pk == z - 20 * n - 4 * s


@nb.njit(cache=True, nogil=True)
def check_deferred(pay: np.ndarray, pstarts: np.ndarray, ns: np.ndarray, ss: np.ndarray,
                   zs: np.ndarray, ok: np.ndarray, defer: np.ndarray
                   ) -> None:  # fmt: skip  # pragma: no cover - numba
    """:func:`_valid` of the deferred payloads, once the caller decompressed them (one it
    could not has ``ok`` False already); a record found bad reads nothing."""
    for r in range(len(ok)):
        if defer[r] and ok[r] and not _valid(pay, pstarts[r], ns[r], ss[r], zs[r]):
            ok[r] = False
        if not ok[r]:
            ns[r] = 0
            ss[r] = 0


@nb.njit(cache=True, nogil=True)
def _scan(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, cpy: Any, lib_min: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                     np.ndarray, int]:  # fmt: skip  # pragma: no cover - numba
    """Which records :func:`read_payloads` reads (a version 4 record with no header entry
    past the fixed five, whole and consistent: sizes, its LZ4 block, series indexes, part key
    lengths), their samples, series and payload sizes (0 where not), and their payloads
    (decompressed) back to back with where each starts; LZ4 payloads of ``lib_min`` bytes or
    more are not decompressed nor checked here (``defer``, and how many). ``cpy``: libc's
    memcpy."""
    k = len(starts)
    ok = np.zeros(k, np.bool_)
    defer = np.zeros(k, np.bool_)
    ns = np.zeros(k, np.int64)
    ss = np.zeros(k, np.int64)
    zs = np.zeros(k, np.int64)
    total = 0
    for r in range(k):
        o, e = starts[r], ends[r]
        if e - o < 4 + HEAD:
            continue
        hl = np.int64(buf[o]) | (np.int64(buf[o + 1]) << 8)
        if hl != HEAD or buf[o + 2] != 0 or buf[o + 3] != 0:
            continue
        h = o + 4
        if buf[h] != 0x85 or buf[h + 1] != 0xA1 or buf[h + 2] != _KEYS[0] or buf[h + 3] != 4:
            continue
        good = True
        for e2 in range(1, 4):
            q = h + 4 + 7 * (e2 - 1)
            if buf[q] != 0xA1 or buf[q + 1] != _KEYS[e2] or buf[q + 2] != 0xCE:
                good = False
        if not good or buf[h + 25] != 0xA1 or buf[h + 26] != _KEYS[4] or buf[h + 27] > 1:
            continue
        n = _get_u32be(buf, h + N_AT)
        s = _get_u32be(buf, h + S_AT)
        z = _get_u32be(buf, h + Z_AT)
        p = h + HEAD
        if buf[h + 27]:  # an LZ4 block makes at most ~255 bytes of one: no huge claims
            if e - p < 4 or _u32le(buf, p) != z or z > 255 * (e - p) + 64:
                continue
        elif z != e - p:
            continue
        if 20 * n + 4 * s > z:
            continue
        ok[r] = True
        ns[r] = n
        ss[r] = s
        zs[r] = z
        total += z
    pay = np.empty(total, np.uint8)
    pstarts = np.zeros(k, np.int64)
    o2 = 0
    n_defer = 0
    for r in range(k):
        if not ok[r]:
            continue
        p = starts[r] + 4 + HEAD
        z, n, s = zs[r], ns[r], ss[r]
        if buf[starts[r] + 4 + C_AT]:
            if z >= lib_min:
                defer[r] = True
                n_defer += 1
                pstarts[r] = o2
                o2 += z
                continue
            if not decompress(buf, p + 4, ends[r], pay, o2, o2 + z, cpy):
                ok[r] = False
                continue
        else:
            pay[o2 : o2 + z] = buf[p : p + z]
        if not _valid(pay, o2, n, s, z):
            ok[r] = False
            continue
        pstarts[r] = o2
        o2 += z
    for r in range(k):
        if not ok[r]:
            ns[r] = 0
            ss[r] = 0
    return ok, ns, ss, zs, pay[:o2], pstarts, defer, n_defer


@nb.njit(cache=True, nogil=True)
def read_payloads(buf: np.ndarray, starts: np.ndarray, ns: np.ndarray, ss: np.ndarray, cpy: Any
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip  # pragma: no cover - numba
    """The columns of payloads that :func:`_scan` passed (``buf[starts[r]:]``),
    joined: ``sidx`` (series numbered across the records), ``ts``, ``vals``, the part keys
    back to back and their ends."""
    k = len(starts)
    tn, tsr = 0, 0
    for r in range(k):
        tn += ns[r]
        tsr += ss[r]
    sidx = np.empty(tn, np.int32)
    ts = np.empty(tn, np.int64)
    vals = np.empty(tn, np.float64)
    vb = vals.view(np.uint8)
    pk_ends = np.empty(tsr, np.int64)
    lens_total = np.int64(0)
    for r in range(k):
        q = starts[r] + 20 * ns[r]
        for j in range(ss[r]):
            lens_total += _u32le(buf, q + 4 * j)
    pk_data = np.empty(lens_total, np.uint8)
    pd, pb = pk_data.ctypes.data, buf.ctypes.data
    i0, s_base, pko = 0, 0, np.int64(0)
    for r in range(k):
        n, s = ns[r], ss[r]
        p = starts[r]
        acc = np.int32(0)
        t = np.int64(0)
        for i in range(n):
            q = p + 4 * i
            d = np.int32(np.uint32(_u32le(buf, q)))
            acc = np.int32(acc + d)
            sidx[i0 + i] = acc + s_base
            q = p + 4 * n + 8 * i
            dt = np.uint64(0)
            for b in range(8):
                dt |= np.uint64(buf[q + b]) << np.uint64(8 * b)
            t = np.int64(np.uint64(t) + dt)
            ts[i0 + i] = t
            q = p + 12 * n + i
            for b in range(8):
                vb[8 * (i0 + i) + b] = buf[q + b * n]
        q = p + 20 * n
        start = pko
        for j in range(s):
            pko += _u32le(buf, q + 4 * j)
            pk_ends[s_base + j] = pko
        cpy(pd + start, pb + q + 4 * s, pko - start)
        i0 += n
        s_base += s
    return sidx, ts, vals, pk_data, pk_ends
