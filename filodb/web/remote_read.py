"""Prometheus remote read: ``POST /api/v1/read`` (and ``/promql/<dataset>/api/v1/read``).

The wire format (request, SAMPLES and STREAMED_XOR_CHUNKS answers) is
:mod:`filodb.prom.remote_read`; each query's raw samples come from
:func:`filodb.web.export.read_raw` (so the usual rules apply: at least one matcher must not
match the empty string; limits and partial-response warnings as for the Prometheus API).
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from filodb.prom.remote_read import (
    SAMPLES,
    STREAM_CONTENT_TYPE,
    chunked_frames,
    decode_read_request,
    query_matchers,
    response_type,
    samples_response,
)
from filodb.web.export import read_raw
from filodb.web.services import services

bp = Blueprint("remote_read", __name__)


@bp.post("/api/v1/read")
@bp.post("/promql/<dataset>/api/v1/read")
def remote_read(dataset: str | None = None) -> Response:
    req = decode_read_request(request.get_data(cache=False), services().cfg.max_body_bytes)
    kind = response_type(list(req.accepted_response_types))
    ds = dataset or services().cfg.dataset
    results = [read_raw(ds, query_matchers(q), q.start_timestamp_ms, q.end_timestamp_ms)[0]
               for q in req.queries]  # fmt: skip
    if kind == SAMPLES:
        resp = Response(samples_response(results), content_type="application/x-protobuf")
        resp.headers["Content-Encoding"] = "snappy"
        return resp
    body = b"".join(f for i, series in enumerate(results) for f in chunked_frames(i, series))
    return Response(body, content_type=STREAM_CONTENT_TYPE)
