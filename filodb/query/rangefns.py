"""Range-vector functions (``rate``, ``*_over_time``, ...), vectorised over series × steps.

Each takes :class:`~filodb.query.values.Windows` and returns ``(values, present)`` arrays of
shape [n_series, n_steps]. Sums come from prefix sums over the whole block, minima/maxima from a
sparse table, so no Python loop runs per sample or per window (``quantile_over_time`` and
``mad_over_time`` loop per window; noted as the exception).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba as nb
import numpy as np

from filodb.model.source import SeriesBlock
from filodb.query.extrapolated import extrapolated_block, extrapolated_kernel
from filodb.query.linreg import linear_regression
from filodb.query.values import Windows, in_time_order, window_bounds, window_cursors

RangeFn = Callable[..., tuple[np.ndarray, np.ndarray]]
BlockFn = Callable[[SeriesBlock, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def _prefix(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x) + 1, np.float64)
    with np.errstate(all="ignore"):
        np.cumsum(x, out=out[1:])
    return out


def kahan_sum(x: np.ndarray) -> float:
    """Prometheus's Kahan-Babuska (Neumaier) sum, sample by sample (only for the few windows
    or groups where a plain sum may have lost precision)."""
    total, c = kahan_pair(x)
    return total + c


def kahan_pair(x: np.ndarray) -> tuple[float, float]:
    """The running sum and compensation of :func:`kahan_sum`, before they are added (a partial
    sum that other partial sums will join keeps both)."""
    total, c = 0.0, 0.0
    for v in x.tolist():
        t = total + v
        if math.isinf(t):
            c = 0.0
        elif abs(total) >= abs(v):
            c += (total - t) + v
        else:
            c += (v - t) + total
        total = t
    return total, c


def imprecise(magnitude: np.ndarray, result: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Cells whose plain float sum may have lost digits: the magnitudes summed dwarf the result.
    Sums of integers below 2**53 are exact and never flagged."""
    with np.errstate(all="ignore"):
        flagged: np.ndarray = magnitude > 1e6 * np.abs(result)
        if not flagged.any():
            return flagged
        finite = vals[np.isfinite(vals)]
        exact = np.all(finite == np.round(finite)) and float(np.abs(finite).sum()) < 2.0**53
    if exact:
        return np.zeros_like(flagged)
    return flagged


