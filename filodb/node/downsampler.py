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
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from filodb.config import Config
from filodb.downsample.job import downsample_shard, run_local, shard_tasks, window_ms
from filodb.errors import BadInputError
from filodb.shards.metadata import MetadataStore
from filodb.shards.redis_map import ShardMapStore
from filodb.store import store_spec

if TYPE_CHECKING:
    from filodb.shards.planner import Maps


class _Node(Protocol):
    """What :class:`Downsampling` uses of its :class:`~filodb.node.runtime.NodeRuntime`."""

    cfg: Config
    shard_map: ShardMapStore
    ingesters: dict[tuple[str, int], Any]
    stores: Any

    def clock(self) -> float: ...


log = logging.getLogger(__name__)
SPARK_SPLIT_MS = 86400_000  # Spark partitions: one per shard and day


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


def flushed_through_ms(shard_map: ShardMapStore, dataset: str, shards: int) -> int:
    """The time (ms) before which every shard of ``dataset`` has flushed all it held: the
    oldest of its shards' oldest flush-group flush (0 while a shard has a group never flushed)."""
    _offsets, stats = shard_map.progress(dataset)
    times = [float(stats.get(s, {}).get("flushed_through", 0.0)) for s in range(shards)]
    return int(min(times, default=0.0) * 1000)


class Downsampling:
    """A node's part in downsampling, run from its tick.

    Every node: when a raw dataset's downsampled data moved (:meth:`ShardMapStore.downsampled`),
    the Active shards it owns of that dataset's ds datasets reload their part keys from the
    column store (their chunks are paged on demand). The coordinator: every
    ``downsample_interval``, on a thread of its own, downsamples each dataset with levels from
    where the last run reached up to what every shard has flushed (:func:`flushed_through_ms`).
    """

    def __init__(self, node: _Node) -> None:
        self.node = node
        self.seen: dict[str, int] = {}
        self._due = node.clock() + node.cfg.downsample_interval
        self._running: threading.Thread | None = None

    def tick(self, maps: Maps, coordinator: bool) -> None:
        reached = self.node.shard_map.downsampled()
        for raw, end in reached.items():
            if self.seen.get(raw) != end:
                self.reload(raw, maps)
                self.seen[raw] = end
        if (
            coordinator
            and self.node.clock() >= self._due
            and not (self._running and self._running.is_alive())
        ):
            self._due = self.node.clock() + self.node.cfg.downsample_interval
            self._running = threading.Thread(target=self.run_all, args=(maps, reached), name="downsample",
                                             daemon=True)  # fmt: skip
            self._running.start()

    def reload(self, raw: str, maps: Maps) -> None:
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
            except Exception as e:  # noqa: BLE001 - the next move of the watermark retries
                log.warning("reloading part keys of %s/%s failed: %s", ds, shard, e)

    def run_all(self, maps: Maps, reached: dict[str, int]) -> None:
        for name, (desc, _states) in maps.items():
            if not desc.downsample:
                continue
            end = flushed_through_ms(self.node.shard_map, name, desc.shards)
            ret = desc.retention(self.node.cfg.retention)
            start = reached.get(name) or (end - int(ret * 1000) if ret else end - SPARK_SPLIT_MS)
            if end <= start:
                continue
            try:
                log.info(
                    "downsampled %s: %s",
                    name,
                    run_downsample(self.node.cfg, self.node.shard_map, name, start, end),
                )
            except Exception:  # the next run retries from where the last one reached
                log.exception("downsampling %s failed", name)
