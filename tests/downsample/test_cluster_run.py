"""The cluster's periodic run (real Redis, real SQLite): only on the coordinator, only every
``downsample_interval``, only windows every shard has flushed; and the Spark path."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from typing import Any

from click.testing import CliRunner

from filodb.cli import main
from filodb.config import Config
from filodb.downsample.job import window_ms
from filodb.node.downsampler import Downsampling, run_downsample
from filodb.shards.redis_map import ShardMapStore
from filodb.store import Stores
from filodb.testing.downsample import DAY, DAYS, START, Raw, dump


@dataclass
class FakeNode:  # what Downsampling reads of a NodeRuntime; the clock is the test's
    cfg: Config
    shard_map: ShardMapStore
    stores: Stores
    now: float = 0.0
    ingesters: dict[tuple[str, int], Any] = field(default_factory=dict)

    def clock(self) -> float:
        return self.now


def _cluster(raw: Raw, redis_url: str) -> tuple[Config, ShardMapStore]:
    cfg = Config(redis_url=redis_url, data_dir=str(raw.data_dir), retention=0)
    sm = ShardMapStore(redis_url)
    sm.r.flushdb()
    sm.create_dataset("m", 2, downsample="1m:0d,5m:0d")
    return cfg, sm


def test_the_coordinator_downsamples_what_every_shard_flushed_every_interval(
    raw: Raw, redis_url: str
) -> None:
    cfg, sm = _cluster(raw, redis_url)
    flushed = (START + 3 * DAY + 7 * 3_600_000) / 1000  # shard 1 is behind shard 0
    sm.set_progress(
        "m", {}, {0: {"flushed_through": flushed + 86400}, 1: {"flushed_through": flushed}}
    )
    sm.mark_downsampled("m", START)  # where an earlier run reached
    node = FakeNode(cfg, sm, raw.stores)
    ds = Downsampling(node)
    ds.tick({name: (desc, []) for name, desc in sm.datasets().items()}, coordinator=True)
    assert ds._running is None  # not due yet
    node.now = cfg.downsample_interval
    maps = {name: (desc, []) for name, desc in sm.datasets().items()}
    ds.tick(maps, coordinator=False)
    assert ds._running is None  # not the coordinator
    ds.tick(maps, coordinator=True)
    assert ds._running is not None
    ds._running.join(300)
    win = window_ms((60_000, 300_000))
    reached = (START + 3 * DAY + 7 * 3_600_000) // win * win  # the last whole window flushed
    assert sm.downsampled()["m"] == reached
    newest = max(r.end_ms for s in range(2) for r in raw.stores.column.scan_part_keys("m_ds_1", s))
    assert reached - win < newest <= reached


def test_spark_runs_the_same_job_or_says_the_extra_is_missing(raw: Raw, redis_url: str) -> None:
    cfg, sm = _cluster(raw, redis_url)
    if (
        importlib.util.find_spec("filodb.spark") is None
        or importlib.util.find_spec("filodb.spark.runner") is None
    ):
        r = CliRunner().invoke(main, ["downsample", "--dataset", "m", "--from", str(START // 1000), "--to",
                                      str((START + DAYS * DAY) // 1000), "--spark", "local[2]",
                                      "--redis-url", redis_url], env={"FILODB_DATA_DIR": str(raw.data_dir)})  # fmt: skip
        assert r.exit_code == 2 and "spark" in (r.output + str(r.stderr_bytes or b"")).lower()
        return
    from filodb.spark.runner import run_tasks

    run_downsample(
        cfg, sm, "m", START, START + DAYS * DAY, functools.partial(run_tasks, "local[2]")
    )
    on_spark = {d: dump(raw.stores, d) for d in ("m_ds_1", "m_ds_5")}
    raw.run()  # in process, over the same range: nothing changes
    assert {d: dump(raw.stores, d) for d in ("m_ds_1", "m_ds_5")} == on_spark
    assert sum(len(c) for _r, c in on_spark["m_ds_5"].values()) > 0
