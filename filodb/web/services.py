"""The services a web process uses, built once from the config and kept in ``app.extensions``.

``shard_map``: cluster state in Redis (datasets, shard map, ingest offsets, events);
``ingest_log``: the log backend the ingestion doors append to; ``metadata``: metric metadata;
``router``: series -> shard -> log, with a short cache of dataset descriptions; ``client``:
the fan-out to the workers' shards (leaf requests on Redis lists, no Celery); ``limits``: the
cluster-wide state of the limits per dataset (series counted, ingest tokens, refusals);
``results_cache``: finished extents of range queries (:mod:`filodb.web.results_cache`);
``rules``: the state of recording and alerting rules (:mod:`filodb.rules.state`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask, current_app

from filodb.config import Config
from filodb.gateway.router import IngestRouter
from filodb.ingest import Log, log_from_config
from filodb.rules.state import RuleStateStore
from filodb.shards.limits import LimitsStore
from filodb.shards.local_map import LocalShardMap
from filodb.shards.metadata import MetadataStore
from filodb.shards.nodes import NodeRegistry
from filodb.shards.redis_map import ShardMapStore
from filodb.tasks.fanout import ClusterSource, ShardClient
from filodb.web.results_cache import ResultsCache


@dataclass
class Services:
    cfg: Config
    shard_map: ShardMapStore
    registry: NodeRegistry
    ingest_log: Log
    metadata: MetadataStore
    router: IngestRouter
    client: ShardClient
    limits: LimitsStore
    results_cache: ResultsCache
    rules: RuleStateStore | None = None  # rule state the evaluating process publishes

    @classmethod
    def from_config(cls, cfg: Config) -> Services:
        shard_map = ShardMapStore(cfg.redis_url)
        ingest_log = log_from_config(cfg)
        return cls(
            cfg=cfg,
            shard_map=shard_map,
            registry=NodeRegistry(cfg.redis_url, cfg.heartbeat_ttl),
            ingest_log=ingest_log,
            metadata=MetadataStore(cfg.redis_url),
            router=IngestRouter(shard_map, ingest_log),
            client=ShardClient(
                shard_map, cfg.redis_url, LocalShardMap(shard_map), secret=cfg.cluster_secret
            ),  # fmt: skip
            limits=LimitsStore(cfg.redis_url),
            results_cache=results_cache(cfg),
            rules=RuleStateStore(cfg.redis_url),
        )

    def init_app(self, app: Flask) -> None:
        app.extensions["filodb"] = self

    def rule_state(self) -> RuleStateStore:
        if self.rules is None:
            self.rules = RuleStateStore(self.cfg.redis_url)
        return self.rules

    def source(self, dataset: str, timeout_s: float, strict: bool = False) -> ClusterSource:
        desc = self.router.dataset(dataset)
        return ClusterSource(self.client, dataset, desc.shards, desc.spread_rule, timeout_s,
                             strict)  # fmt: skip


def results_cache(cfg: Config) -> ResultsCache:
    """The range-query results cache of ``cfg``: ``query_cache_mb`` of Redis, nothing cached
    newer than max(``query_cache_freshness``, ``ooo_window``)."""
    margin_s = max(cfg.query_cache_freshness, float(getattr(cfg, "ooo_window", 0.0)))
    return ResultsCache(redis.Redis.from_url(cfg.redis_url), cfg.query_cache_mb << 20,
                        int(margin_s * 1000))  # fmt: skip


def services() -> Services:
    return current_app.extensions["filodb"]
