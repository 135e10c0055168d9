"""The least-squares line of ``deriv`` and ``predict_linear``, bit for bit as Prometheus 2.42's
``linearRegression`` (promql/functions.go) computes it: per window, sample by sample, Kahan-
Babuska (Neumaier) running sums of x, y, x*y and x*x with x in seconds relative to an
intercept time (``(t - t0) / 1e3`` from the integer difference), compensations added at the
end, then ``covXY = sumXY - sumX*sumY/n``, ``varX = sumX2 - sumX*sumX/n``,
``slope = covXY/varX``, ``intercept = sumY/n - slope*sumX/n``. A window whose values are all
equal (``!=`` to the first, so NaN is never equal) has slope 0 and intercept that value (NaN
for both when the value is infinite). ``deriv`` takes the window's first sample time as
intercept time, ``predict_linear`` the evaluation time.

The order of operations is the answer, so the sums are not prefix sums: one numba kernel walks
every window (work proportional to the samples in all windows, as in Prometheus), without the
GIL so shards evaluate in parallel. No fused multiply-add (numba does not contract without
fastmath; Go does not on amd64).
"""

from __future__ import annotations

import numba as nb
import numpy as np

_RUN_VALUES = 1 << 16  # y values of a run of windows copied side by side (512 kB)


@nb.njit(cache=True, nogil=True, inline="always")
def _kahan_inc(inc, total, comp):  # type: ignore[no-untyped-def]
    """Prometheus's ``kahanSumInc`` (Neumaier): the new running sum and compensation."""
    t = total + inc
    if abs(total) >= abs(inc):
        comp += (total - t) + inc
    else:
        comp += (inc - t) + total
    return t, comp


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _kernel(ts, vals, lo, hi, at, first, slope, icpt, reuse):  # type: ignore[no-untyped-def]
    """Every window's sums, sample by sample. The sums of x and x*x depend on the window's
    timestamps only (relative to its intercept time): a run of a series' windows with the
    same timestamps relative to theirs (scrapes at a steady interval: most windows) shares
    one window's x values and sums (``reuse``), and their sums of y and x*y are added up side
    by side, the inner loop over the run's windows (which the compiler vectorizes: each
    window's sums still take its samples one by one in order, the same floats)."""
    n_rows, n_steps = lo.shape
    most = 0
    for i in range(n_rows):
        for s in range(n_steps):
            most = max(most, hi[i, s] - lo[i, s])
    dx = np.empty(most, np.int64)  # the run's timestamps minus its t0
    xs = np.empty(most)  # and their x
    # even[j]: the last index q with ts[j..q] evenly spaced (every gap that of ts[j + 1] - ts[j]):
    # two windows of n samples inside such stretches, with the same gap, are alike in O(1)
    even = np.empty(len(ts), np.int64)
    for j in range(len(ts) - 1, -1, -1):
        if j + 2 < len(ts) and ts[j + 2] - ts[j + 1] == ts[j + 1] - ts[j]:
            even[j] = even[j + 1]
        else:
            even[j] = min(j + 1, len(ts) - 1)
    lanes = max(1, min(n_steps, _RUN_VALUES // max(most, 1)))  # windows in a run, at most
    ys = np.empty((most, lanes))  # the run's y values, [sample k, window]
    sy = np.empty(lanes)  # per window of the run: the sums of y and x*y, compensations,
    cy = np.empty(lanes)  # whether every y equals the first
    sxy = np.empty(lanes)
    cxy = np.empty(lanes)
    same_y = np.empty(lanes, np.bool_)
    for i in range(n_rows):
        lo_i, hi_i = lo[i], hi[i]
        s = 0
        while s < n_steps:
            a = lo_i[s]
            n = hi_i[s] - a
            if n < 2:
                s += 1
                continue
            t0 = ts[a] if first else at[s]
            sx = cx = sxx = cxx = 0.0
            for k in range(n):
                d = ts[a + k] - t0
                x = float(d) / 1e3
                dx[k] = d
                xs[k] = x
                sx, cx = _kahan_inc(x, sx, cx)
                sxx, cxx = _kahan_inc(x * x, sxx, cxx)
            e = s + 1  # the run: the windows after s with the same relative timestamps
            flat_s = even[a] >= a + n - 1
            while reuse and e < n_steps and e - s < lanes and hi_i[e] - lo_i[e] == n:
                a2 = lo_i[e]
                t02 = ts[a2] if first else at[e]
                if not (flat_s and even[a2] >= a2 + n - 1 and ts[a2 + 1] - ts[a2] == ts[a + 1] - ts[a]
                        and ts[a2] - t02 == dx[0]):  # fmt: skip
                    same = True  # not both evenly spaced alike: compare them
                    for k in range(n):
                        if ts[a2 + k] - t02 != dx[k]:
                            same = False
                            break
                    if not same:
                        break
                e += 1
            m = e - s
            for k in range(n):  # the run's samples, k-th of every window side by side
                yk = ys[k]
                for j in range(m):
                    yk[j] = vals[lo_i[s + j] + k]
            sy[:m] = 0.0
            cy[:m] = 0.0
            sxy[:m] = 0.0
            cxy[:m] = 0.0
            same_y[:m] = True
            y0 = ys[0]
            for k in range(n):
                x = xs[k]
                yk = ys[k]
                for j in range(m):  # contiguous lanes: vectorized
                    y = yk[j]
                    same_y[j] = same_y[j] and (
                        k == 0 or y == y0[j]
                    )  # != the first: NaN never equals
                    sy[j], cy[j] = _kahan_inc(y, sy[j], cy[j])
                    sxy[j], cxy[j] = _kahan_inc(x * y, sxy[j], cxy[j])
            fn = float(n)
            sxt = sx + cx
            sxxt = sxx + cxx
            for j in range(m):
                w = s + j
                if same_y[j]:
                    init_y = y0[j]
                    if np.isinf(init_y):
                        slope[i, w] = np.nan
                        icpt[i, w] = np.nan
                    else:
                        slope[i, w] = 0.0
                        icpt[i, w] = init_y
                    continue
                syt = sy[j] + cy[j]
                sxyt = sxy[j] + cxy[j]
                cov = sxyt - sxt * syt / fn
                var = sxxt - sxt * sxt / fn
                mm = cov / var
                slope[i, w] = mm
                icpt[i, w] = syt / fn - mm * sxt / fn
            s = e


def linear_regression(
    ts: np.ndarray,
    vals: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    at: np.ndarray | None,
    reuse: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept [n_series, n_steps] of the windows ``[lo, hi)`` over ``ts``/``vals``;
    intercept at ``at[step]`` (ms), or at each window's first sample when ``at`` is None. Windows
    of fewer than two samples get NaN (the callers drop them)."""
    slope = np.full(lo.shape, np.nan)
    icpt = np.full(lo.shape, np.nan)
    if lo.size:
        at_arr = np.zeros(lo.shape[1], np.int64) if at is None else np.asarray(at, np.int64)
        _kernel(np.ascontiguousarray(ts, np.int64), np.ascontiguousarray(vals, np.float64),
                np.ascontiguousarray(lo, np.int64), np.ascontiguousarray(hi, np.int64), at_arr,
                at is None, slope, icpt, reuse)  # fmt: skip
    return slope, icpt
