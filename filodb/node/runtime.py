"""A worker node's runtime: registration, heartbeats, coordinator duty, shard ownership.

Every ``heartbeat_interval`` the node beats and renews the ownership leases of its shards, and
the node holding the coordinator lease runs the assignment strategy over the live nodes and
writes the shard map (reassigning the shards of dead nodes, then moving one shard at a time to
a node that joined until loads differ by at most one). Then every node reconciles: a shard the
map gives it is started once its ownership lease is free (the previous owner released it or
its lease expired); a shard the map no longer gives it is stopped,
its groups flushed, its lease released. The decisions are :mod:`filodb.shards.planner`'s (pure);
this module reads their inputs and carries out their actions.

Fencing: a node that cannot renew its leases for ``heartbeat_ttl`` (Redis unreachable, a long
pause, a network partition) stops serving and ingesting every shard by itself, before any other
node can take the lease; and every status write of a shard's owner is compare-and-set on the
node, so a node that lost a shard cannot overwrite the new owner's state.

The worker process holds one :class:`NodeRuntime`, to which it binds the leaf server of
:mod:`filodb.tasks.leaf`: its threads run in the same process, so they see the memstores, and
they serve only what :meth:`NodeRuntime.memstore` gives (an Active shard of an unfenced node).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import redis

from filodb.config import Config
from filodb.errors import FencedError, FiloError
from filodb.ingest import Log, log_from_config
from filodb.memstore.decoded import DecodedChunks
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.dataset import Dataset
from filodb.node.downsampler import Downsampling
from filodb.node.ingester import ShardIngester
from filodb.node.metrics import observe_flush
from filodb.node.metrics import serve as serve_metrics
from filodb.node.reader import NodeReader, RateLimitedLog
from filodb.procmem import refreeze_soon
from filodb.shards import planner
from filodb.shards.nodes import NodeRegistry
from filodb.shards.planner import Key, Maps
from filodb.shards.redis_map import MapsCache, ShardMapStore
from filodb.shards.state import ShardState, ShardStatus
from filodb.store import store_from_config

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0  # a failing shard's warning repeats at most this often


# seconds the shards' applied log in memory may stay the same before it is spilled whole
IDLE_SPILL_S = 2.0
SPILL = -1  # the group :meth:`NodeRuntime.flush` takes for a spill of the shard's log


class NodeRuntime:
    """State of this node.

    ``send_flush`` hands a flush to the node's executor (None: flush in the tick); ``clock`` is the monotonic
    time in seconds that fencing, the tick and the flush schedule read (tests pass a fake one);
    ``send_downsample`` sends a downsample run (its id) as a Celery task to this node's queue
    (None: the run goes on a thread of its own; see :class:`Downsampling`).
    """

    def __init__(
        self, cfg: Config, name: str,
        send_flush: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        send_downsample: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.clock = clock
        self.name = name
        self.shard_map = ShardMapStore(cfg.redis_url)
        self.redis = self.shard_map.r  # leaf replies go through the shard map's connection pool
        self.registry = NodeRegistry(cfg.redis_url, cfg.heartbeat_ttl)
        self.ingest_log: Log = log_from_config(cfg)
        self.ingesters: dict[Key, ShardIngester] = {}
        # one log reader for every Active shard; recoveries on a bounded pool
        self.reader = NodeReader(
            self.ingest_log, self.shard_map, limiter=RateLimitedLog(LOG_EVERY_S)
        )
        self._recovery = ThreadPoolExecutor(max(1, cfg.recovery_threads),
                                            thread_name_prefix="recovery")  # fmt: skip
        self._send_flush = send_flush
        self.stores = store_from_config(cfg)
        self.decoded = DecodedChunks(cfg.decode_cache_mb << 20)  # shared by the node's shards
        self._maps_cache = MapsCache()  # the maps read last tick, parsed
        # the inputs of the last coordinate / reconcile that asked for nothing (the planner is
        # pure: the same inputs ask for nothing again; the maps are the same object while
        # unchanged, so an idle node plans nothing over its shards each tick)
        self._quiet_coordinate: tuple | None = None
        self._quiet_reconcile: tuple | None = None
        # moves (to a value never used before) after every change of an ingester's status,
        # active or alive, and of the ingesters held: what the tick reads of each ingester
        # (statuses, the Active ones) is read again only then
        self._gens = itertools.count(1)
        self._gen = 0
        self._statuses_at: tuple[tuple[int, int], dict[Key, ShardStatus]] = ((-1, 0), {})
        self._active_at: tuple[tuple[int, int], list[tuple[Key, ShardIngester]]] = ((-1, 0), [])
        self._flush_for: list | None = None  # the Active list the flush schedule last ran over
        self._flush_next = float("inf")  # ... and its earliest due time
        self._flush_due: dict[Key, tuple[float, int]] = {}  # next time, next group
        self._log_flushing: set[Key] = set()  # shards flushed early for their log's size
        self._spilling: set[Key] = set()  # shards whose spill is sent and not yet over
        self._kept = (0, 0.0)  # the applied log the shards keep in memory, and since when
        self._retention_due = 0.0
        self._retention_last = 0.0
        self._retention_shards: set[Key] = set()
        self._retention_for: list | None = None  # the Active list those were read from
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="node-loop", daemon=True)
        self._fence_thread = threading.Thread(target=self._fence_loop, name="fence", daemon=True)
        self._renewed_at = float("-inf")  # monotonic time before the last successful renewal
        self._releasing: dict[Key, threading.Thread] = {}
        self._waiting_lease: set[Key] = set()
        self._initialized: set[tuple[str, int]] = set()  # (dataset, shards) the stores know
        self._init_locks: dict[tuple[str, int], threading.Lock] = {}
        self.fenced_count = 0
        self._coord_since: float | None = None  # monotonic time this node became coordinator
        self._logged: dict[object, float] = {}  # rate-limited warnings: key -> last logged at
        self.downsampling = Downsampling(self, send_downsample)
        self.advertise: dict[str, object] = {}  # more of the registry entry (leaf_addr)

    def start(self) -> None:
        self.metrics_server = serve_metrics(self)  # its port goes into the registry entry
        self.registry.register(self.name, metrics_port=self.metrics_server.port, **self.advertise)
        try:  # the default dataset exists in every cluster, however it was started
            self.shard_map.create_dataset(self.cfg.dataset, self.cfg.shards, self.cfg.spread,
                                          downsample=self.cfg.downsample,
                                          default_retention_s=self.cfg.retention)  # fmt: skip
        except FiloError as e:
            log.warning("default dataset: %s", e)
        self._thread.start()
        self._fence_thread.start()

    def stop(self) -> None:
        """Graceful stop: flush what can be flushed, release the leases, deregister."""
        self._stop.set()
        for ing in list(self.ingesters.values()):
            ing.stop()
        self.reader.stop()  # every followed shard is finished once it returns
        self._recovery.shutdown(wait=False, cancel_futures=True)
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
        return self.clock() - self._renewed_at > self.cfg.heartbeat_ttl * 0.8

    def _fence_loop(self) -> None:
        while not self._stop.wait(self.fence_wait()):
            self.check_fence()

    def fence_wait(self) -> float:
        """Seconds until the leases may expire unrenewed (when :meth:`fenced` turns true), in
        [0.1, 1]: the watchdog wakes then, not ten times a second (renewals only move that
        time later; the cap covers a test's clock that is not the real one)."""
        left = self._renewed_at + self.cfg.heartbeat_ttl * 0.8 - self.clock()
        return min(1.0, max(0.1, left))

    def check_fence(self) -> None:
        """When fenced, stop every shard without touching Redis (which may be what is
        unreachable); the watchdog thread calls this when that may be due (:meth:`fence_wait`)."""
        if self.ingesters and self.fenced():
            self._fence_all()

    def _fence_all(self) -> None:
        with self._lock:
            keys = list(self.ingesters)
            for key in keys:
                ing = self.ingesters.pop(key)
                self._changed()
                ing.stop()
                self._flush_due.pop(key, None)
        if keys:
            self.fenced_count += 1
            log.warning("node %s fenced: leases not renewed for %.1f s; stopped %s",
                        self.name, self.clock() - self._renewed_at, keys)  # fmt: skip

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
        t0 = self.clock()
        self.registry.heartbeat(self.name)
        held = list(self.ingesters) + list(self._releasing)
        if held:
            got = self.shard_map.claim(self.name, held, int(self.cfg.heartbeat_ttl * 1000))
            for act in planner.lost_leases(got, self.ingesters):
                log.warning("node %s lost the lease of %s/%s", self.name, *act.key)
                self._release(act.key, flush=act.flush)
        self._renewed_at = t0
        statuses = self._statuses()  # before the maps: see reconcile
        maps = self._read_maps()
        if self.registry.hold_lease(self.name):
            if self._coord_since is None:
                self._coord_since = self.clock()
            self.coordinate(maps)
        else:
            self._coord_since = None
        self.reconcile(maps, statuses)
        self.schedule_flushes()
        self.apply_retention()
        self.stores.column.close_idle()  # connections of shard files idle a minute
        self.downsampling.tick(maps, coordinator=self._coord_since is not None)

    def _changed(self) -> None:
        """An ingester's status, active or alive changed, or the ingesters held did."""
        self._gen = next(self._gens)

    def _at(self) -> tuple[int, int]:
        return (self._gen, id(self.ingesters))  # tests set ``ingesters`` whole

    def _active(self) -> list[tuple[Key, ShardIngester]]:
        """The Active ingesters (the same list while no ingester changed)."""
        at = self._at()
        if self._active_at[0] != at:
            ings = list(self.ingesters.items())
            self._active_at = (at, [(key, ing) for key, ing in ings if ing.active])
        return self._active_at[1]

    def _read_maps(self) -> Maps:
        """Every dataset and its shard states: the same object as last time when nothing in
        them changed (:class:`~filodb.shards.redis_map.MapsCache`)."""
        return self.shard_map.maps(self._maps_cache)

    def schedule_flushes(self, now: float | None = None) -> None:
        """Flush the next group of each Active shard, staggered so every group
        is flushed once per ``flush_interval``; and, sooner, the group with the lowest
        checkpoint of the shards :meth:`log_flushes` names (the log's size)."""
        now = self.clock() if now is None else now
        groups = max(1, self.cfg.flush_groups)
        step = self.cfg.flush_interval / groups
        waiting = self._writers_waiting()
        spilling = self.ingest_log.spills and self.cfg.log_spill_mb > 0
        for key in self.log_spills(waiting, now) if spilling else ():
            self._spilling.add(key)
            if self._send_flush is not None:
                self._send_flush(key[0], key[1], SPILL)
            else:
                self.flush(key[0], key[1], SPILL)
        early = self.log_flushes(waiting and not spilling)  # waiting writers: spills make room
        active = self._active()
        if not early and active is self._flush_for and now < self._flush_next:
            return  # nothing due, no shard became Active
        for key, _ing in active:
            due, group = self._flush_due.setdefault(key, (now + step, 0))
            if now >= due:
                self._flush_due[key] = (now + step, (group + 1) % groups)
            else:
                if key not in early:
                    continue
                group = early[key]
                self._log_flushing.add(key)  # until that flush is over: no second one
            if self._send_flush is not None:
                self._send_flush(key[0], key[1], group)
            else:
                self.flush(key[0], key[1], group)
        self._flush_for = active
        self._flush_next = min((self._flush_due[key][0] for key, _ in active), default=float("inf"))

    def log_spills(self, waiting: bool, now: float | None = None) -> list[Key]:
        """Active shards whose applied records to move out of the log's memory (a log that
        spills, :mod:`filodb.ingest.spill`): while what the node's shards keep there weighs
        more than ``log_spill_mb``, the shards keeping most until theirs covers the excess;
        while writers wait for room (``waiting``), until it covers half of what they keep;
        and once it has not changed for ``IDLE_SPILL_S`` (the writes paused: after a burst,
        between scrapes), all of it. A spill costs a read and a sequential write, not a
        flush's encoding: the log is kept small in memory at any write rate, and chunks are
        flushed on their own schedule."""
        now = self.clock() if now is None else now
        mem = {key: ing.memory_backlog() for key, ing in self._active()}
        kept = sum(mem.values())
        over = kept - (self.cfg.log_spill_mb << 20)
        if waiting:
            over = max(over, kept // 2)
        if kept != self._kept[0]:
            self._kept = (kept, now)
        elif kept and now - self._kept[1] >= IDLE_SPILL_S:
            over = kept
        pick: list[Key] = []
        for key in sorted(mem, key=mem.__getitem__, reverse=True):
            if over <= 0 or mem[key] == 0:
                break
            over -= mem[key]
            if key not in self._spilling:
                pick.append(key)
        return pick

    def log_flushes(self, waiting: bool | None = None) -> dict[Key, int]:
        """Active shards to flush now for the size of their log, each with its lowest-checkpoint
        group (whose flush lets the log be trimmed): a shard whose records past its lowest
        checkpoint weigh more than ``flush_log_mb``, and, while the node's shards together
        keep more than ``log_backlog_mb``, the shards keeping most until theirs covers the
        excess (a shard whose flush is in flight counts, and is not sent again). While writers
        wait for room in the log (``log_max_mb``, :meth:`~filodb.ingest.base.Log.writers_waiting`),
        whatever the budget: the shards keeping most until theirs covers half of what the
        node keeps (each tick again while they wait). Other nodes keep their part of the log
        too, so the cap may be reached with every node under its own budget."""
        shard_limit, node_limit = self.cfg.flush_log_mb << 20, self.cfg.log_backlog_mb << 20
        if waiting is None:
            waiting = self._writers_waiting()
        if shard_limit <= 0 and node_limit <= 0 and not waiting:
            return {}
        ings = dict(self._active())
        backlog = {key: ing.log_backlog() for key, ing in ings.items()}
        pick = {key for key, b in backlog.items() if 0 < shard_limit < b}
        kept = sum(backlog.values())
        over = kept - node_limit if node_limit > 0 else 0
        if waiting:
            over = max(over, kept // 2)
        if over > 0:
            for key in sorted(backlog, key=backlog.__getitem__, reverse=True):
                if over <= 0:
                    break
                pick.add(key)
                over -= backlog[key]
        return {key: ings[key].lowest_group() for key in pick - self._log_flushing}

    def _writers_waiting(self) -> bool:
        """Whether appends wait for room in the log (False when the log cannot say)."""
        try:
            return self.ingest_log.writers_waiting()
        except (redis.RedisError, OSError):
            return False

    def spill(self, keys: list[Key]) -> int:
        """Spill the records these shards applied (:meth:`~filodb.ingest.base.Log.spill`: one
        read, one fsynced write and one trim for all of them); returns the bytes moved. A
        failure leaves the records in Redis, and the next tick asks again."""
        upto = {}
        for key in keys:
            ing = self.ingesters.get(key)
            if ing is not None and ing.active and ing.applier is not None:
                upto[key] = ing.applier.offset
        try:
            moved = self.ingest_log.spill(upto) if upto else 0
        except Exception:
            log.exception("spill of %d shards failed", len(upto))
            return 0
        finally:
            self._spilling.difference_update(keys)
        log.debug("spilled %d shards: %d bytes", len(upto), moved)
        return moved

    def flush(self, dataset: str, shard: int, group: int) -> None:
        """Flush a group; one asked for by the log's size leaves the heads open (provisional
        chunks in the store), so a full log never shrinks chunks, and goes on with the shard's
        other groups, lowest checkpoint first: the log is trimmed to the lowest checkpoint of
        the shard's groups, so flushing one group of a shard whose groups were all flushed
        about as long ago (or never, as in a first hour) trimmed next to nothing, and the log
        kept growing for as many flushes as there are groups. Those groups are written in
        one transaction (:func:`~filodb.node.flush.flush_groups`)."""
        ing = self.ingesters.get((dataset, shard))
        if group == SPILL:
            self.spill([(dataset, shard)])
            return
        if ing is None:
            self._log_flushing.discard((dataset, shard))
            return
        for_log = (dataset, shard) in self._log_flushing
        t0 = time.monotonic()
        try:
            if for_log:  # every group, written together (one commit, one trim)
                groups = [group, *(g for g in ing.groups_by_checkpoint() if g != group)]
                done = ing.flush(groups, close_heads=False)
            else:
                done = ing.flush(group)
        except Exception:  # the next flush of the group retries; the log still holds the data
            log.exception("flush of %s/%s group %s failed", dataset, shard, group)
            return
        finally:
            self._log_flushing.discard((dataset, shard))
        if done is not None:
            observe_flush(dataset, shard, time.monotonic() - t0)
        if done:
            log.info("flushed %s/%s group %s: %s", dataset, shard, group, done)

    def apply_retention(self, now_s: float | None = None) -> None:
        """Drop data older than the retention from memory and from the column store, and
        purge the series left without data (every tenth of the shortest retention of the
        node's shards, at most hourly; a newly active shard with a shorter retention brings
        the next pass forward).

        A dataset's own ``retention_s`` (set at creation) wins over the node's configured one."""
        if self._active() is not self._retention_for:  # a shard became Active, or left
            self._retention_for = self._active()
            active = {key for key, _ in self._retention_for}
        else:
            active = self._retention_shards
        if active - self._retention_shards:
            self._retention_shards = active
            every = _retention_every(self._retentions(active).values())
            self._retention_due = min(self._retention_due, self._retention_last + every)
        if self.clock() < self._retention_due:
            return
        now_s = time.time() if now_s is None else now_s
        retentions = self._retentions(set(self.ingesters))
        for (ds, shard), ing in list(self.ingesters.items()):
            retention = retentions[(ds, shard)]
            if ing.active and retention > 0:
                cutoff = int((now_s - retention) * 1000)
                try:
                    ing.memstore.drop_before(cutoff)
                    ing.memstore.purge_empty()  # series with nothing left: memory stays bounded
                    self.stores.column.delete_before(ds, shard, cutoff)
                except Exception as e:  # noqa: BLE001 - one shard's store error spoils no other
                    self._log_limited(
                        (ds, shard, "retention"), "retention of %s/%s failed: %s", ds, shard, e
                    )
        self._retention_last = self.clock()
        self._retention_due = self._retention_last + _retention_every(retentions.values())

    def _retentions(self, keys: set[Key]) -> dict[Key, float]:
        datasets = self.shard_map.datasets()
        return {
            (ds, shard): datasets[ds].retention(self.cfg.retention)
            if ds in datasets
            else self.cfg.retention
            for ds, shard in keys
        }

    def coordinate(self, maps: Maps | None = None) -> None:
        """Leader duty: give shards without a live owner to live nodes, then rebalance
        (:func:`filodb.shards.planner.coordinate`; settling while just become coordinator)."""
        live = self.registry.live_nodes()
        settling = planner.is_settling(self._coord_since, self.clock(), self.cfg.heartbeat_interval)
        maps = self._read_maps() if maps is None else maps
        inputs = (maps, tuple(live), settling)
        if _same_inputs(self._quiet_coordinate, inputs):
            return
        acts = planner.coordinate(maps, live, settling, time.time())
        # nothing to do, and nothing waiting out an Error backoff (the one input that moves
        # with the clock): the same inputs ask for nothing next tick either
        quiet = not acts and not any(st.status is ShardStatus.ERROR
                                     for _desc, states in maps.values() for st in states)  # fmt: skip
        self._quiet_coordinate = inputs if quiet else None
        if not acts:
            return
        current = {(ds, st.shard): st for ds, (_desc, states) in maps.items() for st in states}
        for act in acts:
            key = (act.dataset, act.shard)
            if isinstance(act, planner.RebalanceShard):
                log.warning("rebalance: %s/%s %s -> %s", *key, act.src, act.dst)
                current[key] = self.shard_map.move(current[key], ShardStatus.ASSIGNED, act.dst)
            else:
                current[key] = self.shard_map.move(current[key], act.to, act.node)

    def _statuses(self) -> dict[Key, ShardStatus]:
        """The ingesters' statuses (the same dict while no ingester changed)."""
        at = self._at()
        if self._statuses_at[0] != at:
            ings = list(self.ingesters.items())
            self._statuses_at = (at, {key: ing.state.status for key, ing in ings})
        return self._statuses_at[1]

    def reconcile(
        self, maps: Maps | None = None, statuses: dict[Key, ShardStatus] | None = None
    ) -> None:
        """Start shards the map gives this node; stop those it no longer does
        (:func:`filodb.shards.planner.reconcile`).

        ``statuses`` are the ingesters' own statuses read *before* the maps: a shard queued
        for recovery may move from Assigned to Recovery between the two reads, and an
        ingester seen past Assigned beside a map still saying Assigned would look like a
        shard assigned anew (and be restarted)."""
        if maps is None:
            statuses = self._statuses() if statuses is None else statuses
            maps = self._read_maps()
        statuses = {} if statuses is None else statuses
        self._initialized &= {(ds, desc.shards) for ds, (desc, _states) in maps.items()}
        with self._lock:
            # the same maps and statuses objects (read unchanged) and no ingester changed since:
            # the same running shards
            inputs = (maps, statuses, self._at(), frozenset(self._releasing), self.fenced())
            if _same_inputs(self._quiet_reconcile, inputs):
                return
            running = {
                key: planner.RunningShard(statuses.get(key, ing.state.status), ing.is_alive())
                for key, ing in self.ingesters.items()
            }
            acts = planner.reconcile(maps, self.name, running, inputs[3], inputs[4])
            self._quiet_reconcile = None if acts else inputs
            for act in acts:
                if isinstance(act, planner.ClaimLeases):
                    self._claim_and_start(maps, act.states)
                else:
                    self._release(act.key)

    def _claim_and_start(self, maps: Maps, states: tuple[ShardState, ...]) -> None:
        got = self.shard_map.claim(self.name, [(st.dataset, st.shard) for st in states],
                                   int(self.cfg.heartbeat_ttl * 1000))  # fmt: skip
        started: dict[tuple[str, str], list[int]] = {}
        for act in planner.claimed(states, got, self._waiting_lease):
            if isinstance(act, planner.StartShard):
                self._waiting_lease.discard((act.state.dataset, act.state.shard))
                key = (act.state.dataset, act.state.status.value)
                started.setdefault(key, []).append(act.state.shard)
                self._start_shard(act.state, maps[act.state.dataset][0])
            else:
                self._waiting_lease.add(act.key)
                log.warning("node %s waits for %s/%s: still leased by %s", self.name,
                            *act.key, self.shard_map.lease_holder(*act.key))  # fmt: skip
        for (ds, status), shards in started.items():  # a line a dataset, not one a shard
            log.warning("node %s starts %d shard%s of %s (%s): %s", self.name, len(shards),
                        "" if len(shards) == 1 else "s", ds, status, shard_ranges(shards))  # fmt: skip

    def _start_shard(self, st: ShardState, desc: Dataset) -> None:
        if st.status is not ShardStatus.ASSIGNED:  # our own shard from a previous life
            st = self.shard_map.move(st, ShardStatus.ASSIGNED, self.name, expect_node=self.name)
        try:
            ing = ShardIngester(self.shard_map, self.ingest_log, st, self.name,
                                stores=self.stores, cfg=self.cfg,
                                reader=self.reader, recovery=self._recovery,
                                prepare=lambda: self._prepare_dataset(desc),
                                num_shards=desc.shards, decoded=self.decoded,
                                on_change=self._changed)  # fmt: skip
        except (redis.ConnectionError, redis.TimeoutError):
            raise  # Redis is down: the whole tick fails and is retried
        except Exception as e:  # noqa: BLE001 - this shard goes to Error, the others carry on
            self._shard_failed(st, e)
            return
        self.ingesters[(st.dataset, st.shard)] = ing
        self._changed()
        ing.start()

    def _prepare_dataset(self, desc: Dataset) -> None:
        """Column store tables/files and log partitions of a dataset, once per process (run by
        the first of its shards to recover, on the recovery pool: creating 1024 SQLite files
        takes seconds, which the node's loop, renewing leases every tick, cannot spend)."""
        key = (desc.name, desc.shards)
        if key in self._initialized:
            return
        with self._lock:
            lock = self._init_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._initialized:
                self.stores.column.initialize(desc.name, desc.shards)
                self.ingest_log.ensure_dataset(desc.name, desc.shards)  # partitions (Kafka)
                self._initialized.add(key)

    def _shard_failed(self, st: ShardState, e: Exception) -> None:
        """Record why a shard could not start (Error, with the reason), logged at most once a
        minute per shard and reason."""
        reason = f"{type(e).__name__}: {e}"
        self._log_limited((st.dataset, st.shard, reason), "node %s cannot start shard %s/%s: %s",
                          self.name, st.dataset, st.shard, reason)  # fmt: skip
        try:
            self.shard_map.move(
                st, ShardStatus.ERROR, self.name, expect_node=self.name, error=reason
            )
        except Exception:  # noqa: BLE001 - fenced or Redis gone: the next tick sees the map again
            log.debug("could not record Error for %s/%s", st.dataset, st.shard, exc_info=True)

    def _log_limited(self, key: object, msg: str, *args: object) -> None:
        now = self.clock()
        if now - self._logged.get(key, float("-inf")) >= LOG_EVERY_S:
            self._logged[key] = now
            log.warning(msg, *args)

    def _release(self, key: Key, flush: bool = True) -> None:
        """Stop a shard; in the background flush its groups, then give up its lease."""
        log.warning("node %s stops shard %s/%s", self.name, *key)
        ing = self.ingesters.pop(key)
        self._changed()
        ing.stop()
        self._flush_due.pop(key, None)

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
                refreeze_soon()  # the shard's objects were frozen if it started before warm-up
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
        log.warning(
            "flushed %s/%s on release in %.2f s", ing.dataset, ing.shard, time.monotonic() - t0
        )


def _same_inputs(last: tuple | None, now: tuple) -> bool:
    """``now`` are the inputs of ``last`` again: the same maps object, and the same statuses
    object when there are two; equal other inputs."""
    if last is None or last[0] is not now[0]:
        return False
    if len(now) > 3:  # reconcile's: (maps, statuses, ...)
        return last[1] is now[1] and last[2:] == now[2:]
    return last[1:] == now[1:]


def shard_ranges(shards: Iterable[int]) -> str:
    """Shard numbers as runs: ``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"``."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(shards)):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def _retention_every(retentions: Iterable[float]) -> float:
    """Seconds between retention passes: a tenth of the shortest retention, 1 s to an hour."""
    return min([3600.0, *(max(r / 10, 1.0) for r in retentions if r > 0)])
