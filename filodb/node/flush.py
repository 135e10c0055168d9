"""Flush: where a shard's memstore meets the column store, the meta store and the log.

``flush_group`` closes one flush group's write buffers, writes its chunks, then its part keys,
then its checkpoint (the log offset the flush covers), and only then lets the memstore evict
those chunks; the log is trimmed up to the shard's lowest checkpoint. The way back after a
restart or a move is :class:`~filodb.node.applier.LogApplier`. A crash between any two writes costs a longer
replay and idempotent rewrites (chunk ids are start times), never a lost or doubled sample.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import chain
from typing import Any

from filodb.ingest.base import Log
from filodb.memstore.chunks import chunk_from_vectors, trim_chunk
from filodb.memstore.shard import Deletion, TimeSeriesShard
from filodb.store.base import ChunkSet, ColumnStore, MetaStore, PartKeyRecord

log = logging.getLogger(__name__)


def make_pager(
    store: ColumnStore, dataset: str, shard: int
) -> Callable[[list[bytes], int, int], Any]:
    """The memstore's window on the column store, for data it no longer holds."""

    def pager(part_keys: list[bytes], start_ms: int, end_ms: int) -> list[ChunkSet]:
        return store.read_chunks(dataset, shard, part_keys, start_ms, end_ms)

    return pager


def flush_group(ms: TimeSeriesShard, store: ColumnStore, meta: MetaStore, group: int,
                ingest_log: Log | None = None, close_heads: bool = True) -> dict[str, Any]:  # fmt: skip
    """Flush one group of a shard; returns what was written. ``close_heads`` False: a flush
    for the log's size, which writes the open heads as provisional chunks instead of closing
    them (see :meth:`TimeSeriesShard.prepare_flush`)."""
    t0 = time.perf_counter()
    fd = ms.prepare_flush(group, close_heads)
    chunks = [ChunkSet(pk, c.chunk_id, c.start, c.end, c.count, c.vectors)
              for pk, c in chain(fd.chunks, fd.heads)]  # fmt: skip
    pks = [PartKeyRecord(pk, start, end) for pk, start, end in fd.part_keys]
    store.write_flush(meta, ms.dataset, ms.shard, group, chunks, pks, fd.offset)
    # A deletion applied while this flush was being written may have found the store without
    # these chunks: delete again, so what it deleted does not come back.
    redo = ms.deletions_since(fd.deletes)
    if redo is None:
        log.warning("flush of %s/%s outlived the deletions kept; deleting again", ms.dataset,
                    ms.shard)  # fmt: skip
        redo = list(ms.deletes)
    for d in redo:
        delete_stored(store, ms.dataset, ms.shard, d)
    ms.commit_flush(fd)
    if ingest_log is not None:
        lowest = min((ms.checkpoints.get(g, 0) for g in range(ms.num_groups)), default=0)
        if lowest > 0:
            ingest_log.trim(ms.dataset, ms.shard, lowest)
    return {"group": group, "offset": fd.offset, "chunks": len(fd.chunks), "heads": len(fd.heads),
            "part_keys": len(pks),
            "bytes": sum(c.nbytes for c in chunks), "seconds": time.perf_counter() - t0}  # fmt: skip


def delete_stored(store: ColumnStore, dataset: str, shard: int, d: Deletion) -> None:
    """Carry a memstore deletion over to the column store (idempotent)."""
    if d.whole:
        store.delete_series(dataset, shard, d.whole)
    if d.partial:
        store.delete_range(dataset, shard, d.partial, d.start_ms, d.end_ms, _trim)


def _trim(c: ChunkSet, start_ms: int, end_ms: int) -> ChunkSet | None:
    t = trim_chunk(chunk_from_vectors(c.chunk_id, c.start_ms, c.end_ms, c.num_rows, c.vectors),
                   start_ms, end_ms)  # fmt: skip
    return None if t is None else ChunkSet(c.part_key, c.chunk_id, t.start, t.end, t.count,
                                           t.vectors)  # fmt: skip


def flush_all(
    ms: TimeSeriesShard, store: ColumnStore, meta: MetaStore, ingest_log: Log | None = None
) -> None:
    for g in range(ms.num_groups):
        flush_group(ms, store, meta, g, ingest_log)
