"""``POST /api/v1/admin/tsdb/delete_series?match[]=…&start=…&end=…`` (and
``/promql/<dataset>/…``): Prometheus's admin API for deleting series (admin scope).

Each ``match[]`` selector becomes one tombstone record (:mod:`filodb.model.tombstone`)
appended to every shard's log partition: once the append returns the deletion is durable, and
every worker that owns or later recovers a shard applies it in log order, to memory and to the
column store, before any later record. The answer, 204 as in Prometheus, waits (up to the query
timeout) until every Active shard reports an offset past its tombstone, so a query sent after
it does not see the deleted samples; then the dataset's results-cache generation is bumped
(:func:`filodb.web.results_cache.invalidate`). ``start``/``end`` default to all time.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response

from filodb.errors import BadInputError
from filodb.model.tombstone import Tombstone
from filodb.shards.state import ShardStatus
from filodb.web.params import match_params, prom_routes, time_param
from filodb.web.services import services

bp = Blueprint("tsdb_admin", __name__)
routes = prom_routes(bp, ("POST", "PUT"))

_MIN_MS, _MAX_MS = -(2**63), 2**63 - 1
_POLL_S = 0.05


@routes("/admin/tsdb/delete_series")
def delete_series(dataset: str | None = None) -> Response:
    svc = services()
    ds = dataset or svc.cfg.dataset
    selectors = match_params(required=True)
    start, end = time_param("start", _MIN_MS), time_param("end", _MAX_MS)
    if start > end:
        raise BadInputError('invalid parameter "end": end timestamp must not be before start')
    desc = svc.router.dataset(ds)
    records = [Tombstone(tuple(m), start, end).to_bytes() for m in selectors]
    offsets = svc.ingest_log.append_many(ds, {s: records for s in range(desc.shards)})
    _wait_applied(ds, {s: max(offs) for s, offs in offsets.items() if offs}, svc.cfg.query_timeout)
    # after the shards applied it: an extent computed from now on no longer sees the samples
    svc.results_cache.invalidate(ds)
    return Response(status=204)


def _wait_applied(dataset: str, offsets: dict[int, int], timeout_s: float) -> None:
    """Until every Active shard has applied its tombstone (or the timeout: the deletion is
    durable either way, its effect only not yet visible everywhere)."""
    svc = services()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        active = {
            st.shard
            for st in svc.shard_map.shard_states(dataset)
            if st.status is ShardStatus.ACTIVE
        }
        done, _ = svc.shard_map.progress(dataset)
        if all(done.get(s, 0) >= off for s, off in offsets.items() if s in active):
            return
        time.sleep(_POLL_S)
