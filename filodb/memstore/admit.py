"""Which samples of a batch a shard takes, and the per-series bookkeeping of those it takes,
in one numba pass (a batch of a few samples would otherwise pay a dozen numpy calls).

A sample is taken when it is newer than its series' newest (``last``, or an earlier sample of
the batch), or within ``window`` ms of that newest (out of order). For each series with a
sample taken: its first and last timestamps, where memory holds it from (``mem_start``: an
out-of-order sample below what was closed does not make memory hold the closed samples, the
store may have them only) and the generation that touched it.
"""

from __future__ import annotations

import numba as nb
import numpy as np

NO_TS = np.iinfo(np.int64).min


@nb.njit(cache=True, nogil=True)
def admit(sid: np.ndarray, ts: np.ndarray, window: int, gen: int, first: np.ndarray,
          last: np.ndarray, closed_end: np.ndarray, mem_start: np.ndarray,
          touched: np.ndarray, ok: np.ndarray, in_order: np.ndarray) -> int:  # fmt: skip  # pragma: no cover - numba
    """Fill ``ok`` (taken) and ``in_order`` (newer than everything before) per sample of
    ``sid`` (series ids, non-decreasing: arrival order within a series), update the series
    arrays for the samples taken, and return how many were taken; -1 (nothing changed) when
    ``sid`` decreases somewhere (the caller sorts it, stably, first)."""
    n = len(sid)
    for i in range(1, n):
        if sid[i] < sid[i - 1]:
            return -1
    taken = 0
    i = 0
    while i < n:
        s = sid[i]
        newest = last[s]
        lo = np.iinfo(np.int64).max
        hi = NO_TS
        any_taken = False
        r = i
        while r < n and sid[r] == s:
            t = ts[r]
            later = t > newest
            k = later or (window > 0 and newest != NO_TS and t >= newest - window)
            in_order[r] = later
            ok[r] = k
            if later:
                newest = t
            if k:
                any_taken = True
                taken += 1
                lo = min(lo, t)
                hi = max(hi, t)
            r += 1
        if any_taken:
            f = first[s]
            first[s] = lo if f == NO_TS else min(f, lo)
            last[s] = max(last[s], hi)
            c = closed_end[s]
            held = lo if lo > c else c + 1
            if held < mem_start[s]:
                mem_start[s] = held
            touched[s] = gen
        i = r
    return taken
