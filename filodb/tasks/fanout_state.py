"""One fan-out's bookkeeping as a pure state machine: events in (with ``now``), actions out.

Requests are addressed to *nodes*: one request per node carries every shard of the query that
the node owns (as the shard map says at the start). :class:`FanoutState` knows which node was
sent which shards when, which shards have a receipt, which answered;
:class:`~filodb.tasks.fanout.ShardClient` carries out its actions (a push onto the node's
request list, the reply list's blocking pop) and feeds it the clock (monotonic seconds), the
replies and the local shard map.

- :meth:`~FanoutState.start`: one :class:`SendNode` per node owning Active shards (nodes in
  name order, shards ascending); the shards that are not Active are missing.
- :meth:`~FanoutState.step`, before each wait for a reply: past the deadline, a timeout naming
  the late shards; a shard without a receipt that left Active or changed node in ``current``
  (the local shard map) is missing "(moving)"; a node whose shards have no receipt after its
  resend timer (``RESEND_AFTER_S``, doubling) is sent those shards again, expiring with the
  query's deadline (a request popped by a worker that died before its receipt is lost).
- :meth:`~FanoutState.lost`: the direct connection that carried a node's request broke
  (:mod:`filodb.tasks.direct`): its waiting shards lose their receipts and are sent again at
  once (the caller sends them through Redis).
- :meth:`~FanoutState.reply`: a receipt (``shards``: the shards it covers; ``shard``: one)
  stops the resends of those shards; an answer covers ``shards`` (or the one ``shard``) and
  counts when all of them still wait (a resent request may answer twice; an answer that
  overlaps one already taken is dropped and the shards it covered that still wait are sent
  again); failed shards are missing, except for errors of the query itself (execution, bad
  data, timeout), which abort it.

Each event returns the actions in order; :class:`Done` or :class:`Fail` ends the fan-out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from filodb.errors import BadInputError, ExecutionError, FiloError, QueryTimeoutError
from filodb.shards.state import ShardState, ShardStatus

RESEND_AFTER_S = 2.0  # a request without a receipt by then is sent again (doubling each time)
POLL_S = 0.5  # longest wait for a reply between two steps
# leaf errors that fail the whole query, as the error the web tier answers with
ABORTING_ERRORS: dict[str, type[FiloError]] = {
    "execution": ExecutionError, "bad_data": BadInputError, "timeout": QueryTimeoutError,
}  # fmt: skip


@dataclass
class FanoutResult:
    """Answers (header, arrays) by the first shard each covers (a node answers all the shards
    it serves of a request at once, listed in ``header["shards"]``), and reasons for missing
    shards, by shard."""

    answers: dict[int, tuple[dict[str, Any], list[Any]]] = field(default_factory=dict)
    missing: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendNode:
    """Send (or send again) one request for ``shards`` to ``node``, expiring after
    ``expires_s``."""

    node: str
    shards: tuple[int, ...]
    expires_s: float


@dataclass(frozen=True)
class Done:
    """Every shard answered or is missing."""

    result: FanoutResult


@dataclass(frozen=True)
class Fail:
    """Abort the query: raise ``error(message)``."""

    error: type[FiloError]
    message: str


FanoutAction = SendNode | Done | Fail


class FanoutState:
    """A fan-out of one leaf op over ``shards`` of ``dataset``, given the map ``states``."""

    def __init__(
        self, dataset: str, shards: Sequence[int], states: Mapping[int, ShardState],
        timeout_s: float, resend_after_s: float = RESEND_AFTER_S,
    ) -> None:  # fmt: skip
        self.dataset = dataset
        self.shards = list(shards)
        self.states = states
        self.timeout_s = timeout_s
        self.resend_after_s = resend_after_s
        self.result = FanoutResult()
        self.deadline = float("inf")
        self.node_of: dict[int, str] = {}  # the node each sent shard was sent to
        self.sent_at: dict[str, float] = {}  # by node
        self.wait: dict[str, float] = {}  # resend timer of each node sent to
        self.pending: set[int] = set()  # sent, not answered
        self.received: set[int] = set()  # receipts

    def start(self, now: float) -> list[FanoutAction]:
        """Send to the nodes of the Active shards; the deadline is ``timeout_s`` from ``now``."""
        for s in self.shards:
            st = self.states.get(s)
            if st is None or st.status is not ShardStatus.ACTIVE or not st.node:
                status = st.status.value if st else "Unassigned"
                self.result.missing[s] = f"shard {s} of {self.dataset} is {status}"
                continue
            self.node_of[s] = st.node
        self.deadline = now + self.timeout_s
        self.pending = set(self.node_of)
        out: list[FanoutAction] = []
        for node, shards in self._by_node(self.pending).items():
            out.append(SendNode(node, shards, self.timeout_s))
            self.sent_at[node], self.wait[node] = now, self.resend_after_s
        return out + self._done()

    def _by_node(self, shards: set[int]) -> dict[str, tuple[int, ...]]:
        by: dict[str, list[int]] = {}
        for s in sorted(shards):
            by.setdefault(self.node_of[s], []).append(s)
        return {n: tuple(by[n]) for n in sorted(by)}

    def unreceived(self, now: float) -> list[int]:
        """Pending shards without a receipt (none past the deadline): :meth:`step` wants the
        current shard map only when there are some."""
        return [] if now >= self.deadline else sorted(self.pending - self.received)

    def step(
        self, now: float, current: Mapping[int, ShardState] | None = None,
    ) -> list[FanoutAction]:  # fmt: skip
        """Before waiting for a reply: time out, give up on moving shards (``current`` is the
        shard map now, None when not known), resend."""
        left = self.deadline - now
        if left <= 0:  # the query's deadline passed: a timeout, as Prometheus answers it (503)
            late = ", ".join(str(s) for s in sorted(self.pending))
            msg = f"shards {late} of {self.dataset} did not answer"
            return [Fail(QueryTimeoutError, f"query timed out in expression evaluation ({msg})")]
        if current is not None:
            # A shard that left Active before its node took the request (the node died; the
            # coordinator marked it Down) answers nothing now: partial, not a timeout.
            for s in self.unreceived(now):
                st = current.get(s)
                if (st is None or st.status is not ShardStatus.ACTIVE
                        or st.node != self.node_of[s]):  # fmt: skip
                    self.pending.discard(s)
                    status = st.status.value if st else "Unassigned"
                    self.result.missing[s] = f"shard {s} of {self.dataset} is {status} (moving)"
            if not self.pending:
                return self._done()
        out: list[FanoutAction] = []
        for node, shards in self._by_node(self.pending - self.received).items():
            if now - self.sent_at[node] > self.wait[node]:  # a request lost with a dying worker
                out.append(SendNode(node, shards, left))
                self.sent_at[node], self.wait[node] = now, self.wait[node] * 2
        return out

    def lost(self, node: str, now: float) -> list[FanoutAction]:
        """The connection that carried ``node``'s request broke before all its answers came:
        send its waiting shards again now (nothing past the deadline: :meth:`step` times out)."""
        shards = {s for s in self.pending if self.node_of[s] == node}
        self.received -= shards
        if not shards or now >= self.deadline:
            return []
        self.sent_at[node], self.wait[node] = now, self.resend_after_s
        return [SendNode(node, tuple(sorted(shards)), self.deadline - now)]

    def waiting_nodes(self) -> set[str]:
        """Nodes that still owe answers."""
        return {self.node_of[s] for s in self.pending}

    def poll_s(self, now: float) -> float:
        """How long to wait for a reply before the next :meth:`step`."""
        return max(0.01, min(self.deadline - now, POLL_S))

    def reply(self, header: dict[str, Any], arrays: list[Any]) -> list[FanoutAction]:
        """A node's receipt or a shard's answer."""
        if header.get("received"):
            got = header.get("shards", [header.get("shard", -1)])
            self.received.update(int(s) for s in got)
            return []
        covered = [int(s) for s in header.get("shards", [header.get("shard", -1)])]
        if not all(s in self.pending for s in covered):
            # Answered already (a resent request answers twice). An answer that covers some
            # shards still waiting cannot be split: they lose their receipt, so they are sent
            # again (the request that answered the others covered only those).
            self.received.difference_update(covered)
            return []
        if not header.get("ok"):
            kind = ABORTING_ERRORS.get(str(header.get("error_type")))
            if kind is not None:
                return [Fail(kind, header.get("error", "leaf failed"))]
            for s in covered:
                self.pending.discard(s)
                self.result.missing[s] = header.get("error", f"shard {s} failed")
            return self._done()
        self.pending.difference_update(covered)
        self.result.answers[covered[0]] = (header, arrays)
        return self._done()

    def _done(self) -> list[FanoutAction]:
        return [] if self.pending else [Done(self.result)]
