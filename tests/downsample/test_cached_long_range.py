"""The results cache on the long-range path (real Redis, real SQLite): each piece is cached as a
range query of its tier's dataset, so a cached answer equals the uncached one step for step,
repeated queries hit, and a downsample run's generation bump is what makes them miss again."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import redis

from filodb.query.distributed import DistributedEngine, LocalShards
from filodb.query.longrange import Tier
from filodb.query.parser import parse
from filodb.query.result import Result
from filodb.testing.downsample import DAY, DAYS, START, Raw, memstore
from filodb.web.downsampled import answer_range
from filodb.web.results_cache import ResultsCache, invalidate

HOUR = 3_600_000
NOW = START + DAYS * DAY


@dataclass
class _Source:
    warnings: list[str] = field(default_factory=list)


class Engines:
    """The web tier's engine factory over the test's SQLite store, counting the range queries
    the engines answered."""

    def __init__(self, raw: Raw) -> None:
        self.sources = {
            ds: LocalShards([memstore(raw.stores, ds, s) for s in range(2)])
            for ds in ("m", "m_ds_1", "m_ds_5")
        }
        self.asked: list[str] = []

    def __call__(self, dataset: str, lookback_ms: int):  # type: ignore[no-untyped-def]
        self.asked.append(dataset)
        return DistributedEngine(self.sources[dataset], lookback_ms=lookback_ms), _Source()


def _tiers(reached: int) -> list[Tier]:
    return [Tier("m", 0, NOW - 2 * DAY), Tier("m_ds_1", 60_000, NOW - 5 * DAY, reached),
            Tier("m_ds_5", 300_000, None, reached)]  # fmt: skip


def _same(a: Result, b: Result) -> None:
    assert [lb for lb, _, _ in a.series] == [lb for lb, _, _ in b.series]
    for (lb, ta, va), (_, tb, vb) in zip(a.series, b.series, strict=True):
        assert np.array_equal(ta, tb), lb
        assert np.allclose(va, vb, rtol=1e-12, equal_nan=True), lb


QUERIES = ["count_over_time(temp[1h])", "avg_over_time(temp[1h])", "max_over_time(temp[30m])",
           "sum by (__name__) (rate(req_total[1h]))", "temp", "increase(req_total[2h])"]  # fmt: skip


@pytest.mark.parametrize("q", QUERIES)
def test_cached_long_range_answers_equal_uncached_and_hit(raw: Raw, redis_url: str, q: str) -> None:
    raw.run()
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    cache = ResultsCache(client, 64 << 20, 5 * 60_000, clock=lambda: NOW + HOUR)
    engines = Engines(raw)
    e = parse(q)
    for start, end, step in (
        (START + 12 * HOUR, NOW, HOUR),
        (START + DAY + 1000, NOW - 1000, 600_000),
    ):
        plain, tiers = answer_range(_tiers(NOW), e, start, end, step, 300_000, engines, None)
        assert "m_ds_5" in tiers and "m_ds_1" in tiers and "(raw)" in tiers
        first, tiers1 = answer_range(_tiers(NOW), e, start, end, step, 300_000, engines, cache)
        hits = cache.stats.hits
        engines.asked.clear()
        second, tiers2 = answer_range(_tiers(NOW), e, start, end, step, 300_000, engines, cache)
        assert tiers1 == tiers2 == tiers and cache.stats.hits > hits
        assert "m_ds_5" not in engines.asked  # every extent of the oldest piece came from Redis
        _same(first, plain)
        _same(second, plain)
        assert first.warnings == second.warnings == plain.warnings


def test_a_run_that_moves_the_levels_forgets_their_cached_answers(raw: Raw, redis_url: str) -> None:
    raw.run(START, START + 4 * DAY)  # the levels reach day 4 of 8 for now
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    cache = ResultsCache(client, 64 << 20, 5 * 60_000, clock=lambda: NOW + HOUR)
    engines = Engines(raw)
    e = parse("count_over_time(temp[1h])")
    start, end = START + 12 * HOUR, NOW
    answer_range(_tiers(START + 4 * DAY), e, start, end, HOUR, 300_000, engines, cache)
    raw.run(START + 4 * DAY, NOW)  # the next run writes days 5 to 8 ...
    for ds in ("m_ds_1", "m_ds_5"):  # ... and bumps the generations (filodb.node.downsampler)
        invalidate(client, ds)
    engines = Engines(raw)  # the nodes reloaded the ds part keys
    plain, _ = answer_range(_tiers(NOW), e, start, end, HOUR, 300_000, engines, None)
    cached, _ = answer_range(_tiers(NOW), e, start, end, HOUR, 300_000, engines, cache)
    _same(cached, plain)  # without the bumps, m_ds_1's extents past day 4 would be stale
    assert cache.stats.hits > 0  # the raw piece's extents were still good
