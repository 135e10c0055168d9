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
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

from filodb.ingest.base import Log
from filodb.memstore.chunks import chunk_from_vectors, trim_chunk
from filodb.memstore.shard import Deletion, FlushData, TimeSeriesShard
from filodb.store.base import ChunkSet, ColumnStore, GroupFlush, MetaStore, PartKeyRecord

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
    return flush_groups(ms, store, meta, [group], ingest_log, close_heads)


def flush_groups(ms: TimeSeriesShard, store: ColumnStore, meta: MetaStore,
                 groups: Sequence[int], ingest_log: Log | None = None,
                 close_heads: bool = True) -> dict[str, Any]:  # fmt: skip
    """Flush several groups of a shard as :func:`flush_group` does one, written in one
    :meth:`~filodb.store.base.ColumnStore.write_flushes` (one transaction and one commit on
    SQLite) and the log trimmed once: a flush for the log's size takes every group of the
    shard, and one commit (an fsync) a group had been a third of its cost."""
    t0 = time.perf_counter()
    fds = [ms.prepare_flush(g, close_heads) for g in groups]
    flushes = [GroupFlush(fd.group, _chunk_sets(fd), _part_key_records(fd), fd.offset)
               for fd in fds]  # fmt: skip
    store.write_flushes(meta, ms.dataset, ms.shard, flushes)
    # A deletion applied while this flush was being written may have found the store without
    # these chunks: delete again, so what it deleted does not come back.
    redo = ms.deletions_since(min(fd.deletes for fd in fds))
    if redo is None:
        log.warning("flush of %s/%s outlived the deletions kept; deleting again", ms.dataset,
                    ms.shard)  # fmt: skip
        redo = list(ms.deletes)
    for d in redo:
        delete_stored(store, ms.dataset, ms.shard, d)
    for fd in fds:
        ms.commit_flush(fd)
    if ingest_log is not None:
        lowest = min((ms.checkpoints.get(g, 0) for g in range(ms.num_groups)), default=0)
        if lowest > 0:
            ingest_log.trim(ms.dataset, ms.shard, lowest)
    out: dict[str, Any] = {"group": groups[0]} if len(groups) == 1 else {"groups": list(groups)}
    out.update(offset=max(fd.offset for fd in fds),
               chunks=sum(len(fd.chunks) for fd in fds), heads=sum(len(fd.heads) for fd in fds),
               part_keys=sum(len(f.part_keys) for f in flushes),
               bytes=sum(c.nbytes for fd in fds for _, c in chain(fd.chunks, fd.heads)),
               seconds=time.perf_counter() - t0)  # fmt: skip
    return out


def _chunk_sets(fd: FlushData) -> list[ChunkSet]:
    """The chunks a prepared flush writes, as the store takes them (the memstore's chunks
    are valid by construction: not checked again)."""
    made = ChunkSet.from_store
    return [made(pk, c.chunk_id, c.start, c.end, c.count, c.vectors)
            for pk, c in chain(fd.chunks, fd.heads)]  # fmt: skip


def _part_key_records(fd: FlushData) -> list[PartKeyRecord]:
    """The part-key records of a prepared flush (ints by construction; a first sample past
    the last, which a retention cut could leave, is written as the last)."""
    made = PartKeyRecord.unchecked
    return [made(pk, min(start, end), end) for pk, start, end in fd.part_keys]


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
