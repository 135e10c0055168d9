"""Cost of the limits per dataset and of the cardinality stats (issue 16, items 5 and 6).

In-process against a real Redis (Debian's redis-server, started here):

- ``limit_check_known``: the series-limit check of a batch whose series are all admitted
  already (the steady state: one set lookup per series, no Redis call), per batch;
- ``limit_check_new``: admitting a batch of new series (xxh3 hashes + one script call per
  10 000 series), per batch and per series;
- ``rate_check``: the token-bucket call of a batch (one script call);
- ``cardinality_shard``: one shard's stats from its index (``TimeSeriesShard.cardinality``);
- ``cardinality_merge_to_prom``: merging 4 shards' stats and building the top-10 lists.

Usage: ``python bench/limits.py [--series N] [--batch B]``. One JSON object per line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable

import numpy as np

from filodb.config import Config
from filodb.gateway.limits import IngestLimiter
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.cardinality import CardinalityStats
from filodb.model.dataset import Dataset
from filodb.model.labels import Labels, make_labels
from filodb.redisproc import start_redis
from filodb.shards.limits import LimitsStore


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, **ctx}), flush=True)


def best_ms(fn: Callable[[], object], repeat: int = 5) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return float(np.median(out))


def series(n: int, offset: int = 0) -> list[Labels]:
    return [make_labels({"__name__": f"metric_{i % 200:04d}_total", "job": f"job-{i % 10}",
                         "instance": f"host-{(i + offset) // 10:06d}:9100", "code": str(200 + i % 5)})
            for i in range(offset, offset + n)]  # fmt: skip


def batch_of(ss: list[Labels]) -> SampleBatch:
    n = len(ss)
    return SampleBatch(ss, np.arange(n), np.full(n, 1_700_000_000_000), np.ones(n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rp = start_redis(tmp, appendonly=False)
        try:
            store = LimitsStore(rp.url)
            cfg = Config(redis_url=rp.url)
            desc = Dataset.create("bench", 4, 1, limits={"max_series": 10**9,
                                                          "ingest_samples_per_s": 1e12})  # fmt: skip
            lim = IngestLimiter(store, cfg)
            new_ms = []
            for k in range(0, a.series, a.batch):
                b = batch_of(series(a.batch, k))
                t = time.perf_counter()
                lim.admit(desc, b)
                new_ms.append((time.perf_counter() - t) * 1000)
            emit("limit_check_new", float(np.median(new_ms)), "ms", batch_series=a.batch)
            emit("limit_check_new_per_series", float(np.median(new_ms)) * 1000 / a.batch, "us")
            known = batch_of(series(a.batch, 0))
            emit("limit_check_known", best_ms(lambda: lim.admit(desc, known)), "ms",
                 batch_series=a.batch)  # fmt: skip
            emit("rate_check", best_ms(lambda: lim.take_rate(desc, a.batch), 50), "ms")
        finally:
            rp.stop()
    shards = [TimeSeriesShard("bench", i) for i in range(4)]
    all_series = series(a.series)
    for i, sh in enumerate(shards):
        sh.ingest(batch_of(all_series[i::4]))
    emit("cardinality_shard", best_ms(shards[0].cardinality), "ms", series=a.series // 4)
    parts = [sh.cardinality() for sh in shards]
    emit("cardinality_merge_to_prom", best_ms(lambda: CardinalityStats.merge(parts).to_prom(10)),
         "ms", series=a.series, shards=4)  # fmt: skip


if __name__ == "__main__":
    main()
