"""rate/increase/delta's numba kernel against a per-window reference written from Prometheus's
extrapolatedRate (plain Python floats, one window at a time), on random blocks with resets."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.model.source import SeriesBlock
from filodb.query import rangefns
from filodb.query.values import Windows, window_bounds


def _reference(
    ts: list[int], vs: list[float], t: int, rng: int, counter: bool, is_rate: bool
) -> float:
    result = vs[-1] - vs[0]
    if counter:
        result += sum(a for a, b in zip(vs, vs[1:], strict=False) if b < a)
    to_start = (ts[0] - (t - rng)) / 1000.0
    to_end = (t - ts[-1]) / 1000.0
    sampled = (ts[-1] - ts[0]) / 1000.0
    avg = sampled / (len(ts) - 1)
    if to_start >= avg * 1.1:
        to_start = avg / 2
    if to_end >= avg * 1.1:
        to_end = avg / 2
    if counter and result > 0 and vs[0] >= 0:
        to_start = min(to_start, sampled * (vs[0] / result))
    factor = (sampled + to_start + to_end) / sampled
    return result * factor / (rng / 1000.0 if is_rate else 1.0)


@settings(max_examples=150, deadline=None)
@given(data=st.lists(st.lists(st.tuples(st.integers(0, 3000), st.integers(-5, 40)), max_size=40),
                     min_size=1, max_size=5),
       times=st.lists(st.integers(0, 3_100_000), min_size=1, max_size=20),
       rng=st.integers(1, 600))  # fmt: skip
def test_kernel_matches_the_reference(data, times, rng) -> None:  # type: ignore[no-untyped-def]
    series = []
    for i, pts in enumerate(data):
        d = dict(pts)  # one value per timestamp
        ts = np.array(sorted(d), np.int64) * 1000 + 123
        series.append(((("i", str(i)),), ts, np.array([float(d[k]) for k in sorted(d)])))
    block = SeriesBlock.from_series(series)
    t = np.array(sorted(times), np.int64)
    lo, hi = window_bounds(block, t, rng * 1000)
    w = Windows(block, lo, hi, t, rng * 1000)
    for fn, counter, is_rate in ((rangefns.rate, True, True), (rangefns.increase, True, False),
                                 (rangefns.delta, False, False)):  # fmt: skip
        got, ok = fn(w)
        assert np.array_equal(ok, hi - lo >= 2)
        for i, s in zip(*np.nonzero(ok), strict=True):
            a, b = lo[i, s], hi[i, s]
            want = _reference(block.ts[a:b].tolist(), block.vals[a:b].tolist(), int(t[s]), rng * 1000,
                              counter, is_rate)  # fmt: skip
            assert math.isclose(got[i, s], want, rel_tol=1e-12, abs_tol=1e-12), (fn, i, s)
