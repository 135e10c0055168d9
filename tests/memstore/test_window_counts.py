"""``TimeSeriesShard.window_counts`` (``count_over_time``/``present_over_time`` from chunk
metadata) answers what a select of the range and a count per window answer: the same series,
samples read and counts, with stale markers in chunks and heads, chunks cut by window edges,
out-of-order heads and chunks (repeated timestamps: the last write wins), paged and deleted
data, and through the engine over several shards; chunks wholly inside every window are not
decoded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.errors import ExecutionError
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, Matcher, make_labels
from filodb.model.source import SeriesBlock, UnionSource, WindowCounts
from filodb.node.flush import flush_all, make_pager
from filodb.query.engine import Engine
from filodb.query.result import Result
from filodb.query.values import STALE_NAN_BITS, drop_stale, window_bounds
from filodb.store import open_store

M = [Matcher("__name__", "=~", "m|n")]
STALE = np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0]


def reference(ms: Any, times: np.ndarray, rng: int) -> WindowCounts:
    """What the engine computed before: a select of the range, stale markers dropped, the
    samples in each window counted."""
    block = ms.select(M, int(times[0]) - rng + 1, int(times[-1]))
    lo, hi = window_bounds(drop_stale(block), times, rng)
    return WindowCounts(block.labels, hi - lo, int(block.offsets[-1]))


def same(got: WindowCounts | None, want: WindowCounts) -> None:
    assert got is not None
    assert got.labels == want.labels
    assert got.samples == want.samples
    assert got.counts.shape == want.counts.shape
    assert (got.counts == want.counts).all()


def feed(ms: TimeSeriesShard, rand: np.random.Generator, n_series: int, rows: int,
         stale_p: float, late_p: float) -> None:  # fmt: skip
    """Time-major batches of a few scrapes; some samples stale markers, some sent again or
    late (out of order: kept only within the shard's window). Series differ by shard."""
    series = [make_labels({"__name__": "mn"[i % 2], "i": str(i), "s": str(ms.shard)})
              for i in range(n_series)]  # fmt: skip
    t = 0
    while t < rows:
        k = int(rand.integers(1, 30))
        ts = np.tile(1000 * np.arange(t, t + k) + 7, n_series)
        if late_p:
            late = rand.random(len(ts)) < late_p
            ts[late] -= 1000 * rand.integers(0, 8, int(late.sum()))
        vals = rand.normal(size=len(ts))
        vals[rand.random(len(ts)) < stale_p] = STALE
        ms.ingest(SampleBatch(series, np.repeat(np.arange(n_series), k), ts, vals))
        t += k


def steps(rand: np.random.Generator, instant: bool, top: int) -> np.ndarray:
    if instant:
        return np.array([int(rand.integers(0, top))], np.int64)
    a = int(rand.integers(-20_000, top))
    return np.sort(a + rand.integers(0, 400_000, int(rand.integers(1, 60)))).astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(
    n_series=st.integers(1, 12),
    rows=st.integers(1, 400),
    chunk=st.integers(2, 120),
    seed=st.integers(0, 2**31),
    stale_p=st.sampled_from([0.0, 0.03, 0.5]),
    ooo=st.sampled_from([0, 5_000]),
    instant=st.booleans(),
    rng=st.sampled_from([1, 999, 1000, 15_000, 60_000, 10**7]),
)
def test_counts_equal_a_select_counted_per_window(  # type: ignore[no-untyped-def]
    n_series, rows, chunk, seed, stale_p, ooo, instant, rng
) -> None:
    rand = np.random.default_rng(seed)
    ms = TimeSeriesShard("ds", 0, max_chunk_samples=chunk, head_samples=max(2, chunk // 3),
                         ooo_window_ms=ooo)  # fmt: skip
    feed(ms, rand, n_series, rows, stale_p, 0.1 if ooo else 0.0)
    for _ in range(4):
        times = steps(rand, instant, 1000 * rows + 20_000)
        same(ms.window_counts(M, times, rng), reference(ms, times, rng))


def test_chunks_wholly_inside_every_window_are_not_decoded() -> None:
    ms = TimeSeriesShard("ds", 0, max_chunk_samples=50, head_samples=20)
    feed(ms, np.random.default_rng(1), 6, 400, 0.05, 0.0)
    assert ms.stats()["chunks"] >= 6 * 7
    before = (ms.stats()["decode_cache_hits"], ms.stats()["decode_cache_misses"])
    times = np.array([10**6], np.int64)
    got = ms.window_counts(M, times, 10**6)
    st_ = ms.stats()
    assert (st_["decode_cache_hits"], st_["decode_cache_misses"]) == before
    same(got, reference(ms, times, 10**6))
    vals = ms.select(M, 0, 10**6).vals
    assert got is not None and got.samples == len(vals) >= 6 * 400
    stale_marks = int((vals.view(np.uint64) == STALE_NAN_BITS).sum())
    assert stale_marks > 0 and int(got.counts.sum()) == len(vals) - stale_marks
    ms._decoded.forget()
    before = (ms.stats()["decode_cache_hits"], ms.stats()["decode_cache_misses"])
    # a window edge inside chunks: those are decoded (timestamps, values where stale)
    times = np.array([200_000, 260_000], np.int64)
    same(ms.window_counts(M, times, 45_000), reference(ms, times, 45_000))
    assert ms.stats()["decode_cache_misses"] > before[1]


def test_steps_out_of_order_are_left_to_a_select() -> None:
    ms = TimeSeriesShard("ds", 0)
    feed(ms, np.random.default_rng(2), 2, 50, 0.0, 0.0)
    assert ms.window_counts(M, np.array([30_000, 20_000], np.int64), 10_000) is None
    assert ms.window_counts(M, np.array([30_000, 30_000], np.int64), 10_000) is not None


@pytest.fixture
def columns(tmp_path):  # type: ignore[no-untyped-def]
    cs, meta = open_store("sqlite", tmp_path)
    cs.initialize("ds", 1)
    yield cs, meta
    cs.close()
    meta.close()


def test_paged_and_deleted_series(columns: Any) -> None:
    """Flushed chunks evicted (the older part of the range is paged from the store, overlapping
    what memory holds of the same series) and a deletion trimming chunks and heads."""
    cs, meta = columns
    ms = TimeSeriesShard("ds", 0, max_chunk_samples=20, num_groups=2, memory_budget=1,
                         pager=make_pager(cs, "ds", 0), ooo_window_ms=3_000)  # fmt: skip
    rand = np.random.default_rng(5)
    for k in range(6):
        feed(ms, rand, 8, 60, 0.05, 0.05)  # the same times again: repeated timestamps
        if k % 2:
            flush_all(ms, cs, meta)
    for times, rng in (([10**5], 10**5), ([30_000, 45_000, 59_000], 20_000), ([59_007], 7_000)):
        t = np.array(times, np.int64)
        same(ms.window_counts(M, t, rng), reference(ms, t, rng))
    assert ms.stats()["chunks_paged"] > 0
    ms.delete_series([Matcher("i", "=~", "[0-3]")], 12_000, 40_000)
    for times, rng in (([10**5], 10**5), ([20_000, 41_000], 30_000)):
        t = np.array(times, np.int64)
        same(ms.window_counts(M, t, rng), reference(ms, t, rng))


class SelectOnly:
    """A source that only selects: the engine counts from the samples, as before."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def select(self, matchers: Any, start_ms: int, end_ms: int) -> SeriesBlock:
        block: SeriesBlock = self.inner.select(matchers, start_ms, end_ms)
        return block

    def series(self, matchers: Any, start_ms: int, end_ms: int) -> list[Labels]:
        out: list[Labels] = self.inner.series(matchers, start_ms, end_ms)
        return out


def _shards(n: int) -> UnionSource:
    rand = np.random.default_rng(7)
    shards = []
    for s in range(n):
        ms = TimeSeriesShard("ds", s, max_chunk_samples=30 + 10 * s, head_samples=12,
                             ooo_window_ms=2_000 * (s % 2))  # fmt: skip
        feed(ms, rand, 5, 200 + 50 * s, 0.04, 0.05 * (s % 2))
        shards.append(ms)
    return UnionSource(shards)


QUERIES = [
    "count_over_time({__name__=~'m|n'}[1m])",
    "present_over_time(m[10s])",
    "sum(count_over_time({__name__=~'m|n'}[10m]))",
    "count_over_time(m[30s] offset 20s)",
    "count_over_time(n[1m] @ 100)",
    "count_over_time({__name__=~'m|n'}[10m]) > 100",
]


@pytest.mark.parametrize("query", QUERIES)
def test_engine_over_shards_answers_as_from_selected_samples(query: str) -> None:
    union = _shards(3)
    fast, slow = Engine(union), Engine(SelectOnly(union))  # type: ignore[arg-type]
    for t in (5_000, 60_007, 150_000, 400_000):
        a, b = fast.instant(query, t), slow.instant(query, t)
        assert a.result_type == b.result_type and rows(a) == rows(b), (query, t)
    a = fast.range(query, 0, 400_000, 7_000)
    assert rows(a) == rows(slow.range(query, 0, 400_000, 7_000)) and a.series


def rows(res: Result) -> list[tuple[Labels, list[int], list[float]]]:
    return [(lb, ts.tolist(), vs.tolist()) for lb, ts, vs in res.series]


def test_sample_limit_is_reached_where_a_select_reaches_it() -> None:
    union = _shards(2)
    query, t = "count_over_time({__name__=~'m|n'}[1h])", 10**6
    read = sum(int(s.select(M, t - 3_600_000 + 1, t).offsets[-1]) for s in union.sources)
    for source in (union, SelectOnly(union)):
        assert Engine(source, max_samples=read).instant(query, t).series  # type: ignore[arg-type]
        with pytest.raises(ExecutionError, match="too many samples"):
            Engine(source, max_samples=read - 1).instant(query, t)  # type: ignore[arg-type]


def test_duplicate_label_sets_once_the_name_is_dropped_are_an_error() -> None:
    ms = TimeSeriesShard("ds", 0)
    series = [make_labels({"__name__": "m", "a": "1"}), make_labels({"__name__": "n", "a": "1"})]
    ms.ingest(SampleBatch(series, [0, 1], [1000, 1000], [1.0, 2.0]))
    for source in (ms, SelectOnly(ms)):
        with pytest.raises(ExecutionError, match="same labelset"):
            Engine(source).instant("count_over_time({__name__=~'m|n'}[1m])", 2000)  # type: ignore[arg-type]
