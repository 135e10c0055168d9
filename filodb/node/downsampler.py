"""Running the downsample job over a whole dataset: in process, on Spark, or on the cluster.

:func:`run_downsample` reads the dataset's levels and the metric types (remote-write metadata)
from Redis, splits the range into per-shard tasks (:func:`filodb.downsample.job.shard_tasks`),
runs them (here, or as Spark partitions through ``filodb.spark.runner.run_tasks``) and records
how far the downsampled data reaches (:meth:`ShardMapStore.mark_downsampled`; the owners of the
ds shards reload their part keys when it moves). :func:`flushed_through_ms` is the end of what
every shard of a dataset has flushed: the cluster's periodic run stays behind it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from filodb.config import Config
from filodb.downsample.job import downsample_shard, run_local, shard_tasks, window_ms
from filodb.errors import BadInputError, FiloError
from filodb.model.resolution import ds_dataset_name
from filodb.shards.cache_generation import invalidate
from filodb.shards.downsample_runs import DownsampleRuns, renewing, run_due
from filodb.shards.metadata import MetadataStore
from filodb.shards.redis_map import ShardMapStore
from filodb.store import store_spec

if TYPE_CHECKING:
    from filodb.shards.planner import Maps


class _Node(Protocol):
    """What :class:`Downsampling` uses of its :class:`~filodb.node.runtime.NodeRuntime`."""

    cfg: Config
    name: str
    shard_map: ShardMapStore
    ingesters: dict[tuple[str, int], Any]
    stores: Any


log = logging.getLogger(__name__)
SPARK_SPLIT_MS = 86400_000  # Spark partitions (and the periodic run's tasks): per shard and day
DISPATCH_TIMEOUT_S = 60.0  # a sent run not started by then is sent again (and expires)


TaskRunner = Callable[[Callable[..., dict[str, Any]], list[tuple]], list[dict[str, Any]]]


def run_downsample(cfg: Config, shard_map: ShardMapStore, dataset: str, start_ms: int,
                   end_ms: int, runner: TaskRunner | None = None) -> dict[str, Any]:  # fmt: skip
    """Downsample ``dataset`` over the whole job windows ending in ``(start_ms, end_ms]``.

    ``runner`` runs the tasks elsewhere (the CLI passes Spark's, ``filodb.spark.runner``, which
    sits above this layer): tasks are then split by shard and day; without it they run here."""
    desc = shard_map.dataset(dataset)
    if not desc.downsample:
        raise BadInputError(
            f"dataset {dataset!r} has no downsample levels (create it with --downsample)"
        )
    if end_ms <= start_ms:
        raise BadInputError("the end of the range must be after its start")
    types = {k: v.get("type", "") for k, v in MetadataStore(shard_map.r).get(dataset).items()}
    res = [lv.resolution_ms for lv in desc.downsample]
    t0 = time.perf_counter()
    tasks = shard_tasks(store_spec(cfg), dataset, desc.shards, start_ms, end_ms, res, types,
                        SPARK_SPLIT_MS if runner else 0)  # fmt: skip
    if runner is not None:
        results = runner(downsample_shard, tasks)
    else:
        results = run_local(tasks)
    reached = (end_ms // window_ms(res)) * window_ms(res)  # the end of the last whole window
    shard_map.mark_downsampled(dataset, max(reached, shard_map.downsampled().get(dataset, 0)))
    total = {k: sum(r[k] for r in results) for k in ("raw_samples", "ds_samples", "ds_chunks")}
    return {
        "dataset": dataset,
        "tasks": len(tasks),
        "reached_ms": reached,
        **total,
        "seconds": time.perf_counter() - t0,
    }


class DownsampleBusy(FiloError):
    """Another run holds the cluster-wide downsample lock."""


HAND_LOCK_TTL_S = 30.0


def run_by_hand(cfg: Config, shard_map: ShardMapStore, dataset: str, start_ms: int, end_ms: int,
                runner: TaskRunner | None = None) -> dict[str, Any]:  # fmt: skip
    """:func:`run_downsample` under the cluster-wide lock the periodic runs take (``filodb
    downsample``): it refuses with :class:`DownsampleBusy` while a run holds it, so runs never
    overlap and their watermark updates cannot race."""
    runs = DownsampleRuns(shard_map.r)
    run_id = f"hand-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if not runs.take(run_id, HAND_LOCK_TTL_S):
        raise DownsampleBusy(f"a downsample run holds the cluster lock ({runs.holder()}): "
                             "try again when it ends (filodb status shows it)")  # fmt: skip
    try:
        with renewing(runs, run_id, HAND_LOCK_TTL_S) as lost:
            out = run_downsample(cfg, shard_map, dataset, start_ms, end_ms, runner)
        if lost.is_set():
            out["warning"] = "the run lost the cluster lock before its end (Redis unreachable?)"
        return out
    finally:
        runs.release(run_id)


def flushed_through_ms(shard_map: ShardMapStore, dataset: str, shards: int) -> int:
    """The time (ms) before which every shard of ``dataset`` has flushed all it held: the
    oldest of its shards' oldest flush-group flush (0 while a shard has a group never flushed)."""
    _offsets, stats = shard_map.progress(dataset)
    times = [float(stats.get(s, {}).get("flushed_through", 0.0)) for s in range(shards)]
    return int(min(times, default=0.0) * 1000)


