"""The cluster's periodic run (real Redis, real SQLite): sent by the coordinator only, every
``downsample_interval``, one at a time cluster-wide, sent again when it died; only windows every
shard has flushed; and the Spark path. The Celery task itself runs under a real worker in
tests/e2e/test_downsample_e2e.py."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner

from filodb.cli import main
from filodb.config import Config
from filodb.downsample.job import window_ms
from filodb.model.labels import Matcher
from filodb.node.downsampler import Downsampling, run_downsample
from filodb.shards.cache_generation import generation_key
from filodb.shards.downsample_runs import LOCK_KEY, DownsampleRuns, run_due
from filodb.shards.redis_map import ShardMapStore
from filodb.store import Stores
from filodb.testing.downsample import DAY, DAYS, START, Raw, dump, memstore


@dataclass
class FakeNode:  # what Downsampling reads of a NodeRuntime
    cfg: Config
    shard_map: ShardMapStore
    stores: Stores
    name: str = "n1"
    ingesters: dict[tuple[str, int], Any] = field(default_factory=dict)


class Clock:  # the wall clock the run record is kept in, the test's
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _cluster(raw: Raw, redis_url: str) -> tuple[Config, ShardMapStore]:
    cfg = Config(redis_url=redis_url, data_dir=str(raw.data_dir), retention=0)
    sm = ShardMapStore(redis_url)
    sm.r.flushdb()
    sm.create_dataset("m", 2, downsample="1m:0d,5m:0d")
    return cfg, sm


def _maps(sm: ShardMapStore) -> dict:
    return {name: (desc, []) for name, desc in sm.datasets().items()}


def _gen(sm: ShardMapStore, ds: str) -> int:
    return int(sm.r.get(generation_key(ds)) or 0)


@pytest.mark.parametrize(
    ("rec", "locked", "now", "due"),
    [
        ({}, False, 0, True),  # never ran: at once
        ({}, True, 0, False),  # a run holds the lock
        ({"state": "sent", "sent_at": "100"}, False, 159, False),  # its task may still start
        ({"state": "sent", "sent_at": "100"}, False, 160, True),  # lost before it started
        ({"state": "running", "started_at": "100"}, True, 10**9, False),
        ({"state": "running", "started_at": "100"}, False, 101, True),  # died: lock expired
        ({"state": "done", "started_at": "100"}, False, 199, False),
        ({"state": "done", "started_at": "100"}, False, 200, True),  # one interval later
    ],
)
def test_when_a_run_is_due(rec: dict, locked: bool, now: float, due: bool) -> None:
    assert run_due(rec, locked, now, interval=100, dispatch_timeout=60) is due


def test_the_coordinator_sends_a_run_whose_task_downsamples_what_every_shard_flushed(
    raw: Raw, redis_url: str
) -> None:
    cfg, sm = _cluster(raw, redis_url)
    flushed = (START + 3 * DAY + 7 * 3_600_000) / 1000  # shard 1 is behind shard 0
    sm.set_progress(
        "m", {}, {0: {"flushed_through": flushed + 86400}, 1: {"flushed_through": flushed}}
    )
    sm.mark_downsampled("m", START)  # where an earlier run reached
    sent: list[str] = []
    clock = Clock()
    ds = Downsampling(FakeNode(cfg, sm, raw.stores), send=sent.append, wall=clock)
    ds.tick(_maps(sm), coordinator=False)
    assert sent == []  # not the coordinator
    ds.tick(_maps(sm), coordinator=True)
    assert len(sent) == 1 and DownsampleRuns(sm.r).snapshot()[0]["state"] == "sent"
    ds.tick(_maps(sm), coordinator=True)
    assert len(sent) == 1  # sent already, not started yet: not sent twice
    gens = [_gen(sm, d) for d in ("m_ds_1", "m_ds_5")]
    ds.run_task(sent[0])  # what the worker's Celery task calls
    win = window_ms((60_000, 300_000))
    reached = (START + 3 * DAY + 7 * 3_600_000) // win * win  # the last whole window flushed
    assert sm.downsampled()["m"] == reached
    newest = max(r.end_ms for s in range(2) for r in raw.stores.column.scan_part_keys("m_ds_1", s))
    assert reached - win < newest <= reached
    rec, locked = DownsampleRuns(sm.r).snapshot()
    assert not locked and rec["state"] == "done" and rec["errors"] == "0" and rec["runs"] == "1"
    assert int(rec["raw_samples"]) > 0 and int(rec["ds_samples"]) > 0 and rec["node"] == "n1"
    assert rec["raw_samples_total"] == rec["raw_samples"]
    # the cached answers of the ds datasets are forgotten: their data moved
    assert [_gen(sm, d) for d in ("m_ds_1", "m_ds_5")] == [g + 1 for g in gens]
    clock.now += cfg.downsample_interval - 1
    ds.tick(_maps(sm), coordinator=True)
    assert len(sent) == 1  # not due before the interval
    clock.now += 1
    ds.tick(_maps(sm), coordinator=True)
    assert len(sent) == 2


def test_one_run_at_a_time_and_a_run_that_died_is_sent_again(raw: Raw, redis_url: str) -> None:
    cfg, sm = _cluster(raw, redis_url)
    sm.set_progress("m", {}, {s: {"flushed_through": (START + 2 * DAY) / 1000} for s in range(2)})
    sm.mark_downsampled("m", START)
    sent: list[str] = []
    clock = Clock()
    ds = Downsampling(FakeNode(cfg, sm, raw.stores), send=sent.append, wall=clock)
    runs = DownsampleRuns(sm.r)
    ds.tick(_maps(sm), coordinator=True)
    first = sent[0]
    assert runs.acquire(first, "n1", clock(), 30)  # its task started, then its worker died
    assert not runs.acquire(first, "n2", clock(), 30)  # the same task delivered twice
    ds.run_task(first)  # ... does not run: the lock is held
    assert sm.downsampled()["m"] == START
    ds.tick(_maps(sm), coordinator=True)
    assert sent == [first]  # locked: no second run
    sm.r.delete(LOCK_KEY)  # the dead run's lock expires
    ds.tick(_maps(sm), coordinator=True)  # the next tick sends it again
    assert len(sent) == 2 and sent[1] != first
    ds.run_task(first)  # a stale task of the dead run does nothing
    assert sm.downsampled()["m"] == START
    runs.finish(first, {"errors": 0})  # nor does the dead run's late end
    assert runs.snapshot()[0]["state"] == "sent"
    ds.run_task(sent[1])
    rec, locked = runs.snapshot()
    assert rec["state"] == "done" and rec["id"] == sent[1] and not locked
    assert sm.downsampled()["m"] == START + 2 * DAY
    assert dump(raw.stores, "m_ds_5") == _clean_run(raw, START + 2 * DAY)


def _clean_run(raw: Raw, end: int) -> dict:
    """The ds datasets after one clean in-process run over the same windows."""
    before = dump(raw.stores, "m_ds_5")
    raw.run(START, end)
    after = dump(raw.stores, "m_ds_5")
    assert after == before  # idempotent: the periodic run wrote exactly this
    return after


def test_a_run_stopped_by_shutdown_leaves_the_watermark_and_is_recorded(
    raw: Raw, redis_url: str
) -> None:
    cfg, sm = _cluster(raw, redis_url)
    sm.set_progress("m", {}, {s: {"flushed_through": (START + 2 * DAY) / 1000} for s in range(2)})
    sm.mark_downsampled("m", START)
    sent: list[str] = []
    ds = Downsampling(FakeNode(cfg, sm, raw.stores), send=sent.append, wall=Clock())
    ds.tick(_maps(sm), coordinator=True)
    ds.cancel.set()  # the worker shuts down
    ds.run_task(sent[0])
    rec, locked = DownsampleRuns(sm.r).snapshot()
    assert sm.downsampled()["m"] == START and not locked
    assert rec["state"] == "done" and rec["errors"] == "1" and "stopped" in rec["error"]
    assert rec["failed_runs"] == "1"


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


def test_a_run_by_hand_takes_the_cluster_lock_and_waits_for_a_periodic_one(
    raw: Raw, redis_url: str
) -> None:
    _cfg, sm = _cluster(raw, redis_url)
    runs = DownsampleRuns(sm.r)
    assert runs.take("periodic-7", 60)  # a periodic run (or another by hand) is under way
    args = ["downsample", "--dataset", "m", "--from", str(START // 1000), "--to",
            str((START + DAYS * DAY) // 1000), "--redis-url", redis_url]  # fmt: skip
    env = {"FILODB_DATA_DIR": str(raw.data_dir)}
    r = CliRunner().invoke(main, args, env=env)
    out = r.output + str(r.stderr_bytes or b"")
    assert r.exit_code == 1 and "periodic-7" in out, out
    assert "m" not in sm.downsampled()  # it ran nothing and left the watermark alone
    assert runs.holder() == "periodic-7"  # and did not take or drop the other run's lock

    runs.release("periodic-7")
    r = CliRunner().invoke(main, args, env=env)
    assert r.exit_code == 0, r.output
    assert sm.downsampled()["m"] > START
    assert sum(len(c) for _r, c in dump(raw.stores, "m_ds_5").values()) > 0
    assert runs.holder() is None  # given back: the next periodic run can start
    assert runs.take("periodic-8", 60)


TEMP = [Matcher("__name__", "=", "temp")]


@dataclass
class _Ingester:
    memstore: Any
    active: bool = True


def test_a_node_reloads_its_ds_shards_when_the_levels_move_and_forgets_their_cached_answers(
    raw: Raw, redis_url: str
) -> None:
    cfg, sm = _cluster(raw, redis_url)
    raw.run(START, START + DAY)
    ms = memstore(raw.stores, "m_ds_1", 0)
    node = FakeNode(cfg, sm, raw.stores, ingesters={("m_ds_1", 0): _Ingester(ms)})
    ds = Downsampling(node, send=lambda _id: None, wall=Clock())
    sm.mark_downsampled("m", START + DAY)
    ds.tick(_maps(sm), coordinator=False)
    before = len(ms.series(TEMP, START, START + 3 * DAY))
    gen = _gen(sm, "m_ds_1")
    raw.run(START + DAY, START + 3 * DAY)  # a run elsewhere wrote two more days
    sm.mark_downsampled("m", START + 3 * DAY)
    ds.tick(_maps(sm), coordinator=False)
    assert _gen(sm, "m_ds_1") == gen + 1 and _gen(sm, "m_ds_5") == 0  # no shard of it here
    newest = max(r.end_ms for r in raw.stores.column.scan_part_keys("m_ds_1", 0))
    assert newest > START + 2 * DAY and before > 0
    assert len(ms.select(TEMP, START + 2 * DAY, START + 3 * DAY).ts) > 0  # the new days served
