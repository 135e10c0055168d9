"""``rate``, ``increase`` and ``delta`` per window in one numba pass (Prometheus's
``extrapolatedRate``): the same float operations in the same order as the numpy form they
replace, without its dozen [series x steps] temporaries and gathers.

Counter resets are corrected with ``corr_prefix`` (prefix sums of each reset's pre-drop value,
computed once over the block by the caller), so a window's correction is a difference of two
prefix entries, as before.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from filodb.query.values import window_cursors


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _window(v_first, v_last, t_first, t_last, c, t, range_ms, range_s, corr, is_counter, is_rate):  # type: ignore[no-untyped-def]
    """One window of ``c`` samples (two or more) ending at ``t``, from its first and last
    samples; ``corr`` its counter resets' correction. Branches are selects, so a loop of
    windows vectorizes (no division checks: ``error_model="numpy"``)."""
    result = v_last - v_first
    if is_counter:
        result = result + corr
    to_start = (t_first - (t - range_ms)) / 1000.0
    to_end = (t - t_last) / 1000.0
    sampled = (t_last - t_first) / 1000.0
    avg_gap = sampled / max(c - 1, 1)
    thresh = avg_gap * 1.1
    if to_start >= thresh:
        to_start = avg_gap / 2
    if to_end >= thresh:
        to_end = avg_gap / 2
    if is_counter:
        to_zero = np.inf
        if result > 0 and v_first >= 0:
            to_zero = sampled * (v_first / result)
        if to_zero != to_zero or to_zero < to_start:  # np.minimum: NaN wins
            to_start = to_zero
    factor = (sampled + to_start + to_end) / sampled
    if is_rate:
        factor = factor / range_s
    return result * factor


@nb.njit(cache=True, nogil=True, error_model="numpy")
def extrapolated_kernel(vals, ts, lo, hi, times, range_ms, corr_prefix, is_counter, is_rate):  # type: ignore[no-untyped-def]
    n_rows, n_steps = lo.shape
    out = np.full((n_rows, n_steps), np.nan)
    range_s = range_ms / 1000.0
    for i in range(n_rows):
        for s in range(n_steps):
            a = lo[i, s]
            b = hi[i, s]
            if b - a < 2:
                continue
            corr = 0.0
            if is_counter:
                corr = corr_prefix[b] - corr_prefix[min(a + 1, b)]
            out[i, s] = _window(vals[a], vals[b - 1], ts[a], ts[b - 1], b - a, times[s], range_ms,
                                range_s, corr, is_counter, is_rate)  # fmt: skip
    return out


@nb.njit(cache=True, nogil=True, error_model="numpy")
def extrapolated_block(vals, ts, offsets, times, range_ms, is_counter, is_rate):  # type: ignore[no-untyped-def]
    """:func:`extrapolated_kernel` straight from a block's series (``offsets``) at ``times``
    (non-decreasing): window bounds by forward-moving cursors and the reset correction prefix
    of each series built as it is walked (the same sums, in the same order, as
    ``rangefns._reset_prefix`` over the block), so no [series x steps] bounds and no
    block-long prefix are written and read back. A series is two loops over the steps: the
    cursors write each window's first and last samples to step-long buffers, then the window
    formula runs over those buffers, a loop the compiler vectorizes (the divisions were most
    of the time; 1.7x faster for ``rate``, the same floats). Returns the values and where a
    window held two samples or more."""
    n_rows = len(offsets) - 1
    n_steps = len(times)
    out = np.empty((n_rows, n_steps))
    ok = np.zeros((n_rows, n_steps), np.bool_)
    range_s = range_ms / 1000.0
    most = 0
    for i in range(n_rows):
        most = max(most, offsets[i + 1] - offsets[i])
    p = np.zeros(most + 1)  # the series' slice of the block-long prefix, p[k] = P[a + k]
    cnt = np.zeros(n_steps, np.int64)  # per step of the series: the window's sample count,
    tf = np.zeros(n_steps, np.int64)  # first and last timestamps and values, correction
    tl = np.ones(n_steps, np.int64)
    vf = np.zeros(n_steps)
    vl = np.zeros(n_steps)
    corr = np.zeros(n_steps)
    acc = 0.0
    for i in range(n_rows):
        a0, b0 = offsets[i], offsets[i + 1]
        if b0 <= a0:
            out[i, :] = np.nan
            continue
        resets = False
        if is_counter:
            p[1] = acc + 0.0  # a series' first sample corrects nothing
            acc = p[1]
            for j in range(a0 + 1, b0):
                if vals[j] < vals[j - 1]:
                    resets = True
                    break
            if resets:
                for j in range(a0 + 1, b0):
                    if vals[j] < vals[j - 1]:
                        acc = acc + vals[j - 1]
                    else:
                        acc = acc + 0.0
                    p[j - a0 + 1] = acc
        flat = acc - acc  # no reset: every prefix entry is acc (0 unless it is Inf or NaN)
        lo = a0
        hi = a0
        for s in range(n_steps):
            lo, hi = window_cursors(ts, lo, hi, b0, times[s], range_ms)
            c = hi - lo
            cnt[s] = c
            if c < 2:  # harmless numbers, the result is dropped
                tf[s], tl[s], vf[s], vl[s], corr[s] = 0, 1, 0.0, 0.0, 0.0
                continue
            tf[s], tl[s], vf[s], vl[s] = ts[lo], ts[hi - 1], vals[lo], vals[hi - 1]
            if is_counter:
                corr[s] = p[hi - a0] - p[min(lo + 1, hi) - a0] if resets else flat
        row, okrow = out[i], ok[i]
        for s in range(n_steps):
            v = _window(vf[s], vl[s], tf[s], tl[s], cnt[s], times[s], range_ms, range_s, corr[s],
                        is_counter, is_rate)  # fmt: skip
            good = cnt[s] >= 2
            row[s] = v if good else np.nan
            okrow[s] = good
    return out, ok
