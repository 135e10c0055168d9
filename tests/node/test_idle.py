"""An idle node does no work per shard each tick (issue 14: 1024 shards, idle CPU under 5 % of a
core): the shard maps are not parsed again while their bytes are unchanged, the planner is not
asked again with inputs that asked for nothing, a shard's log backlog is not computed again
while it applied nothing; and each comes back as soon as something changes, the flush schedule
included. Ticks are driven by hand on a fake clock: no waiting on the real one."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from filodb.config import Config
from filodb.ingest.redis_streams import RedisStreamsLog
from filodb.memstore.shard import TimeSeriesShard
from filodb.node.applier import LogApplier
from filodb.node.runtime import NodeRuntime
from filodb.shards import planner
from filodb.shards.state import ShardStatus
from filodb.testing.wait import eventually, wait_for
from tests.node.test_reader import _record

SHARDS = 4
DATASETS = ("prometheus", "other")


class Node:
    def __init__(self, rt: NodeRuntime, now: list[float]) -> None:
        self.rt, self.now = rt, now

    def tick(self, dt: float = 1.0) -> None:
        self.now[0] += dt
        self.rt.tick()


@pytest.fixture
def node(redis_url: str, tmp_path: Path) -> Iterator[Node]:
    cfg = Config(redis_url=redis_url, data_dir=str(tmp_path), shards=SHARDS, spread=0,
                 flush_interval=3600.0, flush_groups=4)  # fmt: skip
    now = [1000.0]
    rt = NodeRuntime(cfg, "n1", clock=lambda: now[0])
    rt.registry.register(rt.name)  # what start() does, without the threads of the node loop
    for ds in DATASETS:
        rt.shard_map.create_dataset(ds, SHARDS, 0)
    n = Node(rt, now)
    keys = sorted((ds, s) for ds in DATASETS for s in range(SHARDS))

    def settled() -> None:
        n.tick()
        states = [st for ds in DATASETS for st in rt.shard_map.shard_states(ds)]
        assert all(st.status is ShardStatus.ACTIVE for st in states)
        assert sorted(rt.reader.following()) == keys

    try:
        eventually(settled, timeout=60, interval=0.05)
        n.tick()  # one tick over the settled maps: what an idle tick starts from
        yield n
    finally:
        rt.stop()


def _count(monkeypatch: pytest.MonkeyPatch, calls: Counter, owner: Any, name: str) -> None:
    fn: Callable[..., Any] = getattr(owner, name)

    def counted(*a: Any, **kw: Any) -> Any:
        calls[name] += 1
        return fn(*a, **kw)

    monkeypatch.setattr(owner, name, counted)


def test_idle_ticks_do_no_work_per_shard(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = node.rt
    calls: Counter = Counter()
    for owner, name in [(planner, "reconcile"), (planner, "coordinate"),
                        (LogApplier, "log_bytes_after"), (TimeSeriesShard, "stats")]:  # fmt: skip
        _count(monkeypatch, calls, owner, name)
    parses = rt._maps_cache.parses
    maps = rt._read_maps()
    for _ in range(20):
        node.tick()
    assert calls == Counter() and rt._maps_cache.parses == parses
    assert rt._read_maps() is maps  # unchanged bytes: the same parsed maps

    # a record for one shard: only its backlog is computed again
    lg = RedisStreamsLog(rt.cfg.redis_url)
    try:
        lg.append("other", 2, [_record(2, 0)])
    finally:
        lg.close()
    wait_for(
        lambda: rt.ingesters[("other", 2)].offset == 1, 20, "the record applied", interval=0.05
    )
    node.tick()
    assert calls["log_bytes_after"] == 1

    # a new dataset: its map is parsed (only it), the planner asked again
    rt.shard_map.create_dataset("third", SHARDS, 0)
    node.tick()
    assert rt._maps_cache.parses == parses + 1
    assert calls["reconcile"] >= 1 and calls["coordinate"] >= 1


def test_the_flush_schedule_still_runs_on_an_idle_node(node: Node) -> None:
    """Idle ticks skip nothing that is due: each shard's first group is flushed a step
    (``flush_interval / flush_groups``) after it went Active, the next one a step later."""
    rt = node.rt
    step = rt.cfg.flush_interval / rt.cfg.flush_groups
    ms = {key: ing.memstore for key, ing in rt.ingesters.items()}
    for _ in range(5):
        node.tick()
    assert all(not m.last_flush for m in ms.values())
    node.tick(step)
    assert all(set(m.last_flush) == {0} for m in ms.values())
    node.tick(step)
    assert all(set(m.last_flush) == {0, 1} for m in ms.values())


def test_idle_ticks_close_shard_files_unused_a_minute(node: Node) -> None:
    """Recovery opened every shard's file; on an idle node nothing gives a connection back,
    so the tick closes those unused a minute (~250 kB each), and a flush reopens its file."""
    rt = node.rt
    pool = rt.stores.column.files._pool  # type: ignore[attr-defined]
    t0, at = time.monotonic(), node.now[0]
    pool._clock = lambda: t0 + node.now[0] - at  # the pool's clock moves with the node's
    rt.flush("prometheus", 0, 0)
    held = len(pool._idle_order)
    assert held >= 1
    node.tick(30.0)
    assert len(pool._idle_order) == held  # idle 30 s: kept
    node.tick(31.0)
    assert len(pool._idle_order) == 0
    rt.flush("prometheus", 0, 1)  # reopened on use, and given back
    assert len(pool._idle_order) == 1
    assert set(rt.stores.meta.read_checkpoints("prometheus", 0)) >= {0, 1}
