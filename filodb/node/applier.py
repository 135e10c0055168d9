"""The log applier: a shard's log partition applied to its memstore, from the lowest checkpoint.

Recovery and following the log are one thing: part keys from the column store and checkpoints
from the meta store first, then the log applied record by record, skipping in each record the
samples of groups whose checkpoint already covers it. A crash between any two writes of a
flush costs a longer replay and idempotent rewrites, never a lost or doubled sample.
"""

from __future__ import annotations

import bisect
import logging
from array import array
from collections.abc import Callable

from filodb.errors import BadInputError
from filodb.ingest.base import Log
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.record import RecordBatch, read_record, read_records
from filodb.model.tombstone import Tombstone, is_tombstone
from filodb.node.flush import delete_stored
from filodb.store.base import ColumnStore, MetaStore

log = logging.getLogger(__name__)

READ_COUNT = 64


class LogApplier:
    """Applies a shard's log partition to its memstore from the lowest checkpoint."""

    def __init__(self, ms: TimeSeriesShard, store: ColumnStore | None, meta: MetaStore | None,
                 ingest_log: Log) -> None:  # fmt: skip
        self.ms = ms
        self.ingest_log = ingest_log
        self.store = store
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
        # Bytes of the records applied since ``start``: the running total after each record
        # (16 bytes a record), so the size of the log past a checkpoint is one bisect away.
        self._offsets = array("q", [self.start])
        self._totals = array("q", [0])

    @classmethod
    def without_store(cls, ms: TimeSeriesShard, ingest_log: Log) -> LogApplier:
        """Replay the whole partition (no column store: the log is the only durable copy)."""
        return cls(ms, None, None, ingest_log)

    def apply(self, records: list[tuple[int, bytes]], batch: RecordBatch | None = None) -> None:
        """Feed records (offset, bytes) in order; malformed ones are counted and skipped.
        ``batch``: the records already read (:func:`~filodb.model.record.read_record_groups`:
        every one a sample record the kernel read), used when they are all past every
        checkpoint (following the log)."""
        total = self._totals[-1]
        for off, data in records:
            total += len(data)
            self._offsets.append(off)
            self._totals.append(total)
        if batch is not None and records and records[0][0] > self.covered:
            self._ingest(records, batch)
            return
        pending: list[tuple[int, bytes]] = []  # past every checkpoint: one ingest for all
        for off, data in records:
            if is_tombstone(data):  # in log order: the records before it are applied first
                self._ingest(pending)
                self._delete(off, data)
            elif off <= self.covered:  # recovery: some groups' samples are in the store
                self._ingest(pending)
                try:
                    batch = read_record(data)
                except BadInputError:
                    self._malformed(off)
                else:
                    self._ingest_one(off, batch, self.checkpoints)
            else:
                pending.append((off, data))
        self._ingest(pending)

    def _ingest(self, pending: list[tuple[int, bytes]], batch: RecordBatch | None = None) -> None:
        """Read the records gathered since the last call at once (:func:`read_records`, unless
        ``batch`` holds them read) and ingest them as one batch (a record's fixed costs, paid
        once: with many shards a body makes many small records); malformed ones are counted
        and skipped. A record with a bad part key refuses the whole: then they go one by one,
        and that one is skipped."""
        if not pending:
            return
        last = pending[-1][0]
        if batch is None:
            batch, bad = read_records([d for _, d in pending])
            for i in bad:
                self._count_malformed(pending[i][0])
        try:
            self.ms.ingest(batch, last)
            self.offset = last
        except BadInputError:
            for off, data in pending:
                try:
                    one = read_record(data)
                except BadInputError:
                    self._malformed(off, counted=True)
                else:
                    self._ingest_one(off, one)
        pending.clear()

    def _ingest_one(self, off: int, batch: RecordBatch,
                    flushed: dict[int, int] | None = None) -> None:  # fmt: skip
        try:
            self.ms.ingest(batch, off, flushed)
            self.offset = off
        except BadInputError:
            self._malformed(off)

    def _count_malformed(self, off: int) -> None:
        self.malformed += 1
        log.warning("skipping malformed record %s/%s@%s", self.ms.dataset, self.ms.shard, off)

    def _malformed(self, off: int, counted: bool = False) -> None:
        if not counted:
            self._count_malformed(off)
        self.ms.ingest(RecordBatch.empty(), off)  # the offset moves on
        self.offset = off

    def log_bytes_after(self, offset: int) -> int:
        """Bytes of the records applied past ``offset`` (the shard's lowest checkpoint: what
        the log still holds for it); what is below ``offset`` is forgotten (checkpoints only
        move up)."""
        i = bisect.bisect_right(self._offsets, offset) - 1
        if i > 0:
            del self._offsets[:i]
            del self._totals[:i]
        return self._totals[-1] - (self._totals[0] if i >= 0 else 0)

    def log_bytes_past(self, offset: int) -> int:
        """Bytes of the records applied past ``offset``, forgetting nothing (``offset`` at or
        above the lowest checkpoint: what was spilled)."""
        i = bisect.bisect_right(self._offsets, offset) - 1
        return self._totals[-1] - self._totals[max(i, 0)]

    def _delete(self, off: int, data: bytes) -> None:
        """A tombstone: memory first, then the column store, and only then the offset moves
        past it (a flush prepared in between covers an offset before it, so a crash replays
        it). A store error leaves the offset before it: the shard fails and replays it."""
        try:
            t = Tombstone.from_bytes(data)
        except BadInputError:
            self.malformed += 1
            log.warning(
                "skipping malformed tombstone %s/%s@%s", self.ms.dataset, self.ms.shard, off
            )
        else:
            d = self.ms.delete_series(t.matchers, t.start_ms, t.end_ms)
            if self.store is not None:
                delete_stored(self.store, self.ms.dataset, self.ms.shard, d)
            log.info("deleted %d series and ranges of %d in %s/%s (tombstone @%s)", len(d.whole),
                     len(d.partial), self.ms.dataset, self.ms.shard, off)  # fmt: skip
        self.ms.ingest(RecordBatch.empty(), off)
        self.offset = off

    def replay_to(self, end: int, stop: Callable[[], bool] = lambda: False,
                  progress: Callable[[int], None] | None = None) -> None:  # fmt: skip
        """Replay up to offset ``end`` (the end of the partition when recovery started)."""
        while self.offset < end and not stop():
            got = self.ingest_log.read(self.ms.dataset, {self.ms.shard: self.offset}, READ_COUNT, 0)
            records = got.get(self.ms.shard, [])
            if not records:
                break
            self.apply(records)
            if progress:
                progress(self.offset)
