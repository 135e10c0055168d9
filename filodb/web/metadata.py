"""Metric metadata: kept from remote-write requests, served at ``/api/v1/metadata``.

The remote-write door keeps it in the :class:`~filodb.shards.metadata.MetadataStore`
(``services().metadata``; one Redis hash per dataset, the last write of a family wins).

``GET /api/v1/metadata`` (and ``/promql/<dataset>/api/v1/metadata``) answers in Prometheus's
shape, ``{"status":"success","data":{"<name>":[{"type":"counter","help":"...","unit":""}]}}``;
``metric=<name>`` keeps one family, ``limit=<n>`` at most n families (sorted by name; negative:
no limit, 0: none, as Prometheus 3 counts), ``limit_per_metric=<n>`` at most n entries per family
(checked, but a family has one entry here, and Prometheus reads 0 or less as no limit). A limit that is not an integer is a 400 (``limit must be a number``).
"""

from __future__ import annotations

import re

import orjson
from flask import Blueprint, Response

from filodb.errors import BadInputError
from filodb.web.params import arg
from filodb.web.services import services

bp = Blueprint("metadata", __name__)


def _number(name: str) -> int:
    """An integer parameter as Prometheus's metadata route reads it (-1 when absent)."""
    raw = arg(name)
    if raw is None or raw == "":
        return -1
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise BadInputError(f"{name} must be a number")
    return int(raw)


@bp.route("/api/v1/metadata", methods=["GET"])
@bp.route("/promql/<dataset>/api/v1/metadata", methods=["GET"])
def metadata(dataset: str | None = None) -> Response:
    limit = _number("limit")
    _number("limit_per_metric")  # one entry per family: any limit keeps it
    svc = services()
    if limit == 0:
        return Response(b'{"status":"success","data":{}}', mimetype="application/json")
    found = svc.metadata.get(dataset or svc.cfg.dataset, arg("metric") or None, limit)
    data = {name: [entry] for name, entry in found.items()}
    return Response(orjson.dumps({"status": "success", "data": data}), mimetype="application/json")
