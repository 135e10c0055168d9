"""The coordinator's and the node's decisions: feed maps, assert the exact actions (no Redis)."""

from __future__ import annotations

from filodb.model.dataset import Dataset
from filodb.shards.planner import (
    ClaimLeases,
    MoveShard,
    RebalanceShard,
    ReleaseShard,
    RestartShard,
    RunningShard,
    StartShard,
    WaitForLease,
    claimed,
    coordinate,
    is_settling,
    lost_leases,
    reconcile,
)
from filodb.shards.state import ShardState, ShardStatus

S = ShardStatus
A, R, ACT, DOWN, STOP = S.ASSIGNED, S.RECOVERY, S.ACTIVE, S.DOWN, S.STOPPED


def _maps(*shards: tuple[ShardStatus, str], ds: str = "ds") -> dict:
    """One dataset whose shard i is ``shards[i]`` (status, node)."""
    states = [ShardState(ds, i, st, node) for i, (st, node) in enumerate(shards)]
    return {ds: (Dataset.create(ds, len(shards), 0), states)}


def test_dead_owner_shards_go_down_then_assigned() -> None:
    maps = _maps((ACT, "a"), (ACT, "b"), (R, "b"), (S.UNASSIGNED, ""))
    assert coordinate(maps, ["a", "c"], settling=False) == [
        MoveShard("ds", 1, DOWN), MoveShard("ds", 1, A, "c"),
        MoveShard("ds", 2, DOWN), MoveShard("ds", 2, A, "c"),
        MoveShard("ds", 3, A, "a"),  # no owner: nothing to mark Down
    ]  # fmt: skip


def test_error_and_down_shards_are_reassigned_without_down() -> None:
    maps = _maps((S.ERROR, "a"), (DOWN, "b"))
    assert coordinate(maps, ["a"], settling=False) == [MoveShard("ds", 0, A, "a"),
                                                        MoveShard("ds", 1, A, "a")]  # fmt: skip


def test_settling_leaves_datasets_with_unseen_owners_alone() -> None:
    maps = {**_maps((ACT, "a"), (ACT, "gone")), **_maps((S.UNASSIGNED, ""), ds="new")}
    assert coordinate(maps, ["a"], settling=True) == [MoveShard("new", 0, A, "a")]
    assert coordinate(maps, ["a"], settling=False) == [
        MoveShard("ds", 1, DOWN), MoveShard("ds", 1, A, "a"), MoveShard("new", 0, A, "a"),
    ]  # fmt: skip


def test_settling_lasts_two_heartbeat_intervals_and_a_half_second() -> None:
    assert not is_settling(None, 100.0, 1.0)  # not coordinator
    assert is_settling(100.0, 102.4, 1.0)
    assert not is_settling(100.0, 102.5, 1.0)


def test_no_rebalance_until_every_shard_is_active() -> None:
    four_on_a = [(ACT, "a")] * 3 + [(R, "a")]
    assert coordinate(_maps(*four_on_a), ["a", "b"], settling=False) == []
    all_active = [(ACT, "a")] * 4
    assert coordinate(_maps(*all_active), ["a", "b"], settling=False) == [
        RebalanceShard("ds", 3, "a", "b")
    ]


def test_rebalance_moves_one_shard_at_a_time() -> None:
    moving = [(ACT, "a")] * 3 + [(A, "b")]  # the previous move is not Active yet
    assert coordinate(_maps(*moving), ["a", "b"], settling=False) == []
    moved = [(ACT, "a")] * 3 + [(ACT, "b")]
    assert coordinate(_maps(*moved), ["a", "b"], settling=False) == [
        RebalanceShard("ds", 2, "a", "b")
    ]
    even = [(ACT, "a")] * 2 + [(ACT, "b")] * 2
    assert coordinate(_maps(*even), ["a", "b"], settling=False) == []


def test_assignment_then_no_rebalance_in_the_same_tick() -> None:
    maps = _maps((ACT, "a"), (ACT, "a"), (ACT, "a"), (ACT, "dead"))
    assert coordinate(maps, ["a", "b"], settling=False) == [
        MoveShard("ds", 3, DOWN), MoveShard("ds", 3, A, "b"),
    ]  # fmt: skip


