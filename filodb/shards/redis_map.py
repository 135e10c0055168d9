"""Redis adapter for cluster state: datasets, the shard map, ingest offsets, shard events.

Keys (all JSON values):

- ``filodb:datasets`` hash: dataset → ``{"shards": N, "spread": S, "created": t}``
- ``filodb:shardmap:<dataset>`` hash: shard → :meth:`ShardState.to_json`
- ``filodb:offsets:<dataset>`` hash: shard → last ingested log offset (int)
- ``filodb:shardstats:<dataset>`` hash: shard → ``{"series": n, ...}``
- ``filodb:owner:<dataset>:<shard>``: the ownership lease of a shard (node name, PX TTL),
  taken before a node recovers the shard and renewed with its heartbeat. A new owner waits
  until the old owner released it or its lease expired: never two owners, even when the old
  one was only cut off (it stops serving once it cannot renew; see ``NodeRuntime``).
- channel ``filodb:shard-events``: one JSON object per status change (the state plus
  ``"event"``). Pub/sub is at-most-once, so the map is the truth and events only announce it;
  a subscriber first gets a ``ShardMapSnapshot`` event per dataset (read after subscribing, so
  nothing falls between the snapshot and the stream) and re-reads the map on reconnect.

Moves made by a shard's owner are compare-and-set on the node (``expect_node``): a node that
lost the shard cannot write over the new owner's state (:class:`FencedError`).

The adapter is thin: the transitions themselves are decided by :mod:`filodb.shards.state`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import cast

import orjson
import redis

from filodb.errors import BadInputError, FencedError, UnknownDatasetError
from filodb.model.dataset import Dataset
from filodb.model.resolution import check_levels, ds_dataset_name
from filodb.shards.state import PublishShardEvent, ShardState, ShardStatus, transition

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "filodb:shard-events"
DATASETS_KEY = "filodb:datasets"
DOWNSAMPLED_KEY = "filodb:downsampled"  # raw dataset -> ms its ds datasets reach


def _map_key(dataset: str) -> str:
    return f"filodb:shardmap:{dataset}"


def _owner_key(dataset: str, shard: int) -> str:
    return f"filodb:owner:{dataset}:{shard}"


# KEYS[1] map hash; ARGV: shard, expected node, new state JSON, channel, event JSON.
_CREATE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
for i = 3, #ARGV do redis.call('HSETNX', KEYS[2], tostring(i - 3), ARGV[i]) end
return 1
"""
_CAS_MOVE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local node = cjson.decode(cur)['node']
  if node ~= ARGV[2] then return 0 end
elseif ARGV[2] ~= '' then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""

# Take or renew leases: KEYS owner keys; ARGV[1] node, ARGV[2] ttl ms. Returns the (1-based)
# positions of the keys another node holds: nothing, when a node renews its own leases.
_CLAIM = """
local out = {}
for i, k in ipairs(KEYS) do
  local cur = redis.call('GET', k)
  if cur == false or cur == ARGV[1] then
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
  else
    out[#out + 1] = i
  end
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class MapsCache:
    """The parsed shard maps of the last :meth:`ShardMapStore.maps` read, by their raw bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raw: dict[bytes, tuple[bytes, dict[bytes, bytes]]] = {}
        self._parsed: dict[str, tuple[Dataset, list[ShardState]]] = {}
        self.parses = 0  # datasets parsed (for tests)

    def update(self, raw_ds: Mapping[bytes, bytes], raw_maps: Mapping[bytes, dict[bytes, bytes]]
               ) -> dict[str, tuple[Dataset, list[ShardState]]]:  # fmt: skip
        with self._lock:
            return self._update(raw_ds, raw_maps)

    def _update(self, raw_ds: Mapping[bytes, bytes], raw_maps: Mapping[bytes, dict[bytes, bytes]]
                ) -> dict[str, tuple[Dataset, list[ShardState]]]:  # fmt: skip
        out: dict[str, tuple[Dataset, list[ShardState]]] = {}
        raw: dict[bytes, tuple[bytes, dict[bytes, bytes]]] = {}
        changed = len(raw_maps) != len(self._raw)
        for k, states in raw_maps.items():
            name = k.decode(errors="replace")
            now = (raw_ds[k], states)
            raw[k] = now
            if self._raw.get(k) == now and name in self._parsed:
                out[name] = self._parsed[name]
                continue
            changed = True
            try:
                desc = Dataset.from_json(name, orjson.loads(raw_ds[k]))
            except (ValueError, KeyError, TypeError) as e:
                log.warning("dataset %r has an unreadable description, left out: %s", name, e)
                raw.pop(k)
                continue
            self.parses += 1
            parsed = sorted((ShardState.from_json(orjson.loads(v)) for v in states.values()),
                            key=lambda st: st.shard)  # fmt: skip
            out[name] = (desc, parsed)
        self._raw = raw
        if changed or out.keys() != self._parsed.keys():
            self._parsed = out
        return self._parsed


