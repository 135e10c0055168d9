"""The production backends end to end on real servers: remote write → Kafka → worker →
Cassandra flush → worker killed (-9) and restarted → recovery from Cassandra and Kafka → query.

Kafka (KRaft) and Cassandra come from ``scripts/services`` (jars from Maven Central); this
module fails, never skips, when they cannot start.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.store import open_store
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import wait_for

pytestmark = pytest.mark.e2e

N_SERIES = 40
N_SAMPLES = 300
T0_MS = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000


@pytest.fixture(scope="module")
def backends(kafka_env: dict[str, str], cassandra_env: dict[str, str]) -> dict[str, str]:
    """FILODB_* settings reaching this session's Kafka and Cassandra (tests/conftest.py)."""
    return {**kafka_env, **cassandra_env}


@pytest.fixture(scope="module")
def up(backends: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> UpProcess:
    tag = uuid.uuid4().hex[:8]
    env = {**backends, "FILODB_LOG": "kafka", "FILODB_STORE": "cassandra",
           "FILODB_KAFKA_TOPIC_PREFIX": f"e2e{tag}-", "FILODB_CASSANDRA_KEYSPACE": f"e2e{tag}",
           "FILODB_FLUSH_INTERVAL": "4", "FILODB_FLUSH_GROUPS": "2"}  # fmt: skip
    proc = UpProcess(Path(tmp_path_factory.mktemp("backends")) / "data", shards=4, env=env)
    proc.start(wait_s=180)
    yield proc
    proc.stop()


def _write(url: str) -> None:
    series = [
        make_labels({"__name__": "bk_total", "job": "e2e", "i": str(i)}) for i in range(N_SERIES)
    ]
    ts = T0_MS + 10_000 * np.arange(N_SAMPLES, dtype=np.int64)
    for a in range(0, N_SAMPLES, 100):  # time-major requests, as a scraper sends them
        k = min(100, N_SAMPLES - a)
        batch = SampleBatch(series, np.repeat(np.arange(N_SERIES), k), np.tile(ts[a:a + k], N_SERIES),
                            np.repeat(np.arange(N_SERIES, dtype=float), k) + np.tile(np.arange(a, a + k), N_SERIES))  # fmt: skip
        r = requests.post(url + "/api/v1/write", data=encode_write_request(batch), timeout=60,
                          headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"})  # fmt: skip
        assert r.status_code == 204, r.text


def _answer(url: str) -> dict:
    """Samples stored (count) and their sum, over every series, at the last sample's time."""
    at = (T0_MS + 10_000 * (N_SAMPLES - 1)) / 1000
    out: dict = {"warn": []}
    for key, q in (("count", "sum(count_over_time(bk_total[2h]))"),
                   ("sum", "sum(sum_over_time(bk_total[2h]))")):  # fmt: skip
        r = requests.get(url + "/api/v1/query", params={"query": q, "time": at}, timeout=60)
        assert r.status_code == 200, r.text
        out[key] = r.json()["data"]["result"]
        out["warn"] += r.json().get("warnings", [])
    return out


def _status(url: str) -> list[dict]:
    return requests.get(url + "/api/v1/cluster/prometheus/status", timeout=10).json()["data"]


def _wait(pred, timeout: float, what: str, up: UpProcess):  # type: ignore[no-untyped-def]
    return wait_for(
        pred, timeout, what, up.log_tail, 0.3, (requests.RequestException, KeyError, ValueError)
    )


def test_remote_write_kafka_cassandra_restart_recovery(
    up: UpProcess, backends: dict[str, str]
) -> None:
    _write(up.url)
    want_count = N_SERIES * N_SAMPLES
    want_sum = float(
        N_SAMPLES * N_SERIES * (N_SERIES - 1) / 2 + N_SERIES * N_SAMPLES * (N_SAMPLES - 1) / 2
    )

    def complete() -> dict | None:
        a = _answer(up.url)
        ok = a["count"] and float(a["count"][0]["value"][1]) == want_count
        return a if ok else None

    before = _wait(complete, 60, "every sample queryable", up)
    assert float(before["sum"][0]["value"][1]) == want_sum

    # Kafka offsets and lag appear in the status route
    def caught_up() -> list[dict] | None:
        rows = _status(up.url)
        return rows if all(r["lag"] == 0 for r in rows) else None

    rows = _wait(caught_up, 30, "lag 0 on every shard (progress is reported each second)", up)
    assert sum(r["log_end_offset"] for r in rows) > 0

    # flushes reach Cassandra (checkpoints move on every shard that holds data)
    _wait(lambda: all(r["last_checkpoint"] > 0 for r in _status(up.url) if r["series"]), 60,
          "a checkpoint on every shard with data", up)  # fmt: skip
    cs, ms = open_store("cassandra", "", hosts=backends["FILODB_CASSANDRA_HOSTS"].split(","),
                        port=int(backends["FILODB_CASSANDRA_PORT"]),
                        keyspace=up.env["FILODB_CASSANDRA_KEYSPACE"])  # fmt: skip
    try:  # every flush group flushed once (groups are staggered over the flush interval)

        def flushed() -> tuple[int, int] | None:
            stats = [cs.stats("prometheus", s) for s in range(4)]
            chunks, keys = sum(x["chunks"] for x in stats), sum(x["part_keys"] for x in stats)
            return (chunks, keys) if keys == N_SERIES else None

        chunks, _ = _wait(flushed, 60, f"{N_SERIES} part keys in Cassandra", up)
        assert chunks >= N_SERIES
        assert any(ms.read_checkpoints("prometheus", s) for s in range(4))
    finally:
        cs.close()
        ms.close()

    # kill -9 the worker: the supervisor restarts it; it recovers from Cassandra + Kafka
    (pid,) = up.pids(" worker")
    os.kill(pid, signal.SIGKILL)
    _wait(
        lambda: any(r["status"] != "Active" for r in _status(up.url)), 30, "shards leave Active", up
    )
    _wait(
        lambda: all(r["status"] == "Active" for r in _status(up.url)),
        120,
        "shards Active again",
        up,
    )
    after = _wait(complete, 60, "every sample queryable after recovery", up)
    assert after["sum"] == before["sum"] and after["count"] == before["count"]
    assert not after["warn"]