def test_stopped_shards_are_left_alone() -> None:
    maps = _maps((STOP, "a"), (STOP, ""), (ACT, "a"), (ACT, "a"))
    assert coordinate(maps, ["a"], settling=False) == []
    # they neither hold back a rebalance (not Active) nor move in one
    assert coordinate(maps, ["a", "b"], settling=False) == [RebalanceShard("ds", 3, "a", "b")]
    maps = _maps((STOP, "a"), (STOP, ""), (ACT, "a"), (ACT, "b"))
    assert coordinate(maps, ["a", "b"], settling=False) == []


def test_no_live_nodes_no_moves() -> None:
    assert coordinate(_maps((ACT, "a"), (S.UNASSIGNED, "")), [], settling=False) == []


def test_reconcile_claims_new_shards_and_releases_lost_ones() -> None:
    maps = _maps((A, "me"), (ACT, "me"), (ACT, "other"), (DOWN, "me"))
    running = {("ds", 1): RunningShard(ACT), ("ds", 2): RunningShard(ACT),
               ("ds", 3): RunningShard(R)}  # fmt: skip
    states = maps["ds"][1]
    assert reconcile(maps, "me", running, set(), fenced=False) == [
        ReleaseShard(("ds", 2)), ReleaseShard(("ds", 3)), ClaimLeases((states[0],)),
    ]  # fmt: skip


def test_reconcile_restarts_a_dead_ingester_and_waits_for_releases() -> None:
    maps = _maps((ACT, "me"), (A, "me"))
    states = maps["ds"][1]
    running = {("ds", 0): RunningShard(ACT, alive=False)}
    assert reconcile(maps, "me", running, set(), fenced=False) == [ClaimLeases(tuple(states))]
    # a shard still being handed over starts only once released
    assert reconcile(maps, "me", {}, {("ds", 1)}, fenced=False) == [ClaimLeases((states[0],))]


def test_reconcile_restarts_a_shard_assigned_anew_while_running() -> None:
    maps = _maps((A, "me"), (A, "me"))
    running = {("ds", 0): RunningShard(ACT), ("ds", 1): RunningShard(A)}
    assert reconcile(maps, "me", running, set(), fenced=False) == [RestartShard(("ds", 0))]


def test_fenced_node_claims_nothing_but_still_releases() -> None:
    maps = _maps((A, "me"), (ACT, "other"))
    running = {("ds", 1): RunningShard(ACT)}
    assert reconcile(maps, "me", running, set(), fenced=True) == [ReleaseShard(("ds", 1))]


def test_claimed_starts_leased_shards_and_says_waiting_once() -> None:
    states = [ShardState("ds", 0, A, "me"), ShardState("ds", 1, A, "me")]
    got = {("ds", 0): True, ("ds", 1): False}
    assert claimed(states, got, set()) == [StartShard(states[0]), WaitForLease(("ds", 1))]
    assert claimed(states, got, {("ds", 1)}) == [StartShard(states[0])]


def test_lost_leases_stop_running_shards_unflushed() -> None:
    got = {("ds", 0): True, ("ds", 1): False, ("ds", 2): False}
    running = {("ds", 0), ("ds", 1)}  # ds/2 is being released already
    assert lost_leases(got, running) == [ReleaseShard(("ds", 1), flush=False)]


def test_error_shards_wait_out_the_backoff_before_reassignment() -> None:
    from filodb.shards.planner import ERROR_BACKOFF_S

    states = [ShardState("ds", 0, S.ERROR, "a", updated=1000.0, error="boom"),
              ShardState("ds", 1, S.UNASSIGNED, "")]  # fmt: skip
    maps = {"ds": (Dataset.create("ds", 2, 0), states)}
    assert coordinate(maps, ["a"], False, now=1000.0 + ERROR_BACKOFF_S - 1) == [
        MoveShard("ds", 1, A, "a")
    ]
    assert coordinate(maps, ["a"], False, now=1000.0 + ERROR_BACKOFF_S) == [
        MoveShard("ds", 0, A, "a"), MoveShard("ds", 1, A, "a")]  # fmt: skip