def _series_prefix(x: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums that restart at every series, and their running magnitude.

    Series ``i`` owns slots ``offsets[i] + i .. offsets[i+1] + i`` (one extra leading zero per
    series), so window ``[lo, hi)`` of series ``i`` sums to ``P[hi + i] - P[lo + i]``. Keeping
    the prefix local to a series keeps its rounding error proportional to that series' own
    values, not to everything concatenated before it. One numba pass (sequential sums, as
    ``np.cumsum`` adds).
    """
    n = len(offsets) - 1
    P = np.zeros(len(x) + n, np.float64)
    M = np.zeros(len(x) + n, np.float64)
    _series_prefix_kernel(
        np.ascontiguousarray(x, np.float64), np.ascontiguousarray(offsets, np.int64), P, M
    )
    return P, M


@nb.njit(cache=True, nogil=True)
def _series_prefix_kernel(x, offsets, P, M):  # type: ignore[no-untyped-def]
    for i in range(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        if b <= a:
            continue
        acc = x[a]
        m = abs(acc)
        P[a + i + 1] = acc
        M[a + i + 1] = m
        for j in range(a + 1, b):
            acc = acc + x[j]
            v = abs(acc)
            if m == m and (v != v or v > m):  # np.maximum.accumulate: NaN sticks
                m = v
            P[j + i + 1] = acc
            M[j + i + 1] = m


def _robust_sum(vals: np.ndarray, w: Windows) -> np.ndarray:
    """Window sums with IEEE semantics for Inf/NaN (prefix sums would smear them); windows
    that prefix sums would get imprecise are re-summed with :func:`kahan_sum`."""
    lo, hi = w.lo, w.hi
    finite = np.isfinite(vals)
    clean = np.where(finite, vals, 0.0)
    row = np.arange(lo.shape[0], dtype=np.int64)[:, None]
    P, M = _series_prefix(clean, w.block.offsets)
    out: np.ndarray = P[hi + row] - P[lo + row]
    with np.errstate(all="ignore"):
        bad = imprecise(M[hi + row], out, vals) & (hi > lo)
    for i, j in zip(*np.nonzero(bad), strict=True):  # rare: only ill-conditioned windows
        out[i, j] = kahan_sum(clean[lo[i, j] : hi[i, j]])
    if finite.all():
        return out
    nan = _prefix(np.isnan(vals).astype(np.float64))
    pinf = _prefix((vals == np.inf).astype(np.float64))
    ninf = _prefix((vals == -np.inf).astype(np.float64))
    n_nan, n_p, n_n = nan[hi] - nan[lo], pinf[hi] - pinf[lo], ninf[hi] - ninf[lo]
    out = np.where(n_p > 0, np.inf, out)
    out = np.where(n_n > 0, -np.inf, out)
    return np.where((n_nan > 0) | ((n_p > 0) & (n_n > 0)), np.nan, out)


@nb.njit(cache=True, nogil=True)
def _block_sums(vals, ts, offsets, times, range_ms):  # type: ignore[no-untyped-def]
    """:func:`_robust_sum` and the sample counts of every window ``(t - range_ms, t]`` of a
    block at non-decreasing ``times``, in one pass per series (bounds by cursors, the series'
    prefix sums and magnitudes in a scratch buffer: the same sums as :func:`_series_prefix`,
    so the same floats). Returns the sums, the counts and whether some window may have lost
    precision (the caller then takes :func:`_robust_sum`'s path, which decides with the whole
    block and re-sums those windows)."""
    n_rows = len(offsets) - 1
    n_steps = len(times)
    out = np.zeros((n_rows, n_steps))
    count = np.zeros((n_rows, n_steps), np.int64)
    most = 0
    for i in range(n_rows):
        most = max(most, offsets[i + 1] - offsets[i])
    P = np.zeros(most + 1)
    M = np.zeros(most + 1)
    nan = np.zeros(most + 1, np.int64)
    pinf = np.zeros(most + 1, np.int64)
    ninf = np.zeros(most + 1, np.int64)
    flagged = False
    for i in range(n_rows):
        a, b = offsets[i], offsets[i + 1]
        if b <= a:
            continue
        odd = False
        acc = 0.0
        m = 0.0
        for j in range(a, b):
            x = vals[j]
            k = j - a + 1
            nan[k] = nan[k - 1]
            pinf[k] = pinf[k - 1]
            ninf[k] = ninf[k - 1]
            if x != x:
                nan[k] += 1
                x = 0.0
                odd = True
            elif x == np.inf:
                pinf[k] += 1
                x = 0.0
                odd = True
            elif x == -np.inf:
                ninf[k] += 1
                x = 0.0
                odd = True
            acc = x if j == a else acc + x
            v = abs(acc)
            if j == a:
                m = v
            elif m == m and (v != v or v > m):
                m = v
            P[k] = acc
            M[k] = m
        lo = a
        hi = a
        for s in range(n_steps):
            t = times[s]
            lo, hi = window_cursors(ts, lo, hi, b, t, range_ms)
            c = hi - lo
            count[i, s] = c
            r = P[hi - a] - P[lo - a]
            if c > 0 and M[hi - a] > 1e6 * abs(r):
                flagged = True
            if odd:
                n_p = pinf[hi - a] - pinf[lo - a]
                n_n = ninf[hi - a] - ninf[lo - a]
                if n_p > 0:
                    r = np.inf
                if n_n > 0:
                    r = -np.inf
                if nan[hi - a] - nan[lo - a] > 0 or (n_p > 0 and n_n > 0):
                    r = np.nan
            out[i, s] = r
    return out, count, flagged


def _sums_block(block: SeriesBlock, times: np.ndarray, range_ms: int, avg: bool
                ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``sum_over_time`` (``avg``: ``avg_over_time``) of a range selector's block."""
    times = np.asarray(times, np.int64)
    if in_time_order(times):
        out, c, flagged = _block_sums(np.ascontiguousarray(block.vals, np.float64),
                                      np.ascontiguousarray(block.ts, np.int64),
                                      np.ascontiguousarray(block.offsets, np.int64), times,
                                      int(range_ms))  # fmt: skip
        if not flagged:
            if not avg:
                return out, c > 0
            with np.errstate(invalid="ignore", divide="ignore"):
                return out / np.maximum(c, 1), c > 0
    lo, hi = window_bounds(block, times, range_ms)
    w = Windows(block, lo, hi, times, range_ms)
    return avg_over_time(w) if avg else sum_over_time(w)  # type: ignore[no-any-return]


def _sparse_reduce(vals: np.ndarray, lo: np.ndarray, hi: np.ndarray, fn: np.ufunc) -> np.ndarray:
    """``fn`` (fmin/fmax) over each window [lo, hi) via a sparse table (hi > lo assumed)."""
    n = len(vals)
    if n == 0:
        return np.full(lo.shape, np.nan)
    table = [vals]
    k = 1
    while (1 << k) <= n:
        prev = table[-1]
        half = 1 << (k - 1)
        table.append(fn(prev[:-half], prev[half:]))
        k += 1
    length = np.maximum(hi - lo, 1)
    level = np.floor(np.log2(length)).astype(np.int64)
    out = np.empty(lo.shape)
    for lv in np.unique(level).tolist():
        m = level == lv
        t = table[lv]
        a = lo[m]
        b = hi[m] - (1 << lv)
        out[m] = fn(t[np.minimum(a, len(t) - 1)], t[np.clip(b, 0, len(t) - 1)])
    return out


def count_over_time(w: Windows) -> tuple[np.ndarray, np.ndarray]:
    c = w.count
    return c.astype(np.float64), c > 0


def sum_over_time(w: Windows):  # type: ignore[no-untyped-def]
    return _robust_sum(w.block.vals, w), w.count > 0


def avg_over_time(w: Windows):  # type: ignore[no-untyped-def]
    c = w.count
    with np.errstate(invalid="ignore", divide="ignore"):
        return _robust_sum(w.block.vals, w) / np.maximum(c, 1), c > 0


@nb.njit(cache=True, nogil=True)
def _window_extreme(vals, lo, hi, is_max):  # type: ignore[no-untyped-def]
    """fmax (fmin) of each window [lo, hi), sample by sample: NaN only when all are NaN."""
    out = np.full(lo.shape, np.nan)
    for i in range(lo.shape[0]):
        for s in range(lo.shape[1]):
            a, b = lo[i, s], hi[i, s]
            if b <= a:
                continue
            m = vals[a]
            for k in range(a + 1, b):
                v = vals[k]
                if (v > m if is_max else v < m) or m != m:
                    m = v
            out[i, s] = m
    return out


def _extreme(w: Windows, is_max: bool) -> np.ndarray:
    """Window minima or maxima: a walk of every window when they hold fewer samples in all
    than a few passes over the block (dashboard ranges at their step), else a sparse table."""
    n = len(w.block.vals)
    if int(w.count.sum()) <= 4 * n * max(1, int(n).bit_length()):
        return _window_extreme(np.ascontiguousarray(w.block.vals, np.float64),  # type: ignore[no-any-return]
                               np.ascontiguousarray(w.lo, np.int64),
                               np.ascontiguousarray(w.hi, np.int64), is_max)  # fmt: skip
    return _sparse_reduce(w.block.vals, w.lo, w.hi, np.fmax if is_max else np.fmin)


def min_over_time(w: Windows):  # type: ignore[no-untyped-def]
    return _extreme(w, False), w.count > 0


def max_over_time(w: Windows):  # type: ignore[no-untyped-def]
    return _extreme(w, True), w.count > 0


def last_over_time(w: Windows):  # type: ignore[no-untyped-def]
    c = w.count
    idx = np.maximum(w.hi - 1, 0)
    vals = w.block.vals[idx] if len(w.block.vals) else np.zeros(idx.shape)
    return vals, c > 0


def present_over_time(w: Windows):  # type: ignore[no-untyped-def]
    c = w.count
    return np.ones(c.shape), c > 0


def _variance(w: Windows) -> tuple[np.ndarray, np.ndarray]:
    c = w.count
    n = np.maximum(c, 1)
    vals = w.block.vals
    mean = _robust_sum(vals, w) / n
    # second pass around each window's mean would need per-window data; use a per-series shift
    sq = _robust_sum(vals * vals, w) / n
    with np.errstate(invalid="ignore"):
        var = np.maximum(sq - mean * mean, 0.0)
    return var, c > 0


def stdvar_over_time(w: Windows):  # type: ignore[no-untyped-def]
    return _variance(w)


def stddev_over_time(w: Windows):  # type: ignore[no-untyped-def]
    var, p = _variance(w)
    return np.sqrt(var), p


def _pairs(w: Windows, pred: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Count of consecutive pairs (i-1, i) inside each window with ``pred(prev, cur)``."""
    vals = w.block.vals
    flag = np.zeros(len(vals))
    if len(vals) > 1:
        flag[1:] = pred(vals[:-1], vals[1:])
        flag[w.block.offsets[:-1][np.diff(w.block.offsets) > 0]] = 0  # no pair across series
    p = _prefix(flag)
    lo1 = np.minimum(w.lo + 1, w.hi)
    return np.where(w.count >= 2, p[w.hi] - p[lo1], 0.0)


def changes(w: Windows):  # type: ignore[no-untyped-def]
    def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        c: np.ndarray = (a != b) & ~(np.isnan(a) & np.isnan(b))
        return c

    return _pairs(w, changed), w.count > 0


def resets(w: Windows):  # type: ignore[no-untyped-def]
    return _pairs(w, lambda a, b: b < a), w.count > 0


@nb.njit(cache=True, nogil=True)
def _reset_prefix(vals, offsets):  # type: ignore[no-untyped-def]
    """Prefix sums (sequential, as ``np.cumsum``) of each counter reset's pre-drop value: the
    value before a sample lower than it, within a series; one pass."""
    p = np.zeros(len(vals) + 1)
    acc = 0.0
    for i in range(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        if b <= a:
            continue
        p[a + 1] = acc + 0.0  # a series' first sample corrects nothing
        acc = p[a + 1]
        for j in range(a + 1, b):
            if vals[j] < vals[j - 1]:
                acc = acc + vals[j - 1]
            else:
                acc = acc + 0.0
            p[j + 1] = acc
    return p


def _extrapolated(w: Windows, is_counter: bool, is_rate: bool):  # type: ignore[no-untyped-def]
    """Prometheus's extrapolatedRate per window (:mod:`filodb.query.extrapolated`)."""
    vals, ts = w.block.vals, w.block.ts
    ok = w.count >= 2
    if len(vals) == 0:
        return np.zeros(w.lo.shape), ok
    p = np.zeros(1)
    if is_counter:
        p = _reset_prefix(np.ascontiguousarray(vals, np.float64),
                          np.ascontiguousarray(w.block.offsets, np.int64))  # fmt: skip
    out = extrapolated_kernel(np.ascontiguousarray(vals, np.float64), np.ascontiguousarray(ts, np.int64),
                              np.ascontiguousarray(w.lo, np.int64), np.ascontiguousarray(w.hi, np.int64),
                              np.ascontiguousarray(w.times, np.int64), int(w.range_ms), p, is_counter,
                              is_rate)  # fmt: skip
    return out, ok


def _extrapolated_block(is_counter: bool, is_rate: bool) -> BlockFn:
    """:func:`_extrapolated` of a range selector's block without :class:`Windows`: bounds,
    reset corrections and values in one pass (:func:`extrapolated_block`), the same numbers."""

    def fn(block: SeriesBlock, times: np.ndarray, range_ms: int) -> tuple[np.ndarray, np.ndarray]:
        times = np.asarray(times, np.int64)
        if not in_time_order(times):
            lo, hi = window_bounds(block, times, range_ms)
            w = Windows(block, lo, hi, times, range_ms)
            return _extrapolated(w, is_counter, is_rate)  # type: ignore[no-any-return]
        out, ok = extrapolated_block(np.ascontiguousarray(block.vals, np.float64),
                                     np.ascontiguousarray(block.ts, np.int64),
                                     np.ascontiguousarray(block.offsets, np.int64), times,
                                     int(range_ms), is_counter, is_rate)  # fmt: skip
        return out, ok

    return fn


def rate(w: Windows):  # type: ignore[no-untyped-def]
    return _extrapolated(w, True, True)


def increase(w: Windows):  # type: ignore[no-untyped-def]
    return _extrapolated(w, True, False)


def delta(w: Windows):  # type: ignore[no-untyped-def]
    return _extrapolated(w, False, False)


def _instant(w: Windows, is_rate: bool):  # type: ignore[no-untyped-def]
    vals, ts = w.block.vals, w.block.ts
    ok = w.count >= 2
    last = np.where(ok, w.hi - 1, 1)
    prev = last - 1
    if len(vals) < 2:
        return np.zeros(w.lo.shape), np.zeros(w.lo.shape, bool)
    d = vals[last] - vals[prev]
    if is_rate:
        d = np.where(vals[last] < vals[prev], vals[last], d)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = d / ((ts[last] - ts[prev]) / 1000.0)
    return d, ok


def irate(w: Windows):  # type: ignore[no-untyped-def]
    return _instant(w, True)


def idelta(w: Windows):  # type: ignore[no-untyped-def]
    return _instant(w, False)


def deriv(w: Windows):  # type: ignore[no-untyped-def]
    slope, _ = linear_regression(w.block.ts, w.block.vals, w.lo, w.hi, None)
    return slope, w.count >= 2


def predict_linear(w: Windows, seconds: np.ndarray):  # type: ignore[no-untyped-def]
    slope, intercept = linear_regression(w.block.ts, w.block.vals, w.lo, w.hi, w.eval_times)
    return slope * seconds[None, :] + intercept, w.count >= 2


def _per_window(w: Windows, fn: Callable[[np.ndarray], float]) -> np.ndarray:
    out = np.full(w.lo.shape, np.nan)
    vals = w.block.vals
    for i, s in zip(*np.nonzero(w.count > 0), strict=True):
        out[i, s] = fn(vals[w.lo[i, s] : w.hi[i, s]])
    return out


def quantile_over_time(w: Windows, q: np.ndarray):  # type: ignore[no-untyped-def]
    out = np.full(w.lo.shape, np.nan)
    vals = w.block.vals
    for i, s in zip(*np.nonzero(w.count > 0), strict=True):
        out[i, s] = _quantile(float(q[s]), vals[w.lo[i, s] : w.hi[i, s]])
    return out, w.count > 0


def mad_over_time(w: Windows):  # type: ignore[no-untyped-def]
    def mad(v: np.ndarray) -> float:
        if np.isnan(v).any():
            return np.nan
        med = _quantile(0.5, v)
        return _quantile(0.5, np.abs(v - med))

    return _per_window(w, mad), w.count > 0


def _quantile(q: float, v: np.ndarray) -> float:
    """Prometheus's quantile: linear interpolation between closest ranks; ±Inf outside [0, 1]."""
    if len(v) == 0 or np.isnan(q):
        return np.nan
    if q < 0:
        return -np.inf
    if q > 1:
        return np.inf
    nan = np.isnan(v)
    s = np.concatenate([v[nan], np.sort(v[~nan])])  # Go sorts NaN first
    rank = q * (len(s) - 1)
    lo = int(np.floor(rank))
    hi = min(lo + 1, len(s) - 1)
    weight = rank - lo
    return float(s[lo] * (1 - weight) + s[hi] * weight)


def first_over_time(w: Windows):  # type: ignore[no-untyped-def]
    c = w.count
    idx = np.minimum(w.lo, max(len(w.block.vals) - 1, 0))
    vals = w.block.vals[idx] if len(w.block.vals) else np.zeros(idx.shape)
    return vals, c > 0


def ts_of_first_over_time(w: Windows):  # type: ignore[no-untyped-def]
    idx = np.minimum(w.lo, max(len(w.block.ts) - 1, 0))
    ts = w.block.ts[idx] / 1000.0 if len(w.block.ts) else np.zeros(idx.shape)
    return ts, w.count > 0


def ts_of_last_over_time(w: Windows):  # type: ignore[no-untyped-def]
    idx = np.maximum(w.hi - 1, 0)
    ts = w.block.ts[idx] / 1000.0 if len(w.block.ts) else np.zeros(idx.shape)
    return ts, w.count > 0


def _ts_of_extreme(w: Windows, pick_min: bool):  # type: ignore[no-untyped-def]
    out = np.full(w.lo.shape, np.nan)
    vals, ts = w.block.vals, w.block.ts
    for i, s in zip(*np.nonzero(w.count > 0), strict=True):
        v = vals[w.lo[i, s] : w.hi[i, s]]
        if np.isnan(v).all():
            j = len(v) - 1
        else:
            target = np.nanmin(v) if pick_min else np.nanmax(v)
            j = int(np.flatnonzero(v == target)[-1])
        out[i, s] = ts[w.lo[i, s] + j] / 1000.0
    return out, w.count > 0


def ts_of_min_over_time(w: Windows):  # type: ignore[no-untyped-def]
    return _ts_of_extreme(w, True)


def ts_of_max_over_time(w: Windows):  # type: ignore[no-untyped-def]
    return _ts_of_extreme(w, False)


RANGE_FUNCTIONS: dict[str, RangeFn] = {
    "first_over_time": first_over_time, "ts_of_first_over_time": ts_of_first_over_time,
    "ts_of_last_over_time": ts_of_last_over_time, "ts_of_min_over_time": ts_of_min_over_time,
    "ts_of_max_over_time": ts_of_max_over_time,
    "count_over_time": count_over_time, "sum_over_time": sum_over_time,
    "avg_over_time": avg_over_time, "min_over_time": min_over_time,
    "max_over_time": max_over_time, "last_over_time": last_over_time,
    "present_over_time": present_over_time, "stddev_over_time": stddev_over_time,
    "stdvar_over_time": stdvar_over_time, "changes": changes, "resets": resets,
    "rate": rate, "increase": increase, "delta": delta, "irate": irate, "idelta": idelta,
    "deriv": deriv, "mad_over_time": mad_over_time,
}  # fmt: skip
"""Functions whose only argument is a range vector."""

BLOCK_FUNCTIONS: dict[str, BlockFn] = {
    "rate": _extrapolated_block(True, True), "increase": _extrapolated_block(True, False),
    "delta": _extrapolated_block(False, False),
    "sum_over_time": lambda b, t, r: _sums_block(b, t, r, False),
    "avg_over_time": lambda b, t, r: _sums_block(b, t, r, True),
}  # fmt: skip
"""Range functions that, over a range selector, compute straight from its block and the
windows' ends (no :class:`Windows` bounds first); the same answers as :data:`RANGE_FUNCTIONS`."""

RANGE_FUNCTIONS_WITH_SCALAR = {
    "predict_linear": (predict_linear, 0),
    "quantile_over_time": (quantile_over_time, 1),
}
"""Functions of a range vector and a scalar: (implementation, index of the range argument)."""

KEEPS_NAME = frozenset({"last_over_time", "first_over_time"})
