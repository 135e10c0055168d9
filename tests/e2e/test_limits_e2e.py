"""Limits per dataset through a real ``filodb up``, real remote-write requests (the prompb
encoder + HTTP) and the real CLI: series limits answer 400 naming the limit and the refused
samples while known series keep being written, the ingest rate answers 429 with
``Retry-After``, queries past the concurrency limit wait up to their timeout then answer 503,
per-query limits come from the dataset, and every refusal is counted on ``/metrics`` and
shown by ``filodb status``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import wait_for, wait_healthy

pytestmark = pytest.mark.e2e
UP_ENV = {"FILODB_DATASET_MAX_SERIES": "50"}  # the default of datasets created without one

T0 = 1_700_000_000_000


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "filodb", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def _series(metric: str, n: int, start: int = 0) -> list[Labels]:
    return [make_labels({"__name__": metric, "i": str(i)}) for i in range(start, start + n)]


def _write(
    url: str, ds: str, series: list[Labels], per: int = 3, t0: int = T0
) -> requests.Response:
    n = len(series)
    b = SampleBatch(series, np.repeat(np.arange(n), per), np.tile(t0 + 1000 * np.arange(per), n),
                    np.ones(n * per))  # fmt: skip
    return requests.post(f"{url}/promql/{ds}/api/v1/write", data=encode_write_request(b),
                         headers={"Content-Type": "application/x-protobuf",
                                  "Content-Encoding": "snappy"}, timeout=30)  # fmt: skip


def _metric(url: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or line.startswith(f"{name}{{{want},"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def url(up: UpProcess) -> str:
    r = _cli("dataset", "create", "tseries", "--shards", "4", "--url", up.url,
             "--limit", "max_series=5", "--limit", "max_series_per_metric=4",
             "--limit", "max_series_per_query=3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "max_series=5" in r.stdout
    for name, limits in (("trate", {"ingest_samples_per_s": 30}),
                         ("tquery", {"max_query_concurrency": 1, "query_timeout": "2s"})):  # fmt: skip
        resp = requests.post(f"{up.url}/api/v1/cluster/{name}", json={"shards": 2, "limits": limits},
                             timeout=30)  # fmt: skip
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["limits"] == {k: (2.0 if k == "query_timeout" else v)
                                                 for k, v in limits.items()}  # fmt: skip
    wait_healthy(up.url, 60, "new datasets", up.log_tail)
    return up.url


def test_bad_limits_are_400_and_exit_2(url: str) -> None:
    r = requests.post(f"{url}/api/v1/cluster/tbad", json={"shards": 2, "limits": {"max_sieries": 1}},
                      timeout=10)  # fmt: skip
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    assert "max_sieries" in r.json()["error"]
    c = _cli("dataset", "create", "tbad", "--shards", "2", "--url", url, "--limit", "max_series=-3")
    assert c.returncode == 2 and "max_series" in c.stderr
    assert requests.get(f"{url}/api/v1/cluster/tbad", timeout=10).status_code == 404


def test_series_limits_refuse_new_series_and_keep_known_ones(url: str) -> None:
    a = _series("lim_a", 5)
    r = _write(url, "tseries", a)  # 5 series of one metric: 4 pass max_series_per_metric
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert "max_series_per_metric=4 refused 3 samples of 1 new series" in body["error"]
    r = _write(url, "tseries", _series("lim_b", 3) + a[:4], t0=T0 + 10_000)
    assert (
        r.status_code == 400
        and "max_series=5 refused 6 samples of 2 new series" in r.json()["error"]
    )
    assert "the other 15 samples were written" in r.json()["error"]
    assert _write(url, "tseries", a[:4] + _series("lim_b", 1), t0=T0 + 20_000).status_code == 204

    def counts() -> bool:
        r = requests.get(f"{url}/promql/tseries/api/v1/query",
                         params={"query": "count_over_time(lim_a[1h])", "time": (T0 + 60_000) / 1000},
                         timeout=10).json()  # fmt: skip
        # the per-query series limit of the dataset (3) holds: 422 once the 4 series are in
        return r.get("errorType") == "execution" and "3" in r.get("error", "")

    wait_for(counts, 30, "the per-query series limit of tseries")
    r = requests.get(f"{url}/promql/tseries/api/v1/query",
                     params={"query": "count(count_over_time(lim_b[1h]))",
                             "time": (T0 + 60_000) / 1000}, timeout=10)  # fmt: skip
    assert r.json()["data"]["result"][0]["value"][1] == "1"
    assert _metric(url, "filodb_ingest_rejected_samples_total", door="remote_write",
                   reason="max_series_per_metric") == 3  # fmt: skip
    assert _metric(url, "filodb_ingest_rejected_samples_total", door="remote_write",
                   reason="max_series") == 6  # fmt: skip
    st = _cli("status", "--dataset", "tseries", "--url", url)
    assert st.returncode == 0, st.stderr
    assert "refused: max_series 6, max_series_per_metric 3" in st.stdout
    assert "max_series=5" in st.stdout


def test_ingest_rate_answers_429_with_retry_after(url: str) -> None:
    assert _write(url, "trate", _series("r", 10)).status_code == 204  # 30 samples: the bucket
    r = _write(url, "trate", _series("r", 10), t0=T0 + 10_000)
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "1" and r.json()["status"] == "error"
    assert "ingest_samples_per_s=30" in r.json()["error"]
    assert _metric(url, "filodb_ingest_rejected_samples_total", door="remote_write",
                   reason="ingest_samples_per_s") == 30  # fmt: skip


def test_query_concurrency_waits_then_503_and_the_dataset_timeout_holds(
    url: str, up: UpProcess
) -> None:
    assert _write(url, "tquery", _series("q", 2)).status_code == 204
    params = {"query": "count_over_time(q[1h])", "time": (T0 + 60_000) / 1000}
    wait_for(lambda: requests.get(f"{url}/promql/tquery/api/v1/query", params=params,
                                  timeout=10).json()["data"]["result"], 30, "q queryable")  # fmt: skip
    workers = up.pids("worker")
    assert workers
    first: dict[str, object] = {}

    def slow() -> None:
        t = time.monotonic()
        r = requests.get(f"{url}/promql/tquery/api/v1/query", params={**params, "timeout": "30s"},
                         timeout=60)  # fmt: skip
        first.update(status=r.status_code, body=r.json(), took=time.monotonic() - t)

    for p in workers:  # the leaf work cannot answer: the query holds its slot until its timeout
        os.kill(p, signal.SIGSTOP)
    try:
        th = threading.Thread(target=slow)
        th.start()
        wait_for(lambda: _metric(url, "filodb_queries_running", dataset="tquery") == 1, 10,
                 "the first query running")  # fmt: skip
        r = requests.get(f"{url}/promql/tquery/api/v1/query", params={**params, "timeout": "300ms"},
                         timeout=30)  # fmt: skip
        assert r.status_code == 503, r.text
        assert (
            r.json()["errorType"] == "unavailable"
            and "max_query_concurrency=1" in r.json()["error"]
        )
        th.join(30)
    finally:
        for p in workers:
            os.kill(p, signal.SIGCONT)
    # ?timeout=30s is capped by the dataset's query_timeout (2 s)
    assert first["status"] == 503 and first["took"] < 10, first
    assert _metric(url, "filodb_queries_refused_total", dataset="tquery",
                   reason="max_query_concurrency") == 1  # fmt: skip
    desc = requests.get(f"{url}/api/v1/cluster/tquery", timeout=10).json()["data"]
    assert desc["refused"] == {"max_query_concurrency": 1}
    wait_healthy(url, 60, "after SIGCONT", up.log_tail)
    ok = requests.get(f"{url}/promql/tquery/api/v1/query", params=params, timeout=30)
    assert ok.status_code == 200 and ok.json()["data"]["result"][0]["value"][1] == "3"


def test_config_default_applies_to_a_dataset_without_limits(url: str) -> None:
    r = requests.post(f"{url}/api/v1/cluster/tdefault", json={"shards": 2}, timeout=30)
    assert r.status_code == 200 and "limits" not in r.json()["data"]
    desc = requests.get(f"{url}/api/v1/cluster/tdefault", timeout=10).json()["data"]
    assert desc["effective_limits"]["max_series"] == 50 and desc["refused"] == {}
    wait_healthy(url, 60, "tdefault", lambda: "")
    r = _write(url, "tdefault", _series("d", 60), per=1)
    assert r.status_code == 400 and "max_series=50 refused 10 samples of 10 new series" in r.text
