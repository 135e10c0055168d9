"""A full log, as a sender meets it: with ``log_max_mb`` reached, remote write answers 503 in
Prometheus's JSON error shape with ``Retry-After`` (Prometheus retries it) once an append has
waited ``log_full_wait_s`` in vain, and every sample acknowledged before is kept and
queryable, none of the refused body's. A node flushes for the log's size past its own
``log_backlog_mb`` only, so with size flushes off (as with many nodes, each under its budget)
the waiting appends tell the nodes, which flush: a sender that keeps writing is held back,
not refused, and the log stays near its cap."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import redis
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import wait_for
from filodb.tools.client import RW_HEADERS

SERIES, SCRAPES = 500, 20


def _body(i: int, base_ms: int) -> bytes:
    """Body ``i``: SERIES series x SCRAPES samples of its own metric (random values: ~9 bytes
    a sample in the log)."""
    series = [make_labels({"__name__": f"full_{i}", "host": f"h{h}"}) for h in range(SERIES)]
    ts = base_ms + 15_000 * np.arange(SCRAPES)
    vals = np.random.default_rng(i).random(SERIES * SCRAPES)
    batch = SampleBatch(series, np.repeat(np.arange(SERIES), SCRAPES), np.tile(ts, SERIES), vals)
    return encode_write_request(batch)


def _count(url: str, name: str, at_s: float) -> float:
    r = requests.get(f"{url}/api/v1/query", params={"query": f"count_over_time({name}[1h])",
                                                    "time": at_s}, timeout=30)  # fmt: skip
    res = r.json()["data"]["result"]
    return sum(float(x["value"][1]) for x in res)


def test_a_full_log_answers_503_with_retry_after_and_keeps_what_it_acknowledged(
    tmp_path: Path,
) -> None:
    env = {"FILODB_LOG_MAX_MB": "1", "FILODB_LOG_FULL_WAIT_S": "0",  # refused at once
           "FILODB_LOG_BACKLOG_MB": "0", "FILODB_FLUSH_LOG_MB": "0"}  # fmt: skip
    up = UpProcess(tmp_path / "data", shards=2, env=env).start()
    try:
        base = (int(time.time()) - 1800) * 1000
        taken: list[int] = []
        refused = None
        for i in range(200):  # ~70 kB of log a body: full after ~15
            r = requests.post(f"{up.url}/api/v1/write", data=_body(i, base), headers=RW_HEADERS,
                              timeout=30)  # fmt: skip
            if r.status_code == 503:
                refused = (i, r)
                break
            assert r.status_code == 204, r.text
            taken.append(i)
        assert refused is not None, "the log never filled"
        i, r = refused
        assert r.headers.get("Retry-After") == "1"
        body = r.json()
        assert body["status"] == "error" and body["errorType"] == "unavailable"
        assert "log_max_mb" in body["error"]
        assert 5 <= len(taken) <= 40
        at = base / 1000 + 15 * SCRAPES
        for j in taken:  # every acknowledged sample is applied and answers
            wait_for(lambda j=j: _count(up.url, f"full_{j}", at) == SERIES * SCRAPES, 60,
                     f"body {j}'s samples", up.log_tail)  # fmt: skip
        assert _count(up.url, f"full_{i}", at) == 0  # nothing of the refused body
    finally:
        up.stop()


def test_waiting_writers_make_the_nodes_flush_so_a_steady_sender_is_held_not_refused(
    tmp_path: Path,
) -> None:
    env = {"FILODB_LOG_MAX_MB": "1", "FILODB_LOG_BACKLOG_MB": "0",
           "FILODB_FLUSH_LOG_MB": "0"}  # fmt: skip
    up = UpProcess(tmp_path / "data", shards=2, env=env).start()
    try:
        port = int((up.data_dir / "redis" / "port").read_text())  # the Redis it started
        r = redis.Redis(port=port)
        base = (int(time.time()) - 1800) * 1000
        held = []
        n = 45  # ~3 MB of log, three times the cap: only flushes make room
        for i in range(n):
            got = requests.post(f"{up.url}/api/v1/write", data=_body(i, base),
                                headers=RW_HEADERS, timeout=60)  # fmt: skip
            assert got.status_code == 204, got.text
            held.append(sum(r.xlen(k) for k in r.scan_iter("filodb:log:*")))
        # a body is a record on each of two partitions, ~70 kB in all: the cap holds ~15
        # bodies, and one more may cross it; every body's records (90) without the flushes
        assert max(held) <= 2 * 16 and held[-1] < 2 * n
        at = base / 1000 + 15 * SCRAPES
        for j in range(n):
            wait_for(lambda j=j: _count(up.url, f"full_{j}", at) == SERIES * SCRAPES, 60,
                     f"body {j}'s samples", up.log_tail)  # fmt: skip
    finally:
        up.stop()
