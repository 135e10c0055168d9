"""The memstore with chunks, flush groups, a real SQLite column store, eviction, paging,
recovery and retention: every answer equals a brute-force reference over the same samples."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels
from filodb.model.partkey import group_of as flush_group_of
from filodb.model.partkey import part_key
from filodb.node.applier import LogApplier
from filodb.node.flush import flush_all, flush_group, flush_groups, make_pager
from filodb.query.memsource import MemorySource
from filodb.store import open_store
from filodb.store.base import ChunkSet

N_SERIES = 30
M = [Matcher("__name__", "=", "m")]
RANGES = [
    (0, 10**9),
    (5_000, 123_000),
    (300_000, 399_000),
    (399_000, 399_000),
    (0, 0),
    (7_500, 7_500),
]


class ListLog:
    """The log as a list of (offset, record bytes): what replay reads."""

    def __init__(self) -> None:
        self.records: list[tuple[int, bytes]] = []
        self.trimmed = 0

    def read(self, dataset, positions, count, block_ms):  # type: ignore[no-untyped-def]
        p = positions[0]
        return {0: [r for r in self.records if r[0] > p][:count]}

    def trim(self, dataset, shard, upto):  # type: ignore[no-untyped-def]
        self.trimmed = max(self.trimmed, upto)


def as_dict(b):  # type: ignore[no-untyped-def]
    return {b.labels[i]: (b.ts[b.offsets[i] : b.offsets[i + 1]].tolist(),
                          b.vals[b.offsets[i] : b.offsets[i + 1]].view(np.int64).tolist())
            for i in range(len(b.labels))}  # fmt: skip


@pytest.fixture
def columns(tmp_path):  # type: ignore[no-untyped-def]
    cs, meta = open_store("sqlite", tmp_path)
    cs.initialize("ds", 1)
    yield cs, meta
    cs.close()
    meta.close()


def _shard(columns, budget: int = 0) -> TimeSeriesShard:  # type: ignore[no-untyped-def]
    return TimeSeriesShard("ds", 0, max_chunk_samples=37, num_groups=3, memory_budget=budget,
                           pager=make_pager(columns[0], "ds", 0))  # fmt: skip


def _feed(
    ms: TimeSeriesShard,
    columns,
    log: ListLog,
    flush_every: int | None,
    seed: int = 0,
    close_heads: bool = True,
) -> MemorySource:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(N_SERIES)]
    per: dict[int, tuple[list[int], list[float]]] = {i: ([], []) for i in range(N_SERIES)}
    for k in range(40):
        ts = 1000 * np.arange(k * 10, k * 10 + 10) + rng.integers(0, 5, 10)  # a little jitter
        ts = np.maximum.accumulate(ts)
        ts[1:] = np.maximum(ts[1:], ts[:-1] + 1)
        sidx = np.repeat(np.arange(N_SERIES), 10)
        tt = np.tile(ts, N_SERIES)
        vv = rng.random(len(tt))
        vv[rng.random(len(vv)) < 0.01] = np.array([0x7FF0000000000002], np.uint64).view(np.float64)[
            0
        ]  # stale
        b = SampleBatch(series, sidx, tt, vv)
        log.records.append((k + 1, b.to_bytes()))
        ms.ingest(b, k + 1)
        for i in range(N_SERIES):
            per[i][0].extend(ts.tolist())
            per[i][1].extend(vv[sidx == i].tolist())
        if flush_every and k % flush_every == flush_every - 1:
            flush_group(ms, columns[0], columns[1], k % ms.num_groups, log, close_heads)
    ref = MemorySource()
    for i in range(N_SERIES):
        ref.add(series[i], np.array(per[i][0], np.int64), np.array(per[i][1]))
    return ref


@pytest.mark.parametrize("budget", [0, 1, 20_000])
@pytest.mark.parametrize("flush_every", [None, 1, 7])
def test_answers_equal_reference_with_chunks_flush_eviction(columns, budget, flush_every) -> None:  # type: ignore[no-untyped-def]
    ms = _shard(columns, budget)
    ref = _feed(ms, columns, ListLog(), flush_every)
    st = ms.stats()
    assert st["chunks"] + st["chunks_evicted"] > 0 and st["samples_ingested"] == N_SERIES * 400
    if budget and flush_every:
        assert st["chunks_evicted"] > 0
    for lo, hi in RANGES:
        assert as_dict(ms.select(M, lo, hi)) == as_dict(ref.select(M, lo, hi)), (lo, hi)
    if budget and flush_every:
        assert ms.stats()["chunks_paged"] > 0  # the old data came back from the store


@pytest.mark.parametrize("close_heads", [True, False])
@pytest.mark.parametrize("budget", [0, 1])
def test_flushes_that_leave_heads_open_answer_as_the_reference(columns, budget, close_heads
                                                               ) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ms = _shard(columns, budget)
    ref = _feed(ms, columns, ListLog(), 1, close_heads=close_heads)
    for g in range(3):
        flush_group(ms, columns[0], columns[1], g, None, close_heads)
    for lo, hi in RANGES:
        assert as_dict(ms.select(M, lo, hi)) == as_dict(ref.select(M, lo, hi)), (lo, hi)
    fresh = _shard(columns)  # the store alone: closed chunks and the heads written last
    fresh.load_part_keys(columns[0].scan_part_keys("ds", 0))
    for lo, hi in RANGES:
        assert as_dict(fresh.select(M, lo, hi)) == as_dict(ref.select(M, lo, hi)), (lo, hi)


def test_a_flush_leaving_heads_open_keeps_chunk_sizes(columns) -> None:  # type: ignore[no-untyped-def]
    """Flushes for the log's size after every record: memory closes chunks at 37 rows only,
    the store holds each head provisionally under the id its chunk gets, which replaces it,
    so every stored chunk but a series' newest is as big as with no early flush."""
    ms = TimeSeriesShard("ds", 0, max_chunk_samples=37, num_groups=3, flush_chunk_samples=37,
                         pager=make_pager(columns[0], "ds", 0))  # fmt: skip
    log = ListLog()
    _feed(ms, columns, log, 1, close_heads=False)
    assert {c.count for cs in ms._chunks for c in cs} == {37}  # 10 a series, 30 in the head
    assert ms.stats()["chunks"] == N_SERIES * 10
    pks = [part_key(make_labels({"__name__": "m", "i": str(i)})) for i in range(N_SERIES)]
    for g in range(3):  # every group's checkpoint covers its records: the log is trimmed
        flush_group(ms, columns[0], columns[1], g, log, close_heads=False)
    assert log.trimmed == 40
    stored = columns[0].read_chunks("ds", 0, pks, 0, 10**9)
    assert sum(c.num_rows for c in stored) == N_SERIES * 400  # each sample stored once
    newest = {pk: max(c.start_ms for c in stored if c.part_key == pk) for pk in pks}
    assert {c.num_rows for c in stored if c.start_ms != newest[c.part_key]} == {37}
    assert {c.num_rows for c in stored if c.start_ms == newest[c.part_key]} == {30}
    flush_all(ms, columns[0], columns[1], log)  # the schedule's flush closes the heads: the
    again = columns[0].read_chunks("ds", 0, pks, 0, 10**9)  # same 30 rows, same chunk ids
    assert sorted((c.part_key, c.chunk_id, c.num_rows) for c in again) == sorted(
        (c.part_key, c.chunk_id, c.num_rows) for c in stored
    )


