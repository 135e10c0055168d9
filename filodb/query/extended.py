"""Extended range selectors (``anchored``, ``smoothed``), vectorised over series × steps.

Prometheus 3 semantics (``extendedRate``, ``extendFloats``, ``smoothSeries`` in promql):

- ``x[r] anchored``: the window ``(t - r, t]`` also keeps its *anchor*, the newest sample at or
  before ``t - r`` if it lies within the lookback delta; ``rate``/``increase``/``delta`` are the
  plain difference between the last sample and the anchor (no extrapolation), ``changes`` and
  ``resets`` count from the anchor.
- ``x[r] smoothed``: the values at ``t - r`` and ``t`` are linearly interpolated between the
  neighbouring samples (looking up to one lookback delta outside the window on both sides).
- ``x smoothed`` (instant selector): the value at each step is interpolated between the
  samples around it; after the last sample it is carried forward.

Each function takes a stale-free :class:`~filodb.model.source.SeriesBlock` and window ends in
ms ([n_steps]) and returns ``(values, present)`` of shape [n_series, n_steps].
"""

from __future__ import annotations

import numpy as np

from filodb.model.source import SeriesBlock
from filodb.query.values import window_bounds

ANCHORED_SAFE = ("changes", "delta", "increase", "rate", "resets")
SMOOTHED_SAFE = ("delta", "increase", "rate")


def check_function(func: str, anchored: bool) -> str | None:
    """The Prometheus error text when ``func`` cannot take an anchored/smoothed range, else None."""
    kind, safe = ("anchored", ANCHORED_SAFE) if anchored else ("smoothed", SMOOTHED_SAFE)
    if func in safe:
        return None
    return f"{kind} modifier can only be used with: {', '.join(safe)} - not with {func}"


def _interp(
    block: SeriesBlock, i1: np.ndarray, i2: np.ndarray, t: np.ndarray, counter: bool
) -> np.ndarray:
    """Linear interpolation at ``t`` between samples ``i1`` and ``i2`` (a counter restarts at 0)."""
    t1, t2 = block.ts[i1], block.ts[i2]
    y1, y2 = block.vals[i1], block.vals[i2]
    if counter:
        y1 = np.where(y2 < y1, 0.0, y1)
    with np.errstate(invalid="ignore", divide="ignore"):
        y: np.ndarray = y1 + (y2 - y1) * ((t - t1) / np.where(t2 == t1, 1, t2 - t1))
        return y


def _clip(idx: np.ndarray, n: int) -> np.ndarray:
    clipped: np.ndarray = np.clip(idx, 0, max(n - 1, 0))
    return clipped


def smoothed_values(
    block: SeriesBlock, times: np.ndarray, lookback_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``x smoothed`` at ``times``: exact, interpolated, or carried forward."""
    n = len(block.ts)
    lo, hi = window_bounds(block, times + lookback_ms, 2 * lookback_ms)
    if n == 0:
        return np.zeros(lo.shape), np.zeros(lo.shape, bool)
    _, j = window_bounds(block, times - 1, 1)  # first sample at or after t
    j = np.clip(j, lo, hi)
    t = np.broadcast_to(times[None, :], j.shape)
    jc, pc = _clip(j, n), _clip(j - 1, n)
    exact = (j < hi) & (block.ts[jc] == t)
    between = (j > lo) & (j < hi)
    vals = np.where(between, _interp(block, pc, jc, t, False), block.vals[pc])
    vals = np.where(exact, block.vals[jc], vals)
    return vals, exact | (j > lo)


def _anchor_bounds(block: SeriesBlock, times: np.ndarray, range_ms: int, lookback_ms: int,
                   smoothed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``first, last, lo_ext, lo_in``: the anchor (or first sample in range), the last sample
    used, the window start extended by the lookback, and the first sample after ``t - range``."""
    ext_end = lookback_ms if smoothed else 0
    lo_ext, hi_ext = window_bounds(block, times + ext_end, range_ms + lookback_ms + ext_end)
    lo_in, _ = window_bounds(block, times, range_ms)
    first = np.maximum(lo_ext, lo_in - 1)
    last = hi_ext - 1
    if smoothed:
        _, ge_end = window_bounds(block, times - 1, 1)
        last = np.minimum(ge_end, last)
    ok = hi_ext > lo_ext
    return first, np.where(ok, last, first), np.where(ok, lo_ext, hi_ext), lo_in


def extended_rate(block: SeriesBlock, times: np.ndarray, range_ms: int, lookback_ms: int,
                  smoothed: bool, is_counter: bool, is_rate: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``rate``/``increase``/``delta`` of an anchored or smoothed range (Prometheus ``extendedRate``)."""
    n = len(block.ts)
    first, last, lo_ext, _ = _anchor_bounds(block, times, range_ms, lookback_ms, smoothed)
    if n == 0:
        return np.zeros(first.shape), np.zeros(first.shape, bool)
    start = np.broadcast_to((times - range_ms)[None, :], first.shape)
    end = np.broadcast_to(times[None, :], first.shape)
    fi, li = _clip(first, n), _clip(last, n)
    ts, v = block.ts, block.vals
    ok = (last >= first) & (ts[li] > start) & (li >= lo_ext)
    left, right = v[fi], v[li]
    if smoothed:
        ok &= ts[fi] <= end
        left = np.where(
            ok & (ts[fi] < start), _interp(block, fi, _clip(fi + 1, n), start, is_counter), left
        )
        need_r = ok & (li > lo_ext) & (ts[li] > end)
        right = np.where(need_r, _interp(block, _clip(li - 1, n), li, end, is_counter), right)
    result = right - left
    if is_counter:
        result = result + _correction(block, fi, li, left, right, start, end)
    if is_rate:
        result = result / (range_ms / 1000.0)
    return result, ok


def _correction(block: SeriesBlock, fi: np.ndarray, li: np.ndarray, left: np.ndarray,
                right: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:  # fmt: skip
    """Counter-reset correction over ``left``, the samples strictly inside the range, ``right``."""
    n = len(block.ts)
    ts, v = block.ts, block.vals
    a = fi + (ts[fi] <= start)
    b = li - (ts[li] >= end)
    inner = b >= a
    ac, bc = _clip(a, n), _clip(b, n)
    drops = np.zeros(n + 1)
    if n > 1:
        drops[2:] = np.where(v[1:] < v[:-1], v[:-1], 0.0)
    prefix = np.cumsum(drops)  # prefix[k + 1] - prefix[a + 1]: drops of pairs (a..k)
    pairs = prefix[np.minimum(bc + 1, n)] - prefix[np.minimum(ac + 1, n)]
    with_inner = np.where(v[ac] < left, left, 0.0) + pairs + np.where(right < v[bc], v[bc], 0.0)
    return np.where(inner, with_inner, np.where(right < left, left, 0.0))


def anchored_windows(block: SeriesBlock, times: np.ndarray, range_ms: int,
                     lookback_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``lo, hi, present`` of anchored windows for ``changes``/``resets``: from the anchor to the
    last sample; present when some sample lies after ``t - range``."""
    first, _, lo_ext, lo_in = _anchor_bounds(block, times, range_ms, lookback_ms, False)
    _, hi = window_bounds(block, times, range_ms)
    return first, hi, hi > lo_in
