"""The shard lifecycle as a pure state machine: events in, actions out, no IO.

Statuses (FiloDB's)::

    Unassigned ──▶ Assigned ──▶ Recovery(progress %) ──▶ Active
        ▲             │  ▲            │                    │
        └─────────────┴──┴── Error / Stopped / Down ◀──────┘

:func:`transition` checks a status change against ``_TRANSITIONS`` (keyed by (from, to)) and
returns the new :class:`ShardState` plus the actions to carry out (publish an event). The Redis
adapter (:mod:`filodb.shards.redis_map`) carries them out. A change that the table does not
allow raises :class:`~filodb.errors.InvalidTransition` with the shard's recent history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from enum import StrEnum

from filodb.errors import InvalidTransition


class ShardStatus(StrEnum):
    UNASSIGNED = "Unassigned"
    ASSIGNED = "Assigned"
    RECOVERY = "Recovery"
    ACTIVE = "Active"
    ERROR = "Error"
    STOPPED = "Stopped"
    DOWN = "Down"


S = ShardStatus

# Event name published for a move *into* each status (FiloDB's shard events).
EVENT_FOR_STATUS = {
    S.ASSIGNED: "ShardAssignmentStarted",
    S.RECOVERY: "RecoveryInProgress",
    S.ACTIVE: "IngestionStarted",
    S.ERROR: "IngestionError",
    S.STOPPED: "IngestionStopped",
    S.DOWN: "ShardDown",
    S.UNASSIGNED: "ShardMemberRemoved",
}

LIVE_STATUSES = frozenset({S.ASSIGNED, S.RECOVERY, S.ACTIVE})
"""Statuses in which a shard has an owner that is (or should be) serving it."""

_LEAVE = {S.ERROR, S.STOPPED, S.DOWN, S.UNASSIGNED}
_TRANSITIONS: frozenset[tuple[ShardStatus, ShardStatus]] = frozenset(
    [(S.UNASSIGNED, S.ASSIGNED), (S.UNASSIGNED, S.STOPPED)]
    + [(S.ASSIGNED, to) for to in (S.ASSIGNED, S.RECOVERY, S.ACTIVE, *_LEAVE)]
    + [(S.RECOVERY, to) for to in (S.RECOVERY, S.ACTIVE, S.ASSIGNED, *_LEAVE)]
    + [(S.ACTIVE, to) for to in (S.ASSIGNED, S.RECOVERY, *_LEAVE)]
    + [(frm, to) for frm in (S.ERROR, S.DOWN) for to in (S.ASSIGNED, *_LEAVE)]
    + [(S.STOPPED, S.ASSIGNED), (S.STOPPED, S.UNASSIGNED), (S.STOPPED, S.STOPPED)]
)


@dataclass(frozen=True)
class ShardState:
    """What the shard map records for one shard."""

    dataset: str
    shard: int
    status: ShardStatus = S.UNASSIGNED
    node: str = ""
    progress: int = 0
    updated: float = 0.0
    history: tuple[str, ...] = field(default=(), compare=False)
    error: str = ""  # why the shard is in Error (empty in every other status)

    def to_json(self) -> dict:
        out = {
            "dataset": self.dataset,
            "shard": self.shard,
            "status": self.status.value,
            "node": self.node,
            "progress": self.progress,
            "updated": self.updated,
        }
        if self.error:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, d: dict) -> ShardState:
        return cls(
            d["dataset"], int(d["shard"]), S(d["status"]), d.get("node", ""),
            int(d.get("progress", 0)), float(d.get("updated", 0.0)), error=str(d.get("error", "")),
        )  # fmt: skip


@dataclass(frozen=True)
class PublishShardEvent:
    """Action: write the new state to the map and announce it on pub/sub."""

    event: str
    state: ShardState


def transition(
    state: ShardState, to: ShardStatus, node: str | None = None, progress: int = 0,
    now: float | None = None, error: str = "",
) -> tuple[ShardState, list[PublishShardEvent]]:  # fmt: skip
    """Move ``state`` to status ``to``; returns the new state and the actions to carry out.

    ``error`` is the reason recorded with a move to Error (cut to 500 characters)."""
    if (state.status, to) not in _TRANSITIONS:
        raise InvalidTransition(
            f"shard {state.dataset}/{state.shard}: {state.status.value} -> {to.value}",
            list(state.history),
        )
    new = replace(
        state,
        status=to,
        node=state.node if node is None else node,
        progress=progress if to is S.RECOVERY else (100 if to is S.ACTIVE else 0),
        updated=time.time() if now is None else now,
        history=(state.history + (f"{state.status.value}->{to.value}",))[-16:],
        error=error[:500] if to is S.ERROR else "",
    )
    if to is S.UNASSIGNED:
        new = replace(new, node="")
    event = EVENT_FOR_STATUS[to]
    if to is S.RECOVERY and state.status is not S.RECOVERY:
        event = "RecoveryStarted"  # then RecoveryInProgress with each progress update
    return new, [PublishShardEvent(event, new)]
