"""The node's log reader: one thread follows the log for every Active shard of the node.

A shard costs memory, not a thread and a connection: each pass is one
:meth:`~filodb.ingest.base.Log.read_many` over the partitions of every shard the node follows
(one XREAD on Redis, one consumer on Kafka), and each shard's records go to its
:class:`~filodb.node.applier.LogApplier` through :meth:`ShardIngester.apply
<filodb.node.ingester.ShardIngester.apply>`. Offsets and shard stats go to the shard map in one
round trip about once a second, for the shards whose offset moved (and every
:data:`REFRESH_S` for the others, whose stats may still change through flushes).

A record a shard cannot apply sends that shard to Error; the others carry on. A read that fails
is tried again after a pause when the log itself is unreachable (fencing stops the shards if
that lasts); when the log answers, each partition is read alone once, so the partition that
fails sends only its own shard to Error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from filodb.ingest.base import Log
from filodb.model.record import RecordBatch, read_record_groups
from filodb.shards.redis_map import ShardMapStore

log = logging.getLogger(__name__)

Key = tuple[str, int]

READ_COUNT = 64  # records per partition per read
BLOCK_MS = 500  # how long an idle read waits for records
# After a read that found records (and no partition with a full read, i.e. no backlog), the
# next read waits until this long after that one began: under load a read then brings the
# records of several bodies, each shard applies them as one batch (a record's fixed costs
# paid once) and there are fewer reads (~70 us of CPU each). Adds at most this to the time
# until a sample is queryable; an idle log is read at once.
GATHER_S = 0.01
# A pass over hundreds of shards has a fixed cost a shard (an ingest call, ~15-20 us) even when
# each has one small record; so reads begin at least GATHER_GROWTH times the pass's fixed
# costs apart (READ_FIXED_S a read, SHARD_FIXED_S a shard that had records; up to
# GATHER_MAX_S): the reader then spends at most about a quarter of its time on those fixed
# costs (the worker shares the cores with the door: what it saves goes to the door), each
# shard's batch grows with the load instead, and a sample waits at most a few passes longer
# (bench/log_apply.py, spread 8 over 256 shards, ms of CPU per body by records per shard per
# read: 1: 8.4, 2: 5.4, 4: 3.0, 8: 1.7). The fixed costs, not the pass's whole length: a pass
# long because it applied many samples has amortised them already, and spacing reads by its
# length held a worker of 4 shards at a quarter of its time while the Influx door wrote a
# million samples a second (it fell ~0.6 s behind; docs/architecture.md, "Ingestion requests
# served by one thread").
GATHER_GROWTH = 4.0
GATHER_MAX_S = 0.1
READ_FIXED_S = 70e-6
SHARD_FIXED_S = 20e-6
PROGRESS_EVERY_S = 1.0
REFRESH_S = 30.0  # stats of a shard whose offset did not move are rewritten this often
RETRY_S = 1.0  # pause after a failed read
LOG_EVERY_S = 60.0


class StatsSource(Protocol):
    """A shard's memstore, as the reader reports it (:class:`~filodb.memstore.shard.TimeSeriesShard`)."""

    @property
    def changes(self) -> int: ...  # moves whenever stats() may have changed
    def stats(self) -> dict[str, Any]: ...


class ShardIngester(Protocol):
    """What the reader needs of a shard (:class:`filodb.node.ingester.ShardIngester`)."""

    @property
    def dataset(self) -> str: ...
    @property
    def shard(self) -> int: ...

    offset: int
    stop_event: threading.Event

    @property
    def memstore(self) -> StatsSource: ...
    def apply(self, records: list[tuple[int, bytes]], batch: RecordBatch | None = None
              ) -> None: ...  # fmt: skip
    def fail(self, e: Exception) -> None: ...
    def finished(self) -> None: ...


