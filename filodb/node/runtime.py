"""A worker node's runtime: registration, heartbeats, coordinator duty, shard ownership.

Every ``heartbeat_interval`` the node beats and renews the ownership leases of its shards, and
the node holding the coordinator lease runs the assignment strategy over the live nodes and
writes the shard map (reassigning the shards of dead nodes, then moving one shard at a time to
a node that joined until loads differ by at most one). Then every node reconciles: a shard the
map gives it is started once its ownership lease is free (the previous owner released it or
its lease expired) and gets its Celery queue; a shard the map no longer gives it is stopped,
its groups flushed, its lease released.

Fencing: a node that cannot renew its leases for ``heartbeat_ttl`` (Redis unreachable, a long
pause, a network partition) stops serving and ingesting every shard by itself, before any other
node can take the lease; and every status write of a shard's owner is compare-and-set on the
node, so a node that lost a shard cannot overwrite the new owner's state.

The worker process holds one :class:`NodeRuntime`, to which it binds the task functions of
:mod:`filodb.tasks.leaf`: tasks run on the threads pool of the same process, so they see the
memstores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from filodb.config import Config
from filodb.errors import FencedError, FiloError
from filodb.ingest import Log, log_from_config
from filodb.memstore.shard import TimeSeriesShard
from filodb.node.ingester import ShardIngester
from filodb.node.metrics import observe_flush
from filodb.node.metrics import serve as serve_metrics
from filodb.shards.assignment import assign_shards, rebalance_move
from filodb.shards.nodes import NodeRegistry
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.state import LIVE_STATUSES as _LIVE
from filodb.shards.state import ShardStatus
from filodb.store import store_from_config
from filodb.tasks.app import shard_queue

log = logging.getLogger(__name__)


class NodeRuntime:
    """State of this node; ``queues`` adds/removes a Celery queue (set by the worker)."""

    def __init__(
        self, cfg: Config, name: str, add_queue: Callable[[str], None],
        cancel_queue: Callable[[str], None],
        send_flush: Callable[[str, int, int], None] | None = None,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.name = name
        self.shard_map = ShardMapStore(cfg.redis_url)
        self.redis = self.shard_map.r  # leaf replies go through the shard map's connection pool
        self.registry = NodeRegistry(cfg.redis_url, cfg.heartbeat_ttl)
        self.ingest_log: Log = log_from_config(cfg)
        self.ingesters: dict[tuple[str, int], ShardIngester] = {}
        self._add_queue = add_queue
        self._cancel_queue = cancel_queue
        self._send_flush = send_flush
        self.stores = store_from_config(cfg)
        self._flush_due: dict[tuple[str, int], tuple[float, int]] = {}  # next time, next group
        self._retention_due = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="node-loop", daemon=True)
        self._fence_thread = threading.Thread(target=self._fence_loop, name="fence", daemon=True)
        self._renewed_at = float("-inf")  # monotonic time before the last successful renewal
        self._releasing: dict[tuple[str, int], threading.Thread] = {}
        self._waiting_lease: set[tuple[str, int]] = set()
        self.fenced_count = 0
        self._coord_since: float | None = None  # monotonic time this node became coordinator

    def start(self) -> None:
        self.metrics_server = serve_metrics(self)  # its port goes into the registry entry
        self.registry.register(self.name, metrics_port=self.metrics_server.port)
        try:  # the default dataset exists in every cluster, however it was started
            self.shard_map.create_dataset(self.cfg.dataset, self.cfg.shards, self.cfg.spread)
        except FiloError as e:
            log.warning("default dataset: %s", e)
        self._thread.start()
        self._fence_thread.start()

    def stop(self) -> None:
        """Graceful stop: flush what can be flushed, release the leases, deregister."""
        self._stop.set()
        for ing in list(self.ingesters.values()):
            ing.stop()
        for key, ing in list(self.ingesters.items()):
            ing.join(5)
            if not self.fenced():
                self._flush_released(ing)
                try:
                    self.shard_map.release(self.name, *key)
                except Exception:  # noqa: BLE001 - Redis may already be gone at shutdown
                    pass
        try:
            self.registry.deregister(self.name)
        except Exception:  # noqa: BLE001 - Redis may already be gone at shutdown
            log.warning("could not deregister node %s", self.name)
        self.stores.close()
        if getattr(self, "metrics_server", None) is not None:
            self.metrics_server.close()

    def memstore(self, dataset: str, shard: int) -> TimeSeriesShard | None:
        """The shard's memstore when this node owns it and it is Active, else None."""
        if self.fenced():
            return None
        ing = self.ingesters.get((dataset, shard))
        return ing.memstore if ing is not None and ing.active else None

    # --- fencing --------------------------------------------------------------------------
    def fenced(self) -> bool:
        """True when the leases may have expired: this node must not serve its shards."""
        return time.monotonic() - self._renewed_at > self.cfg.heartbeat_ttl * 0.8

    def _fence_loop(self) -> None:
        while not self._stop.wait(0.1):
            if self.ingesters and self.fenced():
                self._fence_all()

    def _fence_all(self) -> None:
        """Stop every shard without touching Redis (which may be what is unreachable)."""
        with self._lock:
            keys = list(self.ingesters)
            for key in keys:
                ing = self.ingesters.pop(key)
                ing.stop()
                self._flush_due.pop(key, None)
        for key in keys:  # queued, never waited for: the broker may be unreachable too
            try:
                self._cancel_queue(shard_queue(*key))
            except Exception:  # noqa: BLE001
                pass
        if keys:
            self.fenced_count += 1
            log.warning("node %s fenced: leases not renewed for %.1f s; stopped %s",
                        self.name, time.monotonic() - self._renewed_at, keys)  # fmt: skip

    # --- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # Redis down: keep trying, state is re-read every tick
                self._coord_since = None
                log.exception("node %s tick failed", self.name)
            self._stop.wait(self.cfg.heartbeat_interval)

    def tick(self) -> None:
        t0 = time.monotonic()
        self.registry.heartbeat(self.name)
        held = list(self.ingesters) + list(self._releasing)
        if held:
            got = self.shard_map.claim(self.name, held, int(self.cfg.heartbeat_ttl * 1000))
            lost = [k for k, ok in got.items() if not ok and k in self.ingesters]
            for key in lost:  # someone else holds the lease: we lost the shard
                log.warning("node %s lost the lease of %s/%s", self.name, *key)
                self._release(key, flush=False)
        self._renewed_at = t0
        maps = {ds: (desc, self.shard_map.shard_states(ds)) for ds, desc in self.shard_map.datasets().items()}
        if self.registry.hold_lease(self.name):
            if self._coord_since is None:
                self._coord_since = time.monotonic()
            self.coordinate(maps)
        else:
            self._coord_since = None
        self.reconcile(maps)
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
        t0 = time.monotonic()
        try:
            done = ing.flush(group)
        except Exception:  # the next flush of the group retries; the log still holds the data
            log.exception("flush of %s/%s group %s failed", dataset, shard, group)
            return
        if done is not None:
            observe_flush(dataset, shard, time.monotonic() - t0)
        if done:
            log.info("flushed %s/%s group %s: %s", dataset, shard, group, done)

    def apply_retention(self, now_s: float | None = None) -> None:
        """Drop data older than the retention from memory and from the column store (hourly).

        A dataset's own ``retention_s`` (set at creation) wins over the node's configured one."""
        if time.monotonic() < self._retention_due:
            return
        self._retention_due = time.monotonic() + 3600
        now_s = time.time() if now_s is None else now_s
        datasets = self.shard_map.datasets()
        for (ds, shard), ing in list(self.ingesters.items()):
            retention = float(datasets.get(ds, {}).get("retention_s", self.cfg.retention))
            if ing.active and retention > 0:
                cutoff = int((now_s - retention) * 1000)
                ing.memstore.drop_before(cutoff)
                self.stores.column.delete_before(ds, shard, cutoff)

    def coordinate(self, maps: dict | None = None) -> None:
        """Leader duty: give shards without a live owner to live nodes, then rebalance.

        A node that just became coordinator (or just got Redis back) first waits two heartbeat
        intervals before it takes shards from owners whose heartbeat it does not see: after a
        Redis restart every heartbeat key may be gone while every node is alive and about to
        beat again, and moving every shard to the first node back would be pure churn."""
        live = self.registry.live_nodes()
        settling = (self._coord_since is not None
                    and time.monotonic() - self._coord_since < 2 * self.cfg.heartbeat_interval + 0.5)  # fmt: skip
        if maps is None:
            maps = {ds: (d, self.shard_map.shard_states(ds)) for ds, d in self.shard_map.datasets().items()}
        for ds, (desc, states) in maps.items():
            owners = {s.shard: s.node if s.status in _LIVE else "" for s in states}
            stopped = frozenset(s.shard for s in states if s.status is ShardStatus.STOPPED)
            by_shard = {s.shard: s for s in states}
            if settling and any(s.status in _LIVE and s.node not in live for s in states):
                continue
            changes = assign_shards(desc["shards"], owners, live, stopped)
            for shard, node in changes.items():
                st = by_shard[shard]
                if st.status in _LIVE:  # owner died: mark Down first
                    st = self.shard_map.move(st, ShardStatus.DOWN)
                self.shard_map.move(st, ShardStatus.ASSIGNED, node)
            if changes or any(s.status is not ShardStatus.ACTIVE for s in states
                              if s.shard not in stopped):  # fmt: skip
                continue  # one move at a time, once everything is Active
            move = rebalance_move(desc["shards"], owners, live, stopped)
            if move is not None:
                shard, node = move
                log.warning("rebalance: %s/%s %s -> %s", ds, shard, owners[shard], node)
                self.shard_map.move(by_shard[shard], ShardStatus.ASSIGNED, node)

    def reconcile(self, maps: dict | None = None) -> None:
        """Start shards the map gives this node; stop those it no longer does."""
        if maps is None:
            maps = {ds: (d, self.shard_map.shard_states(ds)) for ds, d in self.shard_map.datasets().items()}
        with self._lock:
            mine = set()
            to_start = []
            restart: list[tuple[str, int]] = []
            for ds, (_desc, states) in maps.items():
                for st in states:
                    if st.node != self.name or st.status not in _LIVE:
                        continue
                    key = (ds, st.shard)
                    mine.add(key)
                    ing = self.ingesters.get(key)
                    if (ing is None or not ing.is_alive()) and key not in self._releasing:
                        to_start.append(st)
                    elif (ing is not None and st.status is ShardStatus.ASSIGNED
                          and ing.state.status is not ShardStatus.ASSIGNED):  # fmt: skip
                        # assigned anew while we still ran it (stopped and started again
                        # between two of our ticks): start over from the store and the log
                        restart.append(key)
            for key in [k for k in self.ingesters if k not in mine] + restart:
                self._release(key)
            if to_start and not self.fenced():
                got = self.shard_map.claim(self.name, [(st.dataset, st.shard) for st in to_start],
                                       int(self.cfg.heartbeat_ttl * 1000))  # fmt: skip
                for st in to_start:
                    key = (st.dataset, st.shard)
                    if got[key]:
                        self._waiting_lease.discard(key)
                        self._start_shard(st, maps[st.dataset][0])
                    elif key not in self._waiting_lease:
                        self._waiting_lease.add(key)
                        log.warning("node %s waits for %s/%s: still leased by %s", self.name,
                                    *key, self.shard_map.lease_holder(*key))  # fmt: skip

    def _start_shard(self, st, desc: dict) -> None:
        log.warning("node %s starts shard %s/%s (%s)", self.name, st.dataset, st.shard, st.status.value)
        if st.status is not ShardStatus.ASSIGNED:  # our own shard from a previous life
            st = self.shard_map.move(st, ShardStatus.ASSIGNED, self.name, expect_node=self.name)
        self.stores.column.initialize(st.dataset, int(desc["shards"]))
        self.ingest_log.ensure_dataset(st.dataset, int(desc["shards"]))  # partitions exist (Kafka)
        ing = ShardIngester(self.shard_map, self.ingest_log, st, self.name, on_active=self._on_active,
                            stores=self.stores, cfg=self.cfg)  # fmt: skip
        self.ingesters[(st.dataset, st.shard)] = ing
        ing.start()

    def _on_active(self, ing: ShardIngester) -> None:
        self._add_queue(shard_queue(ing.dataset, ing.shard))

    def _release(self, key: tuple[str, int], flush: bool = True) -> None:
        """Stop a shard; in the background flush its groups, then give up its lease."""
        log.warning("node %s stops shard %s/%s", self.name, *key)
        ing = self.ingesters.pop(key)
        ing.stop()
        self._flush_due.pop(key, None)
        try:
            self._cancel_queue(shard_queue(*key))
        except Exception:  # noqa: BLE001 - the consumer goes with the next restart anyway
            log.exception("cancel queue of %s/%s", *key)

        def finish() -> None:
            try:
                ing.join(30)
                if flush and not self.fenced():
                    self._flush_released(ing)
                self.shard_map.release(self.name, *key)
            except Exception:  # noqa: BLE001 - the lease then expires by itself
                log.exception("release of %s/%s", *key)
            finally:
                self._releasing.pop(key, None)
            log.warning("node %s released shard %s/%s", self.name, *key)

        t = threading.Thread(target=finish, name=f"release-{key[0]}-{key[1]}", daemon=True)
        self._releasing[key] = t
        t.start()

    def _flush_released(self, ing: ShardIngester) -> None:
        """Flush every group of a stopped shard, so its next owner replays less of the log."""
        if not ing.recovered:
            return  # never caught up: its memstore is not a complete view of the flushed groups
        t0 = time.monotonic()
        for g in range(max(1, self.cfg.flush_groups)):
            try:
                ing.flush(g, force=True)
            except FencedError:
                return
            except Exception:  # noqa: BLE001 - the next owner replays from the old checkpoint
                log.exception("flush on release of %s/%s group %s", ing.dataset, ing.shard, g)
                return
        log.warning("flushed %s/%s on release in %.2f s", ing.dataset, ing.shard, time.monotonic() - t0)
