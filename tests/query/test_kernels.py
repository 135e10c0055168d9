"""The numba kernels of the engine equal the numpy forms they replaced, bit for bit: topk's
per-group buffers against the column lexsort (the path for large k), per-series prefix sums
against ``np.cumsum``/``np.maximum.accumulate``, window cursors against ``searchsorted``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from filodb.model.source import SeriesBlock
from filodb.query import aggregations, rangefns
from filodb.query.values import ScalarSteps, StepVector, window_bounds

VALUES = st.sampled_from([-2.0, -0.0, 0.0, 1.0, 1.0, 3.5, np.inf, -np.inf, np.nan])


@settings(max_examples=200, deadline=None)
@given(vals=hnp.arrays(np.float64, st.tuples(st.integers(1, 25), st.integers(1, 6)), elements=VALUES),
       seed=st.integers(0, 2**32 - 1), bottom=st.booleans(), by=st.booleans())  # fmt: skip
def test_topk_kernel_equals_the_lexsort_path(vals, seed, bottom, by) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    n, S = vals.shape
    sv = StepVector(
        [(("a", str(i % 3)), ("i", str(i))) for i in range(n)], vals, rng.random((n, S)) < 0.8
    )
    k = ScalarSteps(rng.choice([0.0, 0.5, 1.0, 2.0, 3.7, 30.0], S))
    grouping = ("a",) if by else ()
    got = aggregations._topk(sv, k, grouping, False, bottom)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aggregations, "_TOPK_KERNEL_MAX", 0)  # every step through lexsort
        want = aggregations._topk(sv, k, grouping, False, bottom)
    assert got.labels == want.labels and np.array_equal(got.present, want.present)


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(0, 20), min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_series_prefix_equals_cumsum(counts, seed) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    x = rng.normal(0, 1, offsets[-1]) * rng.choice([1.0, 1e300, 1e-300, -0.0], offsets[-1])
    P, M = rangefns._series_prefix(x, offsets)
    for i in range(len(counts)):
        a, b = offsets[i], offsets[i + 1]
        seg = np.cumsum(x[a:b])
        assert np.array_equal(P[a + i + 1 : b + i + 1].view(np.uint64), seg.view(np.uint64))
        assert np.array_equal(
            M[a + i + 1 : b + i + 1], np.maximum.accumulate(np.abs(seg)), equal_nan=True
        )


@settings(max_examples=200, deadline=None)
@given(series=st.lists(st.sets(st.integers(-500, 500), max_size=30), min_size=1, max_size=5),
       times=st.lists(st.integers(-600, 600), min_size=1, max_size=20), rng=st.integers(1, 300))  # fmt: skip
def test_window_cursors_equal_searchsorted(series, times, rng) -> None:  # type: ignore[no-untyped-def]
    block = SeriesBlock.from_series([((("i", str(i)),), np.array(sorted(s), np.int64), np.zeros(len(s)))
                                     for i, s in enumerate(series)])  # fmt: skip
    t = np.array(sorted(times), np.int64)
    lo, hi = window_bounds(block, t, rng)
    for i in range(len(block)):
        a, b = block.offsets[i], block.offsets[i + 1]
        assert np.array_equal(hi[i], a + np.searchsorted(block.ts[a:b], t, "right"))
        assert np.array_equal(lo[i], a + np.searchsorted(block.ts[a:b], t - rng, "right"))


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), op=st.sampled_from(["/", ">", "==", "-", "%", "^", "<="]),
       card=st.sampled_from(["many-to-one", "one-to-many", "one-to-one", "none"]), bool_=st.booleans())  # fmt: skip
def test_vector_matching_equals_the_row_loop(seed, op, card, bool_) -> None:  # type: ignore[no-untyped-def]
    from filodb.query import binops
    from filodb.query.ast import VectorMatching

    rng = np.random.default_rng(seed)
    S, n, m = int(rng.integers(1, 5)), int(rng.integers(1, 10)), int(rng.integers(1, 4))
    many = StepVector([(("__name__", "r"), ("instance", f"i{k % 3}"), ("n", str(k))) for k in range(n)],
                      rng.integers(0, 5, (n, S)).astype(float), rng.random((n, S)) < 0.8)  # fmt: skip
    one = StepVector([(("__name__", "c"), ("instance", f"i{b}"), ("x", str(b % 2))) for b in range(m)],
                     rng.integers(0, 5, (m, S)).astype(float), rng.random((m, S)) < 0.8)  # fmt: skip
    vm = None if card == "none" else VectorMatching(card=card, labels=("instance",), on=True)  # type: ignore[arg-type]
    args = (one, many) if card == "one-to-many" else (many, one)
    rb = bool_ and op in (">", "==", "<=")

    def run():  # type: ignore[no-untyped-def]
        try:
            return binops.vector_vector(op, *args, vm, rb)
        except Exception as e:  # noqa: BLE001 - the same error either way
            return str(e)

    got = run()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(binops, "_match_all", lambda *a: None)  # the row-by-row loop
        want = run()
    if isinstance(want, str):
        assert got == want
    else:
        assert got.labels == want.labels and np.array_equal(got.present, want.present)
        assert np.array_equal(got.values, want.values, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(
    vals=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(float("nan"))),
        min_size=1,
        max_size=60,
    ),
    bounds=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=20),
)
def test_window_walk_extremes_equal_the_sparse_table(vals, bounds) -> None:  # type: ignore[no-untyped-def]
    from filodb.query.rangefns import _sparse_reduce, _window_extreme

    v = np.array(vals)
    lo = np.array([[min(a, b, len(v) - 1) for a, b in bounds]], np.int64)
    hi = np.array([[min(max(a, b), len(v)) for a, b in bounds]], np.int64)
    hi = np.maximum(hi, lo + 1)
    for fn, is_max in ((np.fmax, True), (np.fmin, False)):
        want = _sparse_reduce(v, lo, hi, fn)
        got = _window_extreme(v, lo, hi, is_max)
        assert np.array_equal(got, want, equal_nan=True)


@settings(max_examples=80, deadline=None)
@given(
    lens=st.lists(st.integers(0, 8), max_size=12),
    pool=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=8),
    seed=st.integers(0, 2**31),
)
def test_reset_prefix_equals_the_numpy_form_bit_for_bit(lens, pool, seed) -> None:  # type: ignore[no-untyped-def]
    from filodb.query.rangefns import _prefix, _reset_prefix

    offs = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=offs[1:])
    vals = np.random.default_rng(seed).choice(np.array(pool + [-0.0]), int(offs[-1]))
    corr = np.zeros(len(vals))  # each reset's pre-drop value, none at a series' first sample
    if len(vals) > 1:
        corr[1:] = np.where(vals[1:] < vals[:-1], vals[:-1], 0.0)
        corr[offs[:-1][np.diff(offs) > 0]] = 0
    want = _prefix(corr)
    got = _reset_prefix(vals, offs)
    assert np.array_equal(want.view(np.uint64), got.view(np.uint64))


@settings(max_examples=60, deadline=None)
@given(
    vals=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 12), st.integers(1, 5)),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    ),
    seed=st.integers(0, 2**31),
    q=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0, -1.0, 2.0, float("nan")]),
)
def test_quantile_aggregation_equals_prometheus_quantile_per_cell(vals, seed, q) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    n, S = vals.shape
    present = rng.random((n, S)) < 0.8
    labels = [(("g", str(i % 3)), ("i", str(i))) for i in range(n)]
    sv = StepVector(labels, vals, present)
    got = aggregations.aggregate("quantile", sv, ScalarSteps(np.full(S, q)), ["g"], False)
    for gi, glb in enumerate(got.labels):
        rows = [i for i, lb in enumerate(labels) if (lb[0],) == glb]
        for s in range(S):
            v = vals[rows, s][present[rows, s]]
            assert got.present[gi, s] == (len(v) > 0)
            if len(v):
                want = rangefns._quantile(q, v)
                assert np.array_equal(got.values[gi, s], want, equal_nan=True)


@settings(max_examples=80, deadline=None)
@given(
    vals=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 14), st.integers(1, 4)),
        elements=st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([0.0, -0.0, 1e17, -1e17, 1.0, 3.0]),
        ),
    ),
    seed=st.integers(0, 2**31),
    scaled=st.booleans(),
)
def test_sum_partials_equal_reduceat_over_sorted_rows(vals, seed, scaled) -> None:  # type: ignore[no-untyped-def]
    """The kernel adds rows one by one in row order (Prometheus's order); numpy's reduceat
    adds in unrolled blocks, so plain sums may differ in their last bits (cells where that
    matters are flagged and re-summed with Kahan either way): sums agree to 1e-12, the
    compensations' zero pattern, the counts and the presence exactly."""
    rng = np.random.default_rng(seed)
    n, S = vals.shape
    present = rng.random((n, S)) < 0.8
    labels = [(("g", str(int(g))), ("i", str(i))) for i, g in enumerate(rng.integers(0, 3, n))]
    sv = StepVector(labels, vals, present)
    got = aggregations.sum_partials(sv, ["g"], False, scaled)
    glabels, v, p, starts = aggregations._sorted_groups(sv, ["g"], False)  # the sorted form
    x = np.where(p, v, 0.0)
    want = [*aggregations._sum(x, starts, partial=True)]
    if scaled:
        want += [
            *aggregations._sum(x * aggregations.SCALE, starts, partial=True),
            np.add.reduceat(p.astype(np.float64), starts, axis=0),
        ]
    assert got.labels == glabels * len(want)
    g = len(glabels)
    for b, w in enumerate(want):
        have = got.values[b * g : (b + 1) * g]
        if b % 2 and b < 4:  # compensations: the same cells re-summed
            assert np.array_equal(have != 0, w != 0)
        elif b == 4:  # counts
            assert np.array_equal(have, w)
        else:
            both = have + w
            with np.errstate(all="ignore"):
                same = (
                    (have == w)
                    | (np.isnan(have) & np.isnan(w))
                    | (np.abs(have - w) <= 1e-12 * np.abs(both))
                )
            assert same.all() or not np.isfinite(w[~same]).all()
    assert np.array_equal(
        got.present, np.tile(np.logical_or.reduceat(p, starts, axis=0), (len(want), 1))
    )


@settings(max_examples=150, deadline=None)
@given(
    lens=st.lists(st.integers(0, 12), max_size=8),
    pool=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=8),
    gaps=st.lists(st.integers(1, 40_000), min_size=1, max_size=6),
    seed=st.integers(0, 2**31),
    step=st.sampled_from([0, 1_000, 15_000, 60_000]),
    range_ms=st.sampled_from([1, 30_000, 60_000, 300_000]),
    fn=st.sampled_from(["rate", "increase", "delta"]),
)
def test_block_rate_equals_the_windows_path_bit_for_bit(lens, pool, gaps, seed, step, range_ms, fn
                                                        ) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    rng = np.random.default_rng(seed)
    series = []
    for i, n in enumerate(lens):
        ts = 1_000_000 + np.cumsum(rng.choice(np.array(gaps, np.int64), n))
        series.append(((("i", str(i)),), ts, rng.choice(np.array(pool + [-0.0, 0.0]), n)))
    block = SeriesBlock.from_series(series)
    times = 1_000_000 + np.arange(0, 8) * step + int(rng.integers(0, 50_000))  # steps may repeat
    lo, hi = window_bounds(block, times, range_ms)
    want, want_ok = rangefns.RANGE_FUNCTIONS[fn](rangefns.Windows(block, lo, hi, times, range_ms))
    got, ok = rangefns.BLOCK_FUNCTIONS[fn](block, times, range_ms)
    assert np.array_equal(ok, want_ok)
    # bit for bit, but a NaN's sign: inf - inf is x86's negative NaN on one path and a copied
    # NaN on the other, and no answer shows a computed NaN's sign (both are "NaN")
    g, w = got[ok], want[ok]
    assert np.array_equal(np.isnan(g), np.isnan(w))
    assert np.array_equal(g[~np.isnan(g)].view(np.uint64), w[~np.isnan(w)].view(np.uint64))


