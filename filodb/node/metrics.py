"""A worker node's self-metrics, served in Prometheus exposition on the node's own port.

:func:`serve` starts ``prometheus_client``'s HTTP server on ``cfg.metrics_port`` (0 picks a
free port) at ``cfg.host``; the node records the bound port in its registry entry, so
``GET /admin/nodes`` tells a scraper where each worker answers.

Nothing is counted per sample: :class:`NodeCollector` reads the node's ingesters and their
memstore stats when scraped. Only flush durations are observed as flushes happen
(:data:`FLUSH_SECONDS`, fed by ``NodeRuntime.flush``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from filodb.config import Config
from filodb.exposition import MetricsServer
from filodb.ingest.base import Log
from filodb.memstore.decoded import DecodedChunks
from filodb.node.ingester import ShardIngester

log = logging.getLogger(__name__)

disable_created_metrics()  # no "_created" series beside every counter (process-wide)
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Shared by every runtime of the process (one in a worker); each server's registry includes it.
FLUSH_SECONDS = Histogram("filodb_worker_flush_duration_seconds",
                          "Time to flush one flush group of a shard to the column store",
                          ["dataset", "shard"], buckets=FLUSH_BUCKETS, registry=None)  # fmt: skip

# memstore stats key -> (metric name, type, help); counters get "_total" in the exposition.
_SHARD_STATS = (
    ("samples_ingested", "filodb_worker_samples_ingested", "counter",
     "Samples the shard's memstore accepted from the log"),
    ("series", "filodb_worker_series", "gauge", "Series (part keys) the shard knows"),
    ("series_in_memory", "filodb_worker_series_in_memory", "gauge",
     "Series with samples or chunks in memory"),
    ("samples", "filodb_worker_samples_in_memory", "gauge",
     "Samples held in memory (chunks and write buffers)"),
    ("chunks", "filodb_worker_chunks", "gauge", "Encoded chunks in memory"),
    ("memory_bytes", "filodb_worker_memory_bytes", "gauge", "Bytes of the shard's memstore"),
    ("head_bytes", "filodb_worker_head_bytes", "gauge",
     "Bytes of the shard's head (unclosed samples, 12 a sample, in pages)"),
    ("chunk_bytes", "filodb_worker_chunk_bytes", "gauge", "Bytes of the shard's encoded chunks"),
    ("chunks_evicted", "filodb_worker_chunks_evicted", "counter",
     "Flushed chunks dropped from memory past the memory budget"),
    ("chunks_paged", "filodb_worker_chunks_paged", "counter",
     "Chunks paged in from the column store for queries"),
    ("last_flush", "filodb_worker_last_flush_timestamp_seconds", "gauge",
     "Unix time of the shard's last flush (0: never)"),
    ("exemplars", "filodb_worker_exemplars_in_storage", "gauge",
     "Exemplars held in the shard's exemplar ring"),
    ("exemplars_appended", "filodb_worker_exemplars_appended", "counter",
     "Exemplars the shard's ring accepted"),
    ("exemplars_dropped", "filodb_worker_exemplars_dropped", "counter",
     "Exemplars dropped: not newer than their series' newest (duplicates, out of order)"),
)  # fmt: skip


class NodeView(Protocol):
    """What the metrics read of a node (:class:`~filodb.node.runtime.NodeRuntime`)."""

    name: str
    cfg: Config
    ingesters: dict[tuple[str, int], ShardIngester]
    ingest_log: Log
    fenced_count: int
    decoded: DecodedChunks  # the decoded-vector cache its shards share


class NodeCollector(Collector):
    """Per-shard metrics of one node, read at scrape time."""

    def __init__(self, runtime: NodeView) -> None:
        self.rt = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        labels = ["dataset", "shard"]
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for _key, name, kind, doc in _SHARD_STATS:
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fams[name] = cls(name, doc, labels=labels)
        rejected = CounterMetricFamily("filodb_worker_samples_rejected",
                                       "Samples the memstore refused, by reason: out_of_order (not "
                                       "newer than their series' newest, no window set), too_old "
                                       "(older than the out-of-order window)",
                                       labels=[*labels, "reason"])  # fmt: skip
        offset = GaugeMetricFamily("filodb_worker_log_offset",
                                   "Log offset the shard has ingested up to", labels=labels)  # fmt: skip
        lag = GaugeMetricFamily("filodb_worker_log_lag_records",
                                "Log end offset minus the shard's ingested offset", labels=labels)  # fmt: skip
        owned = GaugeMetricFamily("filodb_worker_shards_owned",
                                  "Shards this node runs, by dataset and status",
                                  labels=["dataset", "status"])  # fmt: skip
        counts: dict[tuple[str, str], int] = {}
        running = sorted(list(rt.ingesters.items()))
        ends: dict[tuple[str, int], int] = {}
        for ds in {ds for (ds, _s), _i in running}:  # one request per dataset, not per shard
            shards = [s for (d, s), _i in running if d == ds]
            try:
                ends.update({(ds, s): e for s, e in rt.ingest_log.end_offsets(ds, shards).items()})
            except Exception as e:  # noqa: BLE001 - the log may be down; the rest still scrapes
                log.warning("metrics: no log end offsets for %s: %s", ds, e)
        for (ds, shard), ing in running:
            lv = [ds, str(shard)]
            counts[(ds, ing.state.status.value)] = counts.get((ds, ing.state.status.value), 0) + 1
            stats = ing.memstore.stats()
            for key, name, _kind, _doc in _SHARD_STATS:
                fams[name].add_metric(lv, float(stats.get(key, 0)))
            by_reason = {
                "out_of_order": 0,
                "too_old": 0,
                **stats.get("samples_rejected_by_reason", {}),
            }
            for reason, n in sorted(by_reason.items()):
                rejected.add_metric([*lv, reason], float(n))
            done = ing.offset
            offset.add_metric(lv, done)
            if (ds, shard) in ends:
                lag.add_metric(lv, max(0, ends[(ds, shard)] - done))
        for (ds, status), n in sorted(counts.items()):
            owned.add_metric([ds, status], n)
        yield from fams.values()
        yield rejected
        yield offset
        yield lag
        yield owned
        fenced = CounterMetricFamily("filodb_worker_fenced",
                                     "Times this node fenced itself (leases not renewed in time)")  # fmt: skip
        fenced.add_metric([], rt.fenced_count)
        yield fenced
        yield from _decode_cache(rt.decoded)
        info = GaugeMetricFamily("filodb_worker_info", "This worker's node name", labels=["node"])
        info.add_metric([rt.name], 1)
        yield info


def _decode_cache(dc: DecodedChunks) -> Iterator[Metric]:
    """The node's decoded-vector cache: what it holds, its budget now, its lookups."""
    held = GaugeMetricFamily("filodb_worker_decode_cache_bytes",
                             "Bytes of decoded chunk vectors kept for the next query", dc.nbytes)  # fmt: skip
    budget = GaugeMetricFamily("filodb_worker_decode_cache_budget_bytes",
                               "The decoded-vector cache's budget now (grows up to "
                               "decode_cache_mb when queries ask again for what it let go)",
                               dc.max_bytes)  # fmt: skip
    lookups = CounterMetricFamily("filodb_worker_decode_cache_lookups",
                                  "Chunk vectors looked up in the decoded-vector cache, by result",
                                  labels=["result"])  # fmt: skip
    lookups.add_metric(["hit"], dc.hits)
    lookups.add_metric(["miss"], dc.misses)
    yield from (held, budget, lookups)


def observe_flush(dataset: str, shard: int, seconds: float) -> None:
    """Record the duration of one flush of a group."""
    FLUSH_SECONDS.labels(dataset, str(shard)).observe(seconds)


def serve(runtime: NodeView) -> MetricsServer:
    """Start serving ``runtime``'s metrics on ``cfg.metrics_port`` (0: a free port) at ``cfg.host``."""
    return MetricsServer(
        [NodeCollector(runtime), FLUSH_SECONDS],
        runtime.cfg.host,
        runtime.cfg.metrics_port,
    )
