"""The ingestion log: one partition per shard, records in, offsets out.

``base`` has the :class:`Log` protocol and imports no backend; ``redis_streams`` is the
embedded default, ``kafka`` the production one. The factories here import the backend they are
asked for, and only that one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filodb.errors import BadInputError
from filodb.ingest.base import Log as Log


def open_log(kind: str, redis_url: str, **options: object) -> Log:
    """The log backend named by the config: ``redis`` (Streams) or ``kafka``."""
    if kind == "redis":
        from filodb.ingest.redis_streams import RedisStreamsLog

        return RedisStreamsLog(redis_url, **options)  # type: ignore[arg-type]
    if kind == "kafka":
        from filodb.ingest.kafka import KafkaLog

        return KafkaLog(**options)  # type: ignore[arg-type]
    raise BadInputError(f"unknown log backend {kind!r} (have: redis, kafka)")


def log_from_config(cfg: Any) -> Log:
    """The log backend of a :class:`~filodb.config.Config`, with its backend's settings."""
    if cfg.log == "kafka":
        if not cfg.kafka_bootstrap:
            raise BadInputError(
                "log = kafka needs kafka_bootstrap (FILODB_KAFKA_BOOTSTRAP=host:port); "
                "scripts/services up kafka prints it"
            )
        return open_log("kafka", cfg.redis_url, bootstrap=cfg.kafka_bootstrap,
                        topic_prefix=cfg.kafka_topic_prefix)  # fmt: skip
    if cfg.log == "redis":
        spill = Path(cfg.data_dir) / "log-spill" if cfg.log_spill_mb > 0 else None
        return open_log("redis", cfg.redis_url, max_mb=cfg.log_max_mb,
                        full_wait_s=cfg.log_full_wait_s, spill_path=spill)  # fmt: skip
    return open_log(cfg.log, cfg.redis_url)
