"""The downsamplers: many series at once, as flat columns sorted by (series, time).

Inputs are ``sid`` (int64 series index), ``ts`` (int64 ms) and ``vals`` (float64), sorted by
series then time, strictly increasing times within a series, NaNs (stale markers) removed.
A period of resolution ``res`` is ``(t - res, t]``, named by its end ``t`` (a multiple of res).

* gauges: per (series, period) min, max, sum, count and avg = sum / count, stamped at the
  period end (:func:`gauge_periods`); the sum adds the samples in time order, as a plain
  loop would;
* counters: the samples to keep (:func:`counter_keep`): the last of every period, and both
  samples of every reset (the one before the drop and the one after), at their own times, so
  that ``rate``, ``increase`` and ``resets`` over the kept samples equal the raw answers.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

GAUGE_COLUMNS = ("min", "max", "sum", "count", "avg")


def period_end(ts: np.ndarray, res_ms: int) -> np.ndarray:
    """The end of the period ``(t - res, t]`` holding each timestamp."""
    return ((ts - 1) // res_ms + 1) * res_ms


def _group_starts(sid: np.ndarray, pend: np.ndarray) -> np.ndarray:
    brk = np.ones(len(sid), bool)
    brk[1:] = (sid[1:] != sid[:-1]) | (pend[1:] != pend[:-1])
    return np.flatnonzero(brk)


class GaugePeriods(NamedTuple):
    sid: np.ndarray  # series of each period
    ts: np.ndarray  # period end
    columns: dict[str, np.ndarray]  # GAUGE_COLUMNS


@numba.njit(cache=True, nogil=True)
def _segment_stats(
    vals: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, g = len(vals), len(starts)
    mn, mx, sm = np.empty(g), np.empty(g), np.empty(g)
    for j in range(g):
        lo = starts[j]
        hi = starts[j + 1] if j + 1 < g else n
        a = b = s = vals[lo]
        for i in range(lo + 1, hi):
            v = vals[i]
            a = min(a, v)
            b = max(b, v)
            s += v
        mn[j], mx[j], sm[j] = a, b, s
    return mn, mx, sm


def gauge_periods(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, res_ms: int) -> GaugePeriods:
    """min, max, sum, count, avg of every (series, period) holding at least one sample."""
    if len(ts) == 0:
        z = np.zeros(0)
        return GaugePeriods(np.zeros(0, np.int64), np.zeros(0, np.int64),
                            dict.fromkeys(GAUGE_COLUMNS, z))  # fmt: skip
    pend = period_end(ts, res_ms)
    starts = _group_starts(sid, pend)
    mn, mx, sm = _segment_stats(vals, starts)
    cnt = np.diff(np.append(starts, len(ts))).astype(np.float64)
    cols = {"min": mn, "max": mx, "sum": sm, "count": cnt, "avg": sm / cnt}
    return GaugePeriods(sid[starts], pend[starts], cols)


def counter_keep(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, res_ms: int) -> np.ndarray:
    """Mask of the counter samples a resolution keeps: last of each period, both sides of
    each reset (a value below the series' previous one)."""
    n = len(ts)
    if n == 0:
        return np.zeros(0, bool)
    pend = period_end(ts, res_ms)
    same = sid[1:] == sid[:-1]
    keep = np.ones(n, bool)
    keep[:-1] = ~same | (pend[1:] != pend[:-1])  # last of its period
    reset = same & (vals[1:] < vals[:-1])  # reset[i]: sample i + 1 dropped below sample i
    keep[1:] |= reset
    keep[:-1] |= reset
    return keep
