"""The leaf task: the part of a query that runs on the node owning a shard.

The caller sends ``(reply_key, dataset, shard, op, params)`` with ``ignore_result=True``; the
task answers by ``RPUSH reply_key <message>`` (a :mod:`filodb.tasks.wire` message whose header
has ``ok``, ``shard`` and either the answer or ``error``) and ``EXPIRE reply_key``. A node that
does not own the shard as Active answers ``ok: false`` with ``error_type: "unavailable"``, so
the caller can mark the answer partial (fencing).

Ops: ``select`` (SeriesBlock), ``series``, ``label_names``, ``label_values``, ``eval``
(a pushed-down PromQL subexpression evaluated at the query's steps).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from filodb.errors import FiloError
from filodb.model.labels import Matcher
from filodb.tasks import node
from filodb.tasks.app import FLUSH_TASK, LEAF_TASK
from filodb.tasks.wire import flat_labels, pack, pack_block

log = logging.getLogger(__name__)

REPLY_TTL_S = 60


def matchers_from_wire(raw: list[list[str]]) -> list[Matcher]:
    return [Matcher(n, op, v) for n, op, v in raw]


def matchers_to_wire(ms: list[Matcher]) -> list[list[str]]:
    return [[m.name, m.op, m.value] for m in ms]


def run_op(ms: Any, shard: int, op: str, p: dict[str, Any]) -> bytes:
    """Execute one leaf op against a memstore (a SeriesSource) and pack the answer."""
    if op == "eval":
        from filodb.tasks.pushdown import eval_leaf

        return eval_leaf(ms, shard, p)
    matchers = matchers_from_wire(p.get("matchers", []))
    start, end = int(p["start"]), int(p["end"])
    ok = {"ok": True, "shard": shard}
    if op == "select":
        return pack_block(ms.select(matchers, start, end), ok)
    if op == "series":
        return pack({**ok, "labels": flat_labels(ms.series(matchers, start, end))}, [])
    if op == "label_names":
        return pack({**ok, "values": ms.label_names(matchers, start, end)}, [])
    if op == "label_values":
        return pack({**ok, "values": ms.label_values(p["name"], matchers, start, end)}, [])
    raise ValueError(f"unknown leaf op {op!r}")


def register_tasks(app: Celery) -> None:
    @app.task(name=FLUSH_TASK, ignore_result=True)
    def flush(dataset: str, shard: int, group: int) -> None:
        """Flush one group of a shard this node owns (sent by the node loop to the shard's
        queue, so it runs where the memstore is)."""
        rt = node.RUNTIME
        if rt is not None:
            rt.flush(dataset, int(shard), int(group))

    @app.task(name=LEAF_TASK, ignore_result=True)
    def leaf(reply_key: str, dataset: str, shard: int, op: str, params: dict) -> None:
        rt = node.RUNTIME
        if rt is not None:  # a receipt first: the caller resends work that nobody picked up
            pipe = rt.store.r.pipeline()
            pipe.rpush(reply_key, pack({"shard": shard, "received": True}, []))
            pipe.expire(reply_key, REPLY_TTL_S)
            pipe.execute()
        ms = rt.memstore(dataset, shard) if rt is not None else None
        if ms is None:
            msg = pack({"ok": False, "shard": shard, "error_type": "unavailable",
                        "error": f"shard {dataset}/{shard} is not active on this node"}, [])  # fmt: skip
        else:
            try:
                msg = run_op(ms, shard, op, params)
            except FiloError as e:
                msg = pack({"ok": False, "shard": shard, "error_type": e.error_type,
                            "status": e.http_status, "error": str(e)}, [])  # fmt: skip
            except Exception as e:  # reported to the caller, never silently lost
                log.exception("leaf %s on %s/%s failed", op, dataset, shard)
                msg = pack({"ok": False, "shard": shard, "error_type": "internal",
                            "error": f"{type(e).__name__}: {e}"}, [])  # fmt: skip
        r = rt.store.r if rt is not None else None
        if r is None:
            return
        pipe = r.pipeline()
        pipe.rpush(reply_key, msg)
        pipe.expire(reply_key, REPLY_TTL_S)
        pipe.execute()
