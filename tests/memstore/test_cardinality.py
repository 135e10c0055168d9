"""Cardinality stats: from shards' indexes, merged across shards, in Prometheus's shape; checked
against a brute-force count over the label sets (the reference model)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.cardinality import NO_MAX_TIME, NO_MIN_TIME, CardinalityStats
from filodb.model.labels import Labels, make_labels
from filodb.tasks.wire import pack, unpack

T0 = 1_700_000_000_000


def _series(rng: np.random.Generator, n: int) -> list[Labels]:
    out = set()
    while len(out) < n:
        m = f"m{rng.zipf(1.5) % 40}"
        d = {"__name__": m, "job": f"j{rng.integers(5)}", "inst": f"i{rng.integers(300)}"}
        if rng.random() < 0.3:
            d["zone"] = "é" * int(rng.integers(1, 4))  # two UTF-8 bytes a character
        out.add(make_labels(d))
    return sorted(out)


def _shards(series: list[Labels], k: int) -> list[TimeSeriesShard]:
    shards = [TimeSeriesShard("ds", i) for i in range(k)]
    for i, sh in enumerate(shards):
        mine = series[i::k]
        n = len(mine)
        sh.ingest(SampleBatch(mine, np.arange(n), T0 + np.arange(n) * 1000, np.ones(n)))
    return shards


def _reference(series: list[Labels], limit: int) -> dict:
    pairs = Counter(f"{k}={v}" for lb in series for k, v in lb)
    values: dict[str, set[str]] = {}
    for lb in series:
        for k, v in lb:
            values.setdefault(k, set()).add(v)
    memory = {k: sum(len(v.encode()) for v in vs) for k, vs in values.items()}
    metrics = Counter(dict(lb)["__name__"] for lb in series)

    def top(c: dict[str, int]) -> list[dict]:
        rows = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [{"name": n, "value": v} for n, v in rows]

    return {
        "numLabelPairs": len(pairs),
        "seriesCountByMetricName": top(metrics),
        "labelValueCountByLabelName": top({k: len(v) for k, v in values.items()}),
        "memoryInBytesByLabelName": top(memory),
        "seriesCountByLabelValuePair": top(dict(pairs)),
    }


def _counts(rows: list[dict]) -> list[int]:
    return [r["value"] for r in rows]


def test_merged_shards_equal_the_reference() -> None:
    series = _series(np.random.default_rng(7), 2000)
    ref = _reference(series, 10_000)
    stats = CardinalityStats.merge([sh.cardinality() for sh in _shards(series, 4)])
    got = stats.to_prom(10_000)  # every row: the whole lists must match
    assert got["headStats"] == {"numSeries": 2000, "numLabelPairs": ref["numLabelPairs"],
                                "chunkCount": 2000, "minTime": T0,
                                "maxTime": T0 + 1000 * (len(series[0::4]) - 1)}  # fmt: skip
    for key in ("seriesCountByMetricName", "labelValueCountByLabelName",
                "memoryInBytesByLabelName", "seriesCountByLabelValuePair"):  # fmt: skip
        assert got[key] == ref[key], key


def test_top_limit_keeps_the_largest_counts() -> None:
    series = _series(np.random.default_rng(3), 1500)
    ref = _reference(series, 100_000)
    got = CardinalityStats.merge([sh.cardinality() for sh in _shards(series, 2)]).to_prom(5)
    for key in ("seriesCountByMetricName", "seriesCountByLabelValuePair"):
        assert len(got[key]) == 5
        assert _counts(got[key]) == _counts(ref[key])[:5]  # ties may pick either name
        assert all(r in ref[key] for r in got[key])


def test_the_wire_form_round_trips_and_empty_shards_merge() -> None:
    series = _series(np.random.default_rng(1), 300)
    (sh,) = _shards(series, 1)
    h, a = sh.cardinality().to_wire()
    back = CardinalityStats.from_wire(*unpack(pack(h, a)))
    assert back.to_prom(50) == sh.cardinality().to_prom(50)
    empty = TimeSeriesShard("ds", 9).cardinality()
    assert (empty.min_time, empty.max_time, empty.num_series) == (NO_MIN_TIME, NO_MAX_TIME, 0)
    merged = CardinalityStats.merge([empty, sh.cardinality()])
    assert merged.to_prom(50) == sh.cardinality().to_prom(50)
    assert CardinalityStats().to_prom()["seriesCountByLabelValuePair"] == []
