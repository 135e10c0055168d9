"""The range-query results cache (filodb/web/results_cache.py) on a real Redis: answers equal
the engine's without the cache bit for bit (hypothesis over start, end, step and now), a
refresh computes only the new steps, a generation bump forgets everything, the size stays
under its budget."""

from __future__ import annotations

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filodb.model.labels import make_labels
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.query.parser import parse
from filodb.query.result import Result
from filodb.web.results_cache import _LRU, _SIZES, _TOTAL, EXTENT_STEPS, ResultsCache, invalidate

S = 1000
M = 60 * S
SPAN = 6 * 3600 * S  # data from 0 to 6 h, one sample every 15 s (with gaps and a NaN)

QUERIES = [
    "m_total", "rate(m_total[5m])", "sum by (job) (rate(m_total[5m]))", "deriv(g[10m])",
    "topk(2, g)", "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
    "avg_over_time(g[7m]) > 20", "g offset 10m", "g offset -10m", "g @ 3600",
    "max_over_time(rate(m_total[2m])[30m:1m])", "time()", "timestamp(g)", "absent(nope)",
    "g / on(job) group_left() count by (job) (g)", "g * scalar(count(g))", "predict_linear(g[15m], 600)",
    "changes(g[10m])", "label_replace(g, \"x\", \"$1\", \"job\", \"(.*)\")",
    "g + start()", "end() - range()", "vector(range())",
]  # fmt: skip


def _source() -> MemorySource:
    rng = np.random.default_rng(7)
    src = MemorySource()
    ts = np.arange(0, SPAN, 15 * S, dtype=np.int64) + 1234
    for j in range(3):
        keep = rng.random(len(ts)) > 0.05  # gaps
        src.add(make_labels({"__name__": "m_total", "job": f"j{j}"}), ts[keep],
                np.cumsum(rng.integers(0, 9, keep.sum())).astype(float))  # fmt: skip
        v = 20 + 5 * np.sin(ts / 7e5 + j) + rng.normal(0, 0.1, len(ts))
        v[100 + j] = np.nan
        src.add(make_labels({"__name__": "g", "job": f"j{j}"}), ts, v)
    obs = np.cumsum(rng.integers(0, 30, len(ts)))
    for le, f in (("0.1", 0.2), ("1", 0.7), ("+Inf", 1.0)):
        src.add(make_labels({"__name__": "h_bucket", "le": le}), ts, np.floor(obs * f))
    return src


SRC = _source()


class Arrived:
    """SRC as ingested by ``now[0]``: samples after it have not arrived yet."""

    def __init__(self, now: list[int]) -> None:
        self.now = now

    def select(self, matchers, start_ms: int, end_ms: int):  # type: ignore[no-untyped-def]
        return SRC.select(matchers, start_ms, min(end_ms, self.now[0]))

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(SRC, name)


class Counted:
    """The engine as the cache's ``compute``, counting the steps it was asked for."""

    def __init__(self, storable: bool = True, source=SRC) -> None:  # type: ignore[no-untyped-def]
        self.source = source
        self.steps = 0
        self.calls = 0
        self.storable = storable

    def __call__(self, q: str, step: int):  # type: ignore[no-untyped-def]
        def compute(lo: int, hi: int) -> tuple[Result, bool]:
            self.calls += 1
            self.steps += (hi - lo) // step + 1
            return Engine(self.source).range(q, lo, hi, step), self.storable

        return compute


@pytest.fixture
def rclient(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def _cache(
    rclient: redis.Redis, now: list[int], mb: float = 64, margin: int = 5 * M
) -> ResultsCache:
    return ResultsCache(rclient, int(mb * (1 << 20)), margin, clock=lambda: now[0])


def _same(a: Result, b: Result) -> None:
    """Same series, steps and NaNs; values equal to 1e-12 relative: the engine's prefix sums
    (``*_over_time``) round differently by an ulp when the query's range differs, cache or not
    (``Engine.range`` over [t, t] and over [t - 10 s, t] differ there alone)."""
    assert [lb for lb, _, _ in a.series] == [lb for lb, _, _ in b.series]
    for (lb, ta, va), (_, tb, vb) in zip(a.series, b.series, strict=True):
        assert np.array_equal(ta, tb), lb
        assert np.array_equal(np.isnan(va), np.isnan(vb)), lb
        assert np.allclose(va, vb, rtol=1e-12, atol=1e-300, equal_nan=True), lb
    assert a.result_type == b.result_type


def _run(cache: ResultsCache, q: str, start: int, end: int, step: int, counted: Counted) -> Result:
    return cache.range("ds", parse(q), start, end, step, 300_000, counted(q, step))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=st.sampled_from(QUERIES), start=st.integers(0, SPAN), length=st.integers(0, 3 * 3600),
       step_s=st.sampled_from([1, 7, 15, 60, 113, 300]), now=st.integers(0, SPAN + 3600),
       shift=st.integers(0, 1800))  # fmt: skip
