"""Prometheus's PromQL test scripts through the real paths: sharded ingest, distributed engine.

``python -m filodb.testing.promql_sharded [FILES or DIRS]`` prints the same lines as
``python -m filodb.query.promqltest`` (per file, then ``N passed, N failed, N skipped``), but
each ``load`` block becomes one :class:`SampleBatch`, split by the gateway's shard-key rule
(:func:`~filodb.model.shardkey.shards_for_series`) over :data:`NUM_SHARDS` shards with
:data:`SPREAD`, and ingested into in-process :class:`TimeSeriesShard`\\ s (their out-of-order
and duplicate rules apply); queries run on the :class:`DistributedEngine` over
:class:`LocalShards`, so aggregations are pushed down and reduced as on a cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels
from filodb.model.shardkey import shards_for_series
from filodb.query.distributed import DistributedEngine, LocalShards
from filodb.query.promqltest import main as run_main

NUM_SHARDS = 8
SPREAD = 2  # the top shard bit from the metric name, the two low bits from the whole label set


class ShardedBackend:
    """A script's data in :data:`NUM_SHARDS` memstore shards, read by the distributed engine."""

    def __init__(self, num_shards: int = NUM_SHARDS, spread: int = SPREAD) -> None:
        self.shards = [TimeSeriesShard("promqltest", i) for i in range(num_shards)]
        self.spread = spread
        self.offset = 0

    def load(self, series: Sequence[tuple[Labels, np.ndarray, np.ndarray]]) -> None:
        batch = to_batch(series)
        if not len(batch):
            return
        self.offset += 1
        owner = shards_for_series(batch.series, len(self.shards), self.spread)
        for shard, part in batch.split(owner, len(self.shards)).items():
            self.shards[shard].ingest(part, self.offset)

    def engine(self) -> DistributedEngine:
        return DistributedEngine(LocalShards(self.shards, self.spread), timeout_s=100)


def to_batch(series: Sequence[tuple[Labels, np.ndarray, np.ndarray]]) -> SampleBatch:
    """One batch of ``(labels, ts, vals)``, each label set once, as a parser would build it."""
    if not series:
        return SampleBatch.empty()
    sidx = np.concatenate([np.full(len(ts), i, np.int32) for i, (_, ts, _) in enumerate(series)])
    return SampleBatch([lb for lb, _, _ in series], sidx, np.concatenate([ts for _, ts, _ in series]),
                       np.concatenate([vs for _, _, vs in series]))  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_main(backend=ShardedBackend, description=__doc__.splitlines()[0]))
