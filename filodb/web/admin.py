"""Operator and cluster routes: health, nodes, datasets, shard status, live shard events."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
from flask import Blueprint, Response, jsonify, request

from filodb.errors import BadInputError
from filodb.shards.state import ShardStatus
from filodb.web.services import require_admin, services

bp = Blueprint("admin", __name__)
SSE_STREAM_S = 30  # each open stream holds a server thread; EventSource reconnects by itself


def _ok(data: object) -> Response:
    return jsonify({"status": "success", "data": data})


@bp.get("/admin/health")
def health() -> tuple[Response, int]:
    svc = services()
    not_active = []
    datasets = svc.store.datasets()
    for ds in datasets:
        for st in svc.store.shard_states(ds):
            if st.status is not ShardStatus.ACTIVE:
                not_active.append({"dataset": ds, "shard": st.shard, "status": st.status.value})
    healthy = bool(datasets) and not not_active
    body = {"status": "healthy" if healthy else "unhealthy", "datasets": sorted(datasets),
            "not_active": not_active}  # fmt: skip
    return jsonify(body), 200 if healthy else 503


@bp.get("/admin/nodes")
def nodes() -> Response:
    svc = services()
    owned: dict[str, dict[str, list[int]]] = {}
    for ds in svc.store.datasets():
        for st in svc.store.shard_states(ds):
            if st.node:
                owned.setdefault(st.node, {}).setdefault(ds, []).append(st.shard)
    out = []
    for n in svc.registry.nodes():
        out.append({**n, "shards": owned.get(n["name"], {})})
    return _ok(out)


@bp.get("/api/v1/cluster")
def cluster() -> Response:
    svc = services()
    return _ok([{"dataset": k, **v} for k, v in sorted(svc.store.datasets().items())])


@bp.post("/api/v1/cluster/<dataset>")
def create_dataset(dataset: str) -> tuple[Response, int]:
    require_admin(request.headers.get("Authorization"))
    body = request.get_json(silent=True) or {}
    try:
        shards = int(body.get("shards", request.values.get("shards", services().cfg.shards)))
        spread = int(body.get("spread", request.values.get("spread", services().cfg.spread)))
    except (TypeError, ValueError) as e:
        raise BadInputError(f"shards and spread must be integers: {e}") from e
    desc = services().store.create_dataset(dataset, shards, spread)
    return _ok({"dataset": dataset, **desc}), 200


@bp.get("/api/v1/cluster/<dataset>/status")
def cluster_status(dataset: str) -> Response:
    svc = services()
    desc = svc.store.dataset(dataset)  # 404 for an unknown dataset
    offsets, stats = svc.store.progress(dataset)
    ends = svc.log.end_offsets(dataset, list(range(desc["shards"])))
    rows = []
    for st in svc.store.shard_states(dataset):
        ing = offsets.get(st.shard, 0)
        end = ends.get(st.shard, 0)
        s = stats.get(st.shard, {})
        rows.append({
            "shard": st.shard, "node": st.node, "status": st.status.value,
            "progress": st.progress, "ingested_offset": ing, "log_end_offset": end,
            "lag": max(0, end - ing), "series": s.get("series", 0), "samples": s.get("samples", 0),
            "samples_rejected": s.get("samples_rejected", 0),
            "series_in_memory": s.get("series_in_memory", 0), "chunks": s.get("chunks", 0),
            "chunk_bytes": s.get("chunk_bytes", 0), "memory_bytes": s.get("memory_bytes", 0),
            "chunks_evicted": s.get("chunks_evicted", 0), "chunks_paged": s.get("chunks_paged", 0),
            "last_flush": s.get("last_flush", 0.0), "last_checkpoint": s.get("last_checkpoint", 0),
            "updated": st.updated,
        })  # fmt: skip
    return _ok(rows)


@bp.get("/api/v1/cluster/events")
def events() -> Response:
    """Server-sent events: every shard event as one ``data:`` line of JSON."""
    store = services().store

    def stream() -> Iterator[bytes]:
        yield b": connected\n\n"
        for ev in store.follow_events(timeout_s=SSE_STREAM_S):
            yield b"data: " + orjson.dumps(ev) + b"\n\n"

    return Response(stream(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})