def test_answers_equal_with_and_without_the_cache(
    rclient, q, start, length, step_s, now, shift
) -> None:  # type: ignore[no-untyped-def]
    rclient.flushall()
    step = step_s * S
    end = min(start + length * S, start + 2000 * step)
    clock = [now * S]
    cache = _cache(rclient, clock)
    arrived = Arrived(clock)  # samples arrive as the clock moves: a step cached too early differs
    for a, b in ((start, end), (start + shift * S, end + shift * S)):  # the second hits
        clock[0] += shift * S
        got = _run(cache, q, a, b, step, Counted(source=arrived))
        _same(got, Engine(arrived).range(q, a, b, step))


@pytest.mark.parametrize(
    "q", ["g offset -10m", "max_over_time((g offset -20m)[5m:1m])", "g @ 20000"]
)
def test_steps_reading_ahead_are_cached_only_once_final(rclient, q: str) -> None:  # type: ignore[no-untyped-def]
    clock = [4 * 3600 * S]
    arrived = Arrived(clock)
    cache = _cache(rclient, clock)
    a, b, step = 3 * 3600 * S, 4 * 3600 * S, 60 * S
    for later in (0, 15 * M, 30 * M, 6 * 3600 * S):
        clock[0] = 4 * 3600 * S + later
        _same(
            _run(cache, q, a, b, step, Counted(source=arrived)),
            Engine(arrived).range(q, a, b, step),
        )


def test_steps_outside_the_range_do_not_fail_the_query(rclient) -> None:  # type: ignore[no-untyped-def]
    """topk with a NaN parameter fails a query; the extra steps of a whole extent, before the
    asked start, must not (the parameter exists from 3851.234 s on; the extent of the first
    step, 3900 s, starts at 3840 s)."""
    clock = [SPAN]
    cache = _cache(rclient, clock)
    q, a, b, step = "topk(scalar(count(g offset 3850s)), g)", 3900 * S, 4 * 3600 * S, 60 * S
    for _ in range(2):
        _same(_run(cache, q, a, b, step, Counted()), Engine(SRC).range(q, a, b, step))


def test_a_refresh_computes_only_the_new_steps(rclient) -> None:  # type: ignore[no-untyped-def]
    clock = [SPAN]
    cache = _cache(rclient, clock, margin=5 * M)
    q, step = "sum by (job) (rate(m_total[5m]))", 15 * S
    first = Counted()
    _run(cache, q, SPAN - 3 * 3600 * S, SPAN, step, first)
    assert first.steps >= 3 * 3600 // 15
    for k in range(1, 6):  # refreshes every 15 s
        clock[0] = SPAN + k * 15 * S
        again = Counted()
        got = _run(cache, q, SPAN - 3 * 3600 * S + k * 15 * S, SPAN + k * 15 * S, step, again)
        # only the unfinished tail: the margin and at most one partly finished extent
        assert again.steps <= 5 * M // step + EXTENT_STEPS + 1, again.steps
        assert again.calls == 1
        _same(got, Engine(SRC).range(q, SPAN - 3 * 3600 * S + k * 15 * S, SPAN + k * 15 * S, step))
    assert cache.stats.hits > 0


def test_uncacheable_queries_compute_everything(rclient) -> None:  # type: ignore[no-untyped-def]
    clock = [SPAN]
    cache = _cache(rclient, clock)
    qs = ("g @ end()", "g @ start()", "rate(m_total[range()])", "g + start()", "vector(end())",
          "range() * g")  # fmt: skip
    for q in qs:
        for _ in range(2):
            c = Counted()
            _run(cache, q, 3600 * S, 7200 * S, 60 * S, c)
            assert c.steps == 61 and c.calls == 1
    assert cache.stats.uncacheable == 2 * len(qs) and cache.stats.hits == 0


