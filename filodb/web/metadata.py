"""Metric metadata: kept from remote-write requests, served at ``/api/v1/metadata``.

The remote-write door keeps it in the :class:`~filodb.shards.metadata.MetadataStore`
(``services().metadata``; one Redis hash per dataset, the last write of a family wins).

``GET /api/v1/metadata`` (and ``/promql/<dataset>/api/v1/metadata``) answers in Prometheus's
shape, ``{"status":"success","data":{"<name>":[{"type":"counter","help":"...","unit":""}]}}``;
``metric=<name>`` keeps one family, ``limit=<n>`` at most n families (sorted by name; a
negative or zero limit means no limit, as in Prometheus).
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response

from filodb.errors import BadInputError
from filodb.web.params import arg
from filodb.web.services import services

bp = Blueprint("metadata", __name__)


@bp.route("/api/v1/metadata", methods=["GET"])
@bp.route("/promql/<dataset>/api/v1/metadata", methods=["GET"])
def metadata(dataset: str | None = None) -> Response:
    raw_limit = arg("limit")
    try:
        limit = int(raw_limit) if raw_limit not in (None, "") else -1
    except ValueError:
        raise BadInputError(f'invalid parameter "limit": {raw_limit!r} is not a number') from None
    svc = services()
    found = svc.metadata.get(dataset or svc.cfg.dataset, arg("metric") or None, limit)
    data = {name: [entry] for name, entry in found.items()}
    return Response(orjson.dumps({"status": "success", "data": data}), mimetype="application/json")
