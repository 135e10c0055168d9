"""One shard of a node: recover from the column store and the log, then follow it.

Recovery (:class:`~filodb.node.applier.LogApplier`) loads the shard's part keys and checkpoints
and replays its log partition from the lowest checkpoint up to the end offset seen at start,
publishing ``Recovery`` with progress, then ``Active``. Recovery runs on the node's bounded
recovery pool (a thread only while it replays); after that the node's one
:class:`~filodb.node.reader.NodeReader` reads the partition together with every other shard's
and hands this shard its records (:meth:`ShardIngester.apply`), and writes its offset and stats
to the shard map. Flushes run as tasks on the shard's queue (see :mod:`filodb.node.flush`).

A :class:`ShardIngester` is not a thread, but keeps the small part of a thread's interface
the node uses: :meth:`start`, :meth:`stop`, :meth:`join`, :meth:`is_alive` (true from
:meth:`start` until recovery and following have ended).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from filodb.config import Config
from filodb.errors import FencedError
from filodb.ingest.base import Log
from filodb.memstore.decoded import DecodedChunks
from filodb.memstore.shard import BULK_EXTRA_SAMPLES, TimeSeriesShard
from filodb.model.record import RecordBatch
from filodb.node.applier import LogApplier
from filodb.node.flush import flush_groups, make_pager
from filodb.node.reader import NodeReader, RateLimitedLog
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.state import ShardState, ShardStatus
from filodb.store.base import Stores

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0
_LIMITER = RateLimitedLog()  # failures of one shard: the traceback once a minute


def _nothing() -> None:
    pass


class ShardIngester:
    """Owns a :class:`TimeSeriesShard` and feeds it from the log (through ``reader``).

    ``recovery`` runs the recovery (the node's bounded pool; None: a thread of its own);
    ``prepare`` runs first there (the dataset's column store and log partitions)."""

    def __init__(
        self, shard_map: ShardMapStore, ingest_log: Log, state: ShardState, node: str,
        stores: Stores | None = None, cfg: Config | None = None, *,
        reader: NodeReader, recovery: Executor | None = None,
        prepare: Callable[[], None] | None = None, num_shards: int = 1,
        decoded: DecodedChunks | None = None, on_change: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        cfg = cfg or Config()
        self.name = f"ingest-{state.dataset}-{state.shard}"
        self.shard_map = shard_map
        self.ingest_log = ingest_log
        self.node = node
        self.state = state
        self.stores = stores
        self.memstore = TimeSeriesShard(
            state.dataset, state.shard, max_chunk_samples=cfg.max_chunk_samples,
            num_groups=cfg.flush_groups, memory_budget=cfg.memory_budget_mb << 20,
            pager=make_pager(stores.column, state.dataset, state.shard) if stores else None,
            page_cache_bytes=cfg.page_cache_mb << 20, ooo_window_ms=round(cfg.ooo_window * 1000),
            max_exemplars=-(-cfg.max_exemplars // max(1, num_shards)),  # the dataset's, split
            decode_cache_bytes=cfg.decode_cache_mb << 20, decoded=decoded,
            head_samples=cfg.head_samples,
            bulk_extra=BULK_EXTRA_SAMPLES // max(1, num_shards),  # the dataset's, split
        )  # fmt: skip
        self.offset = 0
        self.stop_event = threading.Event()
        self.applier: LogApplier | None = None
        self.flush_lock = threading.Lock()  # one flush of this shard at a time
        self.recovered = False  # replayed the log up to where it stood at start
        self.reader = reader
        self._recovery = recovery
        self._prepare = prepare  # the dataset's store and log set up (once per dataset)
        self._started = False
        self._running = False  # recovery has begun (a stop before that ends it at once)
        self._run_lock = threading.Lock()
        self._done = threading.Event()
        # called after every change of what the node reads of an ingester each tick (status,
        # active, alive): the node then reads them again, and not while nothing changed
        self._on_change = on_change or _nothing
        self._backlog: tuple[tuple[int, int] | None, int] = (None, 0)  # see log_backlog

    # --- the thread-like interface ----------------------------------------------------------
    def start(self) -> None:
        self._started = True
        self._on_change()
        if self._recovery is not None:
            self._recovery.submit(self.run)
        else:
            threading.Thread(target=self.run, name=self.name, daemon=True).start()

    def is_alive(self) -> bool:
        return self._started and not self._done.is_set()

    def join(self, timeout: float | None = None) -> None:
        if self._started:
            self._done.wait(timeout)

    def finished(self) -> None:
        """Recovery and following are over (called by the recovery or the reader)."""
        self._done.set()
        self._on_change()

    @property
    def malformed_records(self) -> int:
        return self.applier.malformed if self.applier else 0

    @property
    def dataset(self) -> str:
        return self.state.dataset

    @property
    def shard(self) -> int:
        return self.state.shard

    @property
    def active(self) -> bool:
        return self.state.status is ShardStatus.ACTIVE and not self.stop_event.is_set()

    def stop(self) -> None:
        self.stop_event.set()
        with self._run_lock:
            if not self._running:  # still queued for recovery: it will not run
                self._done.set()
        self._on_change()

    def _move(self, to: ShardStatus, progress: int = 0, error: str = "") -> None:
        """Record a status change, only while the map still names this node (fencing)."""
        self.state = self.shard_map.move(self.state, to, self.node, progress, expect_node=self.node,
                                         error=error)  # fmt: skip
        self._on_change()

    def run(self) -> None:
        """Recover, publish Active, hand the shard to the reader (on the recovery pool)."""
        with self._run_lock:
            if self.stop_event.is_set():
                self.finished()
                return
            self._running = True
        try:
            if self._prepare is not None:
                self._prepare()
            self._recover()
            if self.stop_event.is_set():
                self.finished()
                return
            self._move(ShardStatus.ACTIVE)
        except Exception as e:  # noqa: BLE001 - the shard goes to Error; the node keeps running
            try:
                self.fail(e)
            finally:
                self.finished()
            return
        self.reader.follow(self)  # the reader marks it finished once stopped or failed

    def fail(self, e: Exception) -> None:
        """The shard cannot go on: Error with the reason (fenced: stop quietly)."""
        if isinstance(e, FencedError):  # another node owns the shard now
            log.warning("shard %s/%s: %s", self.dataset, self.shard, e)
            self.stop_event.set()
            self._on_change()
            return
        if _LIMITER.allow((self.dataset, self.shard, type(e))):
            log.error("shard %s/%s failed", self.dataset, self.shard, exc_info=e)
        if not self.stop_event.is_set():
            # Error first: a node that saw this ingester stopped while the map still said
            # Active started the shard again at once (and its Active overwrote the Error)
            try:
                self._move(ShardStatus.ERROR, error=f"{type(e).__name__}: {e}")
            except Exception as e2:  # noqa: BLE001 - Redis may be the cause
                if _LIMITER.allow((self.dataset, self.shard, "error-status")):
                    log.warning("cannot record Error for %s/%s: %s", self.dataset, self.shard, e2)
            self.stop_event.set()
            self._on_change()

    def apply(self, records: list[tuple[int, bytes]], batch: RecordBatch | None = None) -> None:
        """Apply records read for this shard (by the node's reader; ``batch``: them read, see
        :meth:`LogApplier.apply`)."""
        assert self.applier is not None
        self.applier.apply(records, batch)
        self.offset = self.applier.offset

    def log_backlog(self) -> int:
        """Bytes of the shard's log past its lowest checkpoint (what the log must keep);
        computed again only when the shard applied records or its memstore changed (the node
        asks every tick for every shard)."""
        if self.applier is None or not self.active:
            return 0
        at = (self.applier.offset, self.memstore.changes)
        if self._backlog[0] == at:
            return self._backlog[1]
        cps = self.memstore.checkpoints
        n = self.applier.log_bytes_after(
            min((cps.get(g, 0) for g in range(self.memstore.num_groups)), default=0)
        )
        self._backlog = (at, n)
        return n

    def memory_backlog(self) -> int:
        """Bytes of the shard's applied log that a log holding records in memory (Redis)
        still holds: past the lowest checkpoint and past what was spilled. What a spill
        (:meth:`~filodb.node.runtime.NodeRuntime.spill`) would move."""
        kept = self.log_backlog()
        if kept == 0 or self.applier is None:
            return kept
        spilled = self.ingest_log.spilled.get((self.dataset, self.shard), 0)
        return min(kept, self.applier.log_bytes_past(spilled)) if spilled else kept

    def lowest_group(self) -> int:
        """The flush group with the lowest checkpoint: its flush lets the log be trimmed."""
        return self.groups_by_checkpoint()[0]

    def groups_by_checkpoint(self) -> list[int]:
        """The flush groups, lowest checkpoint first (the order that trims the log soonest)."""
        cps = self.memstore.checkpoints
        return sorted(range(self.memstore.num_groups), key=lambda g: cps.get(g, 0))

    def _recover(self) -> None:
        self._move(ShardStatus.RECOVERY, 0)
        if self.stores is not None:
            self.applier = LogApplier(
                self.memstore, self.stores.column, self.stores.meta, self.ingest_log
            )
        else:
            self.applier = LogApplier.without_store(self.memstore, self.ingest_log)
        self.offset = self.applier.offset
        end = self.ingest_log.end_offset(self.dataset, self.shard)
        begin = self.offset
        last_report = [time.monotonic()]

        def progress(off: int) -> None:
            self.offset = off
            if time.monotonic() - last_report[0] > PROGRESS_EVERY_S:
                self._move(ShardStatus.RECOVERY, int(100 * (off - begin) / max(end - begin, 1)))
                self._report()
                last_report[0] = time.monotonic()

        self.applier.replay_to(end, self.stop_event.is_set, progress)
        self.offset = self.applier.offset
        self.recovered = not self.stop_event.is_set()
        self._report()

    def flush(self, group: int | Sequence[int], force: bool = False,
              close_heads: bool = True) -> dict | None:  # fmt: skip
        """Flush one group, or several in one write (run by the flush task on the shard's
        queue); None when not Active.

        ``force`` flushes a stopped shard too (on release, after the thread ended);
        ``close_heads`` False writes the open heads provisionally (a flush for the log's size)."""
        if self.stores is None or not (self.active or (force and self.recovered)):
            return None
        groups = [group] if isinstance(group, int) else list(group)
        with self.flush_lock:
            return flush_groups(self.memstore, self.stores.column, self.stores.meta, groups,
                                self.ingest_log, close_heads)  # fmt: skip

    def _report(self) -> None:
        self.shard_map.set_progress(
            self.dataset, {self.shard: self.offset}, {self.shard: self.memstore.stats()}
        )
