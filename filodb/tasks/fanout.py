"""Send leaf work to the shards that own the data and gather the answers.

:class:`ShardClient` reads the shard map, sends one leaf request per node that owns Active
shards of the query, down this thread's direct connection to the node when it has one
(:mod:`filodb.tasks.direct`: the replies come back on it), else ``RPUSH``ed onto the node's
list (:mod:`filodb.tasks.rpc`; the request expires with the query's deadline) with a pop of
the per-request reply list (``BLMPOP``: every reply already there at once); the pushes of all
nodes and the first pop go in one pipelined round trip. A connection that breaks while its node
owes answers sends those shards again through Redis at once. A node pushes a
receipt for a request it has not answered within 0.1 s; a request with neither after ``RESEND_AFTER_S`` (doubling) is sent again,
since a request popped by a worker that is being killed is lost. Shards that are not Active, or that answer with a failure, are
reported back so the caller can answer partially with a warning (or fail when strict); shards
that do not answer before the query's deadline make it a timeout (503). Those decisions are
:class:`~filodb.tasks.fanout_state.FanoutState`'s (pure); ``ShardClient`` carries them out.

:class:`ClusterSource` is the :class:`~filodb.query.distributed.ShardedSource` the web tier's
engine reads: each call fans out and merges (series are disjoint across shards, so merging is
concatenation); ``eval_shards`` carries pushed-down subtrees.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import redis

from filodb.errors import BadInputError, QueryTimeoutError, UnavailableError
from filodb.model.cardinality import CardinalityStats
from filodb.model.labels import Labels, Matcher
from filodb.model.shardkey import SpreadRule, query_shards
from filodb.model.source import SeriesBlock
from filodb.query.values import StepVector
from filodb.shards.local_map import LocalShardMap
from filodb.shards.nodes import node_info
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.secret import cluster_secret
from filodb.shards.state import ShardState
from filodb.tasks.direct import HOSTNAME, Link, Links, on_loopback, wait_readable
from filodb.tasks.fanout_state import (
    RESEND_AFTER_S,
    Fail,
    FanoutAction,
    FanoutResult,
    FanoutState,
    SendNode,
)
from filodb.tasks.rpc import LeafRequest, request_key
from filodb.tasks.wire import matchers_to_wire, unflat_labels, unpack, unpack_block, unpack_steps

MAX_POP = 256  # replies taken from the reply list per round trip
# the wait on the Redis reply list while direct connections owe answers too (their replies
# are read between two such waits)
MIXED_POLL_S = 0.005


class ShardClient:
    """Fan-out of leaf ops; thread-safe (Flask threads share one). With ``direct`` a request
    goes down this thread's connection to its node when the node advertises one
    (:mod:`filodb.tasks.direct`; ``secret``: the cluster's, else the one in Redis), else onto
    the node's Redis list."""

    def __init__(self, shard_map: ShardMapStore, redis_url: str,
                 local_map: LocalShardMap | None = None,
                 resend_after_s: float = RESEND_AFTER_S, direct: bool = True,
                 secret: str = "") -> None:  # fmt: skip
        self.shard_map = shard_map
        self.local_map = local_map
        self.resend_after_s = resend_after_s
        self._r = redis.Redis.from_url(redis_url, socket_timeout=None)
        self._secret_conf = secret
        self._secret = b""
        self.links = Links(self._leaf_addr, self._cluster_secret) if direct else None

    def _cluster_secret(self) -> bytes:
        """The secret the nodes' direct ports ask for (``secret``, else Redis's: read once)."""
        if not self._secret:
            try:
                self._secret = cluster_secret(self._r, self._secret_conf)
            except redis.RedisError as e:
                raise ConnectionError(f"no cluster secret: {e}") from e
        return self._secret

    def _leaf_addr(self, node: str) -> str | None:
        """The address ``node`` takes direct requests on, from its registry entry (None: none,
        or Redis cannot say now: asked again after :data:`~filodb.tasks.direct.RETRY_AFTER_S`)."""
        try:
            info = node_info(self._r, node)
        except redis.RedisError:
            return None
        if info is None:
            return None
        addr = str(info.get("leaf_addr") or "")
        try:
            if addr and on_loopback(addr) and info.get("host", HOSTNAME) != HOSTNAME:
                return None  # the node's own loopback, on another machine: out of reach here
        except BadInputError:
            return None
        return addr or None

    def shard_states(self, dataset: str) -> dict[int, ShardState]:
        """The dataset's shard map: the event-fed local copy, else one Redis read."""
        if self.local_map is not None:
            return self.local_map.states(dataset)
        return {s.shard: s for s in self.shard_map.shard_states(dataset)}

    def call(
        self, dataset: str, shards: Sequence[int], op: str, params: dict[str, Any],
        timeout_s: float, states: dict[int, ShardState] | None = None,
    ) -> FanoutResult:  # fmt: skip
        """Run a leaf op on ``shards``; ``states`` (the shard map) is read when not given."""
        if states is None:
            states = self.shard_states(dataset)
        reply_key = f"filodb:reply:{uuid.uuid4().hex}"
        fan = FanoutState(dataset, shards, states, timeout_s, self.resend_after_s)
        sends: list[SendNode] = []  # sent with the next wait
        links: dict[str, Link] = {}  # node -> the connection its request went down
        via_redis = False  # some request went onto a Redis list: its replies come there

        def carry_out(actions: list[FanoutAction]) -> FanoutResult | None:
            for a in actions:  # the reply list expires by itself (leaf.REPLY_TTL_S)
                if isinstance(a, SendNode):
                    sends.append(a)
                elif isinstance(a, Fail):
                    raise a.error(a.message)
                else:
                    return a.result
            return None

        try:
            done = carry_out(fan.start(time.monotonic()))
            while done is None:
                now = time.monotonic()
                current = None
                if self.local_map is not None and sends == [] and fan.unreceived(now):
                    current = self.local_map.states(dataset)
                done = carry_out(fan.step(now, current))
                if done is not None:
                    break
                pushes = self._send_direct(sends, reply_key, dataset, op, params, links)
                sends.clear()
                via_redis = via_redis or bool(pushes)
                if via_redis:  # the pushes and a wait for replies share one round trip
                    owing = fan.waiting_nodes() & links.keys()
                    poll = MIXED_POLL_S if owing else fan.poll_s(now)
                    for raw in self._push_and_pop(pushes, reply_key, poll):
                        done = carry_out(fan.reply(*unpack(raw)))
                        if done is not None:
                            break
                if done is None and links:
                    wait = 0.0 if via_redis else fan.poll_s(now)
                    done = self._read_direct(links, wait, reply_key, fan, carry_out)
            return done
        finally:  # a connection still owing answers carries nothing useful any more
            for node in fan.waiting_nodes() & links.keys():
                if self.links is not None:
                    self.links.drop(links[node])

    def _send_direct(
        self, sends: list[SendNode], reply_key: str, dataset: str, op: str,
        params: dict[str, Any], links: dict[str, Link],
    ) -> list[tuple[str, bytes, int]]:  # fmt: skip
        """Send what can go down a direct connection; the rest, as (node, request, ttl)."""
        pushes: list[tuple[str, bytes, int]] = []
        for send in sends:
            req = LeafRequest(reply_key, dataset, send.shards, op, params,
                              time.time() + send.expires_s).pack()  # fmt: skip
            link = self.links.get(send.node) if self.links is not None else None
            if link is not None:
                try:
                    link.send(req)
                    links[send.node] = link
                    continue
                except OSError:
                    self.links.broken(link)  # type: ignore[union-attr]
                    links.pop(send.node, None)
            pushes.append((send.node, req, int(send.expires_s) + 1))
        return pushes

    def _push_and_pop(
        self, pushes: list[tuple[str, bytes, int]], reply_key: str, poll_s: float
    ) -> list[bytes]:
        """Push requests onto their nodes' lists and pop the replies there (one round trip)."""
        pipe = self._r.pipeline(transaction=False)
        for node, req, ttl in pushes:
            key = request_key(node)
            pipe.rpush(key, req)
            # a dead node's list goes once its last request has expired
            pipe.expire(key, ttl, nx=True)
            pipe.expire(key, ttl, gt=True)
        pipe.blmpop(poll_s, 1, reply_key, direction="LEFT", count=MAX_POP)
        got = pipe.execute()[-1]
        return cast(list[bytes], got[1] if got else [])  # no decode_responses

    def _read_direct(
        self, links: dict[str, Link], wait_s: float, reply_key: str, fan: FanoutState,
        carry_out: Callable[[list[FanoutAction]], FanoutResult | None],
    ) -> FanoutResult | None:  # fmt: skip
        """Read the replies that came on the connections within ``wait_s``; a connection that
        broke is dropped and its node's waiting shards are sent again (through Redis)."""
        owed = [links[n] for n in sorted(fan.waiting_nodes() & links.keys())]
        for link in wait_readable(owed, wait_s):
            try:
                frames = link.pump()
            except (OSError, ConnectionError):
                assert self.links is not None
                self.links.broken(link)
                del links[link.node]
                done = carry_out(fan.lost(link.node, time.monotonic()))
                if done is not None:
                    return done
                continue
            for rid, msg in frames:
                if rid != reply_key:
                    continue  # a late reply of an earlier request on this connection
                done = carry_out(fan.reply(*unpack(msg)))
                if done is not None:
                    return done
        return None


class ClusterSource:
    """A SeriesSource over every shard of one dataset (through :class:`ShardClient`).

    ``warnings`` collects a message per shard that could not answer; with ``strict`` a missing
    shard raises :class:`UnavailableError` instead.
    """

    def __init__(
        self, client: ShardClient, dataset: str, num_shards: int, spread: int | SpreadRule,
        timeout_s: float, strict: bool = False,
    ) -> None:  # fmt: skip
        self.client = client
        self.dataset = dataset
        self.num_shards = num_shards
        self.spread = spread
        self.timeout_s = timeout_s
        self.strict = strict
        self.warnings: list[str] = []
        self.truncated = False  # a series/label_names/label_values answer was cut to its limit
        self.deadline = time.monotonic() + timeout_s
        self._states: dict[int, ShardState] | None = None  # read once per query

    def _fanout(self, matchers: Sequence[Matcher], op: str, params: dict[str, Any]) -> FanoutResult:
        return self.fanout_shards(query_shards(matchers, self.num_shards, self.spread), op, params)

    def fanout_shards(self, shards: list[int], op: str, params: dict[str, Any]) -> FanoutResult:
        """Run a leaf op on ``shards``; missing shards become warnings (or an error if strict)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise QueryTimeoutError("query timed out in expression evaluation")
        if self._states is None:
            self._states = self.client.shard_states(self.dataset)
        res = self.client.call(self.dataset, shards, op, params, left, self._states)
        if res.missing:
            if self.strict:
                raise UnavailableError("; ".join(res.missing[s] for s in sorted(res.missing)))
            for s in sorted(res.missing):
                msg = f"partial response: {res.missing[s]}"
                if msg not in self.warnings:
                    self.warnings.append(msg)
        return res

    def eval_shards(
        self, shards: Sequence[int], params: dict[str, Any]
    ) -> list[tuple[StepVector, Sequence[int]]]:
        res = self.fanout_shards(list(shards), "eval", params)
        return [
            (unpack_steps(h, a), h.get("read", (0, 0))) for _, (h, a) in sorted(res.answers.items())
        ]

    def _params(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> dict[str, Any]:
        return {
            "matchers": matchers_to_wire(list(matchers)),
            "start": int(start_ms),
            "end": int(end_ms),
        }

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> SeriesBlock:
        res = self._fanout(matchers, "select", self._params(matchers, start_ms, end_ms))
        return SeriesBlock.concat([unpack_block(h, a) for _, (h, a) in sorted(res.answers.items())])

    def series(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, limit: int = 0
    ) -> list[Labels]:
        """Matching label sets; with ``limit`` > 0 each node answers at most ``limit`` of them
        (``truncated`` is set when some were left out anywhere)."""
        p = {**self._params(matchers, start_ms, end_ms), "limit": limit}
        res = self._fanout(matchers, "series", p)
        out: set[Labels] = set()
        for h, _ in res.answers.values():
            out.update(unflat_labels(h["labels"]))
        return self._limited(sorted(out), res, limit)

    def label_names(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, limit: int = 0
    ) -> list[str]:
        p = {**self._params(matchers, start_ms, end_ms), "limit": limit}
        res = self._fanout(matchers, "label_names", p)
        return self._limited(sorted({v for h, _ in res.answers.values() for v in h["values"]}),
                             res, limit)  # fmt: skip

    def label_values(
        self, name: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int, limit: int = 0
    ) -> list[str]:
        p = {**self._params(matchers, start_ms, end_ms), "name": name, "limit": limit}
        res = self._fanout(matchers, "label_values", p)
        return self._limited(sorted({v for h, _ in res.answers.values() for v in h["values"]}),
                             res, limit)  # fmt: skip

    def _limited(self, items: list, res: FanoutResult, limit: int) -> list:
        """At most ``limit`` (> 0) of the merged ``items``; ``truncated`` when a node or the
        merge left some out."""
        if any(h.get("truncated") for h, _ in res.answers.values()) or 0 < limit < len(items):
            self.truncated = True
        return items[:limit] if limit > 0 else items

    def exemplars(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int
                  ) -> list[tuple[Labels, list[tuple[Labels, float, int]]]]:  # fmt: skip
        """Per matching series with exemplars in the range: its labels and its exemplars as
        (labels, value, ms), oldest first (the ``exemplars`` leaf op on every shard asked)."""
        res = self._fanout(matchers, "exemplars", self._params(matchers, start_ms, end_ms))
        out = []
        for _, (h, (ts, vals)) in sorted(res.answers.items()):
            labels = unflat_labels(h["labels"])
            ends = np.cumsum(h["counts"]).tolist()
            starts = [0, *ends][:-1]
            for lb, a, b in zip(unflat_labels(h["series"]), starts, ends, strict=True):
                out.append((lb, list(zip(labels[a:b], vals[a:b].tolist(), ts[a:b].tolist(),
                                         strict=True))))  # fmt: skip
        return sorted(out)

    def cardinality(self) -> CardinalityStats:
        """Series per label value of every shard (the ``tsdb_status`` leaf op), merged."""
        res = self.fanout_shards(list(range(self.num_shards)), "tsdb_status", {})
        parts = [CardinalityStats.from_wire(h, a) for _, (h, a) in sorted(res.answers.items())]
        return CardinalityStats.merge(parts) if parts else CardinalityStats()
