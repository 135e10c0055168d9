"""The Celery app: Redis broker, msgpack only (never pickle), no result backend.

Queries do not use Celery results: a leaf task pushes its answer to a per-request Redis list
that the caller BLPOPs (shared/notes/celery-redis.md: ~30-50 % faster than the result backend,
and large answers do not go through pub/sub). Settings follow the notes' measurements.
"""

from __future__ import annotations

from celery import Celery

from filodb.config import Config

LEAF_TASK = "filodb.leaf"
FLUSH_TASK = "filodb.flush"


def shard_queue(dataset: str, shard: int) -> str:
    """The Celery queue of one shard; only its owning node consumes it."""
    return f"filodb.{dataset}.{shard}"


def make_celery(cfg: Config) -> Celery:
    app = Celery("filodb", broker=cfg.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="msgpack",
        result_serializer="msgpack",
        accept_content=["msgpack"],
        result_accept_content=["msgpack"],
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        result_expires=300,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_disable_rate_limits=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"polling_interval": 0.1, "visibility_timeout": 3600},
        task_create_missing_queues=True,
        task_default_queue="filodb.default",
    )
    return app