@settings(max_examples=120, deadline=None)
@given(
    lens=st.lists(st.integers(0, 30), min_size=1, max_size=6),
    jitter=st.sampled_from([0, 0, 1, 7]),
    seed=st.integers(0, 2**31),
    range_ms=st.sampled_from([30_000, 120_000, 300_000]),
    at=st.booleans(),
)
def test_linreg_reusing_the_time_sums_equals_adding_them_up(lens, jitter, seed, range_ms, at
                                                            ) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    from filodb.query.linreg import linear_regression

    rng = np.random.default_rng(seed)
    series = []
    for i, n in enumerate(lens):  # scraped together: the same timestamps, but for the jitter
        ts = (
            1_000_123
            + 15_000 * np.arange(n)
            + rng.integers(0, jitter + 1, n) * (rng.random(n) < 0.2)
        )
        vals = np.round(rng.normal(0, 1, n) * 10.0 ** rng.integers(-3, 9), 3)
        series.append(((("i", str(i)),), ts.astype(np.int64), vals))
    block = SeriesBlock.from_series(series)
    times = 1_000_000 + np.arange(40) * 10_000
    lo, hi = window_bounds(block, times, range_ms)
    t_at = times if at else None
    want = linear_regression(block.ts, block.vals, lo, hi, t_at, reuse=False)
    got = linear_regression(block.ts, block.vals, lo, hi, t_at)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.view(np.uint64), w.view(np.uint64))


