"""The task functions a worker node runs: the leaf of a query, and the flush of a group.

They are thin: :func:`register_tasks` binds them to the node's runtime (anything with the
:class:`NodeRuntime` shape below), so this module knows nothing of what a node is.

The leaf caller sends ``(reply_key, dataset, shard, op, params)`` with ``ignore_result=True``;
the task first pushes a receipt, then answers by ``RPUSH reply_key <message>`` (a
:mod:`filodb.tasks.wire` message whose header has ``ok``, ``shard`` and either the answer or
``error``) and ``EXPIRE reply_key``. A node that does not own the shard as Active answers
``ok: false`` with ``error_type: "unavailable"``, so the caller can mark the answer partial
(fencing).

Ops: ``select`` (SeriesBlock), ``series``, ``label_names``, ``label_values``, ``eval``
(a pushed-down PromQL subexpression evaluated at the query's steps).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import redis
from celery import Celery

from filodb.errors import FiloError
from filodb.model.source import SeriesSource
from filodb.query.distributed import eval_local
from filodb.tasks.app import FLUSH_TASK, LEAF_TASK
from filodb.tasks.wire import flat_labels, matchers_from_wire, pack, pack_block, pack_steps

log = logging.getLogger(__name__)

REPLY_TTL_S = 60


class NodeRuntime(Protocol):
    """What the tasks need of a node."""

    redis: redis.Redis

    def memstore(self, dataset: str, shard: int) -> SeriesSource | None: ...

    def flush(self, dataset: str, shard: int, group: int) -> None: ...


def run_op(source: SeriesSource, shard: int, op: str, p: dict[str, Any]) -> bytes:
    """Execute one leaf op against a shard's source and pack the answer."""
    ok = {"ok": True, "shard": shard}
    if op == "eval":
        v, read = eval_local(source, p)
        return pack_steps({**ok, "read": read}, v)
    matchers = matchers_from_wire(p.get("matchers", []))
    start, end = int(p["start"]), int(p["end"])
    if op == "select":
        return pack_block(source.select(matchers, start, end), ok)
    if op == "series":
        return pack({**ok, "labels": flat_labels(source.series(matchers, start, end))}, [])
    if op == "label_names":
        return pack({**ok, "values": source.label_names(matchers, start, end)}, [])
    if op == "label_values":
        return pack({**ok, "values": source.label_values(p["name"], matchers, start, end)}, [])
    raise ValueError(f"unknown leaf op {op!r}")


def answer(rt: NodeRuntime, dataset: str, shard: int, op: str, params: dict[str, Any]) -> bytes:
    """The leaf's reply message: the op's answer, or why there is none."""
    source = rt.memstore(dataset, shard)
    if source is None:
        return pack({"ok": False, "shard": shard, "error_type": "unavailable",
                     "error": f"shard {dataset}/{shard} is not active on this node"}, [])  # fmt: skip
    try:
        return run_op(source, shard, op, params)
    except FiloError as e:
        return pack({"ok": False, "shard": shard, "error_type": e.error_type,
                     "status": e.http_status, "error": str(e)}, [])  # fmt: skip
    except Exception as e:  # reported to the caller, never silently lost
        log.exception("leaf %s on %s/%s failed", op, dataset, shard)
        return pack({"ok": False, "shard": shard, "error_type": "internal",
                     "error": f"{type(e).__name__}: {e}"}, [])  # fmt: skip


def _reply(r: redis.Redis, reply_key: str, msg: bytes) -> None:
    pipe = r.pipeline()
    pipe.rpush(reply_key, msg)
    pipe.expire(reply_key, REPLY_TTL_S)
    pipe.execute()


def register_tasks(app: Celery, runtime: Callable[[], NodeRuntime | None]) -> None:
    """Register the node's tasks on ``app``; ``runtime()`` is the node (None before it starts)."""

    @app.task(name=FLUSH_TASK, ignore_result=True)
    def flush(dataset: str, shard: int, group: int) -> None:
        """Flush one group of a shard this node owns (sent by the node loop to the shard's
        queue, so it runs where the memstore is)."""
        rt = runtime()
        if rt is not None:
            rt.flush(dataset, int(shard), int(group))

    @app.task(name=LEAF_TASK, ignore_result=True)
    def leaf(reply_key: str, dataset: str, shard: int, op: str, params: dict) -> None:
        rt = runtime()
        if rt is None:
            return  # not started yet: the caller resends work that nobody received
        _reply(rt.redis, reply_key, pack({"shard": shard, "received": True}, []))
        _reply(rt.redis, reply_key, answer(rt, dataset, shard, op, params))
