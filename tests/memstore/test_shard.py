"""The memstore must answer exactly like a brute-force reference over the accepted samples."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, labels_match, make_labels
from filodb.query.memsource import MemorySource

SERIES = [
    make_labels({"__name__": n, "job": j, "inst": i})
    for n in ("up", "req_total") for j in ("api", "db", "") for i in ("a", "b")
]  # fmt: skip
MATCHERS = [
    [], [Matcher("__name__", "=", "up")], [Matcher("job", "!=", "api")],
    [Matcher("job", "=~", "a.*|")], [Matcher("job", "!~", "db")], [Matcher("job", "=", "")],
    [Matcher("__name__", "=", "req_total"), Matcher("inst", "=~", "b")],
    [Matcher("nolabel", "=", "")], [Matcher("nolabel", "!=", "")],
]  # fmt: skip


def _reference_accept(batches):  # type: ignore[no-untyped-def]
    """Sequential Prometheus semantics: a sample must be newer than its series' newest."""
    last: dict = {}
    kept: dict = {}
    for b in batches:
        for i in range(len(b)):
            lb = b.series[b.sidx[i]]
            t = int(b.ts[i])
            if lb in last and t <= last[lb]:
                continue
            last[lb] = t
            kept.setdefault(lb, []).append((t, b.vals[i]))
    return kept


batch_st = st.lists(
    st.tuples(st.integers(0, len(SERIES) - 1), st.integers(0, 60), st.floats(allow_nan=False)),
    max_size=40,
).map(
    lambda rows: SampleBatch(
        SERIES, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    )
)


@settings(max_examples=60, deadline=None)
@given(st.lists(batch_st, min_size=1, max_size=4), st.integers(0, 60), st.integers(0, 60))
def test_select_equals_reference(batches, a, b) -> None:  # type: ignore[no-untyped-def]
    start, end = min(a, b), max(a, b)
    shard = TimeSeriesShard("ds", 0)
    accepted = rejected = 0
    for bt in batches:
        stats = shard.ingest(bt)
        accepted += stats.accepted
        rejected += stats.out_of_order
    kept = _reference_accept(batches)
    assert accepted == sum(len(v) for v in kept.values())
    assert accepted + rejected == sum(len(b) for b in batches)
    ref = MemorySource()
    for lb, pts in kept.items():
        ref.add(lb, np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    for ms in MATCHERS:
        got = shard.select(ms, start, end)
        want = ref.select(ms, start, end)
        assert sorted(got.labels) == want.labels
        gmap = {got.labels[i]: got.series(i) for i in range(len(got))}
        for i in range(len(want)):
            lb, ts, vals = want.series(i)
            assert (gmap[lb][1] == ts).all() and (gmap[lb][2] == vals).all()
        assert all(labels_match(lb, ms) for lb in got.labels)


def test_stale_marker_bits_survive() -> None:
    stale = np.array([0x7FF0000000000002], np.uint64).view(np.float64)
    shard = TimeSeriesShard("ds", 0)
    shard.ingest(SampleBatch([SERIES[0]], [0, 0], [1, 2], [1.0, stale[0]]))
    blk = shard.select([], 0, 10)
    assert blk.vals.view(np.uint64).tolist() == [
        np.float64(1.0).view(np.uint64),
        0x7FF0000000000002,
    ]


def test_label_listings_follow_time_range() -> None:
    shard = TimeSeriesShard("ds", 0)
    shard.ingest(SampleBatch(SERIES[:2], [0, 1], [10, 100], [1.0, 2.0]))
    assert shard.label_values("inst", [], 0, 50) == ["a"]
    assert shard.label_values("inst", [], 0, 200) == ["a", "b"]
    assert shard.label_names([], 0, 200) == ["__name__", "inst", "job"]
    assert shard.series([Matcher("inst", "=", "b")], 0, 200) == [SERIES[1]]


def test_many_series_grow_buffers() -> None:
    shard = TimeSeriesShard("ds", 0)
    series = [make_labels({"__name__": "g", "i": str(i)}) for i in range(1000)]
    for k in range(5):
        n = 1000 * 100
        sidx = np.repeat(np.arange(1000), 100)
        ts = np.tile(np.arange(100) + 100 * k, 1000)
        shard.ingest(SampleBatch(series, sidx, ts, np.ones(n)))
    assert shard.stats()["samples"] == 500_000
    blk = shard.select([Matcher("i", "=", "7")], 0, 10**9)
    assert blk.ts.tolist() == list(range(500))


def test_series_scraped_together_share_their_chunks_start_end_and_timestamps() -> None:
    """Live scrapes close every series' head at once, with equal first and last times and
    timestamp vectors: the chunks share one object for each (not an int and a bytes object
    a chunk), while each series still answers its own values."""
    shard = TimeSeriesShard("ds", 0, head_samples=20, max_chunk_samples=20)
    series = [make_labels({"__name__": "g", "i": str(i)}) for i in range(300)]
    n = len(series)
    for k in range(30):  # 30 scrapes, 15 s apart: the heads close at 20
        ts = np.full(n, 1_700_000_000_000 + 15_000 * k)
        vals = np.arange(n, dtype=np.float64) * 1000 + k
        shard.ingest(SampleBatch(series, np.arange(n), ts, vals))
    chunks = [cs[0] for cs in shard._chunks if cs]
    assert len(chunks) == n and {c.count for c in chunks} == {20}
    assert len({id(c.start) for c in chunks}) == 1 and len({id(c.end) for c in chunks}) == 1
    assert len({id(c.count) for c in chunks}) == 1 and len({id(c.ts) for c in chunks}) == 1
    assert len({id(c.vals) for c in chunks}) == n  # values differ: their own vectors
    blk = shard.select([Matcher("i", "=", "299")], 0, 2 * 10**12)
    assert blk.vals.tolist() == [299_000.0 + k for k in range(30)]
