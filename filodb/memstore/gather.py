"""A query's samples out of a shard's decoded chunks and its head, in one pass per sample.

:func:`gather` writes, series by series, the samples in ``[start_ms, end_ms]`` of each series'
chunk pieces (in the order given: write order) and then of its head straight into the
output arrays: no concatenation of everything first, no sort by series (a numba kernel
counts, then fills). The heads are decoded first (:meth:`~filodb.memstore.head.Head.decode_in`:
one call, heads that cannot hold a sample of the range skipped). The output is grouped by series
and, in the usual case (in-order chunks, a head that took no out-of-order sample), strictly
increasing within each series; otherwise it says so (``ordered`` False) and the caller sorts and dedupes those
series (:func:`~filodb.memstore.shard.dedupe_samples`: the last write of a timestamp wins).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba as nb
import numpy as np

if TYPE_CHECKING:
    from filodb.memstore.head import Head


@nb.njit(cache=True, nogil=True)
def _count(ids, cts, ctpos, coffs, cowner, climit, hts, hoffs, start, end):
    n = len(ids)
    counts = np.zeros(n, np.int64)
    for c in range(len(coffs) - 1):
        i = cowner[c]
        lim = climit[c]
        rows = coffs[c + 1] - coffs[c]
        t0 = ctpos[c]
        if rows > 0 and cts[t0] >= start and cts[t0 + rows - 1] <= lim:
            counts[i] += rows  # the whole chunk (a chunk's timestamps increase)
            continue
        k = 0
        for j in range(t0, t0 + rows):
            t = cts[j]
            if t >= start and t <= lim:
                k += 1
        counts[i] += k
    for i in range(n):
        for r in range(hoffs[i], hoffs[i + 1]):
            t = hts[r]
            if t >= start and t <= end:
                counts[i] += 1
    return counts


@nb.njit(cache=True, nogil=True)
def _fill(ids, cts, ctpos, cvals, coffs, cowner, climit, hts, hoffs, hvals, start, end, offsets,
          out_ts, out_vals):  # fmt: skip
    n = len(ids)
    pos = offsets[:-1].copy()
    for c in range(len(coffs) - 1):
        i = cowner[c]
        lim = climit[c]
        p = pos[i]
        a = coffs[c]
        rows = coffs[c + 1] - a
        t0 = ctpos[c]
        if rows > 0 and cts[t0] >= start and cts[t0 + rows - 1] <= lim:
            out_ts[p : p + rows] = cts[t0 : t0 + rows]  # the whole chunk
            out_vals[p : p + rows] = cvals[a : a + rows]
            pos[i] = p + rows
            continue
        for r in range(rows):
            t = cts[t0 + r]
            if t >= start and t <= lim:
                out_ts[p] = t
                out_vals[p] = cvals[a + r]
                p += 1
        pos[i] = p
    for i in range(n):
        p = pos[i]
        for r in range(hoffs[i], hoffs[i + 1]):
            t = hts[r]
            if t >= start and t <= end:
                out_ts[p] = t
                out_vals[p] = hvals[r]
                p += 1
        pos[i] = p
    ordered = True
    for i in range(n):
        for p in range(offsets[i] + 1, offsets[i + 1]):
            if out_ts[p] <= out_ts[p - 1]:
                ordered = False
                break
        if not ordered:
            break
    return ordered


def gather(
    ids: np.ndarray,
    chunk_ts: np.ndarray,
    chunk_tpos: np.ndarray,
    chunk_vals: np.ndarray,
    chunk_offsets: np.ndarray,
    chunk_owner: np.ndarray,
    chunk_limit: np.ndarray,
    head: Head,
    start_ms: int,
    end_ms: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The samples of series ``ids`` (shard series ids) in ``[start_ms, end_ms]``: of the
    decoded chunks (``chunk_offsets`` delimit chunk ``c``'s values, its timestamps are as many
    from ``chunk_ts[chunk_tpos[c]]`` on (:meth:`~filodb.memstore.decoded.DecodedChunks.columns`:
    chunks may share them); its samples belong to position ``chunk_owner[c]`` of ``ids`` and
    count up to ``chunk_limit[c]`` ms only), then of the head. A chunk wholly in range is
    copied without a look at each sample. Returns ``(ts, vals, counts per position of ids,
    ordered)``; ``ordered`` is False when some series' timestamps do not strictly increase
    (overlapping pieces to dedupe)."""
    hts, hvals, hoffs = head.decode_in(ids, start_ms, end_ms)
    args = (np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(chunk_ts, np.int64),
            np.ascontiguousarray(chunk_tpos, np.int64))  # fmt: skip
    rest = (np.ascontiguousarray(chunk_offsets, np.int64),
            np.ascontiguousarray(chunk_owner, np.int64),
            np.ascontiguousarray(chunk_limit, np.int64), hts, hoffs)  # fmt: skip
    counts = _count(*args, *rest, np.int64(start_ms), np.int64(end_ms))
    offsets = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    out_ts = np.empty(total, np.int64)
    out_vals = np.empty(total, np.float64)
    ordered = _fill(*args, np.ascontiguousarray(chunk_vals, np.float64), *rest, hvals,
                    np.int64(start_ms), np.int64(end_ms), offsets, out_ts, out_vals)  # fmt: skip
    return out_ts, out_vals, counts, bool(ordered)
