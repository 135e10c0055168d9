"""One config object, built in layers: defaults, file, ``FILODB_*`` environment, flags.

The file is TOML (``--config PATH``, else ``$FILODB_CONFIG``, else ``./filodb.toml`` if it
exists). Environment variables are ``FILODB_<FIELD>`` in upper case (``FILODB_REDIS_URL``,
``FILODB_PORT``); values are JSON-decoded when they parse as JSON (``FILODB_SHARDS=8``), else
taken as strings. Flags given on the command line win. The object is passed down; no module
below the CLI reads ``os.environ``.

An unknown key in the file or an unknown ``FILODB_*`` variable is a :class:`BadInputError`
naming the closest known one (``FILODB_SHRADS`` is a typo, not a setting to ignore). The
variables in :data:`NOT_SETTINGS` share the prefix but are read elsewhere, not by the config.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filodb.errors import BadInputError

ENV_PREFIX = "FILODB_"

# ``FILODB_*`` variables that are not settings of :class:`Config`, and who reads them.
NOT_SETTINGS = frozenset({
    "FILODB_CONFIG",  # the config file itself (load_config)
    "FILODB_SERVICES_DIR",  # state of scripts/services (filodb.devservices)
    "FILODB_SERVICES_CACHE",  # its Maven jar cache (filodb.devservices)
    "FILODB_PROMQL_TESTS",  # PromQL test scripts (filodb.query.promqltest)
    "FILODB_TOKEN",  # the token the client commands send (filodb.cli --token)
})  # fmt: skip


@dataclass
class Config:
    """Every setting of every process. Times in seconds unless the name says otherwise."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./filodb-data"
    redis_url: str = ""  # empty: `filodb up` starts its own redis-server
    shards: int = 4
    spread: int = 1
    dataset: str = "prometheus"
    workers: int = 1
    influx_port: int = 8007
    graphite_port: int = 2003
    log: str = "redis"  # ingestion log backend: redis | kafka
    store: str = "sqlite"  # column store backend: sqlite | cassandra
    kafka_bootstrap: str = ""  # host:port[,host:port] of the Kafka brokers (log = kafka)
    kafka_topic_prefix: str = "filodb-"  # topic of a dataset: <prefix><dataset>
    cassandra_hosts: str = ""  # comma-separated contact points (store = cassandra)
    cassandra_port: int = 9042
    cassandra_keyspace: str = "filodb"
    node: str = ""  # worker node name (default: node-<pid>)
    admin_token: str = ""  # when set, mutating admin routes need "Authorization: Bearer <token>"
    auth_file: str = (
        ""  # TOML file of tokens with scopes per dataset (filodb.auth); guards every route
    )
    web_threads: int = 16
    web_connections: int = 1000  # open HTTP connections a web process serves at once
    web_processes: int = 1  # web processes `filodb up` runs on the one port (each web_threads)
    # keep-alive connections sending ingestion requests are served by one thread of the web
    # process (filodb/web/ingest_loop.py) instead of a thread each. False: a thread each
    web_ingest_loop: bool = True
    # `filodb up` serves the web tier from its worker process (one interpreter, numba and
    # LLVM loaded once: less memory; one GIL for the doors and ingestion). 1 worker, 1 web
    web_in_worker: bool = False
    # `filodb up` forks its Python children from one warmed parent (filodb/zygote.py): the
    # imports and kernels they share are in memory once. False: each is its own interpreter
    fork_children: bool = True
    worker_threads: int = 4  # threads answering leaf requests on a node (tasks/leaf.py)
    # host:port a node takes the web tier's direct leaf connections on (tasks/direct.py; port
    # 0: a free one, advertised in the node registry); empty: leaf requests go by Redis only
    leaf_listen: str = "127.0.0.1:0"
    # what a direct leaf connection proves it knows (HMAC); empty: filodb:cluster_secret in
    # Redis, made on first use (filodb.shards.secret)
    cluster_secret: str = ""
    recovery_threads: int = 4  # shards of a node recovering at once (the rest wait their turn)
    metrics_port: int = 0  # a worker's /metrics port (0: a free port, listed by /admin/nodes)
    gateway_metrics_port: int = 0  # `filodb gateway`'s /metrics port (0: a free port; <0: off)
    heartbeat_interval: float = 1.0
    heartbeat_ttl: float = 5.0
    query_timeout: float = 120.0  # seconds, as Prometheus's --query.timeout=2m
    max_body_bytes: int = 64 << 20
    max_samples: int = 50_000_000
    max_series: int = 1_000_000  # series one query may select (422 beyond)
    # defaults of the limits per dataset (filodb.model.limits; 0: no limit)
    dataset_max_series: int = 0  # series of a dataset across the cluster
    dataset_max_series_per_metric: int = 0  # series of one metric name in a dataset
    ingest_samples_per_s: float = 0.0  # samples a dataset may take per second (429 beyond)
    max_query_concurrency: int = 0  # queries of a dataset at once per web process (wait, 503)
    lookback_ms: int = 300_000
    flush_interval: float = 3600.0  # seconds: each flush group of a shard is flushed this often
    flush_groups: int = 8  # flush groups per shard (flushes are staggered across them)
    flush_log_mb: int = 64  # per shard: past this much unflushed log, flush early (0: time only)
    log_backlog_mb: int = 64  # per node: its shards' unflushed log past this: flush early (0: off)
    # per node, the Redis log: its shards' applied records still in Redis past this are moved to
    # <data_dir>/log-spill, out of memory (0: off; the nodes must share data_dir)
    log_spill_mb: int = 16
    # the Redis log holding more than this (unapplied or unflushed): appends wait, then 503 (0: off)
    log_max_mb: int = 256
    # niceness a node's flush and spill threads run at above its others (Linux, per thread; 0:
    # the same): on cores shared with the web tier and Redis, a sender's ack comes first
    background_nice: int = 10
    log_full_wait_s: float = 10.0  # how long an append waits for room before it is refused
    max_chunk_samples: int = 480  # a write buffer this full is closed into a chunk
    # a series' head (compressed as appended, ~1-3 bytes a sample) this full is encoded into
    # its last chunk (which grows up to max_chunk_samples): smaller holds less, closes cost
    # more CPU
    head_samples: int = 120
    # seconds: a sample this much older than its series' newest is still accepted, sorted in
    # (Prometheus's out_of_order_time_window); 0 refuses every sample not newer than the newest
    ooo_window: float = 0.0
    memory_budget_mb: int = 2048  # per shard; past it flushed chunks are evicted (0: no limit)
    page_cache_mb: int = 64  # per shard: chunks paged back from the column store (0: none)
    # per node, at most: decoded vectors of the chunks queries read (0: none); the cache starts
    # at 64 and grows while queries ask again for vectors it let go (memstore/decoded.py)
    decode_cache_mb: int = 256
    max_exemplars: int = 100_000  # exemplars kept in memory per dataset, split across its shards
    query_cache_mb: int = 64  # results cache of range queries in Redis, all datasets (0: off)
    query_cache_freshness: float = 300.0  # seconds: steps newer than this are never cached
    retention: float = 15 * 86400.0  # seconds of data kept in memory and in the store (0: forever)
    rule_files: list[str] = field(default_factory=list)  # globs of Prometheus rule files
    alertmanager_urls: list[str] = field(default_factory=list)  # Alertmanager base URLs
    external_labels: str = ""  # k=v,k2=v2: added to alerts sent, $externalLabels in templates
    external_url: str = ""  # this server's URL as users reach it (alerts' generatorURL)
    rules_for_grace_period: float = 600.0  # s; Prometheus's --rules.alert.for-grace-period
    rules_for_outage_tolerance: float = 3600.0  # s; --rules.alert.for-outage-tolerance
    rules_metrics_port: int = 0  # the rules process's /metrics port (0: a free port; <0: off)
    downsample: str = ""  # the default dataset's downsampling levels, e.g. "1m:30d,5m:183d"
    downsample_interval: float = 6 * 3600.0  # seconds between the cluster's downsample runs

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The settings as ``FILODB_*`` variables, to hand to child processes."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[ENV_PREFIX + f.name.upper()] = v if isinstance(v, str) else json.dumps(v)
        return out


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, value: Any) -> Any:
    default = getattr(Config(), name)
    typ = type(default)
    try:
        if typ is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if typ is int:
            return int(value)
        if typ is float:
            return float(value)
        if typ is list:  # a TOML/JSON list, or one comma-separated string
            items = value if isinstance(value, list | tuple) else str(value).split(",")
            return [str(v).strip() for v in items if str(v).strip()]
        return str(value)
    except (TypeError, ValueError) as e:
        raise BadInputError(f"config {name}: cannot use {value!r} ({e})") from e


