"""Running the downsample job over a whole dataset: in process, on Spark, or on the cluster.

:func:`run_downsample` reads the dataset's levels and the metric types (remote-write metadata)
from Redis, splits the range into per-shard tasks (:func:`filodb.downsample.job.shard_tasks`),
runs them (here, or as Spark partitions through ``filodb.spark.runner.run_tasks``) and records
how far the downsampled data reaches (:meth:`ShardMapStore.mark_downsampled`; the owners of the
ds shards reload their part keys when it moves). :func:`flushed_through_ms` is the end of what
every shard of a dataset has flushed: the cluster's periodic run stays behind it.
"""

from __future__ import annotations

import time
from typing import Any

from filodb.config import Config
from filodb.downsample.job import downsample_shard, run_local, shard_tasks
from filodb.errors import BadInputError
from filodb.shards.metadata import MetadataStore
from filodb.shards.redis_map import ShardMapStore
from filodb.store import store_spec

SPARK_SPLIT_MS = 86400_000  # Spark partitions: one per shard and day


def run_downsample(cfg: Config, shard_map: ShardMapStore, dataset: str, start_ms: int,
                   end_ms: int, spark: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Downsample ``dataset`` over the whole job windows ending in ``(start_ms, end_ms]``."""
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
                        SPARK_SPLIT_MS if spark else 0)  # fmt: skip
    if spark:
        try:
            from filodb.spark.runner import run_tasks  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError as e:
            raise BadInputError(
                f"--spark needs the spark extra: pip install -e '.[spark]' ({e})"
            ) from e
        results = run_tasks(spark, downsample_shard, tasks)
    else:
        results = run_local(tasks)
    shard_map.mark_downsampled(dataset, max(end_ms, shard_map.downsampled().get(dataset, 0)))
    total = {k: sum(r[k] for r in results) for k in ("raw_samples", "ds_samples", "ds_chunks")}
    return {"dataset": dataset, "tasks": len(tasks), **total, "seconds": time.perf_counter() - t0}


def flushed_through_ms(shard_map: ShardMapStore, dataset: str, shards: int) -> int:
    """The time (ms) before which every shard of ``dataset`` has flushed all it held: the
    oldest of its shards' oldest flush-group flush (0 while a shard has a group never flushed)."""
    _offsets, stats = shard_map.progress(dataset)
    times = [float(stats.get(s, {}).get("flushed_through", 0.0)) for s in range(shards)]
    return int(min(times, default=0.0) * 1000)
