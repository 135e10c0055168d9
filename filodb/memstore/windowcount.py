"""Samples per window of a range selector, counted without selecting them
(``count_over_time``, ``present_over_time``).

A chunk that lies wholly inside or wholly outside every window ``(t - range, t]`` of the query
(and inside the range a select would read) is counted from its metadata: its sample count
less its stale markers (:attr:`~filodb.memstore.chunks.Chunk.stale`, counted when it was
encoded), added to the run of steps whose windows hold it. Only a chunk that a window's edge
cuts has its timestamps decoded (its values too when it holds stale markers), and each of its
samples is added to the run of steps whose windows hold it; so are the head's samples. The
runs are added into a difference array (+n at the first step, -n past the last), summed along
the steps once at the end: no sample is copied and no value decoded for a chunk wholly
inside, which is every chunk of a long window (the ingestion benchmark's check query reads
7.9 M samples this way from metadata alone).

Exact only for series whose pieces cannot overlap (in-order chunks, an ordered head past
them, nothing paged): :meth:`~filodb.memstore.shard.TimeSeriesShard.window_counts` gathers the
other series' samples as a select does (deduped) and adds them sample by sample.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numba as nb
import numpy as np

from filodb.memstore.chunks import Chunk
from filodb.memstore.decoded import DecodedChunks
from filodb.memstore.head import Head
from filodb.model.source import STALE_NAN_BITS

_STALE = np.uint64(STALE_NAN_BITS)  # a uint64 constant: compared as integers in the kernels
_START, _END, _COUNT, _STALE_N = (operator.attrgetter(a) for a in ("start", "end", "count",
                                                                     "stale"))  # fmt: skip


@nb.njit(cache=True, nogil=True)
def _add_span(D, i, n, first, last, times, range_ms):  # pragma: no cover - numba
    """``n`` samples in ``[first, last]`` to every step whose window holds them all
    (``last <= t < first + range``)."""
    a = np.searchsorted(times, last)
    b = np.searchsorted(times, first + range_ms)
    if b > a:
        D[i, a] += n
        D[i, b] -= n


@nb.njit(cache=True, nogil=True)
def _add_one(D, i, t, times, range_ms, a, b):  # pragma: no cover - numba
    """One sample at ``t`` to the steps whose window holds it (``t <= step < t + range``);
    ``a``, ``b``: the run's cursors into ``times`` (a run's timestamps increase), moved on."""
    S = len(times)
    while a < S and times[a] < t:
        a += 1
    while b < S and times[b] < t + range_ms:
        b += 1
    if b > a:
        D[i, a] += 1
        D[i, b] -= 1
    return a, b


@nb.njit(cache=True, nogil=True)
def _add_whole(
    D, total, owner, start, end, n_live, n_all, times, range_ms
):  # pragma: no cover - numba
    """Chunks no window edge cuts: ``n_live`` to every step whose window holds the chunk
    (``end <= t < start + range``)."""
    for c in range(len(owner)):
        i = owner[c]
        total[i] += n_all[c]
        if n_live[c]:
            _add_span(D, i, n_live[c], start[c], end[c], times, range_ms)


@nb.njit(cache=True, nogil=True)
def add_samples(
    D, total, owner, tpos, vpos, length, ts, bits, times, range_ms, lo, hi
):  # pragma: no cover - numba
    """Runs of samples (run ``c``: ``length[c]`` timestamps from ``ts[tpos[c]]``, their value
    bits from ``bits[vpos[c]]``, or none to look at when ``vpos[c]`` < 0) of position
    ``owner[c]``: those in ``[lo, hi]`` to ``total``, those not stale to every step whose window
    holds them (``ts <= t < ts + range``)."""
    for c in range(len(owner)):
        i = owner[c]
        p, v = tpos[c], vpos[c]
        a = b = 0  # a run's timestamps increase: its steps' cursors only move forward
        for r in range(length[c]):
            t = ts[p + r]
            if t < lo or t > hi:
                continue
            total[i] += 1
            if v < 0 or bits[v + r] != _STALE:
                a, b = _add_one(D, i, t, times, range_ms, a, b)


def count_exact(
    D: np.ndarray, total: np.ndarray, ids: np.ndarray, chunks: Sequence[Chunk], owner: np.ndarray,
    head_pos: np.ndarray, head: Head, decoded: DecodedChunks, times: np.ndarray, range_ms: int,
) -> None:  # fmt: skip
    """Add the chunks (``owner``: their positions in ``ids``) and the heads of positions
    ``head_pos`` of series whose pieces do not overlap into ``D`` (differences along the
    steps, [positions, steps + 1]) and ``total`` (samples in the range read, per position)."""
    lo, hi = int(times[0]) - range_ms + 1, int(times[-1])
    if chunks:
        k = len(chunks)
        start = np.fromiter(map(_START, chunks), np.int64, k)
        end = np.fromiter(map(_END, chunks), np.int64, k)
        count = np.fromiter(map(_COUNT, chunks), np.int64, k)
        stale = np.fromiter(map(_STALE_N, chunks), np.int64, k)
        touch = np.searchsorted(times, end + range_ms) - np.searchsorted(times, start)
        whole = np.searchsorted(times, start + range_ms) - np.searchsorted(times, end)
        cut = (touch > np.maximum(whole, 0)) | (start < lo) | (end > hi) | (stale < 0)
        w = np.flatnonzero(~cut)
        _add_whole(D, total, owner[w], start[w], end[w], count[w] - stale[w], count[w], times,
                   np.int64(range_ms))  # fmt: skip
        c = np.flatnonzero(cut)
        if len(c):
            picked = [chunks[j] for j in c.tolist()]
            ts, tpos = decoded.timestamps(picked)
            look = np.flatnonzero(stale[c] != 0)  # values only where a stale marker may be
            vpos = np.full(len(c), -1, np.int64)
            bits = np.zeros(0, np.uint64)
            if len(look):
                vals, voffs = decoded.values([picked[j] for j in look.tolist()])
                vpos[look] = voffs[:-1]
                bits = vals.view(np.uint64)
            add_samples(D, total, owner[c], tpos, vpos, count[c], ts, bits, times,
                        np.int64(range_ms), np.int64(lo), np.int64(hi))  # fmt: skip
    if len(head_pos):  # the heads decoded, each a run as add_samples adds it
        hts, hvals, hoffs = head.decode_in(ids[head_pos], lo, hi)
        add_samples(D, total, np.ascontiguousarray(head_pos, np.int64), hoffs[:-1], hoffs[:-1],
                    np.diff(hoffs), hts, hvals.view(np.uint64), times, np.int64(range_ms),
                    np.int64(lo), np.int64(hi))  # fmt: skip
