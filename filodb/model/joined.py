"""Batches a door's series-key cache resolved, joined into one without a step per series.

A door's write to the log has a large cost a call whatever the body's size (the shard split,
a record a shard, the append's group commit, the door's checks: ~450 us a call against
~0.15 us a line, measured in ``docs/architecture.md``, "Data path"), so the bodies that come
at once are written together (:class:`filodb.gateway.joiner.WriteJoiner`). Their batches
came from one :class:`~filodb.model.identity.SeriesKeyCache`: part keys in its arena (their
label sets decoded from them if asked for), label set ids from one generation. Joining them is then a handful of
numpy calls: the per-series columns concatenated, the samples' series indexes shifted, and a
series that is in more than one batch kept once (a log record names a series once: the
worker registers the series of a record's part keys it does not know, one per part key).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from filodb.model.batch import SampleBatch
from filodb.model.identity import Routed
from filodb.model.partkeys import PartKeyLabels, PartKeys


def joinable(batch: SampleBatch) -> bool:
    """Whether ``batch`` is a door's, as its series-key cache resolved it (with no
    exemplars): only such batches are joined."""
    return (
        isinstance(batch.routed, Routed)
        and isinstance(batch.pks, PartKeys)
        and isinstance(batch.series, PartKeyLabels)
        and batch.routes is not None
        and batch.keys is not None
        and (batch.exemplars is None or not len(batch.exemplars))
    )


def join(batches: Sequence[SampleBatch]) -> SampleBatch | None:
    """One batch of ``batches``' samples in their order, each series once; None when they
    cannot be joined so (not all :func:`joinable`, or resolved by different caches, cache
    generations or part-key arenas)."""
    if not batches or not all(joinable(b) for b in batches):
        return None
    rs: list[Routed] = []
    ps: list[PartKeys] = []
    for b in batches:
        r, p = b.routed, b.pks
        assert isinstance(r, Routed) and isinstance(p, PartKeys)
        if rs and (r.cache is not rs[0].cache or r.generation != rs[0].generation
                   or p.arena is not ps[0].arena):  # fmt: skip
            return None
        rs.append(r)
        ps.append(p)
    if len(batches) == 1:
        return batches[0]
    n_series = np.array([len(b.series) for b in batches], np.int64)
    offsets = (np.cumsum(n_series) - n_series).tolist()
    sidx = np.concatenate([b.sidx + np.int32(o) for b, o in zip(batches, offsets, strict=True)])
    rid = np.concatenate([r.ids for r in rs])
    start = np.concatenate([p.start for p in ps])
    end = np.concatenate([p.end for p in ps])
    keys = np.concatenate([b.keys for b in batches if b.keys is not None])
    routes = np.concatenate([b.routes for b in batches if b.routes is not None])
    order = np.sort(rid)
    if len(order) > 1 and not (order[1:] != order[:-1]).all():  # a series in two batches
        _, first_at, inverse = np.unique(rid, return_index=True, return_inverse=True)
        by_arrival = np.argsort(first_at, kind="stable")
        rank = np.empty(len(first_at), np.int32)
        rank[by_arrival] = np.arange(len(first_at), dtype=np.int32)
        keep = first_at[by_arrival]  # each series' first place, in arrival order
        sidx = rank[inverse.reshape(-1)][sidx]
        rid, start, end, keys, routes = (a[keep] for a in (rid, start, end, keys, routes))
    types: dict[str, str] = {}
    for b in batches:
        types.update(b.types)
    pks = PartKeys(ps[0].arena, start, end)
    return SampleBatch(
        PartKeyLabels(pks),
        sidx,
        np.concatenate([b.ts for b in batches]),
        np.concatenate([b.vals for b in batches]),
        types,
        keys,
        None,
        pks,
        routes,
        Routed(rs[0].cache, rs[0].generation, rid),
    )
