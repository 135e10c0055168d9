"""Route column batches to shards and append them to the log.

A batch is split by the shard of each series (FiloDB's shard-key rule, see
:mod:`filodb.model.shardkey`) and each part goes to its shard's log partition in one round
trip. ``write`` returns only once the log has stored every part: that is the acknowledgement.
Series → shard results are cached (bounded), since exporters resend the same series.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from filodb.ingest.base import Log
from filodb.model.batch import SampleBatch
from filodb.model.cache import BoundedCache
from filodb.model.dataset import Dataset
from filodb.model.labels import Labels
from filodb.model.shardkey import shards_for_series, shards_of_routes
from filodb.shards.redis_map import ShardMapStore

_CACHE_MAX = 1_000_000
_DATASET_TTL_S = 5.0
MAX_RECORD_SAMPLES = 200_000

# A process's doors take turns at a body's CPU work: decoding (remote write, Influx over HTTP)
# and laying out its log records, one body at a time; the log append (a Redis round trip)
# and the HTTP exchange stay outside, so concurrent bodies still share one append (the log's
# group commit). Without it, four request threads each in the middle of a body traded the
# GIL at every numba kernel (they release it) and every socket call, and evicted each other's
# caches: a live body of ~1 250 samples over HTTP cost the web process 2.27-2.60 ms of CPU
# (remote write) against 1.77-2.17 ms with the turns (docs/architecture.md, "Data path").
CPU_TURN = threading.Lock()


class IngestRouter:
    """Splits batches per shard and appends them to ``ingest_log``; thread-safe.

    ``shard_map`` gives the datasets' descriptions (shard count, spread)."""

    def __init__(self, shard_map: ShardMapStore, ingest_log: Log) -> None:
        self.shard_map = shard_map
        self.ingest_log = ingest_log
        self._datasets: dict[str, tuple[float, Dataset]] = {}
        # shard by series, per dataset description
        self._shard_caches: dict[tuple, BoundedCache[Labels | bytes, int]] = {}
        self._lock = threading.Lock()

    def dataset(self, name: str) -> Dataset:
        """The dataset's description, cached a few seconds (raises UnknownDatasetError)."""
        hit = self._datasets.get(name)
        if hit and time.monotonic() - hit[0] < _DATASET_TTL_S:
            return hit[1]
        desc = self.shard_map.dataset(name)
        self._datasets[name] = (time.monotonic(), desc)
        return desc

    def _shards(self, desc: Dataset, batch: SampleBatch) -> np.ndarray:
        rule = desc.spread_rule
        if batch.routes is not None and isinstance(rule, int):  # the door knew the series
            return shards_of_routes(batch.routes, desc.shards, rule)
        series = batch.series
        # a dataset deleted and created again (other shards or spread) gets a fresh cache
        ident = (desc.name, desc.shards, desc.spread, desc.spread_overrides, desc.created)
        cache = self._shard_caches.get(ident)
        if cache is None:
            with self._lock:
                if len(self._shard_caches) > 1000:
                    self._shard_caches.clear()
                cache = self._shard_caches.setdefault(ident, BoundedCache(_CACHE_MAX))
        # one dict lookup a series seen before; by part key where the batch has them (a bytes
        # object keeps its hash, a label set hashes its pairs again at every lookup)
        by: Sequence[Labels | bytes] = series if batch.pks is None else batch.pks
        got = [cache.get(k) for k in by]
        if None not in got:
            return np.array(got, np.int32)
        todo = [i for i, s in enumerate(got) if s is None]
        computed = shards_for_series([series[i] for i in todo], desc.shards, desc.spread_rule)
        with self._lock:
            for i, s in zip(todo, computed.tolist(), strict=True):
                got[i] = s
                cache.put(by[i], s)
        return np.array(got, np.int32)

    def write(
        self, dataset: str, batch: SampleBatch, desc: Dataset | None = None
    ) -> dict[int, int]:
        """Append ``batch`` to the log; returns samples per shard. Durable when it returns.
        ``desc``: the dataset's description when the caller just got it (:meth:`dataset`)."""
        if len(batch) == 0 and not batch.exemplars:  # exemplars alone are worth a record
            return {}
        desc = desc if desc is not None and desc.name == dataset else self.dataset(dataset)
        return self._append(desc, batch)[0]

    def write_many(
        self, dataset: str, batches: Sequence[SampleBatch], desc: Dataset | None = None
    ) -> list[dict[int, int]]:
        """Append ``batches`` (a door's, :func:`~filodb.model.joined.join`) as one: one shard
        split, one record a shard, one append; samples per shard of each batch. Batches that
        cannot be joined are written one by one."""
        outs, wait = self.write_many_begin(dataset, batches, desc)
        wait()
        return outs

    def write_many_begin(
        self, dataset: str, batches: Sequence[SampleBatch], desc: Dataset | None = None
    ) -> tuple[list[dict[int, int]], Callable[[], object]]:
        """:meth:`write_many` up to the log's :meth:`~filodb.ingest.base.Log.append_begin`:
        the samples per shard of each batch, and the function that waits until they are
        stored (raising the append's error). Batches that cannot be joined are written
        whole here, one by one."""
        from filodb.model.joined import join  # numba (the series-key cache): doors only

        joined = join(batches)  # one batch: itself, when a door's cache resolved it
        if joined is None:
            return [self.write(dataset, b, desc) for b in batches], _nothing
        desc = desc if desc is not None and desc.name == dataset else self.dataset(dataset)
        _, shard_of, wait = self._append_begin(desc, joined)
        of = shard_of[joined.sidx]
        out = []
        at = 0
        for b in batches:
            per = np.bincount(of[at : at + len(b)], minlength=desc.shards)
            out.append({s: int(per[s]) for s in np.flatnonzero(per).tolist()})
            at += len(b)
        return out, wait

    def _append(self, desc: Dataset, batch: SampleBatch) -> tuple[dict[int, int], np.ndarray]:
        """Append ``batch`` to ``desc``'s log: samples per shard, and the shard of each series."""
        counts, shard_of, wait = self._append_begin(desc, batch)
        wait()
        return counts, shard_of

    def _append_begin(self, desc: Dataset, batch: SampleBatch
                      ) -> tuple[dict[int, int], np.ndarray, Callable[[], object]]:  # fmt: skip
        """:meth:`_append` up to the log's ``append_begin``; and the function that waits."""
        with CPU_TURN:
            shard_of = self._shards(desc, batch)
            if len(batch) <= MAX_RECORD_SAMPLES:  # one record a shard
                one, counts = batch.shard_records(shard_of, desc.shards)
                records = {s: [r] for s, r in one.items()}
            else:
                parts = batch.split(shard_of, desc.shards)
                records = {s: [r.to_bytes() for r in _chunks(b)] for s, b in parts.items()}
                counts = {s: len(b) for s, b in parts.items()}
        return counts, shard_of, self.ingest_log.append_begin(desc.name, records)


def _nothing() -> None:
    """Nothing to wait for."""


def _chunks(b: SampleBatch) -> list[SampleBatch]:
    """Keep log records bounded: split very large batches by series groups."""
    if len(b) <= MAX_RECORD_SAMPLES:
        return [b]
    counts = np.bincount(b.sidx, minlength=len(b.series))
    group = np.cumsum(counts) // MAX_RECORD_SAMPLES
    return [b.take_series(group == g) for g in np.unique(group)]
