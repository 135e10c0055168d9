"""Query limits through the HTTP API of a real cluster: they hold for the whole query, even when
its work is spread over shards, and answer in Prometheus's error shapes."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import wait_for

pytestmark = pytest.mark.e2e

UP_ENV = {"FILODB_MAX_SERIES": "20", "FILODB_MAX_SAMPLES": "1000"}
T0 = 1_700_000_000_000
N = 60  # samples per series, 15 s apart
T_END = (T0 + 15_000 * (N - 1)) / 1000


def _batch() -> SampleBatch:
    series = [make_labels({"__name__": "lim_a", "i": str(i)}) for i in range(10)]
    series += [make_labels({"__name__": "lim_b", "i": str(i)}) for i in range(30)]
    ts = T0 + 15_000 * np.arange(N)
    return SampleBatch(series, np.repeat(np.arange(len(series)), N), np.tile(ts, len(series)),
                       np.tile(np.arange(N, dtype=float), len(series)))  # fmt: skip


@pytest.fixture(scope="module")
def loaded(up: UpProcess) -> str:
    assert (
        requests.post(
            up.url + "/api/v1/write", data=encode_write_request(_batch()), timeout=30
        ).status_code
        == 204
    )

    def every_lim_a_series() -> bool:
        r = requests.get(up.url + "/api/v1/query", params={"query": "count(lim_a)", "time": T_END},
                         timeout=10)  # fmt: skip
        res = r.json()["data"]["result"] if r.status_code == 200 else []
        return bool(res) and res[0]["value"][1] == "10"

    wait_for(every_lim_a_series, 30, "every lim_a series queryable", up.log_tail)
    return up.url


def _q(url: str, query: str, **extra: str) -> requests.Response:
    return requests.get(
        url + "/api/v1/query", params={"query": query, "time": T_END, **extra}, timeout=30
    )


def test_within_limits_answers(loaded: str) -> None:
    r = _q(loaded, "sum(count_over_time(lim_a[20m]))")
    assert r.status_code == 200 and r.json()["data"]["result"][0]["value"][1] == "600"


def test_too_many_series_is_422(loaded: str) -> None:
    r = _q(loaded, "count(lim_b)")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "execution"
    assert "too many series (more than 20)" in body["error"]


def test_sample_limit_holds_across_shards_and_subtrees(loaded: str) -> None:
    # each side reads 600 samples spread over 4 shards: only the whole query exceeds 1000
    r = _q(loaded, "sum(count_over_time(lim_a[20m])) + sum(count_over_time(lim_a[20m]))")
    assert r.status_code == 422, r.text
    assert "too many samples" in r.json()["error"]


def test_timeout_is_503(loaded: str) -> None:
    # a deadline already passed: this query over 4 shards answers within 1 ms now (issue 15)
    r = _q(loaded, "sum(rate(lim_a[5m]))", timeout="0s")
    assert r.status_code == 503, r.text
    assert r.json()["errorType"] == "timeout" and "timed out" in r.json()["error"]


def test_range_points_limit_is_400(loaded: str) -> None:
    r = requests.get(loaded + "/api/v1/query_range", params={"query": "lim_a", "start": 0, "end": 20000, "step": 1},
                     timeout=30)  # fmt: skip
    assert r.status_code == 400 and "11,000 points" in r.json()["error"]
