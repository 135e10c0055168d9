"""``POST /api/v1/admin/tsdb/delete_series?match[]=…&start=…&end=…`` (and
``/promql/<dataset>/…``): Prometheus's admin API for deleting series (admin scope).

Each ``match[]`` selector becomes one tombstone record (:mod:`filodb.model.tombstone`)
appended to every shard's log partition: once the append returns the deletion is durable, and
every worker that owns or later recovers a shard applies it in log order, to memory and to the
column store, before any later record. The answer, 204 as in Prometheus, waits (up to the query
timeout) until every Active shard reports an offset past its tombstone, so a query sent after
it does not see the deleted samples; then the dataset's results-cache generation is bumped
(:func:`filodb.web.results_cache.invalidate`). ``start``/``end`` default to all time.

A dataset with downsample levels gets the same tombstones in each of its ``<name>_ds_<min>``
datasets (their series carry the raw labels plus ``__ds_col__``, so the same selectors match
them): a deleted series does not live on in the downsampled data queries fall back to.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app

from filodb.errors import BadInputError
from filodb.model.resolution import ds_dataset_name
from filodb.model.tombstone import Tombstone
from filodb.shards.state import ShardStatus
from filodb.web import ingest
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
    targets = [(ds, desc.shards)]
    targets += [(name, svc.router.dataset(name).shards)
                for name in (ds_dataset_name(ds, lv.resolution_ms) for lv in desc.downsample)]  # fmt: skip
    appended = [(name, svc.ingest_log.append_many(name, {s: records for s in range(n)}))
                for name, n in targets]  # fmt: skip
    deadline = time.monotonic() + svc.cfg.query_timeout
    for name, offsets in appended:
        _wait_applied(name, {s: max(offs) for s, offs in offsets.items() if offs}, deadline)
    epochs = current_app.extensions.get(ingest.EPOCHS)
    for name, _n in targets:  # after the shards applied it: extents from now on miss the samples
        svc.results_cache.invalidate(name)  # and the doors' newest (other processes' within 1 s)
        if epochs is not None:
            epochs.expire(name)
    return Response(status=204)


def _wait_applied(dataset: str, offsets: dict[int, int], deadline: float) -> None:
    """Until every Active shard has applied its tombstone (or the ``time.monotonic()``
    deadline: the deletion is durable either way, its effect only not yet visible everywhere)."""
    svc = services()
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
