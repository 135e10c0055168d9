"""The results cache through a real ``filodb up``: a dashboard's range query answered twice with
the cache equals the answer with ``cache=false``, the second one hits (``/metrics``), and
a generation bump (``invalidate``) makes the next one miss."""

from __future__ import annotations

import time

import numpy as np
import redis
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.wait import wait_for
from filodb.web.results_cache import invalidate


def _counter(url: str, result: str) -> float:
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(f'filodb_query_cache_extents_total{{result="{result}"}}'):
            return float(line.split()[-1])
    raise AssertionError("filodb_query_cache_extents_total missing from /metrics")


def test_cached_answers_equal_uncached_and_hit(up) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time()) * 1000
    ts = np.arange(now - 2 * 3600_000, now, 15_000, dtype=np.int64)
    series = [make_labels({"__name__": "rc_total", "job": f"j{j}"}) for j in range(4)]
    vals = np.cumsum(np.random.default_rng(3).integers(0, 10, (4, len(ts))), axis=1).astype(float)
    batch = SampleBatch(series, np.repeat(np.arange(4), len(ts)), np.tile(ts, 4), vals.ravel())
    r = requests.post(up.url + "/api/v1/write", data=encode_write_request(batch), timeout=30)
    assert r.status_code == 204
    q = "sum by (job) (rate(rc_total[5m]))"
    params = {"query": q, "start": (now - 2 * 3600_000) / 1000, "end": now / 1000, "step": "60"}

    def get(**extra: str) -> dict:
        resp = requests.get(up.url + "/api/v1/query_range", params={**params, **extra}, timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()

    wait_for(lambda: len(get(cache="false")["data"]["result"]) == 4, 60, "4 series answer")
    wait_for(lambda: get(cache="false") == get(cache="false"), 60, "ingestion settled")
    hits0, misses0 = _counter(up.url, "hit"), _counter(up.url, "miss")
    first = get()
    assert _counter(up.url, "miss") > misses0 and _counter(up.url, "hit") == hits0
    second = get()
    assert _counter(up.url, "hit") > hits0
    plain = get(cache="false")
    assert first == plain and second == plain
    port = int((up.data_dir / "redis" / "port").read_text())  # the Redis `filodb up` started
    invalidate(redis.Redis(port=port), "prometheus")
    misses1 = _counter(up.url, "miss")
    assert get() == plain and _counter(up.url, "miss") > misses1
