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


@nb.njit(cache=True, nogil=True, inline="always")
def _kahan_inc(inc, total, comp):  # type: ignore[no-untyped-def]
    """Prometheus's ``kahanSumInc`` (Neumaier): the new running sum and compensation."""
    t = total + inc
    if abs(total) >= abs(inc):
        comp += (total - t) + inc
    else:
        comp += (inc - t) + total
    return t, comp


@nb.njit(cache=True, nogil=True)
def _kernel(ts, vals, lo, hi, at, first, slope, icpt, reuse):  # type: ignore[no-untyped-def]
    """Every window's sums, sample by sample. The sums of x and x*x depend on the window's
    timestamps only (relative to its intercept time): when they are those of the window before
    (scrapes at a steady interval: most windows of a series, and of the next series, which
    was scraped with it), ``reuse`` takes that window's sums and x values instead of adding
    them up again, the same floats (each sum's own order is unchanged)."""
    n_rows, n_steps = lo.shape
    most = 0
    for i in range(n_rows):
        for s in range(n_steps):
            most = max(most, hi[i, s] - lo[i, s])
    dprev = np.empty(most, np.int64)  # the window before: its timestamps minus its t0
    xprev = np.empty(most)  # and their x
    plen = -1
    psx = pcx = psxx = pcxx = 0.0
    for i in range(n_rows):
        for s in range(n_steps):
            a = lo[i, s]
            b = hi[i, s]
            if b - a < 2:
                continue
            t0 = ts[a] if first else at[s]
            same = reuse and b - a == plen
            if same:
                for k in range(a, b):
                    if ts[k] - t0 != dprev[k - a]:
                        same = False
                        break
            init_y = vals[a]
            const_y = True
            n = 0.0
            sy = cy = sxy = cxy = 0.0
            if same:
                sx, cx, sxx, cxx = psx, pcx, psxx, pcxx
                for k in range(a, b):
                    y = vals[k]
                    if const_y and k > a and y != init_y:
                        const_y = False
                    n += 1.0
                    x = xprev[k - a]
                    sy, cy = _kahan_inc(y, sy, cy)
                    sxy, cxy = _kahan_inc(x * y, sxy, cxy)
            else:
                sx = cx = sxx = cxx = 0.0
                for k in range(a, b):
                    y = vals[k]
                    if const_y and k > a and y != init_y:
                        const_y = False
                    n += 1.0
                    d = ts[k] - t0
                    x = float(d) / 1e3
                    dprev[k - a] = d
                    xprev[k - a] = x
                    # kahanSumInc of x, y, x*y and x*x, in Prometheus's order
                    sx, cx = _kahan_inc(x, sx, cx)
                    sy, cy = _kahan_inc(y, sy, cy)
                    sxy, cxy = _kahan_inc(x * y, sxy, cxy)
                    sxx, cxx = _kahan_inc(x * x, sxx, cxx)
                plen = b - a
                psx, pcx, psxx, pcxx = sx, cx, sxx, cxx
            if const_y:
                if np.isinf(init_y):
                    slope[i, s] = np.nan
                    icpt[i, s] = np.nan
                else:
                    slope[i, s] = 0.0
                    icpt[i, s] = init_y
                continue
            sx = sx + cx
            sy = sy + cy
            sxy = sxy + cxy
            sxx = sxx + cxx
            cov = sxy - sx * sy / n
            var = sxx - sx * sx / n
            m = cov / var
            slope[i, s] = m
            icpt[i, s] = sy / n - m * sx / n


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
