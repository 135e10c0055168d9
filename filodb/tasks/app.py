"""The Celery app a worker node runs in: Redis broker, msgpack only (never pickle), no result
backend. Settings follow shared/notes/celery-redis.md.

Queries do not go through Celery: leaf requests are msgpack messages on a Redis list per node
(:mod:`filodb.tasks.rpc`), which the node's threads pop, and flushes run on the node's own
executor; so no per-shard queues are consumed (a Celery round trip cost ~1.5 ms of CPU per
shard, against ~0.1 ms for a list push and pop).
"""

from __future__ import annotations

from celery import Celery

from filodb.config import Config


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
        # kombu's default BRPOP timeout (1 s): the notes' 0.1 s made queues added at run time
        # taken sooner, and a node adds none (its one queue is given at start); it cost an
        # idle worker ten BRPOP round trips a second through kombu's loop
        broker_transport_options={"visibility_timeout": 3600},
        task_create_missing_queues=True,
        task_default_queue="filodb.default",
    )
    return app
