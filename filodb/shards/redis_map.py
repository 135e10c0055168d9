"""Redis adapter for cluster state: datasets, the shard map, ingest offsets, shard events.

Keys (all JSON values):

- ``filodb:datasets`` hash: dataset → ``{"shards": N, "spread": S, "created": t}``
- ``filodb:shardmap:<dataset>`` hash: shard → :meth:`ShardState.to_json`
- ``filodb:offsets:<dataset>`` hash: shard → last ingested log offset (int)
- ``filodb:shardstats:<dataset>`` hash: shard → ``{"series": n, ...}``
- channel ``filodb:shard-events``: one JSON object per status change (the state plus
  ``"event"``). Pub/sub is at-most-once, so the map is the truth and events only announce it;
  a subscriber re-reads the map on (re)connect.

The adapter is thin: the transitions themselves are decided by :mod:`filodb.shards.state`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import redis

from filodb.errors import BadInputError, UnknownDatasetError
from filodb.model.shardkey import check_shards
from filodb.shards.state import PublishShardEvent, ShardState, ShardStatus, transition

EVENTS_CHANNEL = "filodb:shard-events"
DATASETS_KEY = "filodb:datasets"


def _map_key(dataset: str) -> str:
    return f"filodb:shardmap:{dataset}"


class ShardMapStore:
    """Reads and writes cluster state in Redis; safe to share between threads."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=10, decode_responses=False)

    # --- datasets -------------------------------------------------------------------------
    def create_dataset(self, name: str, shards: int, spread: int = 1, exist_ok: bool = True) -> dict:
        """Create a dataset and its Unassigned shards; returns its description."""
        if not name or not all(c.isalnum() or c in "_-" for c in name):
            raise BadInputError(f"invalid dataset name {name!r}: use letters, digits, _ and -")
        check_shards(shards, spread)
        desc = {"shards": shards, "spread": spread, "created": time.time()}
        if not self.r.hsetnx(DATASETS_KEY, name, orjson.dumps(desc)):
            old = self.dataset(name)
            if not exist_ok or (old["shards"], old["spread"]) != (shards, spread):
                if old["shards"] != shards:
                    raise BadInputError(
                        f"dataset {name!r} exists with {old['shards']} shards, not {shards}"
                    )
            return old
        pipe = self.r.pipeline()
        for s in range(shards):
            pipe.hsetnx(_map_key(name), str(s), orjson.dumps(ShardState(name, s).to_json()))
        pipe.execute()
        return desc

    def datasets(self) -> dict[str, dict]:
        return {k.decode(): orjson.loads(v) for k, v in self.r.hgetall(DATASETS_KEY).items()}

    def dataset(self, name: str) -> dict:
        raw = self.r.hget(DATASETS_KEY, name)
        if raw is None:
            raise UnknownDatasetError(f"unknown dataset {name!r}")
        return orjson.loads(raw)

    # --- shard map ------------------------------------------------------------------------
    def shard_states(self, dataset: str) -> list[ShardState]:
        raw = self.r.hgetall(_map_key(dataset))
        states = [ShardState.from_json(orjson.loads(v)) for v in raw.values()]
        return sorted(states, key=lambda s: s.shard)

    def shard_state(self, dataset: str, shard: int) -> ShardState:
        raw = self.r.hget(_map_key(dataset), str(shard))
        return ShardState.from_json(orjson.loads(raw)) if raw else ShardState(dataset, shard)

    def apply(self, actions: list[PublishShardEvent]) -> None:
        """Carry out actions: write each state, then publish its event."""
        pipe = self.r.pipeline()
        for a in actions:
            st = a.state
            pipe.hset(_map_key(st.dataset), str(st.shard), orjson.dumps(st.to_json()))
            pipe.publish(EVENTS_CHANNEL, orjson.dumps({**st.to_json(), "event": a.event}))
        pipe.execute()

    def move(
        self, state: ShardState, to: ShardStatus, node: str | None = None, progress: int = 0
    ) -> ShardState:
        """Transition a shard (validated by the pure state machine) and record it."""
        new, actions = transition(state, to, node, progress)
        self.apply(actions)
        return new

    # --- offsets and stats ----------------------------------------------------------------
    def set_progress(self, dataset: str, offsets: dict[int, int], stats: dict[int, dict]) -> None:
        pipe = self.r.pipeline()
        if offsets:
            pipe.hset(f"filodb:offsets:{dataset}", mapping={str(k): v for k, v in offsets.items()})
        if stats:
            pipe.hset(
                f"filodb:shardstats:{dataset}",
                mapping={str(k): orjson.dumps(v) for k, v in stats.items()},
            )
        pipe.execute()

    def progress(self, dataset: str) -> tuple[dict[int, int], dict[int, dict]]:
        pipe = self.r.pipeline()
        pipe.hgetall(f"filodb:offsets:{dataset}")
        pipe.hgetall(f"filodb:shardstats:{dataset}")
        offs, stats = pipe.execute()
        return (
            {int(k): int(v) for k, v in offs.items()},
            {int(k): orjson.loads(v) for k, v in stats.items()},
        )

    # --- events ---------------------------------------------------------------------------
    def follow_events(self, timeout_s: float | None = None) -> Iterator[dict]:
        """Yield shard events as they are published (blocks; ``timeout_s`` None = forever)."""
        ps = self.r.pubsub(ignore_subscribe_messages=True)
        ps.subscribe(EVENTS_CHANNEL)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while deadline is None or time.monotonic() < deadline:
                msg = ps.get_message(timeout=1.0)
                if msg and msg["type"] == "message":
                    yield orjson.loads(msg["data"])
        finally:
            ps.close()
