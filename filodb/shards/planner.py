"""What the coordinator and each node decide each tick, as pure functions: maps in, actions out.

No Redis, no threads, no clock: the node reads the shard maps, the live nodes and its own
ingesters, asks these functions what to do, and carries out the actions in order
(:class:`~filodb.node.runtime.NodeRuntime`).

- :func:`coordinate` (the coordinator lease holder): shards without a live owner go to live
  nodes (:func:`~filodb.shards.assignment.assign_shards`), a live owner's shard going
  Down before Assigned; once every shard of a dataset is Active (Stopped ones aside), one
  rebalance move at a time. While :func:`is_settling` it leaves alone the datasets with shards
  of owners whose heartbeat it does not see.
- :func:`lost_leases`: shards whose lease renewal found another holder are stopped unflushed.
- :func:`reconcile` (every node): release the shards the map no longer gives this node, restart
  those assigned anew while still running, claim the leases of those to start;
  :func:`claimed` then starts the shards whose lease it got and waits for the others.

``maps`` is what the node read once per tick: dataset name → (its :class:`Dataset`, its shard
states). A key is ``(dataset, shard)``.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import NamedTuple

from filodb.model.dataset import Dataset
from filodb.shards.assignment import assign_shards, rebalance_move
from filodb.shards.state import LIVE_STATUSES, ShardState, ShardStatus

Key = tuple[str, int]
Maps = Mapping[str, tuple[Dataset, Sequence[ShardState]]]

SETTLE_INTERVALS = 2
"""Heartbeat intervals (plus half a second) a new coordinator waits before it moves shards away
from owners whose heartbeat it does not see."""


@dataclass(frozen=True)
class MoveShard:
    """Move a shard to status ``to`` (and to ``node`` when given) in the map."""

    dataset: str
    shard: int
    to: ShardStatus
    node: str | None = None


@dataclass(frozen=True)
class RebalanceShard:
    """Assign an Active shard of node ``src`` to node ``dst`` to even out the loads."""

    dataset: str
    shard: int
    src: str
    dst: str


@dataclass(frozen=True)
class ReleaseShard:
    """Stop this node's ingester of a shard; in the background flush it (when ``flush``), then
    release its lease."""

    key: Key
    flush: bool = True


@dataclass(frozen=True)
class RestartShard:
    """Release a shard assigned anew while this node still ran it; it starts over afterwards."""

    key: Key


@dataclass(frozen=True)
class ClaimLeases:
    """Take the ownership leases of the shards to start, then ask :func:`claimed`."""

    states: tuple[ShardState, ...]


@dataclass(frozen=True)
class StartShard:
    """Start an ingester for a shard whose lease this node now holds."""

    state: ShardState


@dataclass(frozen=True)
class WaitForLease:
    """The shard is this node's but another node still holds its lease (said once)."""

    key: Key


class RunningShard(NamedTuple):
    """What the planner knows of one of this node's ingesters (a tuple: a node builds and
    compares one per shard each tick)."""

    status: ShardStatus  # the status the ingester last wrote
    alive: bool = True  # its thread still runs


CoordinatorAction = MoveShard | RebalanceShard
ReconcileAction = ReleaseShard | RestartShard | ClaimLeases


def is_settling(since: float | None, now: float, heartbeat_interval: float) -> bool:
    """True while a coordinator that took the lease at ``since`` (None: not coordinator) waits.

    After a Redis restart every heartbeat key may be gone while every node is alive and about
    to beat again; moving every shard to the first node back would be pure churn."""
    return since is not None and now - since < SETTLE_INTERVALS * heartbeat_interval + 0.5


ERROR_BACKOFF_S = 30.0
"""A shard that went to Error stays there this long (wall-clock seconds since its last change)
before it is assigned again, so a shard that cannot start costs a retry, not a loop per tick."""