class RunCancelled(FiloError):
    """The run stopped before its end (the worker shuts down, or the run lost its lock)."""


class Downsampling:
    """A node's part in downsampling, run from its tick.

    Every node: when a raw dataset's downsampled data moved (:meth:`ShardMapStore.downsampled`),
    the Active shards it owns of that dataset's ds datasets reload their part keys from the
    column store (their chunks are paged on demand) and bump the ds dataset's results-cache
    generation (answers cached while a node had not reloaded are not read again).

    The coordinator: when :func:`~filodb.shards.downsample_runs.run_due` says so (every
    ``downsample_interval``, cluster-wide, or at once when the last run died), it records a new
    run and ``send``s it: the worker sends a Celery task to its own queue
    (:mod:`filodb.tasks.periodic`), which calls :meth:`run_task`; without ``send`` (a runtime
    without Celery) a thread of its own calls it. The run takes the cluster-wide lock, renews
    it while it runs, and downsamples each dataset with levels from where the last run reached
    up to what every shard has flushed (:func:`flushed_through_ms`).
    """

    def __init__(self, node: _Node, send: Callable[[str], None] | None = None,
                 wall: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.node = node
        self.seen: dict[str, int] = {}
        self.wall = wall
        self.runs = DownsampleRuns(node.shard_map.r)
        self._send = send or self._run_on_thread
        self._running: threading.Thread | None = None
        self.cancel = threading.Event()  # set when the worker shuts down: a run stops early
        self.lock_ttl_s = max(10.0, 2 * node.cfg.heartbeat_ttl)

    def tick(self, maps: Maps, coordinator: bool) -> None:
        reached = self.node.shard_map.downsampled()
        for raw, end in reached.items():
            if self.seen.get(raw) != end:
                self.reload(raw, maps)
                self.seen[raw] = end
        if coordinator and any(desc.downsample for desc, _ in maps.values()):
            self.maybe_send()

    def maybe_send(self) -> str | None:
        """Send a run when one is due; its id, else None."""
        rec, locked = self.runs.snapshot()
        now = self.wall()
        if not run_due(rec, locked, now, self.node.cfg.downsample_interval, DISPATCH_TIMEOUT_S):
            return None
        run_id = uuid.uuid4().hex
        self.runs.sent(run_id, self.node.name, now)
        try:
            self._send(run_id)
        except Exception as e:  # noqa: BLE001 - the record's dispatch timeout sends it again
            log.warning("downsample run %s not sent: %s", run_id, e)
        return run_id

    def _run_on_thread(self, run_id: str) -> None:
        if self._running is not None and self._running.is_alive():
            return  # the lock stops it anyway; the record's timeout sends it again later
        self._running = threading.Thread(target=self.run_task, args=(run_id,), name="downsample",
                                         daemon=True)  # fmt: skip
        self._running.start()

    def reload(self, raw: str, maps: Maps) -> None:
        moved = set()
        for (ds, shard), ing in list(self.node.ingesters.items()):
            desc = maps.get(ds, (None, []))[0]
            if (
                desc is None
                or not desc.resolution_ms
                or not ds.startswith(raw + "_ds_")
                or not ing.active
            ):
                continue
            try:
                ing.memstore.load_part_keys(self.node.stores.column.scan_part_keys(ds, shard))
                moved.add(ds)
            except Exception as e:  # noqa: BLE001 - the next move of the watermark retries
                log.warning("reloading part keys of %s/%s failed: %s", ds, shard, e)
        for ds in sorted(moved):
            invalidate(self.node.shard_map.r, ds)

    def run_task(self, run_id: str) -> None:
        """Run ``run_id`` if the record names it and the lock is free (the Celery task)."""
        if not self.runs.acquire(run_id, self.node.name, self.wall(), self.lock_ttl_s):
            log.info("downsample run %s not started: another run holds the lock, or it is stale",
                     run_id)  # fmt: skip
            return
        t0 = time.perf_counter()
        stats: dict[str, Any] = {"raw_samples": 0, "ds_samples": 0, "ds_chunks": 0, "errors": 0}
        with renewing(self.runs, run_id, self.lock_ttl_s) as lost:
            try:
                stats |= self.run_all(lambda: self.cancel.is_set() or lost.is_set())
            except Exception as e:  # noqa: BLE001 - recorded; the next run starts over
                log.exception("downsample run %s failed", run_id)
                stats |= {"errors": stats["errors"] + 1, "error": f"{type(e).__name__}: {e}"}
        self.runs.finish(run_id, {**stats, "finished_at": repr(self.wall()),
                                  "seconds": repr(time.perf_counter() - t0)})  # fmt: skip

    def run_all(self, stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Downsample every dataset with levels up to what every shard flushed; the totals.
        ``stop`` is asked between tasks (one per shard and day): true ends the run (without
        moving the watermark of the dataset being done)."""
        sm = self.node.shard_map
        reached = sm.downsampled()
        totals: dict[str, Any] = {"raw_samples": 0, "ds_samples": 0, "ds_chunks": 0, "errors": 0}

        def runner(fn: Callable[..., dict[str, Any]], tasks: list[tuple]) -> list[dict[str, Any]]:
            out = []
            for t in tasks:
                if stop():
                    raise RunCancelled("the downsample run was stopped")
                out.append(fn(*t))
            return out

        for name, desc in sorted(sm.datasets().items()):
            if not desc.downsample:
                continue
            end = flushed_through_ms(sm, name, desc.shards)
            ret = desc.retention(self.node.cfg.retention)
            start = reached.get(name) or (end - int(ret * 1000) if ret else end - SPARK_SPLIT_MS)
            if not end or end <= start:  # 0: a shard has a group never flushed yet
                continue
            try:
                out = run_downsample(self.node.cfg, sm, name, start, end, runner)
            except RunCancelled:
                raise
            except Exception as e:  # the next run retries from where the last one reached
                log.exception("downsampling %s failed", name)
                totals["errors"] += 1
                totals["error"] = f"{name}: {type(e).__name__}: {e}"
                continue
            log.info("downsampled %s: %s", name, out)
            for k in ("raw_samples", "ds_samples", "ds_chunks"):
                totals[k] += out[k]
            if out["ds_chunks"]:
                for lv in desc.downsample:
                    invalidate(sm.r, ds_dataset_name(name, lv.resolution_ms))
        return totals