def test_generation_bump_forgets_the_dataset(rclient) -> None:  # type: ignore[no-untyped-def]
    clock = [SPAN]
    cache = _cache(rclient, clock)
    q, a, b, step = "rate(m_total[5m])", 3600 * S, 4 * 3600 * S, 60 * S
    _run(cache, q, a, b, step, Counted())
    hit = Counted()
    _run(cache, q, a, b, step, hit)
    assert hit.steps == 0
    other = Counted()
    cache.range("other", parse(q), a, b, step, 300_000, other(q, step))
    assert other.steps > 0  # datasets have their own entries
    invalidate(rclient, "ds")
    miss = Counted()
    _run(cache, q, a, b, step, miss)
    assert miss.steps >= (b - a) // step + 1
    again = Counted()
    cache.range("other", parse(q), a, b, step, 300_000, again(q, step))
    assert again.steps == 0  # another dataset's generation is untouched


def test_answers_with_warnings_are_not_stored(rclient) -> None:  # type: ignore[no-untyped-def]
    clock = [SPAN]
    cache = _cache(rclient, clock)
    q, a, b, step = "g", 3600 * S, 4 * 3600 * S, 60 * S
    _run(cache, q, a, b, step, Counted(storable=False))
    again = Counted()
    _run(cache, q, a, b, step, again)
    assert again.steps >= (b - a) // step + 1


def test_size_stays_within_the_budget(rclient) -> None:  # type: ignore[no-untyped-def]
    clock = [SPAN]
    budget_mb = 0.2
    cache = _cache(rclient, clock, mb=budget_mb)
    for i in range(40):
        _run(cache, f"g + {i}", 0, 5 * 3600 * S, 15 * S, Counted())
        total = int(rclient.get(_TOTAL) or 0)
        assert 0 < total <= budget_mb * (1 << 20)
    keys = [k for k in rclient.zrange(_LRU, 0, -1)]
    sizes = {k: int(v) for k, v in rclient.hgetall(_SIZES).items()}
    assert set(keys) == set(sizes) and sum(sizes.values()) == total
    assert all(rclient.exists(k) for k in keys)
    stored = [k for k in rclient.scan_iter("filodb:{qc}:x:*")]
    assert sorted(stored) == sorted(keys)  # evicted entries are gone, not just unlisted
    assert len(stored) < 40 * (5 * 3600 // 15) // EXTENT_STEPS  # some were evicted
    # the most recent query is still whole in the cache
    c = Counted()
    _run(cache, "g + 39", 0, 5 * 3600 * S, 15 * S, c)
    assert c.steps <= 5 * M // (15 * S) + EXTENT_STEPS + 1


def test_redis_unreachable_answers_without_the_cache() -> None:
    from filodb.redisproc import free_port

    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    cache = ResultsCache(dead, 64 << 20, 5 * M, clock=lambda: SPAN)
    q, a, b, step = "rate(m_total[5m])", 3600 * S, 4 * 3600 * S, 60 * S
    _same(_run(cache, q, a, b, step, Counted()), Engine(SRC).range(q, a, b, step))
    assert cache.stats.uncacheable == 1


def test_answers_too_big_to_store_are_then_computed_whole(rclient) -> None:  # type: ignore[no-untyped-def]
    clock = [SPAN]
    cache = _cache(rclient, clock, mb=0.004)  # an extent of this answer is over a budget's eighth
    q, a, b, step = "g", 3600 * S, 4 * 3600 * S, 60 * S
    first = Counted()
    want = Engine(SRC).range(q, a, b, step)
    _same(_run(cache, q, a, b, step, first), want)
    assert first.steps > (b - a) // step + 1  # split on extents, computed from an extent start
    assert not list(rclient.scan_iter("filodb:{qc}:x:*"))  # nothing stored
    again = Counted()
    _same(_run(cache, q, a, b, step, again), want)
    # not split again: exactly the steps asked for, in one call, counted as uncacheable
    assert again.steps == (b - a) // step + 1 and again.calls == 1
    assert cache.stats.uncacheable == 1
    small = Counted()  # another query still goes through the cache
    _run(cache, "sum(g)", a, b, step, small)
    hit = Counted()
    _run(cache, "sum(g)", a, b, step, hit)
    assert hit.steps < (b - a) // step + 1 and cache.stats.hits > 0
