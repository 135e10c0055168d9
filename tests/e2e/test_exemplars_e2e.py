"""Exemplars end to end: a remote-write body carrying exemplars (field 3 of its series) is
written to a real ``filodb up`` and to Debian's Prometheus 2.42 with exemplar storage on;
``/api/v1/query_exemplars`` answers the same; the exemplars survive a worker killed -9 (the
log is replayed)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.exemplars import Exemplars
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.prometheus import PromServer
from filodb.testing.wait import eventually, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    p = PromServer(tmp_path_factory.mktemp("prom-ex"), {"global": {}},
                   ("--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage"))  # fmt: skip
    p.start()
    yield p
    p.stop()


def _body(now: int) -> bytes:
    """Three series of a histogram-ish counter with a sample every 15 s; exemplars on two of
    them (one with two exemplars, one of them a duplicate Prometheus drops), none on the third."""
    series = [make_labels({"__name__": "ex_requests_total", "job": "api", "code": c})
              for c in ("200", "500", "404")]  # fmt: skip
    n = 8
    ts = now - 15_000 * np.arange(n)[::-1]
    ex = Exemplars(
        np.array([0, 0, 1, 1]),
        np.array([ts[2], ts[5], ts[3], ts[3]]),
        np.array([0.25, 1.5e-3, 7.0, 7.0]),
        [(("trace_id", "abc123"),), (("span_id", "s1"), ("trace_id", "def456")),
         (("trace_id", "0xff"),), (("trace_id", "0xff"),)],
    )  # fmt: skip
    b = SampleBatch(series, np.repeat(np.arange(3), n), np.tile(ts, 3),
                    np.arange(3 * n, dtype=float), exemplars=ex)  # fmt: skip
    return encode_write_request(b)


def _write(url: str, body: bytes) -> None:
    r = requests.post(url + "/api/v1/write", data=body, timeout=30,
                      headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                               "X-Prometheus-Remote-Write-Version": "0.1.0"})  # fmt: skip
    assert r.status_code in (200, 204), r.text


def _exemplars(url: str, **params: object) -> dict:
    r = requests.get(url + "/api/v1/query_exemplars", params=params, timeout=30)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    body = r.json()
    body["data"] = sorted(body["data"] or [], key=lambda s: sorted(s["seriesLabels"].items()))
    return body


def test_query_exemplars_equals_prometheus_and_survives_a_worker_restart(
    up: UpProcess, prom: PromServer, tmp_path: Path
) -> None:
    now = int(time.time() * 1000) // 1000 * 1000
    body = _body(now)
    _write(up.url, body)
    _write(prom.url, body)
    s, e = (now - 300_000) / 1000, (now + 1000) / 1000
    queries = [
        {"query": "ex_requests_total", "start": s, "end": e},
        {"query": 'sum(rate(ex_requests_total{code="500"}[5m]))', "start": s, "end": e},
        {"query": 'ex_requests_total{code="200"} / ex_requests_total{code=~"5.."}',
         "start": s, "end": e},
        {"query": "ex_requests_total", "start": (now - 60_000) / 1000, "end": e},  # a window
        {"query": 'ex_requests_total{code="404"}', "start": s, "end": e},  # none: []
        {"query": "nothing_here", "start": s, "end": e},
    ]  # fmt: skip

    def same() -> list[dict]:
        out = []
        for q in queries:
            theirs, ours = _exemplars(prom.url, **q), _exemplars(up.url, **q)
            assert ours == theirs, (q, ours, theirs)
            out.append(ours)
        return out

    got = eventually(same, 60)
    assert len(got[0]["data"]) == 2 and sum(len(x["exemplars"]) for x in got[0]["data"]) == 3
    assert got[-1]["data"] == [] and got[-2]["data"] == []
    for url in (up.url, prom.url):  # no selector: 204, no body
        r = requests.get(url + "/api/v1/query_exemplars", params={"query": "1+1"}, timeout=30)
        assert r.status_code == 204 and r.content == b""

    # kill -9 the worker: it comes back, replays the log, and the exemplars are there again
    (pid,) = up.pids(" worker")
    os.kill(pid, signal.SIGKILL)

    def active(want: bool) -> bool:
        rows = requests.get(up.url + "/api/v1/cluster/prometheus/status", timeout=10).json()["data"]
        return all(r["status"] == "Active" for r in rows) is want

    wait_for(lambda: active(False), 30, "shards leave Active", up.log_tail, interval=0.1)
    wait_for(lambda: active(True), 120, "shards Active again", up.log_tail, interval=0.2)
    eventually(same, 60)
