"""A cluster of real processes: Redis, the web server and three worker nodes (no supervisor).

Scenario (one cluster, steps in order, each checked): steady ingestion while the coordinator's
worker is killed with SIGKILL (another node takes the coordinator lease) → its shards are reassigned within 15 s and recovered, queries during the
move answer partially with a warning, and every acknowledged sample is queryable afterwards; a
new node takes a fair share back; a Redis restart is survived without manual action; two
datasets with different shard counts coexist; shards can be stopped and started again.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
import requests

from filodb.shards.nodes import LEASE_KEY
from filodb.testing.cluster import ClusterProcesses
from filodb.testing.wait import wait_for as wait_until

pytestmark = pytest.mark.e2e

SERIES = 64
T0_MS = int(time.time() * 1000) - 1_800_000  # samples from 30 min ago, one batch a second


class Writer(threading.Thread):
    """Writes one sample per series per batch by Influx line protocol; counts acknowledged
    (204) batches only. Failed batches are retried with the same timestamp (idempotent)."""

    def __init__(self, url: str, dataset: str = "prometheus", metric: str = "cl_test") -> None:
        super().__init__(daemon=True)
        self.url, self.dataset, self.metric = url, dataset, metric
        self.acked = 0  # batches acknowledged; batch k has timestamp T0_MS + k * 1000
        self.failures = 0
        self.stop_event = threading.Event()

    def body(self, k: int) -> bytes:
        ts = T0_MS + k * 1000
        return "\n".join(f"{self.metric},s=s{i} value={k} {ts}" for i in range(SERIES)).encode()

    def write_one(self) -> bool:
        try:
            r = requests.post(f"{self.url}/influx/{self.dataset}/write?precision=ms",
                              data=self.body(self.acked), timeout=30)  # fmt: skip
        except requests.RequestException:
            r = None
        if r is not None and r.status_code == 204:
            self.acked += 1
            return True
        self.failures += 1
        return False

    def run(self) -> None:
        while not self.stop_event.is_set():
            if not self.write_one():
                time.sleep(0.2)
            time.sleep(0.02)


def query(c: ClusterProcesses, q: str, dataset: str = "prometheus", **params: str) -> dict:
    path = "/api/v1/query" if dataset == "prometheus" else f"/promql/{dataset}/api/v1/query"
    r = requests.get(c.url + path, params={"query": q, **params}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def total_samples(
    c: ClusterProcesses, w: Writer, dataset: str = "prometheus"
) -> tuple[float, dict]:
    at = (T0_MS + w.acked * 1000) / 1000
    body = query(c, f"sum(count_over_time({w.metric}[1h]))", dataset, time=str(at))
    res = body["data"]["result"]
    return (float(res[0]["value"][1]) if res else 0.0), body


def wait_for(pred, timeout: float, what: str, c: ClusterProcesses):  # type: ignore[no-untyped-def]
    return wait_until(pred, timeout, what, c.log_tail)


def all_active(c: ClusterProcesses, dataset: str = "prometheus") -> dict[int, tuple[str, str]]:
    own = c.owners(dataset)
    return own if all(st == "Active" for _, st in own.values()) else {}


def wait_caught_up(c: ClusterProcesses, dataset: str = "prometheus") -> None:
    wait_for(lambda: all(r["lag"] == 0 and r["status"] == "Active" for r in c.status(dataset)),
             60, "lag 0 on every shard", c)  # fmt: skip


def check_everything_acked_is_there(
    c: ClusterProcesses, w: Writer, dataset: str = "prometheus"
) -> None:
    wait_caught_up(c, dataset)

    def complete() -> tuple[float, dict] | None:
        got, body = total_samples(c, w, dataset)
        return (got, body) if "warnings" not in body and got == w.acked * SERIES else None

    complete_or_last = None
    try:
        complete_or_last = wait_for(complete, 30, "every acknowledged sample queryable", c)
    finally:
        if complete_or_last is None:
            got, body = total_samples(c, w, dataset)
            print(f"{got} samples queryable, {w.acked * SERIES} acknowledged: {body}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> ClusterProcesses:
    c = ClusterProcesses(Path(tmp_path_factory.mktemp("cluster")), shards=8,
                         env={"FILODB_HEARTBEAT_TTL": "5", "FILODB_QUERY_TIMEOUT": "60"})  # fmt: skip
    c.start(workers=3)

    def spread_evenly() -> dict:  # the first node up takes every shard; rebalancing evens out
        own = all_active(c)
        return own if sorted(Counter(n for n, _ in own.values()).values()) == [2, 3, 3] else {}

    wait_for(spread_evenly, 120, "8 shards spread 3/3/2 over 3 nodes", c)
    yield c
    c.stop()


def test_worker_death_new_node_and_redis_restart(cluster: ClusterProcesses) -> None:
    c = cluster
    own = all_active(c)
    loads = Counter(n for n, _ in own.values())
    assert sorted(loads.values()) == [2, 3, 3], own  # 8 shards spread evenly over 3 nodes

    w = Writer(c.url)
    w.start()
    wait_for(lambda: w.acked >= 20, 30, "20 acknowledged batches", c)

    # --- kill -9 a worker during steady ingestion ------------------------------------------
    # the victim is the coordinator's node: worker death and coordinator failover at once
    r = redis.Redis.from_url(c.redis_url)
    victim = r.get(LEASE_KEY).decode()
    assert victim in loads
    moved = sorted(s for s, (n, _) in own.items() if n == victim)
    t_kill = time.monotonic()
    c.kill_worker(victim, signal.SIGKILL)
    partial_seen = []

    def recovered() -> dict:
        _, body = total_samples(c, w)
        if any("partial" in x for x in body.get("warnings", [])):
            partial_seen.append(body["warnings"])
        now = all_active(c)
        return now if now and all(now[s][0] != victim for s in moved) else {}

    after = wait_for(recovered, 15, f"shards {moved} of {victim} Active elsewhere", c)
    took = time.monotonic() - t_kill
    assert took <= 15, took
    assert partial_seen, "no query during the move answered partially with a warning"
    assert all(n != victim for n, _ in after.values())
    new_leader = r.get(LEASE_KEY)
    assert new_leader is not None and new_leader.decode() not in ("", victim)
    wait_for(lambda: w.acked >= 60, 60, "ingestion going on after the move", c)

    # --- a new node takes a fair share back -------------------------------------------------
    c.start_worker("node-4")

    def balanced() -> dict:
        now = all_active(c)
        counts = Counter(n for n, _ in now.values())
        return now if now and sorted(counts.values()) == [2, 3, 3] and "node-4" in counts else {}

    wait_for(balanced, 90, "node-4 owns a fair share", c)

    # --- Redis restart (kill -9, same port, AOF) --------------------------------------------
    acked_before = w.acked
    c.kill_redis()
    time.sleep(5.0)  # past 0.8 x heartbeat_ttl: every node fences itself meanwhile
    c.start_redis()
    # the map comes back from Redis's AOF saying Active; the nodes, fenced meanwhile, re-take
    # their shards on their next tick: served again when a query answers without warnings
    wait_for(lambda: all_active(c) and "warnings" not in total_samples(c, w)[1], 60,
             "every shard served again after the Redis restart", c)  # fmt: skip
    wait_for(lambda: w.acked >= acked_before + 20, 60, "ingestion going on after Redis restart", c)

    w.stop_event.set()
    w.join(60)
    check_everything_acked_is_there(c, w)


def test_two_datasets_and_stop_start_shards(cluster: ClusterProcesses) -> None:
    c = cluster
    r = requests.post(f"{c.url}/api/v1/cluster/other", json={"shards": 2, "spread": 1,
                      "retention": "30d"}, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["data"]["retention_s"] == 30 * 86400
    bad = requests.post(f"{c.url}/api/v1/cluster/bad", json={"shards": 3}, timeout=10)
    assert bad.status_code == 400 and "power of two" in bad.json()["error"]
    wait_for(lambda: all_active(c, "other"), 60, "dataset other Active", c)
    assert len(c.owners("other")) == 2 and len(c.owners("prometheus")) == 8

    w1, w2 = Writer(c.url, "prometheus", "ds_a"), Writer(c.url, "other", "ds_b")
    for _ in range(10):
        assert w1.write_one() and w2.write_one()
    check_everything_acked_is_there(c, w1, "prometheus")
    check_everything_acked_is_there(c, w2, "other")
    none = query(c, "count(ds_b)", "prometheus", time=str((T0_MS + 9000) / 1000))
    assert none["data"]["result"] == []  # datasets do not see each other's series

    # stop a shard: its owner releases it, queries answer partially, strict ones fail
    r = requests.post(f"{c.url}/api/v1/cluster/other/stopshards", json={"shards": [1]}, timeout=10)
    assert r.status_code == 200, r.text
    wait_for(lambda: c.owners("other")[1][1] == "Stopped", 20, "shard 1 Stopped", c)
    got, body = total_samples(c, w2, "other")
    assert any("partial" in x for x in body.get("warnings", [])), body
    assert 0 < got < w2.acked * SERIES
    strict = requests.get(f"{c.url}/promql/other/api/v1/query",
                          params={"query": "count(ds_b)", "partial_response": "false"}, timeout=30)  # fmt: skip
    assert strict.status_code == 503, strict.text
    bad = requests.post(
        f"{c.url}/api/v1/cluster/other/startshards", json={"shards": [0]}, timeout=10
    )
    assert bad.status_code == 400 and "not stopped" in bad.json()["error"]
    r = requests.post(f"{c.url}/api/v1/cluster/other/startshards", json={"shards": [1]}, timeout=10)
    assert r.status_code == 200, r.text
    wait_for(lambda: all_active(c, "other"), 60, "shard 1 Active again", c)
    check_everything_acked_is_there(c, w2, "other")
    # stopped and started again at once (faster than a node's tick): the owner starts over
    for action in ("stop", "start"):
        r = requests.post(
            f"{c.url}/api/v1/cluster/other/{action}shards", json={"shards": [0]}, timeout=10
        )
        assert r.status_code == 200, r.text
    wait_for(lambda: all_active(c, "other"), 60, "shard 0 Active after stop+start", c)
    check_everything_acked_is_there(c, w2, "other")

    by_node = requests.get(f"{c.url}/api/v1/cluster/prometheus/statusByAddress", timeout=10).json()
    owned = sorted(sh["shard"] for row in by_node["data"] for sh in row["shards"])
    assert owned == list(range(8))
    assert all(row["alive"] for row in by_node["data"] if row["shards"])
