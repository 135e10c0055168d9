"""Out-of-order samples through a real ``filodb up`` and remote write (issue 14's direct test):
samples at t-10 s and t-5 s, then t-7 s in a second request. With ``--ooo-window`` set all
three are answered, and still after a flush and a restart; without one the late sample is
acknowledged, dropped and counted on the worker's /metrics."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually

pytestmark = pytest.mark.e2e

SERIES = [make_labels({"__name__": "ooo_total", "job": "t"})]


def _post(url: str, ts: list[int], vals: list[float]) -> None:
    b = SampleBatch(SERIES, np.zeros(len(ts), np.int32), ts, vals)
    r = requests.post(url + "/api/v1/write", data=encode_write_request(b), timeout=10)
    assert r.status_code == 204, r.text


def _query(url: str, q: str, t_ms: int) -> list:
    r = requests.get(url + "/api/v1/query", params={"query": q, "time": t_ms / 1000}, timeout=30)
    assert r.status_code == 200, r.text
    return [float(x["value"][1]) for x in r.json()["data"]["result"]]


def _rejected(url: str) -> dict[str, float]:
    (node,) = requests.get(url + "/admin/nodes", timeout=10).json()["data"]
    text = requests.get(f"http://127.0.0.1:{node['metrics_port']}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "filodb_worker_samples_rejected_total":
                out[s.labels["reason"]] = out.get(s.labels["reason"], 0.0) + s.value
    return out


def _wait(fn, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    return eventually(
        fn, timeout, 0.2, (AssertionError, requests.RequestException, KeyError, ValueError)
    )


def test_late_sample_within_the_window_is_answered_and_survives_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = int(time.time() * 1000) // 1000 * 1000
    env = {"FILODB_OOO_WINDOW": "60", "FILODB_FLUSH_INTERVAL": "1", "FILODB_FLUSH_GROUPS": "1"}
    up = UpProcess(tmp_path / "data", shards=2, env=env).start()
    try:
        _post(up.url, [t - 10_000, t - 5_000], [1.0, 2.0])
        _post(up.url, [t - 7_000], [3.0])
        _post(up.url, [t - 120_000], [9.0])  # outside the window: dropped, counted
        _wait(lambda: _check(up.url, t, 3.0, 6.0))
        _wait(lambda: _assert_eq(_rejected(up.url), {"out_of_order": 0.0, "too_old": 1.0}))
        # a flush writes the three samples (the late one in a chunk that overlaps nothing stored)
        _wait(
            lambda: _assert_true(
                all(r["last_checkpoint"] > 0 for r in _status(up.url) if r["series"])
            )
        )
    finally:
        assert up.stop() == 0
    again = UpProcess(tmp_path / "data", shards=2, env=env)
    again.port, again.url, again.args = up.port, up.url, up.args
    again.start()
    try:
        _wait(lambda: _check(again.url, t, 3.0, 6.0))
        _post(again.url, [t - 6_000], [4.0])  # after the restart: sorted in beside stored data
        _wait(lambda: _check(again.url, t, 4.0, 10.0))
    finally:
        again.stop()


def test_without_a_window_the_late_sample_is_dropped_and_counted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = int(time.time() * 1000) // 1000 * 1000
    up = UpProcess(tmp_path / "data", shards=2).start()
    try:
        _post(up.url, [t - 10_000, t - 5_000], [1.0, 2.0])
        _post(up.url, [t - 7_000], [3.0])  # acknowledged, then refused by the worker
        _wait(lambda: _assert_eq(_rejected(up.url), {"out_of_order": 1.0, "too_old": 0.0}))
        _check(up.url, t, 2.0, 3.0)
    finally:
        up.stop()


def _check(url: str, t: int, count: float, total: float) -> None:
    assert _query(url, "count_over_time(ooo_total[1m])", t) == [count]
    assert _query(url, "sum_over_time(ooo_total[1m])", t) == [total]


def _status(url: str) -> list[dict]:
    return requests.get(url + "/api/v1/cluster/prometheus/status", timeout=10).json()["data"]


def _assert_eq(a: object, b: object) -> None:
    assert a == b


def _assert_true(x: bool) -> None:
    assert x
