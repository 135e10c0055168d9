"""Which shards a node flushes early for the size of their log: each past ``flush_log_mb``,
and while the node's shards together keep more than ``log_backlog_mb``, the ones keeping
most; while writers wait for room in the log (``log_max_mb``), the ones keeping most whatever
the budget; those flushes leave the heads open (provisional chunks), the schedule's close
them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from filodb.config import Config
from filodb.errors import LogFullError
from filodb.ingest.redis_streams import RedisStreamsLog
from filodb.node.runtime import IDLE_SPILL_S, NodeRuntime

MB = 1 << 20


class FakeShard:
    def __init__(self, backlog: int, group: int, active: bool = True) -> None:
        self.backlog, self.group, self.active = backlog, group, active
        self.flushed: list[tuple[int, bool]] = []

    def log_backlog(self) -> int:
        return self.backlog

    def lowest_group(self) -> int:
        return self.group

    def groups_by_checkpoint(self) -> list[int]:
        return [self.group, *(g for g in range(4) if g != self.group)]

    def flush(self, group: int | list[int], force: bool = False, close_heads: bool = True
              ) -> None:  # fmt: skip
        self.flushed.append(
            (group if isinstance(group, int) else list(group), close_heads)
        )  # None: as a shard not Active (no metrics)

    def memory_backlog(self) -> int:
        return self.backlog

    @property
    def applier(self) -> SimpleNamespace:
        return SimpleNamespace(offset=100 + self.group)  # the records applied


def _runtime(redis_url: str, tmp_path: Path, shards: dict, **cfg: int) -> NodeRuntime:
    """A node whose log does not spill (unless ``log_spill_mb`` says): flushes alone keep it."""
    cfg = {"log_spill_mb": 0, **cfg}
    rt = NodeRuntime(Config(redis_url=redis_url, data_dir=str(tmp_path), **cfg), "n1",
                     clock=lambda: 0.0)  # fmt: skip
    rt.ingesters = shards  # type: ignore[assignment]
    return rt


def test_node_budget_picks_the_largest_backlogs_until_the_excess_is_covered(
    redis_url: str, tmp_path: Path
) -> None:
    shards = {("ds", i): FakeShard(b * MB, i % 3) for i, b in enumerate([5, 30, 1, 20, 9])}
    shards[("ds", 5)] = FakeShard(99 * MB, 0, active=False)  # stopped: not counted
    rt = _runtime(redis_url, tmp_path, shards, flush_log_mb=0, log_backlog_mb=30)
    assert rt.log_flushes() == {("ds", 1): 1, ("ds", 3): 0}  # 65 MB kept: 30 + 20 cover 35
    rt._log_flushing.add(("ds", 1))  # in flight: counts, is not sent twice
    assert rt.log_flushes() == {("ds", 3): 0}
    shards[("ds", 1)].backlog = shards[("ds", 3)].backlog = 0  # their logs trimmed: 15 MB
    assert rt.log_flushes() == {}


def test_shard_limit_and_node_budget_together_and_off(redis_url: str, tmp_path: Path) -> None:
    shards = {("ds", i): FakeShard(b * MB, 2) for i, b in enumerate([5, 3, 1])}
    rt = _runtime(redis_url, tmp_path, shards, flush_log_mb=2, log_backlog_mb=8)
    assert set(rt.log_flushes()) == {("ds", 0), ("ds", 1)}  # each past 2 MB; 9 MB: 5 covers 1
    assert _runtime(redis_url, tmp_path, shards, flush_log_mb=0, log_backlog_mb=0
                    ).log_flushes() == {}  # fmt: skip


def test_flushes_for_the_log_leave_heads_open_and_cover_every_group(
    redis_url: str, tmp_path: Path
) -> None:
    shard = FakeShard(50 * MB, 2)
    rt = _runtime(redis_url, tmp_path, {("ds", 0): shard}, flush_log_mb=0, log_backlog_mb=10,
                  flush_interval=3600, flush_groups=4)  # fmt: skip
    rt.schedule_flushes(now=0.0)  # not due yet: the log's size asks (no executor: at once)
    # every group in one write, the lowest first: the log is trimmed to the lowest checkpoint
    assert shard.flushed == [([2, 0, 1, 3], False)]
    shard.flushed.clear()
    rt.schedule_flushes(now=900.0)  # due by time: the schedule's flush closes them
    assert shard.flushed == [(0, True)]
    assert not rt._log_flushing


def test_writers_waiting_for_room_flush_the_largest_backlogs_whatever_the_budget(
    redis_url: str, tmp_path: Path
) -> None:
    """Many nodes may each keep less than ``log_backlog_mb`` and together more than the cap:
    told by a waiting append (a door's log, in the web process), a node flushes the shards
    keeping most until half its backlog is covered, even with both size limits off."""
    shards = {("ds", i): FakeShard(b * MB, i) for i, b in enumerate([3, 9, 1, 4])}
    rt = _runtime(redis_url, tmp_path, shards, flush_log_mb=0, log_backlog_mb=0)
    assert rt.log_flushes() == {}  # nobody waits: time only
    door = RedisStreamsLog(redis_url, max_mb=1, full_wait_s=0.0)
    try:
        door.append_many("ds", {0: [b"x" * (1 << 20) + b"x"]})  # past the cap...
        with pytest.raises(LogFullError):
            door.append_many("ds", {0: [b"y"]})  # ...an append waits (0 s here), and tells
    finally:
        door.close()
    assert rt.log_flushes() == {("ds", 1): 1}  # 17 MB kept: 9 covers half
    rt._log_flushing.add(("ds", 1))  # in flight: counts, not sent twice; the next tick's
    assert rt.log_flushes() == {}
    # that flush trimmed; writers still wait: 8 MB kept, 4 covers half
    shards[("ds", 1)].backlog = 0
    rt._log_flushing.clear()
    assert rt.log_flushes() == {("ds", 3): 3}


def test_a_spilling_log_moves_the_largest_backlogs_out_of_memory_instead_of_flushing(
    redis_url: str, tmp_path: Path
) -> None:
    """With a log that spills (Redis with a spill file), what the shards keep in Redis past
    ``log_spill_mb`` is spilled, largest first, and writers waiting for room ask for spills,
    not flushes: chunks are flushed by the schedule and the total log's size only."""
    shards = {("ds", i): FakeShard(b * MB, i) for i, b in enumerate([5, 12, 1, 9])}
    rt = _runtime(redis_url, tmp_path, shards, flush_log_mb=0, log_backlog_mb=0,
                  log_spill_mb=16, flush_interval=3600, flush_groups=4)  # fmt: skip
    assert rt.ingest_log.spills
    assert rt.log_spills(waiting=False) == [("ds", 1)]  # 27 MB kept: 12 covers 11
    rt._spilling.add(("ds", 1))  # in flight: counts, not sent twice
    assert rt.log_spills(waiting=False) == []
    rt._spilling.clear()
    assert rt.log_spills(waiting=True) == [("ds", 1), ("ds", 3)]  # half of 27: 12 + 9
    calls: list[dict] = []
    rt.ingest_log.spill = lambda upto: calls.append(upto) or 0  # type: ignore[method-assign]
    rt.schedule_flushes(now=0.0)  # no executor: at once
    assert calls == [{("ds", 1): 101}]  # up to what the shard applied
    assert not any(sh.flushed for sh in shards.values())  # no flush
    assert not rt._spilling
    rt.spill([("ds", 1), ("ds", 3), ("gone", 0)])  # many in one call; a shard not held: left
    assert calls[-1] == {("ds", 1): 101, ("ds", 3): 103}
    shards[("ds", 1)].backlog = 0  # spilled: 15 MB kept, under the budget
    assert rt.log_spills(waiting=False) == []


def test_an_applied_log_that_stays_the_same_is_spilled_whole(redis_url: str, tmp_path: Path
                                                             ) -> None:  # fmt: skip
    """Under ``log_spill_mb`` the applied records stay in Redis while writes come; once what
    the shards keep has not changed for ``IDLE_SPILL_S`` (a burst ended, a pause between
    scrapes), all of it is spilled: Redis does not hold up to ``log_spill_mb`` of records
    until the next flush."""
    shards = {("ds", i): FakeShard(b * MB, i) for i, b in enumerate([2, 0, 5])}
    t = [100.0]
    rt = NodeRuntime(Config(redis_url=redis_url, data_dir=str(tmp_path), flush_log_mb=0,
                            log_backlog_mb=0, log_spill_mb=16), "n1",
                     clock=lambda: t[0])  # fmt: skip
    rt.ingesters = shards  # type: ignore[assignment]
    assert rt.ingest_log.spills
    assert rt.log_spills(waiting=False) == []  # 7 MB: under the budget, just seen
    t[0] += IDLE_SPILL_S - 0.5
    assert rt.log_spills(waiting=False) == []
    shards[("ds", 1)].backlog = 1 * MB  # a write came: the wait starts again
    t[0] += 1.0
    assert rt.log_spills(waiting=False) == []
    t[0] += IDLE_SPILL_S - 0.5
    assert rt.log_spills(waiting=False) == []
    t[0] += 0.5
    assert rt.log_spills(waiting=False) == [("ds", 2), ("ds", 0), ("ds", 1)]  # all of it
    rt._spilling.add(("ds", 2))  # in flight: not sent twice
    assert rt.log_spills(waiting=False) == [("ds", 0), ("ds", 1)]
    for sh in shards.values():  # spilled: nothing kept, nothing to spill however long
        sh.backlog = 0
    rt._spilling.clear()
    t[0] += 10 * IDLE_SPILL_S
    assert rt.log_spills(waiting=False) == []
    assert rt.log_spills(waiting=False, now=t[0] + 60) == []
