"""Metric metadata: kept from remote-write requests, served at ``/api/v1/metadata``.

Storage: one Redis hash per dataset, ``filodb:meta:<dataset>``, field = metric family name,
value = JSON ``{"type": ..., "help": ..., "unit": ...}``. The last write of a family wins (a
family has one entry, where Prometheus may list one per disagreeing target).

``GET /api/v1/metadata`` (and ``/promql/<dataset>/api/v1/metadata``) answers in Prometheus's
shape, ``{"status":"success","data":{"<name>":[{"type":"counter","help":"...","unit":""}]}}``;
``metric=<name>`` keeps one family, ``limit=<n>`` at most n families (sorted by name; a
negative or zero limit means no limit, as in Prometheus).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis
from flask import Blueprint, Response

from filodb.errors import BadInputError
from filodb.web.params import arg
from filodb.web.services import services

bp = Blueprint("metadata", __name__)


def meta_key(dataset: str) -> str:
    return f"filodb:meta:{dataset}"


def store_metadata(client: redis.Redis, dataset: str, entries: Sequence[dict[str, str]]) -> int:
    """Keep ``entries`` (``metric``, ``type``, ``help``, ``unit``) of ``dataset``; entries
    without a name are skipped. Returns how many were written."""
    fields = {
        m["metric"]: orjson.dumps({"type": m.get("type") or "unknown", "help": m.get("help", ""),
                                   "unit": m.get("unit", "")})  # fmt: skip
        for m in entries
        if m.get("metric")
    }
    if fields:
        client.hset(meta_key(dataset), mapping=fields)  # type: ignore[arg-type]
    return len(fields)


def load_metadata(client: redis.Redis, dataset: str, metric: str | None = None
                  ) -> dict[str, dict[str, str]]:  # fmt: skip
    """Family name -> entry, for one family or all of ``dataset``."""
    key = meta_key(dataset)
    if metric is not None:
        raw = client.hget(key, metric)
        return {metric: orjson.loads(raw)} if raw else {}
    return {k.decode(): orjson.loads(v) for k, v in client.hgetall(key).items()}  # type: ignore[union-attr]


def remember(dataset: str, entries: Sequence[dict[str, str]]) -> None:
    """From a request: keep the metadata a remote-write body carried (the ingest hook)."""
    if entries:
        store_metadata(services().store.r, dataset, entries)


@bp.route("/api/v1/metadata", methods=["GET"])
@bp.route("/promql/<dataset>/api/v1/metadata", methods=["GET"])
def metadata(dataset: str | None = None) -> Response:
    raw_limit = arg("limit")
    try:
        limit = int(raw_limit) if raw_limit not in (None, "") else -1
    except ValueError:
        raise BadInputError(f'invalid parameter "limit": {raw_limit!r} is not a number') from None
    found = load_metadata(services().store.r, dataset or services().cfg.dataset, arg("metric") or None)
    names = sorted(found)
    if limit > 0:
        names = names[:limit]
    data = {n: [found[n]] for n in names}
    return Response(orjson.dumps({"status": "success", "data": data}), mimetype="application/json")
