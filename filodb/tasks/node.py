"""A worker node's runtime: registration, heartbeats, coordinator duty, shard ownership.

Every ``heartbeat_interval`` the node beats, and the node holding the coordinator lease runs
the assignment strategy over the live nodes and writes the shard map. Then every node
reconciles: shards the map gives it get a :class:`ShardIngester` and their Celery queue; shards
the map no longer gives it are stopped and released (fencing: a node that lost a shard stops
ingesting and answering it, even when it was only cut off, because it re-reads the map).

The process holds one :class:`NodeRuntime` (``RUNTIME``), which the leaf task reads: tasks run
on the threads pool of the same process, so they see the memstores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from filodb.config import Config
from filodb.errors import FiloError
from filodb.ingest.base import Log, log_from_config
from filodb.memstore.shard import TimeSeriesShard
from filodb.shards.assignment import assign_shards
from filodb.shards.nodes import NodeRegistry
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.state import LIVE_STATUSES as _LIVE
from filodb.shards.state import ShardStatus
from filodb.store.base import store_from_config
from filodb.tasks.app import shard_queue
from filodb.tasks.ingester import ShardIngester

log = logging.getLogger(__name__)

RUNTIME: NodeRuntime | None = None



class NodeRuntime:
    """State of this node; ``queues`` adds/removes a Celery queue (set by the worker)."""

    def __init__(
        self, cfg: Config, name: str, add_queue: Callable[[str], None],
        cancel_queue: Callable[[str], None],
        send_flush: Callable[[str, int, int], None] | None = None,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.name = name
        self.store = ShardMapStore(cfg.redis_url)
        self.registry = NodeRegistry(cfg.redis_url, cfg.heartbeat_ttl)
        self.log: Log = log_from_config(cfg)
        self.ingesters: dict[tuple[str, int], ShardIngester] = {}
        self._add_queue = add_queue
        self._cancel_queue = cancel_queue
        self._send_flush = send_flush
        self.columns = store_from_config(cfg)
        self._flush_due: dict[tuple[str, int], tuple[float, int]] = {}  # next time, next group
        self._retention_due = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="node-loop", daemon=True)

    def start(self) -> None:
        global RUNTIME
        RUNTIME = self
        self.registry.register(self.name)
        try:  # the default dataset exists in every cluster, however it was started
            self.store.create_dataset(self.cfg.dataset, self.cfg.shards, self.cfg.spread)
        except FiloError as e:
            log.warning("default dataset: %s", e)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for ing in list(self.ingesters.values()):
            ing.stop()
        for ing in list(self.ingesters.values()):
            ing.join(5)
        try:
            self.registry.deregister(self.name)
        except Exception:  # noqa: BLE001 - Redis may already be gone at shutdown
            log.warning("could not deregister node %s", self.name)
        for c in self.columns:
            c.close()

    def memstore(self, dataset: str, shard: int) -> TimeSeriesShard | None:
        """The shard's memstore when this node owns it and it is Active, else None."""
        ing = self.ingesters.get((dataset, shard))
        return ing.memstore if ing is not None and ing.active else None

    # --- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # Redis down: keep trying, state is re-read every tick
                log.exception("node %s tick failed", self.name)
            self._stop.wait(self.cfg.heartbeat_interval)

    def tick(self) -> None:
        self.registry.heartbeat(self.name)
        if self.registry.hold_lease(self.name):
            self.coordinate()
        self.reconcile()
        self.schedule_flushes()
        self.apply_retention()

    def schedule_flushes(self, now: float | None = None) -> None:
        """Send a flush task for the next group of each Active shard, staggered so every group
        is flushed once per ``flush_interval``."""
        now = time.monotonic() if now is None else now
        groups = max(1, self.cfg.flush_groups)
        step = self.cfg.flush_interval / groups
        for key, ing in list(self.ingesters.items()):
            if not ing.active:
                continue
            due, group = self._flush_due.setdefault(key, (now + step, 0))
            if now >= due:
                self._flush_due[key] = (now + step, (group + 1) % groups)
                if self._send_flush is not None:
                    self._send_flush(key[0], key[1], group)
                else:
                    self.flush(key[0], key[1], group)

    def flush(self, dataset: str, shard: int, group: int) -> None:
        ing = self.ingesters.get((dataset, shard))
        if ing is None:
            return
        try:
            done = ing.flush(group)
        except Exception:  # the next flush of the group retries; the log still holds the data
            log.exception("flush of %s/%s group %s failed", dataset, shard, group)
            return
        if done:
            log.info("flushed %s/%s group %s: %s", dataset, shard, group, done)

    def apply_retention(self, now_s: float | None = None) -> None:
        """Drop data older than the retention from memory and from the column store (hourly)."""
        if self.cfg.retention <= 0 or time.monotonic() < self._retention_due:
            return
        self._retention_due = time.monotonic() + 3600
        cutoff = int(((time.time() if now_s is None else now_s) - self.cfg.retention) * 1000)
        for (ds, shard), ing in list(self.ingesters.items()):
            if ing.active:
                ing.memstore.drop_before(cutoff)
                self.columns[0].delete_before(ds, shard, cutoff)

    def coordinate(self) -> None:
        """Leader duty: give shards without a live owner to live nodes."""
        live = self.registry.live_nodes()
        for ds, desc in self.store.datasets().items():
            states = self.store.shard_states(ds)
            owners = {s.shard: s.node if s.status in _LIVE else "" for s in states}
            stopped = frozenset(s.shard for s in states if s.status is ShardStatus.STOPPED)
            by_shard = {s.shard: s for s in states}
            for shard, node in assign_shards(desc["shards"], owners, live, stopped).items():
                st = by_shard[shard]
                if st.status in _LIVE:  # owner died: mark Down first
                    st = self.store.move(st, ShardStatus.DOWN)
                self.store.move(st, ShardStatus.ASSIGNED, node)

    def reconcile(self) -> None:
        """Start shards the map gives this node; stop those it no longer does."""
        with self._lock:
            mine = set()
            for ds in self.store.datasets():
                for st in self.store.shard_states(ds):
                    if st.node != self.name or st.status not in _LIVE:
                        continue
                    key = (ds, st.shard)
                    mine.add(key)
                    ing = self.ingesters.get(key)
                    if ing is None or not ing.is_alive():
                        self._start_shard(st)
            for key in [k for k in self.ingesters if k not in mine]:
                self._release(key)

    def _start_shard(self, st) -> None:  # type: ignore[no-untyped-def]
        if st.status is not ShardStatus.ASSIGNED:  # our own shard from a previous life
            st = self.store.move(st, ShardStatus.ASSIGNED, self.name)
        desc = self.store.dataset(st.dataset)
        self.columns[0].initialize(st.dataset, int(desc["shards"]))
        ing = ShardIngester(self.store, self.log, st, self.name, on_active=self._on_active,
                            columns=self.columns, cfg=self.cfg)  # fmt: skip
        self.ingesters[(st.dataset, st.shard)] = ing
        ing.start()

    def _on_active(self, ing: ShardIngester) -> None:
        self._add_queue(shard_queue(ing.dataset, ing.shard))

    def _release(self, key: tuple[str, int]) -> None:
        ing = self.ingesters.pop(key)
        ing.stop()
        self._cancel_queue(shard_queue(*key))
        log.info("node %s released shard %s/%s", self.name, *key)
