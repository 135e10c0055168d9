"""Values the engine computes with, over all steps of a query at once.

- :class:`StepVector`: an instant vector at every step: ``labels[i]`` and rows of ``values``
  (float64 [n_series, n_steps]) with ``present`` (bool, same shape; NaN is a legal value, so
  absence needs its own mask). It is plain arrays plus label tuples, so it ships between
  processes as raw bytes (see ``filodb/tasks/wire.py``).
- :class:`ScalarSteps`: a scalar per step. :class:`StringValue`: a string literal.
- :class:`Windows`: the samples of a range selector for every (series, step) window, as index
  bounds into a :class:`~filodb.model.source.SeriesBlock` (no copy per window).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numba as nb
import numpy as np

from filodb.model.labels import Labels
from filodb.model.source import STALE_NAN_BITS as STALE_NAN_BITS  # re-exported
from filodb.model.source import SeriesBlock
from filodb.model.source import is_stale as is_stale  # re-exported

# for kernels: a uint64 compared with a Python int is compared as floats there
_STALE_U64 = np.uint64(STALE_NAN_BITS)


@dataclass
class StepVector:
    labels: list[Labels]
    values: np.ndarray
    present: np.ndarray

    @classmethod
    def empty(cls, n_steps: int) -> StepVector:
        return cls([], np.zeros((0, n_steps)), np.zeros((0, n_steps), bool))

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray | list[int]) -> StepVector:
        rows = np.asarray(rows, np.int64)
        return StepVector(
            [self.labels[i] for i in rows.tolist()], self.values[rows], self.present[rows]
        )

    def compact(self) -> StepVector:
        """Drop series absent at every step."""
        keep = self.present.any(axis=1)
        return self if keep.all() else self.take(np.flatnonzero(keep))


@dataclass
class ScalarSteps:
    values: np.ndarray


@dataclass
class StringValue:
    value: str


@dataclass
class Windows:
    """Windows ``(t - range, t]`` of each series at each step ``t``.

    ``block`` holds the (stale-free) samples; window (i, s) is ``block.ts[lo[i,s]:hi[i,s]]``.
    ``times`` are the window ends in ms (after offset/@), ``range_ms`` the window length.
    """

    block: SeriesBlock
    lo: np.ndarray
    hi: np.ndarray
    times: np.ndarray
    range_ms: int
    eval_times: np.ndarray | None = None  # the steps themselves (``times`` is after offset/@)

    def __post_init__(self) -> None:
        if self.eval_times is None:
            self.eval_times = self.times

    @cached_property
    def count(self) -> np.ndarray:
        """Samples in each window (computed once: a range function asks for it several
        times; ``lo`` and ``hi`` are never changed in place)."""
        n: np.ndarray = self.hi - self.lo
        return n


def in_time_order(times: np.ndarray) -> bool:
    """Whether ``times`` never decrease (every range query's steps): window cursors that only
    move forward then find every window."""
    return len(times) < 2 or bool((times[1:] >= times[:-1]).all())


def window_bounds(
    block: SeriesBlock, times: np.ndarray, range_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Index bounds ``lo, hi`` (each [n_series, n_steps]) of the samples in ``(t - range, t]``.

    Steps in time order (every range query, subquery grid and ``@``): one numba pass per series
    moves two cursors forward through its samples, O(samples + series x steps). Otherwise one
    ``searchsorted`` over a key that is globally sorted (series index, then time), or a loop per
    series when that key would overflow int64.
    """
    n, S = len(block), len(times)
    if n == 0 or S == 0:
        z = np.zeros((n, S), np.int64)
        return z, z.copy()
    ts = block.ts
    times = np.asarray(times, np.int64)
    if in_time_order(times):
        lo = np.empty((n, S), np.int64)
        hi = np.empty((n, S), np.int64)
        _cursor_bounds(np.ascontiguousarray(ts, np.int64),
                       np.ascontiguousarray(block.offsets, np.int64), times, range_ms, lo, hi)  # fmt: skip
        return lo, hi
    counts = np.diff(block.offsets)
    base = min(int(ts.min()) if len(ts) else 0, int(times.min()) - range_ms) - 1
    span = max(int(ts.max()) if len(ts) else 0, int(times.max())) - base + 2
    if span * n < (1 << 62):
        sid = np.repeat(np.arange(n, dtype=np.int64), counts)
        key = sid * span + (ts - base)
        q = np.arange(n, dtype=np.int64)[:, None] * span + (times - base)[None, :]
        hi = np.searchsorted(key, q, "right")
        lo = np.searchsorted(key, q - range_ms, "right")
        return lo, hi
    lo = np.empty((n, S), np.int64)
    hi = np.empty((n, S), np.int64)
    for i in range(n):
        a, b = int(block.offsets[i]), int(block.offsets[i + 1])
        hi[i] = a + np.searchsorted(ts[a:b], times, "right")
        lo[i] = a + np.searchsorted(ts[a:b], times - range_ms, "right")
    return lo, hi


@nb.njit(cache=True, nogil=True)
def _cursor_bounds(ts, offsets, times, range_ms, lo, hi):  # type: ignore[no-untyped-def]
    """``searchsorted(series, t, "right")`` and the same at ``t - range_ms`` for non-decreasing
    ``times``: cursors that only move forward (times and ranges are bounded far inside int64
    by the parser)."""
    for i in range(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        p = a
        q = a
        for s in range(len(times)):
            t = times[s]
            while p < b and ts[p] <= t:
                p += 1
            hi[i, s] = p
            tl = t - range_ms
            while q < b and ts[q] <= tl:
                q += 1
            lo[i, s] = q


def latest(
    block: SeriesBlock, times: np.ndarray, lookback_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Index of each series' newest sample in ``(t - lookback, t]`` at every step, and whether
    it counts (there is one, and it is not a stale marker). Both arrays are [series, steps]."""
    lo, hi = window_bounds(block, times, lookback_ms)
    idx = np.maximum(hi - 1, 0)
    if len(block.vals) == 0:
        return idx, np.zeros(idx.shape, bool)
    return idx, (hi > lo) & ~is_stale(block.vals[idx])


def latest_values(
    block: SeriesBlock, times: np.ndarray, lookback_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """The values :func:`latest` picks (``block.vals[idx]``) and ``ok``, without the index
    arrays: one pass per series with a cursor (``times`` non-decreasing; otherwise through
    :func:`latest`)."""
    times = np.asarray(times, np.int64)
    if len(block.vals) == 0 or not in_time_order(times):
        idx, ok = latest(block, times, lookback_ms)
        vals = block.vals[idx] if len(block.vals) else np.zeros(idx.shape)
        return vals, ok
    vals = np.ascontiguousarray(block.vals, np.float64)
    return _latest_kernel(np.ascontiguousarray(block.ts, np.int64), vals, vals.view(np.uint64),  # type: ignore[no-any-return]
                          np.ascontiguousarray(block.offsets, np.int64), times, int(lookback_ms))  # fmt: skip


@nb.njit(cache=True, nogil=True, inline="always")
def window_cursors(ts, lo, hi, b, t, range_ms):  # type: ignore[no-untyped-def]  # pragma: no cover - numba
    """One series' rows ``[lo, hi)`` in the window ``(t - range_ms, t]``, moved on from the
    previous step's cursors (steps ascend); ``b`` ends the series' rows."""
    while hi < b and ts[hi] <= t:
        hi += 1
    tl = t - range_ms
    while lo < b and ts[lo] <= tl:
        lo += 1
    return lo, hi


@nb.njit(cache=True, nogil=True)
def _latest_kernel(ts, vals, bits, offsets, times, lookback_ms):  # type: ignore[no-untyped-def]
    n_rows, n_steps = len(offsets) - 1, len(times)
    out = np.zeros((n_rows, n_steps))
    ok = np.zeros((n_rows, n_steps), np.bool_)
    for i in range(n_rows):
        a, b = offsets[i], offsets[i + 1]
        hi = a
        for s in range(n_steps):
            t = times[s]
            while hi < b and ts[hi] <= t:
                hi += 1
            k = max(hi - 1, 0)  # as latest(): index 0 when the series has nothing yet
            out[i, s] = vals[k]
            ok[i, s] = hi > a and ts[hi - 1] > t - lookback_ms and bits[hi - 1] != _STALE_U64
    return out, ok


def drop_stale(block: SeriesBlock) -> SeriesBlock:
    """The block without stale markers (range selectors never see them)."""
    stale = is_stale(block.vals)
    if not stale.any():
        return block
    keep = ~stale
    sid = np.repeat(np.arange(len(block)), np.diff(block.offsets))
    counts = np.bincount(sid[keep], minlength=len(block))
    offsets = np.zeros(len(block) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return SeriesBlock(block.labels, offsets, block.ts[keep], block.vals[keep])