@pytest.mark.parametrize("at", [False, True])
def test_linreg_runs_longer_than_a_lane_batch_equal_adding_them_up(at: bool) -> None:
    """Windows of 2 000 evenly spaced samples at 100 steps: more y values than one batch of
    side-by-side windows holds (``_RUN_VALUES``), so runs are cut; a gap changes mid-way and
    one sample is off the grid, so some windows are compared sample by sample."""
    from filodb.query.linreg import _RUN_VALUES, linear_regression

    n = 6_000
    ts = 1_000_123 + 1_000 * np.arange(n, dtype=np.int64)
    ts[n // 2 :] += 500 * np.arange(n - n // 2)  # the gap grows to 1.5 s
    ts[4_000] += 7
    vals = np.round(np.random.default_rng(5).normal(0, 1, n) * 1e3, 2)
    vals[100:2_500] = 4.0  # windows of one value
    block = SeriesBlock.from_series([((("i", "0"),), ts, vals)])
    times = ts[0] + 2_000_000 + np.arange(100) * 40_000
    lo, hi = window_bounds(block, times, 2_000_000)
    assert int((hi - lo).max()) * 100 > _RUN_VALUES
    t_at = times if at else None
    want = linear_regression(block.ts, block.vals, lo, hi, t_at, reuse=False)
    got = linear_regression(block.ts, block.vals, lo, hi, t_at)
    assert np.isfinite(got[0]).sum() > 50 and (got[0] == 0).any()
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.view(np.uint64), w.view(np.uint64))


