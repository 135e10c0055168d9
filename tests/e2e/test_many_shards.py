"""A node with many shards (one log reader for all of them): healthy within a minute, ingests
into every shard, answers queries over all of them, and loses nothing to a kill -9."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually, wait_for

pytestmark = pytest.mark.e2e

SHARDS = 128
SERIES = 2048  # 2048 metric names: every one of the 128 shards gets series
SAMPLES = 5
T0 = 1_700_000_000_000
STEP = 15_000


def _batch(first_sample: int) -> SampleBatch:
    series = [make_labels({"__name__": f"many_m{i}", "job": "j"}) for i in range(SERIES)]
    sidx = np.repeat(np.arange(SERIES), SAMPLES)
    ts = np.tile(T0 + STEP * (first_sample + np.arange(SAMPLES)), SERIES)
    return SampleBatch(series, sidx, ts, np.ones(SERIES * SAMPLES))


def _write(url: str, batch: SampleBatch) -> None:
    r = requests.post(f"{url}/api/v1/write", data=encode_write_request(batch), timeout=60,
                      headers={"Content-Type": "application/x-protobuf",
                               "Content-Encoding": "snappy"})  # fmt: skip
    assert r.status_code == 204, r.text


def _status(url: str) -> list[dict]:
    return requests.get(f"{url}/api/v1/cluster/prometheus/status", timeout=30).json()["data"]


def _count(url: str, t_ms: int) -> float:
    r = requests.get(f"{url}/api/v1/query", timeout=60, params={
        "query": 'count(count_over_time({__name__=~"many_m.*"}[10m]))', "time": t_ms / 1000})  # fmt: skip
    assert r.status_code == 200, r.text
    res = r.json()["data"]["result"]
    return float(res[0]["value"][1]) if res else 0.0


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> UpProcess:
    proc = UpProcess(tmp_path_factory.mktemp("many") / "data", shards=SHARDS,
                     extra=["--influx-port", "0", "--graphite-port", "0"])  # fmt: skip
    yield proc.start(wait_s=60)  # every shard Active within a minute
    proc.stop()


def test_many_shards_ingest_into_every_shard_and_survive_kill9(many: UpProcess) -> None:
    url = many.url
    worker = many.pids("worker")
    assert len(worker) == 1
    threads = len(os.listdir(f"/proc/{worker[0]}/task"))
    assert threads < SHARDS // 2, f"{threads} threads for {SHARDS} shards: a thread per shard?"

    _write(url, _batch(0))

    def every_shard_ingested() -> list[dict]:
        rows = _status(url)
        assert len(rows) == SHARDS
        empty = [r["shard"] for r in rows if r["series"] == 0 or r["lag"] > 0]
        assert not empty, f"shards without their series yet: {empty[:10]}..."
        return rows

    rows = eventually(every_shard_ingested, 30)
    assert sum(r["series"] for r in rows) == SERIES
    t_end = T0 + STEP * (SAMPLES - 1)
    assert _count(url, t_end) == SERIES

    # kill -9 the worker: everything acknowledged comes back on every shard
    _write(url, _batch(SAMPLES))
    os.kill(worker[0], signal.SIGKILL)
    wait_for(lambda: many.pids("worker") and many.pids("worker") != worker, 30,
             "the worker restarted", many.log_tail)  # fmt: skip
    many.wait_healthy(60)
    t_end2 = T0 + STEP * (2 * SAMPLES - 1)

    def all_back() -> None:
        r = requests.get(f"{url}/api/v1/query", timeout=60, params={
            "query": 'sum(count_over_time({__name__=~"many_m.*"}[10m]))', "time": t_end2 / 1000})  # fmt: skip
        assert r.status_code == 200, r.text
        res = r.json()["data"]["result"]
        assert res and float(res[0]["value"][1]) == SERIES * 2 * SAMPLES

    eventually(all_back, 30)
    assert Path(many.log_path).stat().st_size < 5 << 20  # no log storm