def _unknown(name: str, where: str = "", env: bool = False) -> BadInputError:
    """The error for an unknown setting, naming the closest known one when there is one."""
    key = name[len(ENV_PREFIX) :].lower() if env else name.replace("-", "_").lower()
    close = difflib.get_close_matches(key, list(_FIELDS), n=1)
    if close and env:
        close[0] = ENV_PREFIX + close[0].upper()
    hint = f" (did you mean {close[0]}?)" if close else ""
    return BadInputError(f"unknown setting {name}{where}{hint}")


def _apply(cfg: Config, values: Mapping[str, Any], where: str = "") -> Config:
    changes = {}
    for k, v in values.items():
        key = k.replace("-", "_").lower()
        if key not in _FIELDS:
            raise _unknown(k, where)
        if v is not None:
            changes[key] = _coerce(key, v)
    return cfg.replace(**changes)


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, raw in environ.items():
        if not k.startswith(ENV_PREFIX) or k in NOT_SETTINGS:
            continue
        if k[len(ENV_PREFIX) :].lower() not in _FIELDS:
            raise _unknown(k, env=True)
        try:
            v: Any = json.loads(raw)
        except ValueError:
            v = raw
        out[k[len(ENV_PREFIX) :].lower()] = v
    return out


def load_config(
    path: str | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the config: defaults < file < environment < flags (``None`` flags are ignored)."""
    environ = os.environ if environ is None else environ
    cfg = Config()
    path = path or environ.get(ENV_PREFIX + "CONFIG")
    if path is None and Path("filodb.toml").exists():
        path = "filodb.toml"
    if path:
        try:
            with open(path, "rb") as fh:
                values = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise BadInputError(f"cannot read config file {path}: {e}") from e
        cfg = _apply(cfg, values, f" in {path}")
    cfg = _apply(cfg, _from_env(environ))
    cfg = _apply(cfg, flags or {})
    if not 0 <= cfg.background_nice <= 19:
        raise BadInputError(f"background_nice ({cfg.background_nice}) must be within 0..19")
    spilling = cfg.log == "redis" and cfg.log_spill_mb > 0  # then spills keep Redis small
    if not spilling and 0 < cfg.log_max_mb <= cfg.log_backlog_mb:  # own flushes come too late
        raise BadInputError(f"log_max_mb ({cfg.log_max_mb}) must be more than log_backlog_mb "
                            f"({cfg.log_backlog_mb}): the node flushes early past "
                            "log_backlog_mb, and below it writes would wait at the cap for "
                            "each flush")  # fmt: skip
    return cfg
