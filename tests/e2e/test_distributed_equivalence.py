"""Answers through the cluster (4 shards, pushdown, fan-out, reduce) equal the single-process
engine's answers over the same data."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.testing.cluster import UpProcess

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000_000
N = 60  # samples per series, 15 s apart

QUERIES = [
    "eq_requests_total", 'eq_requests_total{code=~"5.."}', "rate(eq_requests_total[2m])",
    "sum(rate(eq_requests_total[5m]))", "sum by (job) (rate(eq_requests_total[5m]))",
    "sum without (instance) (eq_requests_total)", "count by (code) (eq_requests_total)",
    "avg by (job) (eq_temp)", "min(eq_temp)", "max by (job) (eq_temp)", "stddev(eq_temp)",
    "stdvar by (job) (eq_temp)", "group by (job) (eq_temp)", "topk(3, eq_temp)",
    "bottomk(2, eq_temp) by (job)", "increase(eq_requests_total[5m]) * 60",
    "avg_over_time(eq_temp[3m])", "max_over_time(eq_temp[10m:1m])", "-eq_temp",
    "eq_temp / on(instance, job) group_left() sum by (instance, job) (eq_requests_total)",
    "abs(eq_temp - 20)", "sum(eq_temp) / count(eq_temp)", "eq_temp > 21",
    "quantile(0.5, eq_temp)", "count_values(\"v\", round(eq_temp))",
    "count_values by (job) (\"v\", round(eq_temp))", "count_values without (instance) (\"job\", round(eq_temp))",
]  # fmt: skip


def _data() -> SampleBatch:
    rng = np.random.default_rng(7)
    series, ts, vals, sidx = [], [], [], []
    t = T0 + 15_000 * np.arange(N)
    for i in range(24):
        lb = make_labels({"__name__": "eq_requests_total", "job": f"j{i % 3}", "instance": f"h{i % 8}",
                          "code": ["200", "500", "503"][i % 3]})  # fmt: skip
        series.append(lb)
        sidx.append(np.full(N, len(series) - 1))
        ts.append(t)
        vals.append(np.cumsum(rng.integers(0, 10, N)).astype(float))
    for i in range(8):
        series.append(make_labels({"__name__": "eq_temp", "job": f"j{i % 3}", "instance": f"h{i}"}))
        sidx.append(np.full(N, len(series) - 1))
        ts.append(t)
        vals.append(np.round(20 + 3 * np.sin(np.arange(N) / 7 + i), 1))
    return SampleBatch(series, np.concatenate(sidx), np.concatenate(ts), np.concatenate(vals))


@pytest.fixture(scope="module")
def loaded(up: UpProcess) -> tuple[UpProcess, Engine]:
    batch = _data()
    r = requests.post(up.url + "/api/v1/write", data=encode_write_request(batch), timeout=30)
    assert r.status_code == 204
    ref = MemorySource()
    for j, lb in enumerate(batch.series):
        m = batch.sidx == j
        ref.add(lb, batch.ts[m], batch.vals[m])
    engine = Engine(ref)
    q = {"query": "count(eq_temp)", "time": (T0 + 15_000 * (N - 1)) / 1000}
    for _ in range(100):  # ingestion is asynchronous: wait until every series is there
        body = requests.get(up.url + "/api/v1/query", params=q, timeout=10).json()
        if body["data"]["result"] and body["data"]["result"][0]["value"][1] == "8":
            break
    return up, engine


def _norm(data: dict) -> list:  # type: ignore[type-arg]
    out = []
    for r in data["result"]:
        pts = r.get("values") or [r["value"]]
        out.append((tuple(sorted(r["metric"].items())), [(p[0], float(p[1])) for p in pts]))
    return sorted(out)


def _close(a: list, b: list) -> bool:  # type: ignore[type-arg]
    if [x[0] for x in a] != [x[0] for x in b]:
        return False
    for (_, pa), (_, pb) in zip(a, b, strict=True):
        if [p[0] for p in pa] != [p[0] for p in pb]:
            return False
        va, vb = np.array([p[1] for p in pa]), np.array([p[1] for p in pb])
        if not np.allclose(va, vb, rtol=1e-9, atol=1e-12, equal_nan=True):
            return False
    return True


@pytest.mark.parametrize("q", QUERIES)
def test_instant_and_range_equal_single_process(loaded, q: str) -> None:  # type: ignore[no-untyped-def]
    up, engine = loaded
    t = T0 + 15_000 * (N - 1)
    got = requests.get(
        up.url + "/api/v1/query", params={"query": q, "time": t / 1000}, timeout=30
    ).json()
    assert got["status"] == "success", got
    want = engine.instant(q, t).to_prom_json()
    assert _close(_norm(got["data"]), _norm(want)), (got["data"], want)
    params = {"query": q, "start": (T0 + 120_000) / 1000, "end": t / 1000, "step": "45s"}
    got = requests.get(up.url + "/api/v1/query_range", params=params, timeout=30).json()
    assert got["status"] == "success", got
    want = engine.range(q, T0 + 120_000, t, 45_000).to_prom_json()
    assert _close(_norm(got["data"]), _norm(want)), (got["data"], want)
