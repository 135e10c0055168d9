"""The head's compressed page pool: appends of many series at once, reads in write order, pages
given back when series close (the pool shrinks after a synchronized close), timestamps far
apart, every value's bits kept."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.memstore.head import Head


def _read(h: Head, sids: np.ndarray) -> dict[int, list[tuple[int, float]]]:
    ts, vals, cnt = h.read(sids)
    bounds = np.r_[0, np.cumsum(cnt)]
    return {int(s): list(zip(ts[bounds[i] : bounds[i + 1]].tolist(),
                             vals[bounds[i] : bounds[i + 1]].tolist(), strict=True))
            for i, s in enumerate(sids.tolist())}  # fmt: skip


def test_scrapes_of_many_series_fill_close_and_give_the_pool_back() -> None:
    n, rows = 5000, 96
    h = Head(rows)
    h.add_series(n)
    sids = np.arange(n)
    ref: dict[int, list[tuple[int, float]]] = {s: [] for s in range(n)}
    for k in range(rows):
        t = 1_700_000_000_000 + 15_000 * k
        vals = np.arange(n) + k / 10
        rest = h.append(sids, np.full(n, t), vals, np.ones(n, bool))
        assert not rest.any()
        for s in [*range(0, n, 997), *range(n - 10, n)]:
            ref[s].append((t, float(vals[s])))
    assert (h.count == rows).all()
    probe = np.arange(0, n, 997)
    assert _read(h, probe) == {s: ref[s] for s in probe.tolist()}
    peak = h.pool.nbytes
    # one decimal each, changing by 0.1 a scrape: a header byte and a one-byte delta
    assert h.used_bytes <= n * (rows * 2 + 8 + h.page_bytes)
    h.release(sids[: n - 10])  # a synchronized close: the pool is compacted
    assert h.pool.nbytes < peak / 10
    kept = np.arange(n - 10, n)
    assert _read(h, kept) == {s: ref[s] for s in kept.tolist()}  # moved, not changed
    h.append(kept, np.full(10, 1), np.ones(10), np.ones(10, bool))  # full: handed back
    assert h.count[kept].tolist() == [rows] * 10


@pytest.mark.parametrize("page_bytes", [16, 64, 100])
def test_exporter_values_take_a_few_bytes_a_sample(page_bytes: int) -> None:
    """Counters (integer steps), gauges of one decimal, constants, at regular scrapes: a
    sample takes 1-3 bytes; values with no short decimal form take 9 and come back exact."""
    n, rows = 400, 120
    h = Head(rows, page_bytes=page_bytes)
    h.add_series(n)
    rng = np.random.default_rng(3)
    counters = np.cumsum(rng.integers(0, 20, (100, rows)), axis=1).astype(float)
    gauges = np.round(20 + 5 * np.sin(np.arange(rows) / 40 + rng.random((100, 1)) * 6), 1)
    const = np.full((100, rows), 8.0)
    raw = rng.normal(size=(100, rows))
    vals = np.concatenate([counters, gauges, const, raw])
    t0 = 1_700_000_000_123
    for k in range(rows):
        assert not h.append(np.arange(n), np.full(n, t0 + 15_000 * k), vals[:, k],
                            np.ones(n, bool)).any()  # fmt: skip
    per = h.nbytes_of.astype(float) / rows
    assert per[:100].max() <= 3 and per[100:200].max() <= 3 and per[200:300].max() <= 1.1
    assert 9 <= per[300:].min() and per[300:].max() < 9.2
    ts, got, cnt = h.read(np.arange(n))
    assert (cnt == rows).all()
    assert (ts.reshape(n, rows) == t0 + 15_000 * np.arange(rows)).all()
    assert (got.reshape(n, rows).view(np.uint64) == vals.view(np.uint64)).all()


def test_odd_values_and_timestamps_come_back_bit_for_bit() -> None:
    """NaNs (stale markers too), infinities, -0.0, tiny and huge values, decimals whose
    exponent changes, irregular and repeated timestamps and out-of-order ones."""
    stale = np.array([0x7FF0000000000002], np.uint64).view(np.float64)[0]
    vals = np.array([0.0, -0.0, np.nan, stale, stale, np.inf, -np.inf, 1e-300, 5e-324, 1e300,
                     2.5, 2.55, 2.5, 0.1 + 0.2, 9007199254740993.0, -7.0, 123456.789, 1.0,
                     -0.0, 0.0, 3.0])  # fmt: skip
    ts = np.array([0, 15, 30, 30, 45, 1000, 999, 2**31 - 1, 5, 6, 7, -2**31, 8, 9, 10, 11, 12,
                   13, 14, 15, 16])  # fmt: skip
    h = Head(64, page_bytes=16)
    h.add_series(2)
    n = len(vals)
    in_order = np.r_[True, np.diff(ts) > 0]
    assert not h.append(np.zeros(n, np.int64), ts + 10**12, vals, in_order).any()
    got_ts, got, _ = h.decode(np.array([0, 1]))
    assert got_ts.tolist() == (ts + 10**12).tolist()
    assert got.view(np.uint64).tolist() == vals.view(np.uint64).tolist()


def test_a_series_past_max_rows_or_far_in_time_is_handed_back_in_order() -> None:
    h = Head(4)
    h.add_series(2)
    sid = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    ts = np.array([1, 2, 3, 4, 5, 6, 10, 10 + 2**33])
    rest = h.append(sid, ts, ts.astype(float), np.ones(8, bool))
    assert rest.tolist() == [False] * 4 + [True, True, False, True]
    assert _read(h, np.array([0, 1])) == {0: [(t, float(t)) for t in (1, 2, 3, 4)], 1: [(10, 10.0)]}


def test_out_of_order_samples_read_sorted_and_the_last_write_wins() -> None:
    h = Head(8)
    h.add_series(1)
    z = np.zeros(5, np.int64)
    h.append(z, np.array([50, 40, 60, 40, 45]), np.array([1.0, 2, 3, 4, 5]),
             np.array([True, False, True, False, False]))  # fmt: skip
    assert _read(h, np.array([0])) == {0: [(40, 4.0), (45, 5.0), (50, 1.0), (60, 3.0)]}


@pytest.mark.parametrize("seed", range(6))
def test_appends_keep_what_a_plain_model_keeps(seed: int) -> None:
    """Random grouped batches (series repeated, out of order, far in time, past max_rows),
    closes in between: the head holds per series what a list per series would, and hands
    back the rest of a series from its first sample that does not fit."""
    rng = np.random.default_rng(seed)
    rows, n_series = int(rng.integers(1, 70)), 40
    h = Head(rows, page_bytes=int(rng.integers(1, 40)))
    h.add_series(n_series)
    model: dict[int, list[tuple[int, float]]] = {s: [] for s in range(n_series)}
    base: dict[int, int] = {}
    ordered = [True] * n_series
    for _ in range(30):
        sid = np.sort(rng.integers(0, n_series, int(rng.integers(0, 200))))
        far = rng.random(len(sid)) < 0.02
        ts = rng.integers(0, 10**6, len(sid)) + far * (2**32)
        vals = rng.normal(size=len(sid))
        in_order = rng.random(len(sid)) < 0.8
        rest = h.append(sid, ts, vals, in_order)
        want_rest = []
        stopped: set[int] = set()
        for s, t, v, o in zip(sid.tolist(), ts.tolist(), vals.tolist(), in_order.tolist(),
                              strict=True):  # fmt: skip
            b = base.setdefault(s, t) if not model[s] else base[s]
            ok = s not in stopped and len(model[s]) < rows and -(2**31) <= t - b < 2**31
            if ok:
                model[s].append((t, v))
                ordered[s] = ordered[s] and o
            else:
                stopped.add(s)
            want_rest.append(not ok)
        assert rest.tolist() == want_rest
        if rng.random() < 0.3:  # a close gives some series' pages back
            gone = np.flatnonzero(rng.random(n_series) < 0.5)
            h.release(gone)
            for s in gone.tolist():
                model[s] = []
                base.pop(s, None)
                ordered[s] = True
    assert h.count.tolist() == [len(model[s]) for s in range(n_series)]
    assert h.ordered.tolist() == ordered
    for s in range(n_series):  # an unordered series reads sorted, the last write winning
        got = _read(h, np.array([s]))[s]
        assert got == (model[s] if ordered[s] else sorted(dict(model[s]).items())), s
    held = -(-h.nbytes_of // h.page_bytes)  # no page lost or shared
    assert h._n_free + int(held.sum()) == len(h.pool)
    pages = [*h._free[: h._n_free].tolist()]
    first, last = h.first, h.last
    for s in np.flatnonzero(held).tolist():
        pg = int(first[s])
        for _ in range(int(held[s])):
            pages.append(pg)
            pg = int(h.nxt[pg])
        assert pages[-1] == last[s]
    assert sorted(pages) == list(range(len(h.pool)))


def test_a_bulk_head_grows_to_max_rows_within_its_budget_and_a_slow_one_stops() -> None:
    now = [0.0]
    h = Head(40, page_bytes=16, soft_rows=10, bulk_s=60.0, bulk_extra=45, clock=lambda: now[0])
    h.add_series(3)
    ones = np.ones(30, bool)
    # a fresh head taking 30 samples at once is bulk: it holds them all (20 past soft_rows)
    assert not h.append(np.zeros(30, np.int64), np.arange(30), np.arange(30.0), ones).any()
    assert h.count[0] == 30 and h.extra == 20
    now[0] = 59.0  # still bulk: up to max_rows, the rest handed back
    rest = h.append(np.zeros(15, np.int64), np.arange(30, 45), np.arange(30.0, 45), ones[:15])
    assert rest.tolist() == [False] * 10 + [True] * 5 and h.count[0] == 40 and h.extra == 30
    # series 1 is bulk too, but the pool's budget (45 past soft_rows) lets it take 15 more
    rest = h.append(np.ones(30, np.int64), np.arange(30), np.arange(30.0), ones)
    assert int((~rest).sum()) == 25 and h.extra == 45
    # series 2's head began 61 s ago: a scraped series stops at soft_rows
    h.append(np.full(5, 2, np.int64), np.arange(5), np.arange(5.0), ones[:5])
    now[0] = 120.0
    rest = h.append(np.full(10, 2, np.int64), np.arange(5, 15), np.arange(5.0, 15), ones[:10])
    assert rest.tolist() == [False] * 5 + [True] * 5 and h.count[2] == 10
    assert _read(h, np.array([0]))[0] == [(t, float(t)) for t in range(40)]
    h.release(np.array([0, 1]))  # closed: their samples past soft_rows leave the budget
    assert h.extra == 0 and h.count.tolist() == [0, 0, 10]


_BITS = st.integers(0, 2**64 - 1).map(lambda b: float(np.array([b], np.uint64).view(np.float64)[0]))
_DECIMALS = st.builds(lambda m, e: m / 10.0**e, st.integers(-(10**12), 10**12), st.integers(0, 9))
_VALUES = st.one_of(_BITS, _DECIMALS, st.floats(allow_nan=True), st.sampled_from([0.0, -0.0, 1.0]))


@settings(max_examples=60, deadline=None)
@given(
    # a head stores a sample's offset from its series' first as an int32: any two stay less
    # than 2**31 ms apart (2**30 - 1: the farthest pair is 2**31 - 1 after the first)
    series=st.lists(st.lists(st.tuples(st.integers(-(2**30), 2**30 - 1), _VALUES), max_size=60),
                    min_size=1, max_size=6),
    page_bytes=st.integers(16, 80),
    splits=st.integers(1, 5),
)  # fmt: skip
def test_any_values_and_timestamps_read_back_bit_for_bit(
    series: list[list[tuple[int, float]]], page_bytes: int, splits: int
) -> None:
    """Whatever the values (any bit pattern, decimals of any exponent) and timestamps (any
    order less than 2**31 ms from the first), appended in several batches of interleaved series,
    each series decodes to exactly what was written, in write order."""
    h = Head(4000, page_bytes=page_bytes)
    h.add_series(len(series))
    t0 = 1_700_000_000_000
    for part in range(splits):
        sid, ts, vals = [], [], []
        for s, samples in enumerate(series):
            lo, hi = part * len(samples) // splits, (part + 1) * len(samples) // splits
            for t, v in samples[lo:hi]:
                sid.append(s)
                ts.append(t0 + t)
                vals.append(v)
        rest = h.append(np.array(sid, np.int64), np.array(ts, np.int64), np.array(vals),
                        np.zeros(len(sid), bool))  # fmt: skip
        assert not rest.any()
    got_ts, got, offs = h.decode(np.arange(len(series)))
    for s, samples in enumerate(series):
        a, b = offs[s], offs[s + 1]
        assert got_ts[a:b].tolist() == [t0 + t for t, _ in samples]
        want = np.array([v for _, v in samples], np.float64).view(np.uint64)
        assert got[a:b].view(np.uint64).tolist() == want.tolist()


def test_the_head_kernels_count_only_their_arguments_not_a_sample() -> None:
    """Writing and decoding a head count their array arguments' references once a call, not
    a sample or a page (an atomic increment and decrement a sample was ~10 % of a worker's CPU
    under Influx bodies over HTTP)."""
    from filodb.memstore import head as hm
    from filodb.testing.nrt import counted

    h = Head(720, page_bytes=64)
    h.add_series(4)
    n = 40
    sid = np.repeat(np.arange(4, dtype=np.int64), n // 4)
    ts = np.tile(1_700_000_000_000 + 15_000 * np.arange(n // 4, dtype=np.int64), 4)
    vals = np.linspace(0.0, 3.7, n)
    fits = np.ones(n, np.bool_)
    h._reserve(16)
    args = (sid, ts, vals, vals.view(np.uint64), fits.copy(), fits, h.st, h.pool, h.nxt,
            h._free, h._n_free, 0, np.empty(16, np.uint8), 0)  # fmt: skip
    assert all(v.startswith("arg.") for v in counted(hm._write.py_func, *args))
    sids = np.arange(4, dtype=np.int64)
    offsets = np.arange(0, n + 1, n // 4, dtype=np.int64)
    out = (np.empty(n, np.int64), np.empty(n), np.empty(n, np.uint64))
    args = (sids, offsets, h.st, h.pool, h.nxt, *out, hm._P10)
    # and the release of the decoder's one scratch buffer, once a call
    assert len([v for v in counted(hm._decode.py_func, *args) if not v.startswith("arg.")]) <= 1
    np.testing.assert_array_equal(out[0], ts)  # what the compiled copies wrote and read back