class RateLimitedLog:
    """Warnings keyed by what they are about, each key at most once per ``every`` seconds."""

    def __init__(self, every: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every = every
        self.clock = clock
        self._last: dict[object, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: object) -> bool:
        now = self.clock()
        with self._lock:
            if now - self._last.get(key, float("-inf")) < self.every:
                return False
            self._last[key] = now
            if len(self._last) > 100_000:  # keys of long-gone shards
                self._last = {k: t for k, t in self._last.items() if now - t < self.every}
            return True


class NodeReader:
    """Reads the log for every shard handed to :meth:`follow`, on one thread."""

    def __init__(self, ingest_log: Log, shard_map: ShardMapStore, *, count: int = READ_COUNT,
                 block_ms: int = BLOCK_MS, limiter: RateLimitedLog | None = None,
                 gather_s: float = GATHER_S, clock: Callable[[], float] = time.monotonic,
                 pause: Callable[[float], object] | None = None) -> None:  # fmt: skip
        self.ingest_log = ingest_log
        self.shard_map = shard_map
        self.count = count
        self.block_ms = block_ms
        self._fixed_s = READ_FIXED_S  # the last pass's fixed costs (see GATHER_GROWTH)
        self.gather_s = gather_s
        self.clock = clock
        self.limiter = limiter or RateLimitedLog()
        self._followers: dict[Key, ShardIngester] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pause = pause or self._stop.wait  # a stop ends a pause at once
        # offset, time and the memstore's changes count at the last report
        self._reported: dict[Key, tuple[int, float, int]] = {}
        self._last_report = 0.0
        self.reads = 0  # read_many calls (for tests and metrics)
        self.read_errors = 0

    # --- membership -----------------------------------------------------------------------
    def follow(self, ing: ShardIngester) -> None:
        """Follow ``ing``'s partition from ``ing.offset`` until ``ing`` is stopped; then mark it
        finished (:meth:`ShardIngester.finished`)."""
        with self._lock:
            if self._stop.is_set():
                ing.finished()
                return
            self._followers[(ing.dataset, ing.shard)] = ing
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="log-reader", daemon=True)
                self._thread.start()
        self._wake.set()

    def following(self) -> list[Key]:
        with self._lock:
            return list(self._followers)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; every shard still followed is marked finished."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            th = self._thread
        if th is not None:
            th.join(timeout)
        with self._lock:
            left = list(self._followers.values())
            self._followers.clear()
        for ing in left:
            ing.finished()

    # --- the loop -------------------------------------------------------------------------
    def _live(self) -> dict[Key, ShardIngester]:
        """The followers still running; stopped ones leave (and are finished) here."""
        with self._lock:
            gone = [k for k, ing in self._followers.items() if ing.stop_event.is_set()]
            left = [self._followers.pop(k) for k in gone]
            live = dict(self._followers)
        for k, ing in zip(gone, left, strict=True):
            self._reported.pop(k, None)
            ing.finished()
        return live

    def _loop(self) -> None:
        while not self._stop.is_set():
            live = self._live()
            if not live:
                self._wake.wait(self.block_ms / 1000)
                self._wake.clear()
                continue
            began = self.clock()
            try:
                gather = self.pass_once(live)
            except Exception as e:  # noqa: BLE001 - the reader never dies; the shards need it
                if self.limiter.allow(("pass", type(e))):
                    log.exception("log reader pass failed: %s", e)
                self._stop.wait(RETRY_S)
                continue
            took = self.clock() - began
            rest = max(self.gather_s, min(GATHER_GROWTH * self._fixed_s, GATHER_MAX_S)) - took
            if gather and rest > 0:
                self._pause(rest)

    def pass_once(self, live: dict[Key, ShardIngester] | None = None) -> bool:
        """One read for every live follower, applied; then progress when it is due. True
        when the read found records and no partition had more than it read (see
        :data:`GATHER_S`)."""
        live = self._live() if live is None else live
        got = self._read(live)
        todo = [(key, ing, records) for key, records in got.items()
                if records and (ing := live.get(key)) is not None and not ing.stop_event.is_set()]  # fmt: skip
        # every shard's records read by one kernel call (a shard's may be a small record or
        # two: the call's fixed costs are paid once a read, not once a shard)
        batches = read_record_groups([[d for _, d in records] for _, _, records in todo])
        self._fixed_s = READ_FIXED_S + SHARD_FIXED_S * len(todo)
        for (key, ing, records), batch in zip(todo, batches, strict=True):
            if ing.stop_event.is_set():
                continue
            try:
                ing.apply(records, batch)
            except Exception as e:  # noqa: BLE001 - this shard goes to Error, the rest go on
                self._drop(key, ing, e)
        now = time.monotonic()
        if now - self._last_report >= PROGRESS_EVERY_S:
            self._last_report = now
            self.report(live, now)
        return bool(got) and all(len(r) < self.count for r in got.values())

    def _read(self, live: dict[Key, ShardIngester]) -> dict[Key, list[tuple[int, bytes]]]:
        positions = {k: ing.offset for k, ing in live.items() if not ing.stop_event.is_set()}
        if not positions:
            return {}
        self.reads += 1
        try:
            return self.ingest_log.read_many(positions, self.count, self.block_ms)
        except Exception as e:  # noqa: BLE001 - the log, or one partition of it
            self.read_errors += 1
            if self.limiter.allow(("read", type(e))):
                log.warning("log read over %d shards failed: %s: %s", len(positions),
                            type(e).__name__, e)  # fmt: skip
            return self._read_each(live, positions)

    def _read_each(self, live: dict[Key, ShardIngester],
                   positions: dict[Key, int]) -> dict[Key, list[tuple[int, bytes]]]:  # fmt: skip
        """After a failed read: is the log there at all? Then read partition by partition and
        send the shards whose own read fails to Error."""
        ds, shard = next(iter(positions))
        try:
            self.ingest_log.end_offset(ds, shard)
        except Exception:  # noqa: BLE001 - the log is unreachable: pause, try again
            self._stop.wait(RETRY_S)
            return {}
        out: dict[Key, list[tuple[int, bytes]]] = {}
        for key, pos in positions.items():
            try:
                got = self.ingest_log.read(key[0], {key[1]: pos}, self.count, 0)
            except Exception as e:  # noqa: BLE001 - this partition cannot be read
                self._drop(key, live[key], e)
                continue
            if got.get(key[1]):
                out[key] = got[key[1]]
        return out

    def _drop(self, key: Key, ing: ShardIngester, e: Exception) -> None:
        with self._lock:
            if self._followers.get(key) is ing:
                del self._followers[key]
        self._reported.pop(key, None)
        try:
            ing.fail(e)
        except Exception:  # noqa: BLE001 - recording the failure failed: the shard still ends
            log.exception("shard %s/%s: recording its failure failed", *key)
        finally:
            ing.finished()

    def report(self, live: dict[Key, ShardIngester], now: float | None = None) -> None:
        """Offsets and stats of the shards whose offset moved, and every :data:`REFRESH_S` of
        those whose memstore changed otherwise (a flush, an eviction, retention, paging), in
        one round trip. An idle shard's stats are not recomputed."""
        now = time.monotonic() if now is None else now
        offsets: dict[Key, int] = {}
        stats: dict[Key, dict] = {}
        for key, ing in live.items():
            off = ing.offset
            last = self._reported.get(key)
            if last is not None and last[0] == off:
                if now - last[1] < REFRESH_S:
                    continue
                if ing.memstore.changes == last[2]:
                    self._reported[key] = (off, now, last[2])
                    continue
            changes = ing.memstore.changes  # before stats(): a change during it shows next time
            offsets[key] = off
            stats[key] = ing.memstore.stats()
            self._reported[key] = (off, now, changes)
        if not offsets:
            return
        try:
            self.shard_map.set_progress_many(offsets, stats)
        except Exception as e:  # noqa: BLE001 - Redis away: the next report carries it
            for key in offsets:
                self._reported.pop(key, None)
            if self.limiter.allow(("progress", type(e))):
                log.warning("progress report of %d shards failed: %s", len(offsets), e)
