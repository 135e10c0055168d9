"""The shard lifecycle: feed transitions, assert the exact actions (no sockets, no sleeps)."""

from __future__ import annotations

import pytest

from filodb.errors import InvalidTransition
from filodb.shards.assignment import assign_shards
from filodb.shards.state import PublishShardEvent, ShardState, ShardStatus, transition

S = ShardStatus


def _run(steps):  # type: ignore[no-untyped-def]
    st = ShardState("ds", 3)
    actions = []
    for to, node, progress in steps:
        st, acts = transition(st, to, node, progress, now=1.0)
        actions.extend(acts)
    return st, actions


def test_normal_lifecycle_publishes_exact_events() -> None:
    st, actions = _run([(S.ASSIGNED, "n1", 0), (S.RECOVERY, None, 0), (S.RECOVERY, None, 40),
                        (S.ACTIVE, None, 0)])  # fmt: skip
    assert [(a.event, a.state.status, a.state.node, a.state.progress) for a in actions] == [
        ("ShardAssignmentStarted", S.ASSIGNED, "n1", 0),
        ("RecoveryStarted", S.RECOVERY, "n1", 0),
        ("RecoveryInProgress", S.RECOVERY, "n1", 40),
        ("IngestionStarted", S.ACTIVE, "n1", 100),
    ]
    assert all(isinstance(a, PublishShardEvent) for a in actions)
    assert st.history == ("Unassigned->Assigned", "Assigned->Recovery", "Recovery->Recovery",
                          "Recovery->Active")  # fmt: skip


def test_node_death_and_reassignment() -> None:
    st, actions = _run([(S.ASSIGNED, "n1", 0), (S.ACTIVE, None, 0), (S.DOWN, None, 0),
                        (S.ASSIGNED, "n2", 0)])  # fmt: skip
    assert [a.event for a in actions][-2:] == ["ShardDown", "ShardAssignmentStarted"]
    assert st.node == "n2"


def test_removal_clears_the_owner() -> None:
    st, actions = _run([(S.ASSIGNED, "n1", 0), (S.UNASSIGNED, None, 0)])
    assert actions[-1].event == "ShardMemberRemoved" and st.node == ""


@pytest.mark.parametrize("path", [[S.ACTIVE], [S.RECOVERY], [S.ASSIGNED, S.UNASSIGNED, S.ACTIVE]])
def test_invalid_transition_carries_history(path) -> None:  # type: ignore[no-untyped-def]
    st = ShardState("ds", 0)
    with pytest.raises(InvalidTransition) as ei:
        for to in path:
            st, _ = transition(st, to, "n1")
    assert ei.value.history == list(st.history)


def test_state_json_round_trip() -> None:
    st, _ = _run([(S.ASSIGNED, "n1", 0), (S.RECOVERY, None, 55)])
    assert ShardState.from_json(st.to_json()) == st


def test_assignment_spreads_evenly_newest_first() -> None:
    assert assign_shards(4, {}, ["old", "new"]) == {0: "new", 1: "old", 2: "new", 3: "old"}


def test_assignment_moves_only_dead_owners_shards() -> None:
    owners = {0: "a", 1: "a", 2: "b", 3: "b"}
    assert assign_shards(4, owners, ["a", "c"]) == {2: "c", 3: "c"}
    assert assign_shards(4, owners, ["a", "b"]) == {}


def test_assignment_respects_stopped_and_no_nodes() -> None:
    assert assign_shards(2, {}, [], frozenset()) == {}
    assert assign_shards(2, {}, ["a"], frozenset({1})) == {0: "a"}
