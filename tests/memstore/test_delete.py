"""Deletion and purge in the memstore: answers equal a reference with the deleted samples
removed, whole series are forgotten (labels, index, memory), and a purge keeps the index exact."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, labels_match, make_labels
from filodb.model.partkey import part_key
from filodb.model.record import read_record

SERIES = [
    make_labels({"__name__": n, "job": j, "inst": i})
    for n in ("up", "req") for j in ("api", "db") for i in ("a", "b", "c")
]  # fmt: skip
MATCHERS = [
    [Matcher("__name__", "=", "up")], [Matcher("job", "!=", "api")],
    [Matcher("inst", "=~", "a|b")], [Matcher("__name__", "=", "req"), Matcher("inst", "=", "c")],
]  # fmt: skip
ALL = [Matcher("__name__", "=~", ".+")]


def _everything(shard: TimeSeriesShard) -> dict:
    blk = shard.select(ALL, -(10**9), 10**9)
    return {
        lb: list(zip(blk.ts[a:b].tolist(), blk.vals[a:b].tolist(), strict=True))
        for lb, a, b in zip(blk.labels, blk.offsets[:-1], blk.offsets[1:], strict=True)
    }


def _ingest_rows(shard: TimeSeriesShard, rows: list[tuple[int, int]]) -> None:
    batch = SampleBatch(SERIES, [r[0] for r in rows], [r[1] for r in rows],
                        [float(r[1] * 10 + r[0]) for r in rows])  # fmt: skip
    shard.ingest(batch.take_series(np.isin(np.arange(len(SERIES)), batch.sidx)))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, len(SERIES) - 1), min_size=1, max_size=200),
    st.lists(
        st.tuples(st.integers(0, len(MATCHERS) - 1), st.integers(0, 120), st.integers(0, 120)),
        min_size=1,
        max_size=3,
    ),  # fmt: skip
)
def test_delete_equals_reference(order, deletes) -> None:  # type: ignore[no-untyped-def]
    shard = TimeSeriesShard("ds", 0, max_chunk_samples=4)  # chunks, merged runs and buffers
    rows = [(s, t) for t, s in enumerate(order)]  # every sample newer than the one before
    _ingest_rows(shard, rows)
    want = _everything(shard)
    for mi, a, b in deletes:
        lo, hi = min(a, b), max(a, b)
        d = shard.delete_series(MATCHERS[mi], lo, hi)
        for lb in list(want):
            if labels_match(lb, MATCHERS[mi]):
                want[lb] = [(t, v) for t, v in want[lb] if not lo <= t <= hi]
                if not want[lb]:
                    del want[lb]
        assert len(d.whole) + len(d.partial) == len(set(d.whole) | set(d.partial))
    assert _everything(shard) == want
    assert shard.num_series == len(want)  # series left without samples are purged
    assert sorted(shard.label_values("inst", [], -(10**9), 10**9)) == sorted(
        {dict(lb)["inst"] for lb in want}
    )
    for m in MATCHERS:  # the compacted index answers like a scan of the survivors
        got = {lb for lb in shard.series(m, -(10**9), 10**9)}
        assert got == {lb for lb in want if labels_match(lb, m)}
    # new samples after the deletion are taken and found again
    _ingest_rows(shard, [(s, 1000 + s) for s in range(len(SERIES))])
    assert len(_everything(shard)) == len(SERIES)


def test_whole_delete_frees_memory_and_labels() -> None:
    shard = TimeSeriesShard("ds", 0, max_chunk_samples=8)
    n = 2000
    series = [make_labels({"__name__": "m", "id": str(i)}) for i in range(n)]
    sidx = np.repeat(np.arange(n), 20)
    ts = np.tile(np.arange(20), n)
    shard.ingest(SampleBatch(series, sidx, ts, ts.astype(float)))
    assert shard.memory_bytes > 0
    d = shard.delete_series([Matcher("id", "=~", "1.*")], -(10**12), 10**12)
    assert len(d.whole) == 1111 and d.partial == []
    assert shard.num_series == n - 1111
    assert shard.label_values("id", [], 0, 100) == sorted(
        str(i) for i in range(n) if not str(i).startswith("1")
    )
    d = shard.delete_series([], -(10**12), 10**12)
    assert shard.num_series == 0 and shard.chunk_bytes == 0 and shard.stats()["chunks"] == 0
    # what is left is the head's pool of free pages, kept bounded for reuse (at most ~1 k pages)
    assert shard._head.samples == 0 and shard.memory_bytes <= 512 << 10


def test_retention_purges_series() -> None:
    shard = TimeSeriesShard("ds", 0, max_chunk_samples=4)
    old = [make_labels({"__name__": "m", "id": f"old{i}"}) for i in range(50)]
    new = [make_labels({"__name__": "m", "id": f"new{i}"}) for i in range(50)]
    shard.ingest(SampleBatch(old, np.arange(50).repeat(6), np.tile(np.arange(6), 50),
                             np.zeros(300)))  # fmt: skip
    shard.ingest(SampleBatch(new, np.arange(50).repeat(6), np.tile(np.arange(100, 106), 50),
                             np.ones(300)))  # fmt: skip
    shard.drop_before(50)
    assert shard.num_series == 100  # retention alone keeps them
    assert shard.purge_empty() == 50
    assert shard.num_series == 50 and shard.series_purged == 50
    assert set(shard.series([Matcher("id", "=~", "old.*")], 0, 10**6)) == set()
    assert len(shard.series([Matcher("id", "=~", "new.*")], 0, 10**6)) == 50
    blk = shard.select([Matcher("id", "=", "new7")], 0, 10**6)
    assert blk.ts.tolist() == list(range(100, 106)) and blk.vals.tolist() == [1.0] * 6


def test_flush_prepared_before_a_purge_does_not_mark_renumbered_series() -> None:
    shard = TimeSeriesShard("ds", 0, num_groups=1)
    a, b = make_labels({"__name__": "a"}), make_labels({"__name__": "b"})
    shard.ingest(SampleBatch([a, b], [0, 1], [1, 2], [1.0, 2.0]), offset=1)
    fd = shard.prepare_flush(0)
    shard.delete_series([Matcher("__name__", "=", "a")], 0, 10)
    assert shard.deletions_since(fd.deletes) == [shard.deletes[-1]]
    shard.commit_flush(fd)  # ids changed: b's chunk stays unflushed, written again next time
    assert not any(c.flushed for cs in shard._chunks for c in cs)
    fd2 = shard.prepare_flush(0)
    assert [pk for pk, _ in fd2.chunks] == [part_key(b)]
    assert shard.deletions_since(fd2.deletes) == []


def test_purged_series_leave_the_part_key_table() -> None:
    """A worker's series churn: series purged leave the shard's part-key table (what log
    records are looked up in), and a purged series that comes back is a new series."""
    shard = TimeSeriesShard("ds", 0)
    old = [make_labels({"__name__": "churned", "pod": f"gone-{i}"}) for i in range(3)]
    new = [make_labels({"__name__": "churned", "pod": "kept"})]
    for series, t in ((old, 1), (new, 100)):
        rec = SampleBatch(series, np.arange(len(series)), np.full(len(series), t),
                          np.ones(len(series)))  # fmt: skip
        shard.ingest(read_record(rec.to_bytes()), offset=t)
    assert [shard._part_key(s) for s in range(4)] == [part_key(lb) for lb in old + new]
    shard.drop_before(50)
    assert shard.purge_empty() == 3
    assert len(shard._pks) == shard.num_series == 1 and shard._part_key(0) == part_key(new[0])
    back = SampleBatch(old[:1] + new, [0, 1], [200, 200], [2.0, 3.0])
    st = shard.ingest(read_record(back.to_bytes()), offset=200)
    assert st.new_series == 1 and st.accepted == 2
    assert _everything(shard) == {old[0]: [(200, 2.0)], new[0]: [(100, 1.0), (200, 3.0)]}
