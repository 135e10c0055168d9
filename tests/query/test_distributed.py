"""The distributed engine over in-process shards answers as the plain engine over all data,
where the way series are spread over shards used to change the answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from filodb.errors import ExecutionError
from filodb.model.labels import Labels
from filodb.query.distributed import DistributedEngine, LocalShards, eval_local
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.query.parser import parse

BIG = 9.988465674311579e307


def _lb(name: str, **kw: str) -> Labels:
    return tuple(sorted({"__name__": name, **kw}.items()))


def _engines(placement: list[list[tuple[Labels, float]]]) -> tuple[Engine, DistributedEngine]:
    """The plain engine over everything and the distributed one over shards holding the given
    series (one sample at t=0 each)."""
    whole, shards = MemorySource(), []
    for held in placement:
        src = MemorySource()
        for lb, v in held:
            for s in (src, whole):
                s.add(lb, np.array([0]), np.array([v]))
        shards.append(src)
    return Engine(whole), DistributedEngine(LocalShards(shards))


def _answer(eng: Engine, q: str) -> list[tuple[Labels, float]]:
    return sorted((lb, float(vs[0])) for lb, _, vs in eng.instant(q, 60_000).series)


def _same(a: list[tuple[Labels, float]], b: list[tuple[Labels, float]]) -> bool:
    return [x[0] for x in a] == [x[0] for x in b] and all(
        (math.isnan(x[1]) and math.isnan(y[1])) or x[1] == pytest.approx(y[1], rel=1e-9)
        for x, y in zip(a, b, strict=True)
    )


def test_sum_and_avg_keep_what_cancels_across_shards() -> None:
    # each shard's plain sum absorbs its small value into 1e100; Prometheus's Kahan sum keeps it
    plain, dist = _engines([[(_lb("d", p="a"), 2.0), (_lb("d", p="c"), 1e100)],
                            [(_lb("d", p="b"), 8.0), (_lb("d", p="d"), -1e100)]])  # fmt: skip
    assert _answer(dist, "sum(d)") == _answer(plain, "sum(d)") == [((), 10.0)]
    assert _answer(dist, "avg(d)") == _answer(plain, "avg(d)") == [((), 2.5)]


def test_avg_near_the_float_maximum_does_not_overflow() -> None:
    plain, dist = _engines([[(_lb("d", p="a"), BIG), (_lb("d", p="b"), BIG)],
                            [(_lb("d", p="c"), BIG), (_lb("d", p="e"), -BIG), (_lb("d", p="f"), BIG)]])  # fmt: skip
    assert _same(_answer(dist, "avg(d)"), _answer(plain, "avg(d)"))
    assert _answer(dist, "avg(d)")[0][1] == pytest.approx(BIG * 0.6)
    assert _answer(dist, "sum(d)") == [((), math.inf)]  # the sum itself does overflow


@pytest.mark.parametrize("vals,want", [((math.inf, 0.0, math.inf), math.inf),
                                       ((math.inf, math.inf, -math.inf), math.nan),
                                       ((-math.inf, 1.0, 2.0), -math.inf)])  # fmt: skip
def test_avg_of_infinities(vals: tuple[float, ...], want: float) -> None:
    series = [(_lb("d", p=str(i)), v) for i, v in enumerate(vals)]
    plain, dist = _engines([series[:1], series[1:]])
    got = _answer(dist, "avg(d)")[0][1]
    assert _same(_answer(dist, "avg(d)"), _answer(plain, "avg(d)"))
    assert math.isnan(got) if math.isnan(want) else got == want


def test_topk_param_read_from_series_another_shard_holds() -> None:
    xs = [(_lb("x", i=str(i)), float(i)) for i in range(4)]
    plain, dist = _engines([[*xs[:2], (_lb("k"), 2.0)], xs[2:]])
    q = "topk(scalar(k), x)"
    assert _answer(dist, q) == _answer(plain, q) == [(xs[2][0], 2.0), (xs[3][0], 3.0)]


@pytest.mark.parametrize("q", ["histogram_fraction(0, 2, h_bucket)",
                               'histogram_quantiles(h_bucket, "q", 0.5, 0.9)'])  # fmt: skip
def test_bucket_functions_see_every_bucket(q: str) -> None:
    buckets = [
        (_lb("h_bucket", le=le), v)
        for le, v in (("1", 2.0), ("2", 5.0), ("4", 8.0), ("+Inf", 10.0))
    ]
    plain, dist = _engines([buckets[::2], buckets[1::2]])
    assert _answer(plain, q)
    assert _answer(dist, q) == _answer(plain, q)


def test_many_to_many_error_names_the_duplicates_sorted() -> None:
    _, dist = _engines(
        [[(_lb("dup", label="beta"), 2.0)], [(_lb("dup", label="alpha"), 1.0), (_lb("s"), 3.0)]]
    )
    with pytest.raises(ExecutionError, match=r'label="alpha"}, \{__name__="dup", label="beta"}\]'):
        dist.instant("s > on() dup", 0)


def test_partial_answers_are_for_sums_only() -> None:
    p = {"query": "max(x)", "partial": "sum", "lookback": 300_000, "timeout": 10, "qstart": 0, "qend": 0,
         "start": 0, "end": 0, "step": 0, "max_samples": 1000}  # fmt: skip
    with pytest.raises(ExecutionError, match="partial"):
        eval_local(MemorySource(), p)


def test_a_shard_stops_at_the_query_deadline_not_its_own() -> None:
    import time

    from filodb.errors import QueryTimeoutError

    src = MemorySource()
    src.add(_lb("x"), np.array([0], np.int64), np.array([1.0]))
    p = {"query": "x", "lookback": 300_000, "timeout": 60, "qstart": 0, "qend": 0,
         "start": 0, "end": 0, "step": 0, "max_samples": 1000}  # fmt: skip
    assert len(eval_local(src, {**p, "deadline_unix": time.time() + 60})[0]) == 1
    with pytest.raises(QueryTimeoutError):  # the query timed out while the task sat in a queue
        eval_local(src, {**p, "deadline_unix": time.time() - 1})
    eng = DistributedEngine(LocalShards([src]), timeout_s=7.0)
    ctx = eng.make_ctx(np.array([0], np.int64), 0, 0, 0)
    params = eng.leaf_params(parse("x"), ctx)
    assert 0 < params["timeout"] <= 7.0
    assert abs(params["deadline_unix"] - time.time() - params["timeout"]) < 1.0


def test_a_subquery_of_an_instant_query_builds_no_millisecond_grid() -> None:
    """Found by bench/fuzz_http.py: an instant query's subquery (step 0) was checked against a
    1 ms grid over its whole range; ``avg_over_time(vector(1)[725h:1m])`` asked the web
    process for 20 GB and the kernel killed it. Here 1 h: that grid was 29 MB."""
    import tracemalloc

    eng = DistributedEngine(LocalShards([MemorySource(), MemorySource()]))
    tracemalloc.start()
    try:
        res = eng.instant("avg_over_time((vector(1))[1h:1m])", 1_700_000_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.to_prom_json()["result"] == [{"metric": {}, "value": [1_700_000_000, "1"]}]
    assert peak < 5_000_000, peak


@pytest.mark.parametrize("q", ["quantile(0.5, d)", "quantile by (g) (0.25, d)",
                               "quantile without (p) (0.9, d)", "quantile by (__name__) (0.5, d)",
                               "quantile(0.5, last_over_time(d[5m]))",
                               'quantile by (g) (0.5, {__name__=~"d|e"})'])  # fmt: skip
def test_quantile_from_group_keys_equals_the_single_process_answer(q: str) -> None:
    series = [(_lb("d", p=str(i), g=str(i % 3)), float(i * i % 7)) for i in range(12)]
    series += [(_lb("e", p="0", g="0"), 5.0)]
    plain, dist = _engines([series[0::3], series[1::3], series[2::3]])
    want = _answer(plain, q)
    assert want and _answer(dist, q) == want


def test_quantile_still_finds_duplicates_across_shards() -> None:
    # renamed alike, d and e (in different shards) collide: not answered from group keys
    plain, dist = _engines([[(_lb("d", p="0"), 1.0)], [(_lb("e", p="0"), 2.0)]])
    q = 'quantile(0.5, label_replace({__name__=~"d|e"}, "__name__", "z", "", ""))'
    with pytest.raises(ExecutionError, match="same labelset"):
        plain.instant(q, 60_000)
    with pytest.raises(ExecutionError, match="same labelset"):
        dist.instant(q, 60_000)


def test_quantile_over_one_metric_ships_group_keys_only() -> None:
    seen = []

    class Spy(LocalShards):
        def eval_shards(self, shards, params):  # type: ignore[no-untyped-def]
            got = super().eval_shards(shards, params)
            seen.extend(lb for v, _ in got for lb in v.labels)
            return got

    series = [(_lb("d", p=str(i), g=str(i % 2)), float(i)) for i in range(6)]
    srcs = []
    for part in (series[:3], series[3:]):
        src = MemorySource()
        for lb, v in part:
            src.add(lb, np.array([0]), np.array([v]))
        srcs.append(src)
    dist = DistributedEngine(Spy(srcs))
    assert _answer(dist, "quantile by (g) (0.5, d)") == [((("g", "0"),), 2.0), ((("g", "1"),), 3.0)]
    assert seen and set(seen) == {(("g", "0"),), (("g", "1"),)}
