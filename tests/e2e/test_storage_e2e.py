"""The storage engine under ``filodb up``: flushes reach the SQLite column store with
checkpoints, the log is trimmed behind them, and a worker killed by SIGKILL in the middle of
ingestion (or the whole tree, Redis included) comes back with every acknowledged sample
exactly once, part of it paged from the store."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000_000
STEP = 10_000
N_SERIES = 12
ENV = {"FILODB_FLUSH_INTERVAL": "2", "FILODB_FLUSH_GROUPS": "2", "FILODB_MAX_CHUNK_SAMPLES": "16",
       "FILODB_MEMORY_BUDGET_MB": "0"}  # fmt: skip


def _batch(k: int, per: int = 5) -> SampleBatch:
    """Samples k*per .. k*per+per-1 of every series; value = sample index (a counter)."""
    series = [make_labels({"__name__": "st_total", "i": str(i)}) for i in range(N_SERIES)]
    idx = np.arange(k * per, k * per + per)
    return SampleBatch(series, np.repeat(np.arange(N_SERIES), per), np.tile(T0 + STEP * idx, N_SERIES),
                       np.tile(idx.astype(float), N_SERIES))  # fmt: skip


def _post(url: str, b: SampleBatch) -> bool:
    try:
        r = requests.post(url + "/api/v1/write", data=encode_write_request(b), timeout=10)
    except requests.RequestException:
        return False
    return r.status_code == 204


def _counts(url: str, n_samples: int) -> dict[str, float]:
    t = (T0 + STEP * (n_samples - 1)) / 1000
    r = requests.get(url + "/api/v1/query", params={"query": f"count_over_time(st_total[{n_samples * 10 + 10}s])",
                                                    "time": t}, timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    return {x["metric"]["i"]: float(x["value"][1]) for x in r.json()["data"]["result"]}


def _sums(url: str, n_samples: int) -> dict[str, float]:
    t = (T0 + STEP * (n_samples - 1)) / 1000
    q = f"sum_over_time(st_total[{n_samples * 10 + 10}s])"
    r = requests.get(url + "/api/v1/query", params={"query": q, "time": t}, timeout=30)
    assert r.status_code == 200, r.text
    return {x["metric"]["i"]: float(x["value"][1]) for x in r.json()["data"]["result"]}


def _status(url: str) -> list[dict]:
    return requests.get(url + "/api/v1/cluster/prometheus/status", timeout=10).json()["data"]


def _wait(fn, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    return eventually(fn, timeout, 0.3, (AssertionError, requests.RequestException, KeyError))


def _exactly_once(url: str, acked: int) -> None:
    n = acked * 5
    want_sum = float(sum(range(n)))

    def check() -> None:
        assert _counts(url, n) == {str(i): float(n) for i in range(N_SERIES)}
        assert _sums(url, n) == {str(i): want_sum for i in range(N_SERIES)}

    _wait(check, 90)


def test_flush_checkpoints_and_trim(tmp_path) -> None:  # type: ignore[no-untyped-def]
    up = UpProcess(tmp_path / "data", shards=2, env=ENV).start()
    try:
        for k in range(20):
            assert _post(up.url, _batch(k))

        def flushed() -> None:
            rows = _status(up.url)
            assert all(
                r["last_checkpoint"] > 0 and r["chunk_bytes"] > 0 for r in rows if r["series"]
            ), rows
            assert sum(r["chunks"] for r in rows) > 0

        _wait(flushed, 60)
        assert list((tmp_path / "data" / "store").rglob("*.db")), (
            "no SQLite files under the data dir"
        )
        _exactly_once(up.url, 20)
    finally:
        up.stop()


def test_worker_sigkill_during_ingestion_loses_and_doubles_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    up = UpProcess(tmp_path / "data", shards=2, env=ENV).start()
    acked = [0]
    stop = threading.Event()

    def writer() -> None:
        k = 0
        while not stop.is_set() and k < 400:
            if _post(up.url, _batch(k)):
                acked[0] = k + 1
                k += 1
            else:
                time.sleep(0.1)  # not acknowledged: send the same batch again
            time.sleep(0.02)

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(6)  # a few flushes happen
        (pid,) = up.pids("filodb worker")
        os.kill(pid, signal.SIGKILL)
        time.sleep(4)
        stop.set()
        t.join(30)
        assert acked[0] > 0
        _exactly_once(up.url, acked[0])
        assert up.pids("filodb worker") != [pid]
    finally:
        stop.set()
        up.stop()


def test_whole_tree_sigkill_recovers_from_store_and_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = UpProcess(tmp_path / "data", shards=2, env=ENV).start()
    try:
        for k in range(30):
            assert _post(first.url, _batch(k))
        _wait(lambda: _exactly_once(first.url, 30), 60)
        time.sleep(3)  # flushes in flight, more writes right before the kill
        for k in range(30, 40):
            assert _post(first.url, _batch(k))
    finally:
        first.kill9_all()
    second = UpProcess(tmp_path / "data", shards=2, env=ENV)
    second.port, second.url, second.args = first.port, first.url, first.args
    second.start()
    try:
        _exactly_once(second.url, 40)
        rows = _status(second.url)
        assert sum(r["chunks_paged"] for r in rows) > 0 or sum(r["chunks"] for r in rows) > 0
    finally:
        second.stop()