def test_groups_flushed_together_store_what_one_at_a_time_stores(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``flush_groups`` (a flush for the log's size: every group in one write) leaves the
    store, the checkpoints, the log's trim and the memstore as flushing each group in turn."""
    got = []
    for together in (False, True):
        cs, meta = open_store("sqlite", tmp_path / str(together))
        cs.initialize("ds", 1)
        ms = TimeSeriesShard("ds", 0, max_chunk_samples=37, num_groups=3, flush_chunk_samples=37,
                             pager=make_pager(cs, "ds", 0))  # fmt: skip
        log = ListLog()
        _feed(ms, (cs, meta), log, 7, close_heads=False)  # some runs flushed, some not
        order = [2, 0, 1]
        if together:
            done = flush_groups(ms, cs, meta, order, log, close_heads=False)
            assert done["groups"] == order and done["chunks"] + done["heads"] > 0
        else:
            for g in order:
                flush_group(ms, cs, meta, g, log, close_heads=False)
        pks = [part_key(make_labels({"__name__": "m", "i": str(i)})) for i in range(N_SERIES)]
        stored = sorted((c.part_key, c.chunk_id, c.num_rows, c.vectors)
                        for c in cs.read_chunks("ds", 0, pks, 0, 10**9))  # fmt: skip
        stats = {k: v for k, v in ms.stats().items() if k not in ("last_flush", "flushed_through")}
        got.append((stored, meta.read_checkpoints("ds", 0), log.trimmed, stats,
                    sorted(r.part_key for r in cs.scan_part_keys("ds", 0))))  # fmt: skip
        cs.close()
        meta.close()
    assert got[0] == got[1]
    assert got[1][2] == 40 and sum(r[2] for r in got[1][0]) == N_SERIES * 400


def test_heads_grow_chunks_and_early_flushes_keep_runs_whole(columns) -> None:  # type: ignore[no-untyped-def]
    """Heads of 10 samples are encoded into their series' last chunk until it holds 40; flushes
    for the log after every record store each series' growing run provisionally, so the store
    ends with runs of 80 rows (the newest excepted), each sample once, as after one flush.
    Records come a scrape apart on the shard's clock (not bulk: heads stop at 10)."""
    clock = itertools.count(0.0, 100.0).__next__
    ms = TimeSeriesShard("ds", 0, max_chunk_samples=40, head_samples=10, num_groups=3,
                         flush_chunk_samples=80, pager=make_pager(columns[0], "ds", 0),
                         clock=lambda: float(clock()))  # fmt: skip
    log = ListLog()
    ref = _feed(ms, columns, log, 1, close_heads=False)
    # a full head closes when its series' next sample comes: the last 10 wait in the head
    assert [c.count for c in ms._chunks[0]] == [40] * 9 + [30] and ms._head.count[0] == 10
    for g in range(3):
        flush_group(ms, columns[0], columns[1], g, log, close_heads=False)
    assert log.trimmed == 40  # every record is in the store: the log can go
    pks = [part_key(make_labels({"__name__": "m", "i": str(i)})) for i in range(N_SERIES)]
    stored = columns[0].read_chunks("ds", 0, pks, 0, 10**9)
    assert sum(c.num_rows for c in stored) == N_SERIES * 400
    assert {c.num_rows for c in stored} == {80}
    fresh = _shard(columns)  # the store alone
    fresh.load_part_keys(columns[0].scan_part_keys("ds", 0))
    again = _shard(columns)  # a restart
    LogApplier(again, columns[0], columns[1], log).replay_to(40)
    for shard in (ms, fresh, again):
        for lo, hi in RANGES:
            assert as_dict(shard.select(M, lo, hi)) == as_dict(ref.select(M, lo, hi)), (lo, hi)


@pytest.mark.parametrize("close_heads", [True, False])
@pytest.mark.parametrize("flush_every", [1, 3, 7])
def test_recovery_from_checkpoints_and_log_loses_and_doubles_nothing(columns, flush_every,
                                                                     close_heads) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    log = ListLog()
    ref = _feed(_shard(columns), columns, log, flush_every, close_heads=close_heads)
    cps = columns[1].read_checkpoints("ds", 0)
    assert cps and log.trimmed == min(cps.get(g, 0) for g in range(3))
    again = _shard(columns)
    rep = LogApplier(again, columns[0], columns[1], log)
    assert rep.start == min(cps.get(g, 0) for g in range(3))
    rep.replay_to(40)
    for lo, hi in RANGES:
        assert as_dict(again.select(M, lo, hi)) == as_dict(ref.select(M, lo, hi)), (lo, hi)
    # what a group had flushed was skipped, not re-ingested: count what replay had to take
    groups = [
        flush_group_of(part_key(make_labels({"__name__": "m", "i": str(i)})), 3)
        for i in range(N_SERIES)
    ]
    want = sum(10 for off in range(rep.start + 1, 41) for g in groups if cps.get(g, 0) < off)
    assert again.stats()["samples_ingested"] == want


def test_crash_after_chunks_before_checkpoint_rewrites_without_duplicates(columns) -> None:  # type: ignore[no-untyped-def]
    log = ListLog()
    ms = _shard(columns)
    ref = _feed(ms, columns, log, flush_every=None)
    fd = ms.prepare_flush(0)  # chunks reach the store, then the process dies: no checkpoint
    columns[0].write_chunks(
        "ds",
        0,
        [ChunkSet(pk, c.chunk_id, c.start, c.end, c.count, c.vectors) for pk, c in fd.chunks],
    )
    again = _shard(columns)
    LogApplier(again, columns[0], columns[1], log).replay_to(40)
    flush_all(again, columns[0], columns[1])  # the replayed samples are flushed again
    fresh = _shard(columns)  # and once more from the store alone
    LogApplier(fresh, columns[0], columns[1], ListLog()).replay_to(0)
    for shard in (again, fresh):
        for lo, hi in RANGES:
            assert as_dict(shard.select(M, lo, hi)) == as_dict(ref.select(M, lo, hi)), (lo, hi)


def test_older_sample_after_recovery_is_rejected(columns) -> None:  # type: ignore[no-untyped-def]
    log = ListLog()
    ms = _shard(columns)
    _feed(ms, columns, log, flush_every=None)
    flush_all(ms, columns[0], columns[1])
    again = _shard(columns)
    LogApplier(again, columns[0], columns[1], ListLog()).replay_to(0)
    lb = make_labels({"__name__": "m", "i": "0"})
    st = again.ingest(
        SampleBatch([lb], np.zeros(2, np.int64), np.array([1_000, 10**9]), np.array([1.0, 2.0])), 41
    )
    assert (st.accepted, st.out_of_order) == (1, 1)


def test_retention_drops_memory_and_store(columns) -> None:  # type: ignore[no-untyped-def]
    ms = _shard(columns, budget=0)
    ref = _feed(ms, columns, ListLog(), flush_every=1)
    flush_all(ms, columns[0], columns[1])
    cutoff = 200_000
    ms.drop_before(cutoff)
    columns[0].delete_before("ds", 0, cutoff)
    got = as_dict(ms.select(M, 0, 10**9))
    want = as_dict(ref.select(M, 0, 10**9))
    for lb, (ts, vals) in got.items():
        wt, wv = want[lb]
        # chunks ending before the cutoff are gone; the chunk straddling it stays whole
        assert ts == wt[len(wt) - len(ts) :] and vals == wv[len(wv) - len(vals) :]
        assert ts[0] <= cutoff + 40_000 and (len(ts) == len(wt) or ts[0] > 0)
        assert min(ts) > cutoff - 40_000


def test_a_flush_writes_consecutive_chunks_as_one(columns) -> None:  # type: ignore[no-untyped-def]
    ms = TimeSeriesShard("ds", 0, max_chunk_samples=37, num_groups=1, memory_budget=0,
                         pager=make_pager(columns[0], "ds", 0), flush_chunk_samples=100)  # fmt: skip
    ref = _feed(ms, columns, ListLog(), flush_every=None)  # 400 samples a series
    flush_all(ms, columns[0], columns[1])
    pks = [part_key(make_labels({"__name__": "m", "i": str(i)})) for i in range(N_SERIES)]
    stored = columns[0].read_chunks("ds", 0, pks, 0, 10**9)
    assert sum(c.num_rows for c in stored) == N_SERIES * 400
    assert max(c.num_rows for c in stored) <= 100
    # a head closes at 37 rows: 10 full chunks a series and the flush closes the last 30;
    # stored as 5 runs of 2 (74 rows) and the 30
    assert ms.stats()["chunks"] == N_SERIES * 11  # memory keeps its own chunks
    assert len(stored) == N_SERIES * 6 and {c.num_rows for c in stored} == {74, 30}
    fresh = _shard(columns, budget=0)  # everything from the store alone
    fresh.load_part_keys(columns[0].scan_part_keys("ds", 0))
    for lo, hi in RANGES:
        assert as_dict(fresh.select(M, lo, hi)) == as_dict(ref.select(M, lo, hi)), (lo, hi)


# --- deletion: flushes in flight, recovery from the store and the log ------------------------
GONE = [Matcher("__name__", "=", "m"), Matcher("i", "=~", "1.*")]  # whole series, all time
CUT = [Matcher("i", "=", "2")]  # samples in [CUT_LO, CUT_HI]
CUT_LO, CUT_HI = 100_000, 250_000


def _without_deleted(ref_dict: dict) -> dict:
    out = {}
    for lb, (ts, vals) in ref_dict.items():
        i = dict(lb)["i"]
        if i.startswith("1"):
            continue
        if i == "2":
            keep = [k for k, t in enumerate(ts) if not CUT_LO <= t <= CUT_HI]
            ts, vals = [ts[k] for k in keep], [vals[k] for k in keep]
        out[lb] = (ts, vals)
    return out


class _RacingStore:
    """The column store, with a deletion landing while a flush is being written (after the
    flush was prepared, before its chunks reach the store)."""

    def __init__(self, store, before_write) -> None:  # type: ignore[no-untyped-def]
        self._store, self._before = store, before_write

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._store, name)

    def write_flushes(self, *args) -> None:  # type: ignore[no-untyped-def]
        hook, self._before = self._before, None
        if hook is not None:
            hook()
        self._store.write_flushes(*args)


def test_deletion_during_a_flush_and_recovery_never_bring_samples_back(columns) -> None:  # type: ignore[no-untyped-def]
    from filodb.model.tombstone import Tombstone

    log = ListLog()
    ms = _shard(columns)
    applier = LogApplier(ms, columns[0], columns[1], log)
    ref = _feed(ms, columns, log, flush_every=5)  # some chunks already stored, some not
    records = [(41, Tombstone(tuple(GONE), -(2**63), 2**63 - 1).to_bytes()),
               (42, Tombstone(tuple(CUT), CUT_LO, CUT_HI).to_bytes())]  # fmt: skip
    log.records.extend(records)
    racing = _RacingStore(columns[0], lambda: applier.apply(records))
    for g in (2, 1, 0):  # 2 first (flushed longest ago): prepared before the deletion, written
        flush_group(ms, racing, columns[1], g, log)  # type: ignore[arg-type] # after it
    want = {r: _without_deleted(as_dict(ref.select(M, *r))) for r in RANGES}
    for r in RANGES:
        assert as_dict(ms.select(M, *r)) == want[r], r
    from_store = _shard(columns)  # the column store alone holds nothing deleted
    LogApplier(from_store, columns[0], columns[1], ListLog()).replay_to(0)
    flush_all(ms, columns[0], columns[1], log)
    again = _shard(columns)  # a restart: store, then the log from the checkpoints
    LogApplier(again, columns[0], columns[1], log).replay_to(42)
    for r in RANGES:
        assert as_dict(again.select(M, *r)) == want[r], r
        for lb, (ts, _) in as_dict(from_store.select(M, *r)).items():
            assert set(ts) <= set(want[r][lb][0]), (lb, r)
    for shard in (ms, again, from_store):
        assert not shard.series(GONE, 0, 10**9)


def test_tombstone_replays_in_log_order(columns) -> None:  # type: ignore[no-untyped-def]
    from filodb.model.tombstone import Tombstone

    log = ListLog()
    ms = _shard(columns)
    ref = _feed(ms, columns, log, flush_every=None)  # nothing flushed: the log is all there is
    log.records.append((41, Tombstone(tuple(GONE), -(2**63), 2**63 - 1).to_bytes()))
    later = SampleBatch([make_labels({"__name__": "m", "i": "1"})], [0], [5], [42.0])
    log.records.append((42, later.to_bytes()))  # written after the deletion: it stays
    again = _shard(columns)
    LogApplier(again, columns[0], columns[1], log).replay_to(42)
    want = _without_deleted(as_dict(ref.select(M, 0, 10**9)))
    got = as_dict(again.select(M, 0, 10**9))
    assert got.pop(make_labels({"__name__": "m", "i": "1"})) == (
        [5],
        [np.float64(42.0).view(np.int64)],
    )
    want = {k: v for k, v in want.items() if not CUT[0].matches(dict(k)["i"])}
    got = {k: v for k, v in got.items() if not CUT[0].matches(dict(k)["i"])}
    assert got == want


@pytest.mark.parametrize("step_s", [0.0, 100.0])
def test_bulk_and_scraped_heads_close_into_the_same_chunks(step_s: float) -> None:
    """Records arriving at once (bulk heads: a chunk encoded once) or a scrape apart (heads of
    10 grow their chunk) leave the same chunks and answers."""
    clock = itertools.count(0.0, step_s)
    ms = TimeSeriesShard("ds", 0, max_chunk_samples=40, head_samples=10,
                         clock=lambda: float(next(clock)))  # fmt: skip
    series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(3)]
    for k in range(5):  # 20 samples per series per record: 100 each
        ts = 1000 * np.arange(k * 20, k * 20 + 20)
        sidx = np.repeat(np.arange(3, dtype=np.int32), 20)
        all_ts = np.tile(ts, 3)
        ms.ingest(SampleBatch(series, sidx, all_ts, all_ts / 1000.0))
    assert [[c.count for c in ms._chunks[s]] for s in range(3)] == [[40, 40]] * 3
    assert ms._head.count.tolist() == [20] * 3
    got = as_dict(ms.select([Matcher("__name__", "=", "m")], 0, 10**6))
    want = np.arange(0, 100_000, 1000)
    assert list(got.values()) == [(want.tolist(), (want / 1000.0).view(np.int64).tolist())] * 3
