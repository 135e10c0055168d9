"""Operator and cluster routes: health, nodes, datasets, shard status, live shard events.

Who may call them is :mod:`filodb.web.auth`'s table; the cluster-wide listings (nodes,
datasets, events) show only the datasets the caller's token may read.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
from flask import Blueprint, Response, jsonify, request

from filodb.errors import BadInputError
from filodb.model.resolution import ds_dataset_name
from filodb.model.timeparse import parse_duration_ms
from filodb.shards.downsample_runs import DownsampleRuns
from filodb.shards.state import ShardStatus
from filodb.web.auth import readable
from filodb.web.processes import starting as web_starting
from filodb.web.services import services

bp = Blueprint("admin", __name__)
SSE_STREAM_S = 30  # each open stream holds a server thread; EventSource reconnects by itself


def _ok(data: object) -> Response:
    return jsonify({"status": "success", "data": data})


def cluster_health() -> tuple[bool, dict]:
    """Whether every shard of every dataset is Active, and the body that says which are not
    (``/admin/health``; ``/-/ready`` answers from it too)."""
    svc = services()
    not_active = []
    datasets = svc.shard_map.datasets()
    for ds in datasets:
        for st in svc.shard_map.shard_states(ds):
            if st.status is not ShardStatus.ACTIVE:
                row = {"dataset": ds, "shard": st.shard, "status": st.status.value}
                not_active.append({**row, "error": st.error} if st.error else row)
    healthy = bool(datasets) and not not_active
    body: dict[str, object] = {"status": "healthy" if healthy else "unhealthy",
                               "datasets": sorted(datasets), "not_active": not_active}  # fmt: skip
    starting = web_starting()
    if starting is not None:  # filodb up's other web processes are not serving yet
        healthy, body["status"], body["web_processes"] = False, "unhealthy", starting
    return healthy, body


@bp.get("/admin/health")
def health() -> tuple[Response, int]:
    healthy, body = cluster_health()
    return jsonify(body), 200 if healthy else 503


@bp.get("/admin/nodes")
def nodes() -> Response:
    svc = services()
    may_read = readable()
    owned: dict[str, dict[str, list[int]]] = {}
    for ds in filter(may_read, svc.shard_map.datasets()):
        for st in svc.shard_map.shard_states(ds):
            if st.node:
                owned.setdefault(st.node, {}).setdefault(ds, []).append(st.shard)
    out = []
    for n in svc.registry.nodes():
        out.append({**n, "shards": owned.get(n["name"], {})})
    return _ok(out)


@bp.get("/api/v1/cluster")
def cluster() -> Response:
    may_read = readable()
    datasets = sorted(services().shard_map.datasets().items())
    return _ok([{"dataset": k, **v.to_json()} for k, v in datasets if may_read(k)])


def _body() -> dict:
    if request.data and request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadInputError("the request body must be a JSON object")
        return body
    return {}


def _int(body: dict, name: str, default: int) -> int:
    raw = body.get(name, request.values.get(name, default))
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise BadInputError(f"{name} must be an integer, got {raw!r}")
    try:
        return int(raw)
    except (TypeError, ValueError) as e:
        raise BadInputError(f"{name} must be an integer, got {raw!r}") from e


def _retention(body: dict) -> float | None:
    raw = body.get("retention", request.values.get("retention"))
    if raw is None:
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        return parse_duration_ms(raw, "retention") / 1000.0
    raise BadInputError(f"retention must be seconds or a duration such as 15d, got {raw!r}")


@bp.post("/api/v1/cluster/<dataset>")
def create_dataset(dataset: str) -> tuple[Response, int]:
    """Create a dataset: ``shards`` (power of two), ``spread``, ``spread_overrides``,
    ``retention`` (seconds or a duration such as ``30d``; 0 keeps forever), ``limits``
    (:mod:`filodb.model.limits`), ``downsample`` (``[{"resolution": "1m", "retention":
    "30d"}, ...]``: the ``<ds>_ds_<min>`` datasets)."""
    body = _body()
    cfg = services().cfg
    desc = services().shard_map.create_dataset(
        dataset, _int(body, "shards", cfg.shards), _int(body, "spread", cfg.spread),
        spread_overrides=body.get("spread_overrides"), retention_s=_retention(body),
        limits=body.get("limits"), downsample=body.get("downsample"),
        default_retention_s=cfg.retention,
    )  # fmt: skip
    for name in (dataset, *(ds_dataset_name(dataset, lv.resolution_ms) for lv in desc.downsample)):
        services().ingest_log.ensure_dataset(name, desc.shards)  # Kafka: one partition per shard
    services().results_cache.invalidate(dataset)  # answers of an earlier dataset of that name
    return _ok({"dataset": dataset, **desc.to_json()}), 200


@bp.get("/api/v1/cluster/<dataset>")
def describe_dataset(dataset: str) -> Response:
    """The dataset's description, its limits in effect (``effective_limits``: the config's
    defaults filled in) and what they refused so far, cluster-wide (``refused``: reason ->
    samples, or queries for ``max_query_concurrency``; the doors' out-of-order refusals too,
    ``out_of_order`` / ``too_old``); with downsample levels, how far they
    reach (``downsampled_through``, Unix s) and the last periodic run (``downsample_run``)."""
    svc = services()
    desc = svc.shard_map.dataset(dataset)
    extra = {}
    if desc.downsample:  # the cluster's last periodic run, how far this dataset's levels reach
        rec, locked = DownsampleRuns(svc.shard_map.r).snapshot()
        extra = {"downsampled_through": svc.shard_map.downsampled().get(dataset, 0) / 1000,
                 "downsample_run": {**rec, "locked": locked}}  # fmt: skip
    return _ok({"dataset": dataset, **desc.to_json(),
                "effective_limits": desc.limits.resolved(svc.cfg).to_json(),
                "refused": svc.limits.refused(dataset), **extra})  # fmt: skip


def _shard_list(dataset: str) -> list[int]:
    n = services().shard_map.dataset(dataset).shards
    body = _body()
    raw = body.get("shards", request.values.get("shards"))
    if isinstance(raw, str):
        raw = [p for p in raw.split(",") if p.strip()]
    if not isinstance(raw, list) or not raw:
        raise BadInputError('give the shards as {"shards": [0, 1]} or ?shards=0,1')
    out = []
    for v in raw:
        try:
            s = int(v)
        except (TypeError, ValueError) as e:
            raise BadInputError(f"shard {v!r} is not an integer") from e
        if not 0 <= s < n:
            raise BadInputError(f"shard {s} is out of range: {dataset} has shards 0..{n - 1}")
        out.append(s)
    return sorted(set(out))


@bp.post("/api/v1/cluster/<dataset>/stopshards")
def stop_shards(dataset: str) -> Response:
    """Stop ingesting and serving shards: their owner flushes and releases them."""
    shard_map = services().shard_map
    shards = _shard_list(dataset)
    states = {st.shard: st for st in shard_map.shard_states(dataset)}
    for s in shards:
        if states[s].status is not ShardStatus.STOPPED:
            shard_map.move(states[s], ShardStatus.STOPPED)
    return _ok({"dataset": dataset, "stopped": shards})


@bp.post("/api/v1/cluster/<dataset>/startshards")
def start_shards(dataset: str) -> Response:
    """Start stopped shards again: the coordinator assigns them to nodes with room."""
    shard_map = services().shard_map
    shards = _shard_list(dataset)
    states = {st.shard: st for st in shard_map.shard_states(dataset)}
    not_stopped = [s for s in shards if states[s].status is not ShardStatus.STOPPED]
    if not_stopped:
        raise BadInputError(f"shards {not_stopped} of {dataset} are not stopped")
    for s in shards:
        shard_map.move(states[s], ShardStatus.UNASSIGNED)
    return _ok({"dataset": dataset, "started": shards})


@bp.get("/api/v1/cluster/<dataset>/statusByAddress")
def status_by_address(dataset: str) -> Response:
    """Shards grouped by the node that owns them (FiloDB's statusByAddress)."""
    svc = services()
    svc.shard_map.dataset(dataset)
    nodes = {n["name"]: n for n in svc.registry.nodes()}
    groups: dict[str, list[dict]] = {}
    for st in svc.shard_map.shard_states(dataset):
        groups.setdefault(st.node, []).append({"shard": st.shard, "status": st.status.value,
                                               "progress": st.progress})  # fmt: skip
    out = []
    for node, shards in sorted(groups.items(), key=lambda kv: (kv[0] == "", kv[0])):
        info = nodes.get(node, {})
        out.append({"address": node or None, "host": info.get("host"), "pid": info.get("pid"),
                    "alive": bool(info.get("alive")), "shards": shards})  # fmt: skip
    for name, info in nodes.items():  # live nodes without shards of this dataset
        if name not in groups and info.get("alive"):
            out.append({"address": name, "host": info.get("host"), "pid": info.get("pid"),
                        "alive": True, "shards": []})  # fmt: skip
    return _ok(out)


@bp.get("/api/v1/cluster/<dataset>/status")
def cluster_status(dataset: str) -> Response:
    svc = services()
    desc = svc.shard_map.dataset(dataset)  # 404 for an unknown dataset
    offsets, stats = svc.shard_map.progress(dataset)
    ends = svc.ingest_log.end_offsets(dataset, list(range(desc.shards)))
    rows = []
    for st in svc.shard_map.shard_states(dataset):
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
            "updated": st.updated, **({"error": st.error} if st.error else {}),
        })  # fmt: skip
    return _ok(rows)


@bp.get("/api/v1/cluster/events")
def events() -> Response:
    """Server-sent events: every shard event as one ``data:`` line of JSON."""
    shard_map = services().shard_map
    may_read = readable()

    def stream() -> Iterator[bytes]:
        yield b": connected\n\n"
        for ev in shard_map.follow_events(timeout_s=SSE_STREAM_S):
            if may_read(str(ev.get("dataset", ""))):
                yield b"data: " + orjson.dumps(ev) + b"\n\n"

    return Response(stream(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})
