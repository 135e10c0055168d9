"""Out-of-order samples through a real ``filodb up`` (issue 14's direct test): samples at
t-10 s and t-5 s, then t-7 s in a second request. With ``--ooo-window`` set all three are
answered, and still after a flush and a restart; a sample beyond the window is refused at the
door (400 ``too old sample``). Without a window the late sample is refused at the door: 400
``out of order sample``, counted on the web tier's /metrics, not written (the worker never
sees it). A resend of the very same first body stays 204 (the worker drops its duplicates).
The same through the Influx HTTP door."""

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


def _rw_body(ts: list[int], vals: list[float]) -> bytes:
    return encode_write_request(SampleBatch(SERIES, np.zeros(len(ts), np.int32), ts, vals))


def _post_body(url: str, body: bytes, status: int = 204) -> requests.Response:
    r = requests.post(url + "/api/v1/write", data=body, timeout=10)
    assert r.status_code == status, r.text
    return r


def _post(url: str, ts: list[int], vals: list[float], status: int = 204) -> requests.Response:
    return _post_body(url, _rw_body(ts, vals), status)


def _influx(url: str, body: bytes, status: int = 204) -> requests.Response:
    r = requests.post(url + "/influx/prometheus/write", params={"precision": "ms"}, data=body,
                      timeout=10)  # fmt: skip
    assert r.status_code == status, r.text
    return r


def _refused(r: requests.Response, word: str, refused: int, written: int) -> None:
    """A 400 in Prometheus's JSON error shape naming the refused and the written samples."""
    got = r.json()
    assert (got["status"], got["errorType"]) == ("error", "bad_data"), got
    assert got["error"].startswith(f"{word}: {refused} samples refused"), got
    assert got["error"].endswith(f"the other {written} samples were written"), got


def _door_rejected(url: str) -> dict[tuple[str, str], float]:
    """The web tier's ``filodb_ingest_rejected_samples_total`` by (door, reason)."""
    text = requests.get(url + "/metrics", timeout=10).text
    out: dict[tuple[str, str], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "filodb_ingest_rejected_samples_total":
                out[(s.labels["door"], s.labels["reason"])] = s.value
    return out


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
        _post(up.url, [t - 7_000], [3.0])  # within the window: 204, sorted in
        _post(up.url, [t - 10_000, t - 5_000], [1.0, 2.0])  # a resend: within the window too
        # outside the window: refused at the door, counted there, never written
        r = _post(up.url, [t - 120_000], [9.0], status=400)
        _refused(r, "too old sample", 1, 0)
        _wait(lambda: _check(up.url, t, 3.0, 6.0))
        assert _door_rejected(up.url).get(("remote_write", "too_old")) == 1.0
        assert _rejected(up.url).get("too_old", 0.0) == 0.0
        # a flush writes the samples (the late one in a chunk that overlaps nothing stored)
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
        # after the restart the door knows nothing (the first body passes); the worker sorts
        # this one in beside stored data
        _post(again.url, [t - 6_000], [4.0])
        _wait(lambda: _check(again.url, t, 4.0, 10.0))
    finally:
        again.stop()


def test_without_a_window_the_late_sample_is_refused_at_the_door(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = int(time.time() * 1000) // 1000 * 1000
    up = UpProcess(tmp_path / "data", shards=2).start()
    try:
        _post(up.url, [t - 10_000, t - 5_000], [1.0, 2.0])
        r = _post(up.url, [t - 7_000], [3.0], status=400)  # the writer learns it
        _refused(r, "out of order sample", 1, 0)
        assert _door_rejected(up.url).get(("remote_write", "out_of_order")) == 1.0
        assert _cluster_refused(up.url) == {"out_of_order": 1}  # `filodb status` shows it
        # the very same first body again (its answer lost, say): 204; it reaches the newest,
        # so the worker judges it and drops the two duplicates
        _post(up.url, [t - 10_000, t - 5_000], [1.0, 2.0])
        _wait(lambda: _check(up.url, t, 2.0, 3.0))
        assert _door_rejected(up.url).get(("remote_write", "out_of_order")) == 1.0
        # what the door refused never reached a worker; the resend's duplicates did
        _wait(lambda: _assert_eq(_rejected(up.url), {"out_of_order": 2.0, "too_old": 0.0}))

        # the same through the Influx HTTP door, and the very same body sent again
        _influx(up.url, f"ooo_influx,job=t value=1 {t - 10_000}".encode())
        second = f"ooo_influx,job=t value=2 {t - 5_000}".encode()
        _influx(up.url, second)
        r = _influx(up.url, f"ooo_influx,job=t value=3 {t - 7_000}".encode(), status=400)
        _refused(r, "out of order sample", 1, 0)
        _influx(up.url, second)  # the resend: 204
        assert _door_rejected(up.url).get(("influx_http", "out_of_order")) == 1.0
        _wait(lambda: _assert_eq(_query(up.url, "count_over_time(ooo_influx[1m])", t), [2.0]))
        assert _query(up.url, "sum_over_time(ooo_influx[1m])", t) == [3.0]

        # a deletion lets the workers take older samples again: the door forgets its newest
        r = requests.post(up.url + "/api/v1/admin/tsdb/delete_series",
                          params={"match[]": "ooo_total"}, timeout=60)  # fmt: skip
        assert r.status_code == 204, r.text
        _post(up.url, [t - 10_000], [7.0])
        _wait(lambda: _check(up.url, t, 1.0, 7.0))
    finally:
        up.stop()


def test_with_a_window_the_influx_door_passes_late_samples_within_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = int(time.time() * 1000) // 1000 * 1000
    up = UpProcess(tmp_path / "data", shards=2, env={"FILODB_OOO_WINDOW": "60"}).start()
    try:
        _influx(up.url, f"ooo_influx,job=t value=1 {t - 10_000}\nooo_influx,job=t value=2 "
                        f"{t - 5_000}".encode())  # fmt: skip
        _influx(up.url, f"ooo_influx,job=t value=3 {t - 7_000}".encode())
        r = _influx(up.url, f"ooo_influx,job=t value=9 {t - 120_000}".encode(), status=400)
        _refused(r, "too old sample", 1, 0)
        assert _door_rejected(up.url).get(("influx_http", "too_old")) == 1.0
        assert _cluster_refused(up.url) == {"too_old": 1}
        _wait(lambda: _assert_eq(_query(up.url, "count_over_time(ooo_influx[1m])", t), [3.0]))
        assert _query(up.url, "sum_over_time(ooo_influx[1m])", t) == [6.0]
    finally:
        up.stop()


def _check(url: str, t: int, count: float, total: float) -> None:
    assert _query(url, "count_over_time(ooo_total[1m])", t) == [count]
    assert _query(url, "sum_over_time(ooo_total[1m])", t) == [total]


def _cluster_refused(url: str) -> dict[str, int]:
    """What the doors refused of the dataset, cluster-wide (``filodb status`` prints it)."""
    got = requests.get(url + "/api/v1/cluster/prometheus", timeout=10).json()["data"]
    return got["refused"]


def _status(url: str) -> list[dict]:
    return requests.get(url + "/api/v1/cluster/prometheus/status", timeout=10).json()["data"]


def _assert_eq(a: object, b: object) -> None:
    assert a == b


def _assert_true(x: bool) -> None:
    assert x