class ShardMapStore:
    """Reads and writes cluster state in Redis; safe to share between threads."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=10, decode_responses=False)
        self._cas = self.r.register_script(_CAS_MOVE)
        self._create = self.r.register_script(_CREATE)
        self._claim = self.r.register_script(_CLAIM)
        self._release = self.r.register_script(_RELEASE)

    # --- datasets -------------------------------------------------------------------------
    def create_dataset(
        self, name: str, shards: int, spread: int = 1, exist_ok: bool = True,
        spread_overrides: list | None = None, retention_s: float | None = None,
        limits: object = None, downsample: object = None, default_retention_s: float = 0.0,
        resolution_ms: int = 0,
    ) -> Dataset:  # fmt: skip
        """Create a dataset and its Unassigned shards; returns its description.

        ``retention_s`` (None: the nodes' configured retention, ``default_retention_s``;
        0: forever), ``spread_overrides`` (see :mod:`filodb.model.shardkey`), ``limits``
        (:class:`~filodb.model.limits.DatasetLimits` or its JSON object) and ``downsample``
        levels (see :mod:`filodb.model.resolution`; each level's dataset ``<name>_ds_<min>`` is
        created too, same shards and limits) are fixed at creation. Creating an existing
        dataset again with the same shard count returns it unchanged.
        """
        desc = Dataset.create(name, shards, spread, spread_overrides, retention_s, time.time(),
                              limits, downsample=downsample, resolution_ms=resolution_ms)  # fmt: skip
        check_levels(desc.downsample, desc.retention(default_retention_s))
        for lv in desc.downsample:  # checked (names too) before anything is written
            Dataset.create(
                ds_dataset_name(name, lv.resolution_ms), shards, spread, spread_overrides
            )
        created = self._create_one(desc, exist_ok)
        for lv in created.downsample:
            self.create_dataset(ds_dataset_name(name, lv.resolution_ms), shards, spread,
                                spread_overrides=spread_overrides, retention_s=lv.retention_s,
                                limits=desc.limits, resolution_ms=lv.resolution_ms)  # fmt: skip
        return created

    def _create_one(self, desc: Dataset, exist_ok: bool) -> Dataset:
        name, shards = desc.name, desc.shards
        states = [orjson.dumps(ShardState(name, s).to_json()) for s in range(shards)]
        # one script: nobody (a shard-map snapshot, a node) sees the dataset without its shards
        if not self._create(keys=[DATASETS_KEY, _map_key(name)],
                            args=[name, orjson.dumps(desc.to_json()), *states]):  # fmt: skip
            old = self.dataset(name)
            if old.shards != shards:
                raise BadInputError(
                    f"dataset {name!r} exists with {old.shards} shards, not {shards}"
                )
            if not exist_ok:
                raise BadInputError(f"dataset {name!r} exists")
            return old
        return desc

    def mark_downsampled(self, dataset: str, end_ms: int) -> None:
        """Record that ``dataset``'s downsampled datasets hold its data up to ``end_ms`` (the
        nodes owning their shards reload their part keys when this changes)."""
        self.r.hset(DOWNSAMPLED_KEY, dataset, str(int(end_ms)))

    def downsampled(self) -> dict[str, int]:
        """Raw dataset -> the time its downsampled data reaches (ms), for those ever run."""
        return {(k.decode() if isinstance(k, bytes) else str(k)): int(v)
                for k, v in self.r.hgetall(DOWNSAMPLED_KEY).items()}  # fmt: skip

    def datasets(self) -> dict[str, Dataset]:
        """Every dataset; one whose stored description cannot be read is left out (and
        logged), so it cannot stop the nodes' loops for the others."""
        out = {}
        for k, v in self.r.hgetall(DATASETS_KEY).items():
            name = k.decode(errors="replace") if isinstance(k, bytes) else str(k)
            try:
                out[name] = Dataset.from_json(name, orjson.loads(v))
            except (ValueError, KeyError, TypeError) as e:
                log.warning("dataset %r has an unreadable description, left out: %s", name, e)
        return out

    def dataset(self, name: str) -> Dataset:
        raw = self.r.hget(DATASETS_KEY, name)
        if raw is None:
            raise UnknownDatasetError(f"unknown dataset {name!r}")
        return Dataset.from_json(name, orjson.loads(raw))

    # --- shard map ------------------------------------------------------------------------
    def maps(self, cache: MapsCache | None = None) -> dict[str, tuple[Dataset, list[ShardState]]]:
        """Every dataset with its shard states (sorted by shard), in two round trips (the
        datasets, then every map in one pipeline). With ``cache`` a dataset whose description
        and map are byte for byte what the cache saw last keeps its parsed entry (the same
        objects), and when every one is unchanged the same dict comes back: a node reading
        1024 unchanged shard states a second parses none of them."""
        raw_ds = cast(dict[bytes, bytes], self.r.hgetall(DATASETS_KEY))
        names = sorted(raw_ds)
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(_map_key("").encode() + name)
        raws = pipe.execute() if names else []
        if cache is None:
            cache = MapsCache()
        return cache.update(raw_ds, dict(zip(names, raws, strict=True)))

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
        self, state: ShardState, to: ShardStatus, node: str | None = None, progress: int = 0,
        expect_node: str | None = None, error: str = "",
    ) -> ShardState:  # fmt: skip
        """Transition a shard (validated by the pure state machine) and record it.

        With ``expect_node`` the write happens only if the stored state still names that node
        (compare-and-set); otherwise :class:`FencedError`.
        """
        new, actions = transition(state, to, node, progress, error=error)
        if expect_node is None:
            self.apply(actions)
            return new
        for a in actions:
            st = a.state
            ok = self._cas(
                keys=[_map_key(st.dataset)],
                args=[str(st.shard), expect_node, orjson.dumps(st.to_json()), EVENTS_CHANNEL,
                      orjson.dumps({**st.to_json(), "event": a.event})],
            )  # fmt: skip
            if not ok:
                raise FencedError(
                    f"shard {st.dataset}/{st.shard} is no longer owned by {expect_node}"
                )
        return new

    # --- ownership leases -----------------------------------------------------------------
    def claim(
        self, node: str, shards: list[tuple[str, int]], ttl_ms: int
    ) -> dict[tuple[str, int], bool]:
        """Take or renew the ownership leases of ``shards``; which ones this node holds."""
        if not shards:
            return {}
        out = dict.fromkeys(shards, True)
        for i in self._claim(keys=[_owner_key(d, s) for d, s in shards], args=[node, ttl_ms]):
            out[shards[int(i) - 1]] = False
        return out

    def release(self, node: str, dataset: str, shard: int) -> None:
        """Give up the lease of a shard if this node holds it."""
        self._release(keys=[_owner_key(dataset, shard)], args=[node])

    def lease_holder(self, dataset: str, shard: int) -> str:
        v = self.r.get(_owner_key(dataset, shard))
        return v.decode() if v else ""  # type: ignore[union-attr]  # bytes: decode_responses=False

    def release_all(self, node: str) -> int:
        """Drop every lease a (known dead) node holds; returns how many."""
        n = 0
        for ds, desc in self.datasets().items():
            for s in range(desc.shards):
                n += int(self._release(keys=[_owner_key(ds, s)], args=[node]))
        return n

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

    def set_progress_many(
        self, offsets: Mapping[tuple[str, int], int], stats: Mapping[tuple[str, int], dict]
    ) -> None:
        """:meth:`set_progress` for shards of many datasets, in one round trip."""
        by_ds: dict[str, tuple[dict[str, int], dict[str, bytes]]] = {}
        for (ds, shard), off in offsets.items():
            by_ds.setdefault(ds, ({}, {}))[0][str(shard)] = off
        for (ds, shard), st in stats.items():
            by_ds.setdefault(ds, ({}, {}))[1][str(shard)] = orjson.dumps(st)
        if not by_ds:
            return
        pipe = self.r.pipeline(transaction=False)
        for ds, (offs, sts) in by_ds.items():
            if offs:
                pipe.hset(f"filodb:offsets:{ds}", mapping=offs)  # type: ignore[arg-type]
            if sts:
                pipe.hset(f"filodb:shardstats:{ds}", mapping=sts)  # type: ignore[arg-type]
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
    def snapshot(self) -> list[dict]:
        """One ``ShardMapSnapshot`` event per dataset: its description and every shard state."""
        out = []
        for ds, desc in sorted(self.datasets().items()):
            out.append({"event": "ShardMapSnapshot", "dataset": ds, **desc.to_json(),
                        "shards_state": [st.to_json() for st in self.shard_states(ds)]})  # fmt: skip
        return out

    def follow_events(
        self, timeout_s: float | None = None, snapshot: bool = True,
        idle: Callable[[], bool] | None = None, snapshot_end: bool = False,
    ) -> Iterator[dict]:  # fmt: skip
        """Yield shard events as they are published (blocks; ``timeout_s`` None = forever).

        With ``snapshot`` the current map comes first (read after subscribing), followed by a
        ``ShardMapSnapshotEnd`` event when ``snapshot_end`` is asked for. ``idle`` is
        called whenever no message came for a while; the stream ends when it returns True.
        """
        ps = self.r.pubsub(ignore_subscribe_messages=True)
        ps.subscribe(EVENTS_CHANNEL)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            if snapshot:
                yield from self.snapshot()
                if snapshot_end:
                    yield {"event": "ShardMapSnapshotEnd"}
            while deadline is None or time.monotonic() < deadline:
                msg = ps.get_message(timeout=1.0)
                if msg and msg["type"] == "message":
                    yield orjson.loads(msg["data"])
                elif idle is not None and idle():
                    return
        finally:
            ps.close()