@settings(max_examples=150, deadline=None)
@given(
    lens=st.lists(st.integers(0, 12), max_size=8),
    pool=st.lists(st.sampled_from([1.0, -1.0, 2.5, 0.1, 1e17, -1e17, 3.0, np.nan, np.inf, -np.inf]),
                  min_size=1, max_size=6),
    seed=st.integers(0, 2**31),
    step=st.sampled_from([0, 1_000, 15_000, 60_000]),
    range_ms=st.sampled_from([1, 30_000, 60_000, 300_000]),
    fn=st.sampled_from(["sum_over_time", "avg_over_time"]),
)  # fmt: skip
@example(lens=[10, 3], pool=[np.inf, -np.inf, 1.0], seed=1, step=15_000, range_ms=300_000,
         fn="sum_over_time")  # fmt: skip
@example(lens=[12], pool=[1e17, -1e17, 12345678.5], seed=3, step=15_000, range_ms=300_000,
         fn="avg_over_time")  # fmt: skip
def test_block_sums_equal_the_windows_path_bit_for_bit(lens, pool, seed, step, range_ms, fn
                                                       ) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    rng = np.random.default_rng(seed)
    series = []
    for i, n in enumerate(lens):
        ts = 1_000_000 + np.cumsum(rng.integers(1, 40_000, n))
        series.append(((("i", str(i)),), ts, rng.choice(np.array(pool), n)))
    block = SeriesBlock.from_series(series)
    times = 1_000_000 + np.arange(0, 8) * step + int(rng.integers(0, 50_000))
    lo, hi = window_bounds(block, times, range_ms)
    want, want_ok = rangefns.RANGE_FUNCTIONS[fn](rangefns.Windows(block, lo, hi, times, range_ms))
    got, ok = rangefns.BLOCK_FUNCTIONS[fn](block, times, range_ms)
    assert np.array_equal(ok, want_ok)
    assert np.array_equal(got[ok].view(np.uint64), want[ok].view(np.uint64))


