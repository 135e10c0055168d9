"""The web tier's self-metrics at ``GET /metrics`` (Prometheus text exposition).

Each app built by the factory has its own :class:`~prometheus_client.CollectorRegistry` (kept
in ``app.extensions["filodb_metrics"]``), so tests that build many apps never clash on names.

When ``filodb up`` runs several web processes it gives them one directory (prometheus_client's
multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``): what each process counts goes to its files
there, and ``/metrics`` answers the sum over every process of the run (a dead one's counts
stay in it; the gauge of running queries sums the live processes), next to what is read from
the cluster, which is read once.

Counted as requests happen: HTTP requests by route and code, query durations, samples accepted
and rejected by the ingestion routes, the results cache's hits and misses (its ``on_count``).
Read from the cluster at scrape time: shards by status (the local shard map), each shard's log
lag (log end offset minus ingested offset, as ``/api/v1/cluster/<dataset>/status`` computes
it), the last periodic downsample run. docs/operations.md lists every metric.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.sansio.app import App
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from filodb.shards.downsample_runs import DownsampleRuns
from filodb.shards.state import ShardStatus

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)
disable_created_metrics()  # no "_created" series beside every counter (process-wide)
EXTENSION = "filodb_metrics"

# Prometheus's own query-duration buckets reach 60 s; queries here may run to the timeout.
QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_QUERY_ENDPOINTS = {
    "prom_api.query": "query", "prom_api.query_ds": "query",
    "prom_api.query_range": "query_range", "prom_api.query_range_ds": "query_range",
}  # fmt: skip


class ClusterCollector(Collector):
    """Shards by status and log lag per shard, read when scraped (never raises: a dataset
    whose state cannot be read is left out of the scrape and logged)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        svc = self.app.extensions["filodb"]
        shards = GaugeMetricFamily("filodb_shards", "Shards of a dataset by status (local shard map)",
                                   labels=["dataset", "status"])  # fmt: skip
        lag = GaugeMetricFamily("filodb_shard_log_lag_records",
                                "Log end offset minus the shard's ingested offset",
                                labels=["dataset", "shard"])  # fmt: skip
        try:
            datasets = sorted(svc.shard_map.datasets().items())
        except Exception as e:  # noqa: BLE001 - Redis down: the request metrics still scrape
            log.warning("metrics: cannot list datasets: %s", e)
            datasets = []
        for ds, desc in datasets:
            try:
                states = svc.client.local_map.states(ds)
                offsets, _ = svc.shard_map.progress(ds)
                ends = svc.ingest_log.end_offsets(ds, list(range(desc.shards)))
            except Exception as e:  # noqa: BLE001 - one unreadable dataset spoils no others
                log.warning("metrics: cannot read the shard state of %s: %s", ds, e)
                continue
            counts = dict.fromkeys(ShardStatus, 0)
            for st in states.values():
                counts[st.status] += 1
            for status, n in counts.items():
                shards.add_metric([ds, status.value], n)
            for shard in sorted(ends):
                lag.add_metric([ds, str(shard)], max(0, ends[shard] - offsets.get(shard, 0)))
        yield shards
        yield lag


