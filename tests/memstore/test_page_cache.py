"""The page cache: a second query over a paged range reads no store and answers the same; a
cached range stays exact while samples keep arriving, being flushed and evicted; it stays
within its byte budget; retention empties it. Real SQLite column store, brute-force
reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels
from filodb.node.flush import flush_all, make_pager
from filodb.store import open_store

M = [Matcher("__name__", "=", "m")]
N = 12


@pytest.fixture
def columns(tmp_path):  # type: ignore[no-untyped-def]
    cs, meta = open_store("sqlite", tmp_path)
    cs.initialize("ds", 1)
    yield cs, meta
    cs.close()
    meta.close()


class CountingPager:
    def __init__(self, store: Any) -> None:
        self.inner = make_pager(store, "ds", 0)
        self.calls = 0

    def __call__(self, part_keys: list[bytes], start_ms: int, end_ms: int) -> Any:
        self.calls += 1
        return self.inner(part_keys, start_ms, end_ms)


def _shard(columns: Any, cache: int = 64 << 20) -> tuple[TimeSeriesShard, CountingPager]:
    pager = CountingPager(columns[0])
    ms = TimeSeriesShard("ds", 0, max_chunk_samples=20, num_groups=2, memory_budget=1,
                         pager=pager, page_cache_bytes=cache)  # fmt: skip
    return ms, pager


class Feed:
    """Batches of 10 samples a series, 1 s apart, and the brute-force answer."""

    def __init__(self) -> None:
        self.series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(N)]
        self.ts: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.rng = np.random.default_rng(3)

    def batch(self, k: int) -> SampleBatch:
        ts = 1000 * np.arange(k * 10, k * 10 + 10)
        vals = np.round(self.rng.random(10 * N) * 100, 1)
        self.ts.append(np.tile(ts, N))
        self.vals.append(vals)
        return SampleBatch(self.series, np.repeat(np.arange(N), 10), np.tile(ts, N), vals)

    def want(self, lo: int, hi: int) -> dict[Any, tuple[list[int], list[float]]]:
        sidx = np.concatenate([np.repeat(np.arange(N), 10)] * len(self.ts))
        ts, vals = np.concatenate(self.ts), np.concatenate(self.vals)
        out = {}
        for i in range(N):
            m = (sidx == i) & (ts >= lo) & (ts <= hi)
            if m.any():
                order = np.argsort(ts[m], kind="stable")
                out[self.series[i]] = (ts[m][order].tolist(), vals[m][order].tolist())
        return out


def got(ms: TimeSeriesShard, lo: int, hi: int) -> dict[Any, tuple[list[int], list[float]]]:
    b = ms.select(M, lo, hi)
    return {b.labels[i]: (b.ts[b.offsets[i] : b.offsets[i + 1]].tolist(),
                          b.vals[b.offsets[i] : b.offsets[i + 1]].tolist())
            for i in range(len(b.labels))}  # fmt: skip


def test_second_query_over_a_paged_range_reads_no_store(columns: Any) -> None:
    ms, pager = _shard(columns)
    feed = Feed()
    for k in range(30):
        ms.ingest(feed.batch(k), k + 1)
    flush_all(ms, *columns)  # memory_budget=1: every flushed chunk is evicted
    assert ms.stats()["chunks"] == 0
    first = got(ms, 10_000, 200_000)
    calls, paged = pager.calls, ms.stats()["chunks_paged"]
    assert calls == 1 and paged > 0
    assert first == feed.want(10_000, 200_000)
    assert got(ms, 10_000, 200_000) == first  # the same range again
    assert got(ms, 50_000, 150_000) == feed.want(50_000, 150_000)  # and one inside it
    st = ms.stats()
    assert pager.calls == calls and st["chunks_paged"] == paged
    assert st["page_cache_hits"] > 0 and 0 < st["page_cache_bytes"] <= 64 << 20
    got(ms, 0, 300_000)  # wider than what is cached: read again
    assert pager.calls == calls + 1


@pytest.mark.parametrize("cache", [0, 3_000, 64 << 20])
def test_cached_ranges_stay_exact_while_data_arrives_and_is_evicted(
    columns: Any, cache: int
) -> None:
    ms, _ = _shard(columns, cache)
    feed = Feed()
    for k in range(40):
        ms.ingest(feed.batch(k), k + 1)
        if k % 3 == 2:
            flush_all(ms, *columns)
        # a query into the future first: the cached range must end at the newest sample
        for lo, hi in ((0, 10**12), (5_000, 10**12), (0, 1000 * (10 * k + 5)), (7_000, 7_000)):
            assert got(ms, lo, hi) == feed.want(lo, hi), (k, lo, hi)
        assert ms.stats()["page_cache_bytes"] <= max(cache, 0)


def test_retention_empties_the_cache(columns: Any) -> None:
    ms, _ = _shard(columns)
    feed = Feed()
    for k in range(30):
        ms.ingest(feed.batch(k), k + 1)
    flush_all(ms, *columns)
    assert got(ms, 0, 10**9) == feed.want(0, 10**9)
    assert ms.stats()["page_cache_bytes"] > 0
    ms.drop_before(150_000)
    columns[0].delete_before("ds", 0, 150_000)
    assert ms.stats()["page_cache_bytes"] == 0
    after = got(ms, 0, 10**9)
    assert after and all(min(ts) > 150_000 - 100_000 for ts, _ in after.values())
    assert all(min(ts) > 0 for ts, _ in after.values())  # the chunks before the cutoff are gone