def test_block_sums_resum_a_window_that_lost_digits() -> None:
    # 1e17 + 12345678.5 rounds to a multiple of 16: the plain prefix difference is 12345680
    block = SeriesBlock.from_series([((("i", "0"),), np.array([1000, 2000, 3000]),
                                      np.array([1e17, 12345678.5, -1e17]))])  # fmt: skip
    got, ok = rangefns.BLOCK_FUNCTIONS["sum_over_time"](block, np.array([3000, 4000]), 10_000)
    assert ok.all() and got.tolist() == [[12345678.5, 12345678.5]]


@settings(max_examples=150, deadline=None)
@given(
    lens=st.lists(st.integers(0, 10), max_size=8),
    seed=st.integers(0, 2**31),
    step=st.sampled_from([0, 1_000, 15_000, 60_000]),
    lookback=st.sampled_from([1, 30_000, 300_000]),
)
def test_latest_values_equal_the_index_path(lens, seed, step, lookback) -> None:  # type: ignore[no-untyped-def]
    from filodb.query.values import STALE_NAN_BITS, latest, latest_values

    rng = np.random.default_rng(seed)
    stale = np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0]
    series = []
    for i, n in enumerate(lens):
        ts = 1_000_000 + np.cumsum(rng.integers(1, 40_000, n))
        series.append(
            ((("i", str(i)),), ts, rng.choice(np.array([1.0, -0.0, np.nan, np.inf, stale]), n))
        )
    block = SeriesBlock.from_series(series)
    times = 1_000_000 + np.arange(0, 8) * step + int(rng.integers(0, 50_000))
    idx, want_ok = latest(block, times, lookback)
    got, ok = latest_values(block, times, lookback)
    assert np.array_equal(ok, want_ok)
    if len(block.vals):
        assert np.array_equal(got[ok].view(np.uint64), block.vals[idx][ok].view(np.uint64))


def test_latest_values_leave_out_a_sample_exactly_lookback_old() -> None:
    from filodb.query.values import latest_values

    block = SeriesBlock.from_series(
        [((("i", "0"),), np.array([10_000, 20_000]), np.array([1.0, 2.0]))]
    )
    vals, ok = latest_values(block, np.array([5_000, 20_000, 50_000, 50_001]), 30_000)
    assert ok.tolist() == [[False, True, False, False]] and vals[0, 1] == 2.0