def coordinate(
    maps: Maps, live: Sequence[str], settling: bool, now: float | None = None,
) -> list[CoordinatorAction]:  # fmt: skip
    """The coordinator's moves, dataset by dataset; ``live`` is ordered oldest node first.

    With ``now`` (wall-clock seconds), shards in Error for less than :data:`ERROR_BACKOFF_S`
    are left alone like stopped ones."""
    out: list[CoordinatorAction] = []
    for ds, (desc, states) in maps.items():
        out += _coordinate_dataset(ds, desc.shards, states, live, settling, now)
    return out


def _coordinate_dataset(
    ds: str, num_shards: int, states: Sequence[ShardState], live: Sequence[str], settling: bool,
    now: float | None = None,
) -> list[CoordinatorAction]:  # fmt: skip
    owners = {s.shard: s.node if s.status in LIVE_STATUSES else "" for s in states}
    stopped = frozenset(s.shard for s in states if s.status is ShardStatus.STOPPED or (
        now is not None and s.status is ShardStatus.ERROR and now - s.updated < ERROR_BACKOFF_S))  # fmt: skip
    if settling and any(s.status in LIVE_STATUSES and s.node not in live for s in states):
        return []
    status = {s.shard: s.status for s in states}
    out: list[CoordinatorAction] = []
    changes = assign_shards(num_shards, owners, live, stopped)
    for shard, node in changes.items():
        if status[shard] in LIVE_STATUSES:  # its owner died: Down first
            out.append(MoveShard(ds, shard, ShardStatus.DOWN))
        out.append(MoveShard(ds, shard, ShardStatus.ASSIGNED, node))
    if changes or any(st is not ShardStatus.ACTIVE for s, st in status.items() if s not in stopped):
        return out  # one move at a time, once everything is Active
    move = rebalance_move(num_shards, owners, live, stopped)
    if move is not None:
        shard, node = move
        out.append(RebalanceShard(ds, shard, owners[shard], node))
    return out


def lost_leases(got: Mapping[Key, bool], running: Container[Key]) -> list[ReleaseShard]:
    """The running shards whose lease renewal failed: another node holds it, stop at once."""
    return [ReleaseShard(k, flush=False) for k, ok in got.items() if not ok and k in running]


def reconcile(
    maps: Maps, me: str, running: Mapping[Key, RunningShard], releasing: Set[Key], fenced: bool,
) -> list[ReconcileAction]:  # fmt: skip
    """Bring node ``me``'s ingesters in line with the maps.

    ``running`` holds this node's ingesters (in start order), ``releasing`` the shards still
    being handed over (they start again once released); a ``fenced`` node claims nothing.
    Releases come first (shards no longer ours in ``running`` order, then restarts)."""
    mine: set[Key] = set()
    to_start: list[ShardState] = []
    restart: list[Key] = []
    for ds, (_desc, states) in maps.items():
        for st in states:
            if st.node != me or st.status not in LIVE_STATUSES:
                continue
            key = (ds, st.shard)
            mine.add(key)
            ing = running.get(key)
            if (ing is None or not ing.alive) and key not in releasing:
                to_start.append(st)
            elif (ing is not None and st.status is ShardStatus.ASSIGNED
                  and ing.status is not ShardStatus.ASSIGNED):  # fmt: skip
                # assigned anew while we still ran it (stopped and started again between two
                # of our ticks): start over from the store and the log
                restart.append(key)
    out: list[ReconcileAction] = [ReleaseShard(k) for k in running if k not in mine]
    out += [RestartShard(k) for k in restart]
    if to_start and not fenced:
        out.append(ClaimLeases(tuple(to_start)))
    return out


def claimed(
    states: Sequence[ShardState], got: Mapping[Key, bool], waiting: Set[Key],
) -> list[StartShard | WaitForLease]:  # fmt: skip
    """Start the shards whose lease was got; the others wait (said once: ``waiting`` holds the
    shards already said to wait)."""
    out: list[StartShard | WaitForLease] = []
    for st in states:
        key = (st.dataset, st.shard)
        if got[key]:
            out.append(StartShard(st))
        elif key not in waiting:
            out.append(WaitForLease(key))
    return out
