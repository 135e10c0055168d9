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


@nb.njit(cache=True, nogil=True)
def extrapolated_kernel(vals, ts, lo, hi, times, range_ms, corr_prefix, is_counter, is_rate):  # type: ignore[no-untyped-def]
    n_rows, n_steps = lo.shape
    out = np.full((n_rows, n_steps), np.nan)
    range_s = range_ms / 1000.0
    for i in range(n_rows):
        for s in range(n_steps):
            a = lo[i, s]
            b = hi[i, s]
            c = b - a
            if c < 2:
                continue
            first = a
            last = b - 1
            result = vals[last] - vals[first]
            if is_counter:
                result = result + (corr_prefix[b] - corr_prefix[min(a + 1, b)])
            t = times[s]
            to_start = (ts[first] - (t - range_ms)) / 1000.0
            to_end = (t - ts[last]) / 1000.0
            sampled = (ts[last] - ts[first]) / 1000.0
            avg_gap = sampled / max(c - 1, 1)
            thresh = avg_gap * 1.1
            if to_start >= thresh:
                to_start = avg_gap / 2
            if to_end >= thresh:
                to_end = avg_gap / 2
            if is_counter:
                v0 = vals[first]
                to_zero = np.inf
                if result > 0 and v0 >= 0:
                    to_zero = sampled * (v0 / result)
                if to_zero != to_zero or to_zero < to_start:  # np.minimum: NaN wins
                    to_start = to_zero
            factor = (sampled + to_start + to_end) / sampled
            if is_rate:
                factor = factor / range_s
            out[i, s] = result * factor
    return out