class DownsampleCollector(Collector):
    """The cluster's last periodic downsample run (:mod:`filodb.shards.downsample_runs`) and how
    far each dataset's downsampled data reaches; nothing when no run was ever sent."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        svc = self.app.extensions["filodb"]
        try:
            rec, locked = DownsampleRuns(svc.shard_map.r).snapshot()
            reached = svc.shard_map.downsampled()
        except Exception as e:  # noqa: BLE001 - Redis down: the request metrics still scrape
            log.warning("metrics: cannot read the downsample run: %s", e)
            return
        if not rec and not reached:
            return
        num = {k: float(rec.get(k) or 0) for k in _RUN_GAUGES | _RUN_COUNTERS.keys()}
        for key, (name, text) in _RUN_GAUGES_HELP.items():
            yield GaugeMetricFamily(name, text, value=num[key])
        yield GaugeMetricFamily("filodb_downsample_running",
                                "1 while a downsample run holds the cluster-wide lock",
                                value=float(locked))  # fmt: skip
        for key, (name, text) in _RUN_COUNTERS.items():
            yield CounterMetricFamily(name, text, value=num[key])
        through = GaugeMetricFamily("filodb_downsampled_through_timestamp_seconds",
                                    "Unix time up to which a dataset's downsampled data reaches",
                                    labels=["dataset"])  # fmt: skip
        for ds, ms in sorted(reached.items()):
            through.add_metric([ds], ms / 1000)
        yield through


_RUN_GAUGES_HELP = {
    "finished_at": ("filodb_downsample_last_run_timestamp_seconds",
                    "Unix time the last downsample run ended (0: none ended yet)"),
    "seconds": ("filodb_downsample_last_run_duration_seconds",
                "Time the last downsample run took"),
    "raw_samples": ("filodb_downsample_last_run_raw_samples",
                    "Raw samples the last downsample run read"),
    "ds_samples": ("filodb_downsample_last_run_ds_samples",
                   "Downsampled samples the last downsample run wrote"),
    "errors": ("filodb_downsample_last_run_errors",
               "Datasets the last downsample run failed to downsample (1 for a run that failed as a whole)"),
}  # fmt: skip
_RUN_GAUGES = set(_RUN_GAUGES_HELP)
_RUN_COUNTERS = {
    "runs": ("filodb_downsample_runs", "Downsample runs ended (a run that died is not counted)"),
    "failed_runs": ("filodb_downsample_failed_runs", "Downsample runs ended with errors"),
    "raw_samples_total": ("filodb_downsample_raw_samples", "Raw samples downsample runs read"),
    "ds_samples_total": ("filodb_downsample_ds_samples",
                         "Downsampled samples downsample runs wrote"),
}  # fmt: skip


class WebMetrics:
    """One app's metrics; the counters are thread-safe (the server serves on many threads).

    ``registry`` is what ``/metrics`` answers: this process's counters and the cluster's
    state, or, given ``multiprocess_dir``, the counters of every web process sharing it."""

    def __init__(self, app: App, multiprocess_dir: str | None = None) -> None:
        if multiprocess_dir:
            multiprocess_values()
        r = self.registry = CollectorRegistry()  # this process's counters
        self.requests = Counter("filodb_http_requests", "HTTP requests answered, by route and code",
                                ["route", "method", "code"], registry=r)  # fmt: skip
        self.query_seconds = Histogram("filodb_query_duration_seconds",
                                       "Time to answer a PromQL query request",
                                       ["endpoint"], buckets=QUERY_BUCKETS, registry=r)  # fmt: skip
        self.samples = Counter("filodb_ingest_samples",
                               "Samples accepted (durable in the log), by ingestion door",
                               ["door"], registry=r)  # fmt: skip
        self.rejected = Counter("filodb_ingest_rejected_samples",
                                "Samples of a write that were not accepted, by door and reason",
                                ["door", "reason"], registry=r)  # fmt: skip
        self.rejected_requests = Counter(
            "filodb_ingest_rejected_requests",
            "Write requests refused as a whole before their samples could be counted",
            ["door", "reason"], registry=r,
        )  # fmt: skip
        self.queries_refused = Counter(
            "filodb_queries_refused", "Queries refused by a limit of their dataset, by reason",
            ["dataset", "reason"], registry=r,
        )  # fmt: skip
        self.queries_running = Gauge("filodb_queries_running",
                                     "Queries of a dataset being answered by the web tier",
                                     ["dataset"], registry=r, multiprocess_mode="livesum")  # fmt: skip
        self.cache_extents = Counter("filodb_query_cache_extents",
                                     "Extents of range queries answered from the results cache "
                                     "(hit) or computed and stored (miss)", ["result"],
                                     registry=r)  # fmt: skip
        self.cache_bypassed = Counter("filodb_query_cache_bypassed_queries",
                                      "Range queries answered without the results cache (cache "
                                      "off, or a query reading its own range; cache=false is "
                                      "not counted)", registry=r)  # fmt: skip
        self._hits, self._misses = (
            self.cache_extents.labels("hit"),
            self.cache_extents.labels("miss"),
        )
        # children by label values: ``labels()`` validates and locks on every call
        self._children: dict[tuple[str, ...], Counter | Histogram] = {}
        if multiprocess_dir is not None:  # every process's counters instead
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=multiprocess_dir)
        self.registry.register(ClusterCollector(app))
        self.registry.register(DownsampleCollector(app))

    def answered(self, rule: str, method: str, code: int, endpoint: str | None,
                 seconds: float | None) -> None:  # fmt: skip
        """Count a request answered, and time it when it was a query (``endpoint``)."""
        key = (rule, method, str(code))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(*key)
        child.inc()  # type: ignore[union-attr]
        if endpoint is not None and seconds is not None:
            hist = self._children.get((endpoint,))
            if hist is None:
                hist = self._children[(endpoint,)] = self.query_seconds.labels(endpoint)
            hist.observe(seconds)  # type: ignore[union-attr]

    def cache_counted(self, hits: int, misses: int, uncacheable: int) -> None:
        """Count what the results cache did (its ``on_count``)."""
        if hits:
            self._hits.inc(hits)
        if misses:
            self._misses.inc(misses)
        if uncacheable:
            self.cache_bypassed.inc(uncacheable)

    # --- the ingestion doors' counts (an IngestCounter, see filodb.gateway.door) ---------
    def samples_accepted(self, door: str, n: int) -> None:
        """Count ``n`` samples ``door`` made durable in the log."""
        if n:
            self.samples.labels(door).inc(n)

    def samples_rejected(self, door: str, reason: str, n: int) -> None:
        """Count ``n`` samples ``door`` refused for ``reason`` (``malformed_line``,
        ``unknown_dataset``, ``log_unavailable``, ...)."""
        if n:
            self.rejected.labels(door, reason).inc(n)

    def request_rejected(self, door: str, reason: str) -> None:
        """Count a write ``door`` refused whole (``malformed``, ``too_large``)."""
        self.rejected_requests.labels(door, reason).inc()


def multiprocess_values() -> None:
    """Count into ``PROMETHEUS_MULTIPROC_DIR``'s files from here on, when the environment
    names it. prometheus_client picks its value class (memory, or a file per process in that
    directory) once, when it is imported; a web process forked from filodb's zygote
    (:mod:`filodb.zygote`) imported it there, before its own environment named the
    directory, so it picks again here, before its first counter."""
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()


def init_app(app: Flask, multiprocess_dir: str | None = None) -> WebMetrics:
    """Give ``app`` its own metrics (kept in ``app.extensions``) and return them; with
    ``multiprocess_dir``, ``/metrics`` sums the web processes counting there."""
    m = app.extensions[EXTENSION] = WebMetrics(app, multiprocess_dir)
    app.extensions["filodb"].results_cache.on_count = m.cache_counted
    return m


def _metrics() -> WebMetrics:
    return current_app.extensions[EXTENSION]


@bp.before_app_request
def _start_timer() -> None:
    g.filodb_t0 = time.perf_counter()


@bp.after_app_request
def _count_request(resp: Response) -> Response:
    m = current_app.extensions.get(EXTENSION)
    if m is None:
        return resp
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    endpoint = _QUERY_ENDPOINTS.get(request.endpoint or "")
    t0 = g.get("filodb_t0") if endpoint is not None else None
    m.answered(rule, request.method, resp.status_code, endpoint,
               None if t0 is None else time.perf_counter() - t0)  # fmt: skip
    return resp


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(_metrics().registry), content_type=CONTENT_TYPE_LATEST)
