"""The TCP gateway's self-metrics, served in Prometheus exposition on its own port.

``filodb gateway`` runs in its own process, so its counters cannot reach the web tier's
``/metrics``: :func:`serve` starts ``prometheus_client``'s HTTP server at ``cfg.host`` on
``cfg.gateway_metrics_port`` (0: a free port, printed at start; negative: off).
:class:`GatewayCollector` reads :class:`~filodb.gateway.tcp.GatewayStats` when scraped, so
nothing is counted twice and nothing per line. docs/operations.md lists the metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from filodb.exposition import MetricsServer

if TYPE_CHECKING:
    from filodb.gateway.tcp import GatewayStats

_COUNTERS = (
    ("lines_accepted", "filodb_gateway_lines_accepted", "Lines parsed and written to the log"),
    ("samples_written", "filodb_gateway_samples_written", "Samples written to the log"),
    ("batches_retried", "filodb_gateway_batches_retried",
     "Batch writes retried because the log did not answer"),
    ("connections", "filodb_gateway_connections", "Connections accepted"),
    ("connections_rejected", "filodb_gateway_connections_rejected",
     "Connections closed for want of a valid 'auth <token>' first line"),
)  # fmt: skip


class GatewayCollector(Collector):
    """Counters of every door of one gateway, read at scrape time."""

    def __init__(self, stats: GatewayStats, dataset: str) -> None:
        self.stats = stats
        self.dataset = dataset

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        labels = ["door", "dataset"]
        for key, name, doc in _COUNTERS:
            fam = CounterMetricFamily(name, doc, labels=labels)
            for door, s in sorted(snap.items()):
                fam.add_metric([door, self.dataset], s[key])
            yield fam
        rejected = CounterMetricFamily("filodb_gateway_lines_rejected",
                                       "Lines refused, by reason (malformed, not_utf8, too_long, "
                                       "write_failed, ...)", labels=[*labels, "reason"])  # fmt: skip
        open_ = GaugeMetricFamily("filodb_gateway_connections_open", "Connections open now",
                                  labels=labels)  # fmt: skip
        for door, s in sorted(snap.items()):
            for reason, n in sorted(s["lines_rejected"].items()):
                rejected.add_metric([door, self.dataset, reason], n)
            open_.add_metric([door, self.dataset], s["connections_open"])
        yield rejected
        yield open_


def serve(stats: GatewayStats, dataset: str, host: str, port: int) -> MetricsServer | None:
    """Serve ``stats`` on ``host:port`` (0: a free port); ``None`` when ``port`` is negative."""
    if port < 0:
        return None
    return MetricsServer([GatewayCollector(stats, dataset)], host, port)
