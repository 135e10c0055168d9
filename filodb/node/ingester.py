"""One shard's ingestion thread: recover from the column store and the log, then follow it.

Recovery (:class:`~filodb.node.applier.LogApplier`) loads the shard's part keys and checkpoints
and replays its log partition from the lowest checkpoint up to the end offset seen at start,
publishing ``Recovery`` with progress, then ``Active``; after that it tails the partition.
Flushes run as tasks on the shard's queue (see :mod:`filodb.node.flush`). Offsets and shard
stats are written to the shard map about once a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from filodb.config import Config
from filodb.errors import FencedError
from filodb.ingest.base import Log
from filodb.memstore.shard import TimeSeriesShard
from filodb.node.applier import LogApplier
from filodb.node.flush import flush_group, make_pager
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.state import ShardState, ShardStatus
from filodb.store.base import Stores

log = logging.getLogger(__name__)

READ_COUNT = 64
BLOCK_MS = 500
PROGRESS_EVERY_S = 1.0


class ShardIngester(threading.Thread):
    """Owns a :class:`TimeSeriesShard` and feeds it from the log."""

    def __init__(
        self, shard_map: ShardMapStore, ingest_log: Log, state: ShardState, node: str,
        on_active: Callable[[ShardIngester], None] | None = None,
        stores: Stores | None = None, cfg: Config | None = None,
    ) -> None:  # fmt: skip
        super().__init__(name=f"ingest-{state.dataset}-{state.shard}", daemon=True)
        cfg = cfg or Config()
        self.shard_map = shard_map
        self.ingest_log = ingest_log
        self.node = node
        self.state = state
        self.stores = stores
        self.memstore = TimeSeriesShard(
            state.dataset, state.shard, max_chunk_samples=cfg.max_chunk_samples,
            num_groups=cfg.flush_groups, memory_budget=cfg.memory_budget_mb << 20,
            pager=make_pager(stores.column, state.dataset, state.shard) if stores else None,
            page_cache_bytes=cfg.page_cache_mb << 20,
        )  # fmt: skip
        self.offset = 0
        self.stop_event = threading.Event()
        self.on_active = on_active
        self.applier: LogApplier | None = None
        self.flush_lock = threading.Lock()  # one flush of this shard at a time
        self.recovered = False  # replayed the log up to where it stood at start

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

    def _move(self, to: ShardStatus, progress: int = 0, error: str = "") -> None:
        """Record a status change, only while the map still names this node (fencing)."""
        self.state = self.shard_map.move(self.state, to, self.node, progress, expect_node=self.node,
                                         error=error)  # fmt: skip

    def run(self) -> None:
        try:
            self._recover()
            if self.stop_event.is_set():
                return
            if self.on_active:  # the shard's queue is consumed before the map says Active
                self.on_active(self)
            self._move(ShardStatus.ACTIVE)
            self._follow()
        except FencedError as e:  # another node owns the shard now: stop quietly
            log.warning("shard %s/%s: %s", self.dataset, self.shard, e)
            self.stop_event.set()
        except Exception as e:  # the shard goes to Error; the node keeps running
            log.exception("shard %s/%s failed", self.dataset, self.shard)
            if not self.stop_event.is_set():
                try:
                    self._move(ShardStatus.ERROR, error=f"{type(e).__name__}: {e}")
                except Exception:  # noqa: BLE001 - Redis may be the cause
                    log.exception("cannot record Error for %s/%s: %s", self.dataset, self.shard, e)

    def _consume(self, records: list[tuple[int, bytes]]) -> None:
        assert self.applier is not None
        self.applier.apply(records)
        self.offset = self.applier.offset

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

    def flush(self, group: int, force: bool = False) -> dict | None:
        """Flush one group (run by the flush task on the shard's queue); None when not Active.

        ``force`` flushes a stopped shard too (on release, after the thread ended)."""
        if self.stores is None or not (self.active or (force and self.recovered)):
            return None
        with self.flush_lock:
            return flush_group(
                self.memstore, self.stores.column, self.stores.meta, group, self.ingest_log
            )

    def _follow(self) -> None:
        last_report = 0.0
        while not self.stop_event.is_set():
            got = self.ingest_log.read(
                self.dataset, {self.shard: self.offset}, READ_COUNT, BLOCK_MS
            )
            self._consume(got.get(self.shard, []))
            if time.monotonic() - last_report > PROGRESS_EVERY_S:
                self._report()
                last_report = time.monotonic()

    def _report(self) -> None:
        self.shard_map.set_progress(
            self.dataset, {self.shard: self.offset}, {self.shard: self.memstore.stats()}
        )
