"""Walking-skeleton benchmark: end-to-end ingest and query latency through ``filodb up``.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/skeleton.py            # 2 000 series x 1 h at 15 s (480 k samples)
    python bench/skeleton.py --series 10000 --hours 6

Measured here: remote-write ingest (acknowledged = durable in the log) and the time until every
sample is queryable, memstore ingest from decoded batches (no network), and the median latency
of range queries over the whole span at a 60 s step through the HTTP API. Prometheus and
VictoriaMetrics side by side come with the ingest and PromQL benchmarks (issues 4 and 6).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filodb.memstore.shard import TimeSeriesShard  # noqa: E402
from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.model.labels import make_labels  # noqa: E402
from filodb.prom.remote_write import encode_write_request  # noqa: E402
from filodb.testing.cluster import UpProcess  # noqa: E402

QUERIES = {
    "sum_rate_by_job": "sum by (job) (rate(bench_requests_total[5m]))",
    "topk_avg_over_time": "topk(10, avg_over_time(bench_temp[10m]))",
    "raw_selector_one_series": 'bench_temp{instance="i7"}',
    "join_group_left": "bench_temp / on(instance) group_left() sum by (instance) (rate(bench_requests_total[5m]))",
}


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    print(
        orjson.dumps({"metric": metric, "value": round(value, 6), "unit": unit, **ctx}).decode(),
        flush=True,
    )


def workload(n_series: int, hours: float, t0: int) -> list[SampleBatch]:
    """Exporter-like data: counters with integer increments, gauges with 1 decimal; 15 s."""
    n = int(hours * 240)
    ts = t0 + 15_000 * np.arange(n)
    rng = np.random.default_rng(1)
    half = n_series // 2
    series = [make_labels({"__name__": "bench_requests_total", "job": f"job{i % 10}", "instance": f"i{i}"})
              for i in range(half)] + [
              make_labels({"__name__": "bench_temp", "job": f"job{i % 10}", "instance": f"i{i}"})
              for i in range(n_series - half)]  # fmt: skip
    counters = np.cumsum(rng.integers(0, 20, (half, n)), axis=1).astype(float)
    gauges = np.round(
        20 + 5 * np.sin(np.arange(n)[None, :] / 40 + np.arange(n_series - half)[:, None]), 1
    )
    vals = np.concatenate([counters, gauges])
    batches = []
    for a in range(0, n, 20):  # 20 samples per series per request (5 min of scrapes)
        b = min(n, a + 20)
        k = b - a
        batches.append(SampleBatch(series, np.repeat(np.arange(n_series), k), np.tile(ts[a:b], n_series),
                                   vals[:, a:b].ravel()))  # fmt: skip
    return batches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    t0 = 1_700_000_000_000
    batches = workload(a.series, a.hours, t0)
    total = sum(len(b) for b in batches)
    ctx = {"series": a.series, "hours": a.hours, "samples": total}

    shard = TimeSeriesShard("bench", 0)
    start = time.perf_counter()
    for b in batches:
        shard.ingest(b)
    emit("memstore_ingest_samples_per_s", total / (time.perf_counter() - start), "samples/s", **ctx)

    bodies = [encode_write_request(b) for b in batches]
    with tempfile.TemporaryDirectory() as d:
        up = UpProcess(Path(d) / "data", shards=4).start()
        try:
            s = requests.Session()
            start = time.perf_counter()
            for body in bodies:
                r = s.post(up.url + "/api/v1/write", data=body, timeout=120)
                assert r.status_code == 204, r.text
            acked = time.perf_counter() - start
            emit("remote_write_ack_samples_per_s", total / acked, "samples/s", **ctx)
            end_ms = t0 + int(a.hours * 3600_000) - 15_000
            want = str(a.series - a.series // 2)
            while True:
                q = {"query": "count(count_over_time(bench_temp[1m]))", "time": end_ms / 1000}
                res = s.get(up.url + "/api/v1/query", params=q, timeout=60).json()["data"]["result"]
                lag = s.get(up.url + "/api/v1/cluster/prometheus/status", timeout=10).json()["data"]
                if res and res[0]["value"][1] == want and all(x["lag"] == 0 for x in lag):
                    break
                time.sleep(0.05)
            emit(
                "remote_write_queryable_samples_per_s",
                total / (time.perf_counter() - start),
                "samples/s",
                **ctx,
            )
            for name, q in QUERIES.items():
                params = {"query": q, "start": t0 / 1000, "end": end_ms / 1000, "step": "60s"}
                times = []
                for _ in range(a.repeat):
                    t = time.perf_counter()
                    r = s.get(up.url + "/api/v1/query_range", params=params, timeout=120)
                    times.append(time.perf_counter() - t)
                    assert r.status_code == 200 and r.json()["status"] == "success", r.text[:300]
                emit(
                    "range_query_latency_ms",
                    1000 * statistics.median(times),
                    "ms",
                    query=name,
                    **ctx,
                )
        finally:
            up.stop()


if __name__ == "__main__":
    main()
