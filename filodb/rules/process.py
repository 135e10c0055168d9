"""``filodb rules``: a process that evaluates rule files against the cluster.

It reads through the distributed engine (the web tier's fan-out, :class:`ClusterQuerier`) and
writes recorded series, ``ALERTS`` and ``ALERTS_FOR_STATE`` through the ingestion door
(``door="rules"``: sharded, durable, queryable as any series). Several such processes may run
(``filodb up --rules`` starts one); the rules lease picks the one that evaluates. SIGHUP
reloads the files; SIGTERM/SIGINT stop it (giving the lease up at once).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from filodb.config import Config
from filodb.errors import BadInputError
from filodb.gateway.door import IngestDoor
from filodb.gateway.router import IngestRouter
from filodb.ingest import log_from_config
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, make_labels, valid_label_name
from filodb.model.source import SeriesSource
from filodb.query import ast
from filodb.query.distributed import DistributedEngine
from filodb.query.engine import Engine
from filodb.query.result import Result
from filodb.rules.files import load_files
from filodb.rules.fresh import OverlaySource
from filodb.rules.manager import RuleManager
from filodb.rules.metrics import METRICS_KEY
from filodb.rules.metrics import serve as serve_metrics
from filodb.rules.notifier import Notifier
from filodb.rules.state import LEASE_KEY, RuleStateStore
from filodb.shards.local_map import LocalShardMap
from filodb.shards.metadata import MetadataStore
from filodb.shards.nodes import Lease
from filodb.shards.redis_map import ShardMapStore
from filodb.tasks.fanout import ClusterSource, ShardClient

log = logging.getLogger(__name__)


class ClusterQuerier:
    """Instant queries through the distributed engine over the dataset's shards; with
    ``fresh`` samples laid over (:mod:`filodb.rules.fresh`), through the plain engine over the
    shards' raw series and those."""

    def __init__(self, cfg: Config, router: IngestRouter, client: ShardClient,
                 fresh: SeriesSource | None = None) -> None:  # fmt: skip
        self.cfg, self.router, self.client, self.fresh = cfg, router, client, fresh

    @property
    def source(self) -> ClusterSource:
        """The dataset's raw series across its shards (as the shard map is now)."""
        desc = self.router.dataset(self.cfg.dataset)
        return ClusterSource(self.client, self.cfg.dataset, desc.shards, desc.spread_rule,
                             self.cfg.query_timeout)  # fmt: skip

    def instant(self, expr: str | ast.Expr, t_ms: int) -> Result:
        cfg = self.cfg
        source = self.source
        limits: dict[str, Any] = dict(lookback_ms=cfg.lookback_ms, max_samples=cfg.max_samples,
                                      timeout_s=cfg.query_timeout, max_series=cfg.max_series)  # fmt: skip
        if self.fresh is not None:
            return Engine(OverlaySource(source, self.fresh), **limits).instant(expr, t_ms)
        return DistributedEngine(source, **limits).instant(expr, t_ms)

    def overlaid(self, fresh: SeriesSource) -> ClusterQuerier:
        return ClusterQuerier(self.cfg, self.router, self.client, fresh)


class _Counts:
    """The door's sample counts (the rules process has no /metrics of its own yet)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected: dict[str, int] = {}

    def samples_accepted(self, door: str, n: int) -> None:
        self.accepted += n

    def samples_rejected(self, door: str, reason: str, n: int) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    def request_rejected(self, door: str, reason: str) -> None:
        self.samples_rejected(door, reason, 0)


class DoorAppender:
    def __init__(self, door: IngestDoor, dataset: str) -> None:
        self.door, self.dataset = door, dataset

    def append(self, batch: SampleBatch) -> None:
        self.door.write(self.dataset, batch)


def parse_external_labels(text: str) -> Labels:
    """``k=v,k2=v2`` → labels."""
    out = {}
    for part in filter(str.strip, text.split(",")):
        k, eq, v = part.partition("=")
        if not eq or not valid_label_name(k.strip()):
            raise BadInputError(f"external_labels: {part!r} is not name=value")
        out[k.strip()] = v.strip()
    return make_labels(out)


def build_manager(cfg: Config, name: str = "") -> RuleManager:
    shard_map = ShardMapStore(cfg.redis_url)
    router = IngestRouter(shard_map, log_from_config(cfg))
    client = ShardClient(shard_map, cfg.redis_url, LocalShardMap(shard_map),
                         secret=cfg.cluster_secret)  # fmt: skip
    door = IngestDoor("rules", router, MetadataStore(cfg.redis_url), _Counts())
    store = RuleStateStore(cfg.redis_url)

    def for_dataset(ds: str) -> tuple[ClusterQuerier, DoorAppender]:
        return ClusterQuerier(cfg.replace(dataset=ds), router, client), DoorAppender(door, ds)

    return RuleManager(cfg.rule_files, ClusterQuerier(cfg, router, client),
                       DoorAppender(door, cfg.dataset), store=store,
                       lease=Lease(store.r, LEASE_KEY, cfg.heartbeat_ttl),
                       notifier=Notifier(cfg.alertmanager_urls),
                       external_labels=parse_external_labels(cfg.external_labels),
                       external_url=cfg.external_url, name=name or cfg.node,
                       for_grace_ms=int(cfg.rules_for_grace_period * 1000),
                       outage_tolerance_ms=int(cfg.rules_for_outage_tolerance * 1000),
                       for_dataset=for_dataset)  # fmt: skip


def run(cfg: Config, echo: Any = print) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    load_files(cfg.rule_files)  # a bad file at start is an error (exit 2), before any connection
    mgr = build_manager(cfg)
    mgr.load()
    metrics = serve_metrics(mgr, cfg.host, cfg.rules_metrics_port)
    where = "off"
    if metrics is not None and mgr.store is not None:
        where = f"http://{cfg.host}:{metrics.port}/metrics"
        mgr.store.r.hset(METRICS_KEY, mgr.name, f"{cfg.host}:{metrics.port}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: mgr.reload_wanted.set())
    echo(f"FiloDB rules {mgr.name}: {len(mgr.groups)} groups from {', '.join(cfg.rule_files)}; "
         f"dataset {cfg.dataset}; alertmanagers: {', '.join(cfg.alertmanager_urls) or 'none'}; "
         f"metrics: {where}")  # fmt: skip
    mgr.run(stop)
    if mgr.notifier is not None:
        mgr.notifier.close()
    if metrics is not None:
        metrics.close()
        if mgr.store is not None:
            mgr.store.r.hdel(METRICS_KEY, mgr.name)
    return 0
