"""Load the read path's numba kernels when a node starts. A process's first numba call costs
~0.3 s (numba's registries, then each kernel's cached machine code), and query threads wait on
numba's compiler lock meanwhile: without this, the first query after a start paid it (it showed
in the ingestion benchmark's "queryable" time). A tiny in-process shard answers a few queries of
the usual shapes through the same leaf evaluation the node serves."""

from __future__ import annotations

import logging

import numpy as np

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.model.record import read_records
from filodb.query.distributed import DistributedEngine, LocalShards

log = logging.getLogger(__name__)

QUERIES = (
    "sum by (job) (rate(warm_total[5m]))",
    "max_over_time(warm_total[10m])",
    "avg_over_time(warm_total[10m])",
    "deriv(warm_total[10m])",
    "topk(1, warm_total)",
    "absent(nonexistent_metric)",
    'sum(count_over_time({__name__=~"warm_.+"}[1h]))',  # window counts: whole and cut pieces
    "count_over_time(warm_total[1m])",
)


def warm_read_path() -> None:
    try:
        shard = TimeSeriesShard("warm", 0)
        series = [make_labels({"__name__": "warm_total", "job": j}) for j in ("a", "b")]
        n = 600  # more than a chunk, so closed chunks are encoded and decoded too
        ts = np.tile(np.arange(n, dtype=np.int64) * 15_000, 2)
        sidx = np.repeat(np.arange(2, dtype=np.int32), n)
        vals = np.arange(2 * n, dtype=np.float64)
        first = np.tile(np.arange(n) < n // 2, 2)  # by label sets, then as log records are
        shard.ingest(SampleBatch(series, sidx[first], ts[first], vals[first]), 0)
        rest = SampleBatch(series, sidx[~first], ts[~first], vals[~first])
        shard.ingest(read_records([rest.to_bytes()])[0], 1)
        eng = DistributedEngine(LocalShards([shard]), timeout_s=60)
        end = int(ts[-1])
        for q in QUERIES:
            eng.range(q, end - 3_600_000, end, 60_000)
            eng.instant(q, end)
    except Exception:  # a warm-up must never stop a node
        log.exception("warming the read path failed")
