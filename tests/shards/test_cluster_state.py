"""Ownership leases, compare-and-set moves, rebalancing, the event-fed local map, fencing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filodb.config import Config
from filodb.errors import BadInputError, FencedError
from filodb.model.dataset import Dataset
from filodb.model.labels import Matcher, make_labels
from filodb.model.shardkey import SpreadRule, query_shards, shards_for_series
from filodb.node.runtime import NodeRuntime
from filodb.shards.assignment import assign_shards, rebalance_move
from filodb.shards.local_map import LocalShardMap
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.state import ShardStatus
from filodb.testing.wait import eventually, wait_for

S = ShardStatus
T = TypeVar("T")


def test_lease_has_one_holder_until_released_or_expired(redis_url: str) -> None:
    store = ShardMapStore(redis_url)
    key = [("ds", 0)]
    assert store.claim("a", key, 300) == {("ds", 0): True}
    assert store.claim("b", key, 300) == {("ds", 0): False}  # never two owners
    assert store.claim("a", key, 300) == {("ds", 0): True}  # renewal
    store.release("b", "ds", 0)  # not b's to release
    assert store.lease_holder("ds", 0) == "a"
    store.release("a", "ds", 0)
    assert store.claim("b", key, 300) == {("ds", 0): True}
    assert store.claim("c", key, 300) == {("ds", 0): False}
    assert 0 < store.r.pttl("filodb:owner:ds:0") <= 300
    # b stopped renewing: its lease expires in Redis, then c gets it
    assert eventually(lambda: _claimed(store, "c", key), timeout=5, interval=0.05)


def _claimed(store: ShardMapStore, node: str, key: list[tuple[str, int]]) -> bool:
    got = store.claim(node, key, 300)
    assert got == {key[0]: True}
    return True


def test_owner_moves_are_compare_and_set(redis_url: str) -> None:
    store = ShardMapStore(redis_url)
    store.create_dataset("ds", 2, 0)
    st = store.shard_state("ds", 0)
    st = store.move(st, S.ASSIGNED, "a")
    stale = store.move(st, S.RECOVERY, "a", expect_node="a")
    store.move(store.shard_state("ds", 0), S.ASSIGNED, "b")  # the coordinator moved it on
    with pytest.raises(FencedError):
        store.move(stale, S.ACTIVE, "a", expect_node="a")
    assert store.shard_state("ds", 0).node == "b"
    assert store.shard_state("ds", 0).status is S.ASSIGNED


@given(st.integers(0, 5).map(lambda n: 1 << n), st.lists(st.integers(0, 7), min_size=0, max_size=64),
       st.integers(1, 6))  # fmt: skip
def test_assignment_then_rebalance_converges_evenly(
    shards: int, seed: list[int], nodes: int
) -> None:
    names = [f"n{i}" for i in range(nodes)]
    owners = {
        s: names[seed[s] % nodes] if s < len(seed) and seed[s] < 6 else "" for s in range(shards)
    }
    owners.update(assign_shards(shards, owners, names))
    moves = 0
    while (m := rebalance_move(shards, owners, names)) is not None:
        shard, dst = m
        assert owners[shard] != dst
        owners[shard] = dst
        moves += 1
        assert moves <= shards
    loads = [sum(1 for o in owners.values() if o == n) for n in names]
    assert max(loads) - min(loads) <= 1
    assert all(owners[s] in names for s in range(shards))  # every shard has one live owner


def test_spread_overrides_route_ingest_and_queries_alike() -> None:
    ds = Dataset.from_json("d", {"shards": 16, "spread": 0,
                                 "spread_overrides": [{"_ws_": "w", "_ns_": "big", "spread": 3}]})  # fmt: skip
    assert Dataset.from_json("d", ds.to_json()) == ds
    rule = ds.spread_rule
    assert isinstance(rule, SpreadRule)
    big = [
        make_labels({"__name__": "m", "_ws_": "w", "_ns_": "big", "i": str(i)}) for i in range(400)
    ]
    small = [
        make_labels({"__name__": "m", "_ws_": "w", "_ns_": "small", "i": str(i)})
        for i in range(400)
    ]
    got_big = set(shards_for_series(big, 16, rule).tolist())
    assert len(got_big) == 8  # spread 3: 2**3 shards
    assert len(set(shards_for_series(small, 16, rule).tolist())) == 1
    q = [Matcher("__name__", "=", "m"), Matcher("_ws_", "=", "w"), Matcher("_ns_", "=", "big")]
    assert set(query_shards(q, 16, rule)) == got_big
    with pytest.raises(BadInputError):
        ShardMapStore.create_dataset(None, "x", 4, 0, spread_overrides=[{"_ws_": "a", "spread": 3}])  # type: ignore[arg-type]


def test_local_map_follows_events_and_reads_through_when_not_synced(redis_url: str) -> None:
    store = ShardMapStore(redis_url)
    store.create_dataset("ds", 4, 0)
    lm = LocalShardMap(store)
    try:
        assert lm.wait_synced(5)
        assert lm.states("ds")[2].status is S.UNASSIGNED
        store.move(store.shard_state("ds", 2), S.ASSIGNED, "n1")
        wait_for(lambda: lm.states("ds")[2].status is S.ASSIGNED, 5, "the move's event seen",
                 interval=0.01)  # fmt: skip
        assert lm.states("ds")[2].node == "n1"
        store.create_dataset("later", 2, 0)  # no event: read through, never a stale miss
        assert sorted(lm.states("later")) == [0, 1]
    finally:
        lm.close()
    cold = LocalShardMap(store, start=False)
    assert cold.states("ds")[2].node == "n1" and cold.fallback_reads == 1


def test_local_map_confirms_a_shard_not_active_with_redis(redis_url: str) -> None:
    """The copy lags Redis by an event's delivery: a shard it still holds in Recovery but
    Redis has Active (a writer saw Active and queried at once) is answered Active."""
    store = ShardMapStore(redis_url)
    store.create_dataset("lag", 2, 0)
    for shard in (0, 1):
        st = store.move(store.shard_state("lag", shard), S.ASSIGNED, "n1")
        st = store.move(st, S.RECOVERY, "n1")
    lm = LocalShardMap(store, start=False)  # fed by hand: events that have not arrived yet
    lm.apply({"event": "ShardMapSnapshot", "dataset": "lag",
              "shards_state": [s.to_json() for s in store.shard_states("lag")]})  # fmt: skip
    lm.apply({"event": "ShardMapSnapshotEnd"})
    assert lm.synced and {s.status for s in lm.states("lag").values()} == {S.RECOVERY}
    store.move(store.shard_state("lag", 1), S.ACTIVE, "n1")  # its event not delivered
    got = lm.states("lag")
    assert got[1].status is S.ACTIVE and got[0].status is S.RECOVERY
    assert lm.confirm_reads == 2 and lm.fallback_reads == 0
    lm.apply({**store.shard_state("lag", 1).to_json(), "event": "ShardStatusActive"})
    store.move(store.shard_state("lag", 0), S.ACTIVE, "n1")
    lm.apply({**store.shard_state("lag", 0).to_json(), "event": "ShardStatusActive"})
    assert {s.status for s in lm.states("lag").values()} == {S.ACTIVE}
    assert lm.confirm_reads == 2  # all Active in the copy: no Redis read


class _NoRedis:
    """A shard-map store whose event stream always fails, as with Redis down."""

    def __init__(self) -> None:
        self.tries = 0

    def follow_events(self, **_: object) -> Iterator[dict[str, object]]:
        self.tries += 1
        raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")


def test_local_map_warns_once_per_outage_not_once_per_retry(caplog: pytest.LogCaptureFixture
                                                            ) -> None:  # fmt: skip
    store = _NoRedis()
    caplog.set_level(logging.WARNING, logger="filodb.shards.local_map")
    lm = LocalShardMap(cast(ShardMapStore, store))
    try:
        wait_for(lambda: store.tries >= 4, 10, "four tries to reconnect", interval=0.05)
    finally:
        lm.close()
    lost = [r for r in caplog.records if "shard map stream lost" in r.getMessage()]
    assert len(lost) == 1 and "Connection refused" in lost[0].getMessage()
    assert not lm.synced


def test_node_fences_itself_when_it_cannot_renew(redis_url: str, tmp_path: Path) -> None:
    clock = [1000.0]
    cfg = Config(redis_url=redis_url, heartbeat_ttl=5.0, data_dir=str(tmp_path))
    rt = NodeRuntime(cfg, "n1", clock=lambda: clock[0])
    try:
        rt.shard_map.create_dataset("ds", 1, 0)
        rt.registry.register("n1")
        rt.tick()  # coordinator: ds/0 goes to n1
        rt.tick()  # n1 takes its lease and starts it
        ing = rt.ingesters[("ds", 0)]
        memstore = eventually(lambda: _not_none(rt.memstore("ds", 0)), timeout=30)
        assert memstore is ing.memstore
        clock[0] += 3.9  # no renewal for 0.78 x ttl: still serving
        rt.check_fence()
        assert not rt.fenced() and rt.memstore("ds", 0) is memstore
        clock[0] += 0.2  # 0.82 x ttl: must stop serving before the lease can expire
        assert rt.fenced() and rt.memstore("ds", 0) is None
        rt.check_fence()
        assert rt.ingesters == {} and rt.fenced_count == 1
        ing.join(10)
        assert not ing.is_alive()
        rt.tick()  # renewed: the shard is still n1's, it starts over
        assert not rt.fenced() and rt.ingesters[("ds", 0)] is not ing
    finally:
        rt.stop()


def _not_none(x: T | None) -> T:
    assert x is not None
    return x


def test_maps_are_parsed_again_only_when_their_bytes_change(redis_url: str) -> None:
    """An idle node reads every map each tick: unchanged bytes give the same parsed objects
    (no dataset parsed again); a move re-parses only its dataset; a new dataset appears."""
    from filodb.shards.redis_map import MapsCache

    store = ShardMapStore(redis_url)
    store.create_dataset("m1", 4)
    store.create_dataset("m2", 4)
    cache = MapsCache()
    first = store.maps(cache)
    assert sorted(first) == ["m1", "m2"] and cache.parses == 2
    assert [st.shard for st in first["m1"][1]] == [0, 1, 2, 3]
    assert store.maps(cache) is first and cache.parses == 2
    st = store.shard_state("m2", 1)
    store.move(st, S.ASSIGNED, "n1")
    moved = store.maps(cache)
    assert cache.parses == 3 and moved["m1"] is first["m1"]
    assert moved["m2"][1][1].status is S.ASSIGNED and moved["m2"][1][1].node == "n1"
    assert moved == {ds: (d, store.shard_states(ds)) for ds, d in store.datasets().items()}
    store.create_dataset("m3", 2)
    assert sorted(store.maps(cache)) == ["m1", "m2", "m3"] and cache.parses == 4
