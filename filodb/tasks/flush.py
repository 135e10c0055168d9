"""Flush and recovery: where a shard's memstore meets the column store, the meta store and the log.

``flush_group`` closes one flush group's write buffers, writes its chunks, then its part keys,
then its checkpoint (the log offset the flush covers), and only then lets the memstore evict
those chunks; the log is trimmed up to the shard's lowest checkpoint. ``recover`` is the way
back after a restart or a move: part keys from the store, checkpoints from the meta store,
then the log replayed from the lowest checkpoint, skipping in each record the samples of
groups whose checkpoint already covers it. A crash between any two writes costs a longer
replay and idempotent rewrites (chunk ids are start times), never a lost or doubled sample.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from filodb.errors import BadInputError
from filodb.ingest.base import Log
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.store.base import ChunkSet, ColumnStore, MetaStore, PartKeyRecord

log = logging.getLogger(__name__)

READ_COUNT = 64


def make_pager(store: ColumnStore, dataset: str, shard: int) -> Callable[[list[bytes], int, int], Any]:
    """The memstore's window on the column store, for data it no longer holds."""

    def pager(part_keys: list[bytes], start_ms: int, end_ms: int) -> list[ChunkSet]:
        return store.read_chunks(dataset, shard, part_keys, start_ms, end_ms)

    return pager


def flush_group(ms: TimeSeriesShard, store: ColumnStore, meta: MetaStore, group: int,
                logbackend: Log | None = None) -> dict[str, Any]:  # fmt: skip
    """Flush one group of a shard; returns what was written."""
    t0 = time.perf_counter()
    fd = ms.prepare_flush(group)
    chunks = [ChunkSet(pk, c.chunk_id, c.start, c.end, c.count, c.vectors) for pk, c in fd.chunks]
    pks = [PartKeyRecord(pk, start, end) for pk, start, end in fd.part_keys]
    store.write_flush(meta, ms.dataset, ms.shard, group, chunks, pks, fd.offset)
    ms.commit_flush(fd)
    if logbackend is not None:
        lowest = min((ms.checkpoints.get(g, 0) for g in range(ms.num_groups)), default=0)
        if lowest > 0:
            logbackend.trim(ms.dataset, ms.shard, lowest)
    return {"group": group, "offset": fd.offset, "chunks": len(chunks), "part_keys": len(pks),
            "bytes": sum(c.nbytes for c in chunks), "seconds": time.perf_counter() - t0}  # fmt: skip


def flush_all(ms: TimeSeriesShard, store: ColumnStore, meta: MetaStore, logbackend: Log | None = None) -> None:
    for g in range(ms.num_groups):
        flush_group(ms, store, meta, g, logbackend)


class Replayer:
    """Replays a shard's log partition into its memstore from the lowest checkpoint."""

    def __init__(self, ms: TimeSeriesShard, store: ColumnStore | None, meta: MetaStore | None,
                 logbackend: Log) -> None:  # fmt: skip
        self.ms = ms
        self.log = logbackend
        if store is not None:
            ms.load_part_keys(store.scan_part_keys(ms.dataset, ms.shard))
        self.checkpoints = meta.read_checkpoints(ms.dataset, ms.shard) if meta is not None else {}
        ms.checkpoints.update(self.checkpoints)
        groups = range(ms.num_groups)
        self.start = min((self.checkpoints.get(g, 0) for g in groups), default=0)
        self.covered = max(self.checkpoints.values(), default=0)  # past it, nothing is skipped
        self.offset = self.start
        ms.offset = self.start
        self.malformed = 0

    @classmethod
    def without_store(cls, ms: TimeSeriesShard, logbackend: Log) -> Replayer:
        """Replay the whole partition (no column store: the log is the only durable copy)."""
        return cls(ms, None, None, logbackend)

    def apply(self, records: list[tuple[int, bytes]]) -> None:
        """Feed records (offset, bytes) in order; malformed ones are counted and skipped."""
        for off, data in records:
            try:
                batch = SampleBatch.from_bytes(data)
            except BadInputError:
                self.malformed += 1
                log.warning("skipping malformed record %s/%s@%s", self.ms.dataset, self.ms.shard, off)
                self.ms.ingest(SampleBatch.empty(), off)  # the offset moves on
            else:
                flushed = self.checkpoints if off <= self.covered else None
                self.ms.ingest(batch, off, flushed)
            self.offset = off

    def replay_to(self, end: int, stop: Callable[[], bool] = lambda: False,
                  progress: Callable[[int], None] | None = None) -> None:  # fmt: skip
        """Replay up to offset ``end`` (the end of the partition when recovery started)."""
        while self.offset < end and not stop():
            got = self.log.read(self.ms.dataset, {self.ms.shard: self.offset}, READ_COUNT, 0)
            records = got.get(self.ms.shard, [])
            if not records:
                break
            self.apply(records)
            if progress:
                progress(self.offset)
