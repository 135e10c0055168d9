"""One shard's ingestion thread: recover by replaying the log, then follow it.

Recovery replays the shard's log partition from offset 0 up to the end offset seen at start
(the log is the durable copy until the storage engine adds flush and checkpoints), publishing
``Recovery`` with progress, then ``Active``; after that it tails the partition. Offsets and
shard stats are written to the shard map about once a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from filodb.errors import BadInputError
from filodb.ingest.base import Log
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.state import ShardState, ShardStatus

log = logging.getLogger(__name__)

READ_COUNT = 64
BLOCK_MS = 500
PROGRESS_EVERY_S = 1.0


class ShardIngester(threading.Thread):
    """Owns a :class:`TimeSeriesShard` and feeds it from the log."""

    def __init__(
        self, store: ShardMapStore, logbackend: Log, state: ShardState, node: str,
        on_active: Callable[[ShardIngester], None] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(name=f"ingest-{state.dataset}-{state.shard}", daemon=True)
        self.store = store
        self.log = logbackend
        self.node = node
        self.state = state
        self.memstore = TimeSeriesShard(state.dataset, state.shard)
        self.offset = 0
        self.stop_event = threading.Event()
        self.on_active = on_active
        self.malformed_records = 0

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

    def _move(self, to: ShardStatus, progress: int = 0) -> None:
        self.state = self.store.move(self.state, to, self.node, progress)

    def run(self) -> None:
        try:
            self._recover()
            if self.stop_event.is_set():
                return
            if self.on_active:  # the shard's queue is consumed before the map says Active
                self.on_active(self)
            self._move(ShardStatus.ACTIVE)
            self._follow()
        except Exception as e:  # the shard goes to Error; the node keeps running
            log.exception("shard %s/%s failed", self.dataset, self.shard)
            if not self.stop_event.is_set():
                try:
                    self._move(ShardStatus.ERROR)
                except Exception:  # noqa: BLE001 - Redis may be the cause
                    log.exception("cannot record Error for %s/%s: %s", self.dataset, self.shard, e)

    def _consume(self, records: list[tuple[int, bytes]]) -> None:
        for off, data in records:
            try:
                batch = SampleBatch.from_bytes(data)
            except BadInputError:
                self.malformed_records += 1
                log.warning("skipping malformed record %s/%s@%s", self.dataset, self.shard, off)
            else:
                self.memstore.ingest(batch)
            self.offset = off

    def _recover(self) -> None:
        end = self.log.end_offset(self.dataset, self.shard)
        self._move(ShardStatus.RECOVERY, 0)
        last_report = time.monotonic()
        while self.offset < end and not self.stop_event.is_set():
            got = self.log.read(self.dataset, {self.shard: self.offset}, READ_COUNT, 0)
            records = got.get(self.shard, [])
            if not records:
                break
            self._consume(records)
            if time.monotonic() - last_report > PROGRESS_EVERY_S:
                self._move(ShardStatus.RECOVERY, int(100 * self.offset / max(end, 1)))
                self._report()
                last_report = time.monotonic()
        self._report()

    def _follow(self) -> None:
        last_report = 0.0
        while not self.stop_event.is_set():
            got = self.log.read(self.dataset, {self.shard: self.offset}, READ_COUNT, BLOCK_MS)
            self._consume(got.get(self.shard, []))
            if time.monotonic() - last_report > PROGRESS_EVERY_S:
                self._report()
                last_report = time.monotonic()

    def _report(self) -> None:
        self.store.set_progress(
            self.dataset, {self.shard: self.offset}, {self.shard: self.memstore.stats()}
        )
