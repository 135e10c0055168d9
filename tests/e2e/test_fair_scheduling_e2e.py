"""A cheap query through a real ``filodb up`` while 8 heavy queries run: its leaf work overtakes
the heavy work queued before it (the worker's ``filodb_worker_leaf_pieces`` shows heavy pieces
still queued once it has answered), it answers before any heavy query does, within a generous
bound of its idle latency, and every heavy query still answers, with its idle answer."""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.wait import wait_for

UP_ENV = {"FILODB_QUERY_CACHE_MB": "0"}  # every query computes
N_SERIES, STEP_MS = 400, 15_000
HEAVY = "sum by (job) (quantile_over_time(0.9, fs_temp[1h:15s]))"
CHEAP = 'max(fs_cores{job="j1"})'


def _load(url: str, now: int) -> tuple[float, float]:
    ts = np.arange(now - 3 * 3600_000, now, STEP_MS, dtype=np.int64)
    labels = [make_labels({"__name__": "fs_temp", "job": f"j{i % 4}", "instance": f"i{i}"})
              for i in range(N_SERIES)]  # fmt: skip
    labels += [make_labels({"__name__": "fs_cores", "job": f"j{j}"}) for j in range(4)]
    n = len(labels)
    vals = np.random.default_rng(5).normal(20, 3, (n, len(ts)))
    for lo in range(0, n, 100):  # bodies under the per-request sample limit
        part = range(lo, min(n, lo + 100))
        batch = SampleBatch([labels[i] for i in part], np.repeat(np.arange(len(part)), len(ts)),
                            np.tile(ts, len(part)), vals[lo : lo + len(part)].ravel())  # fmt: skip
        r = requests.post(url + "/api/v1/write", data=encode_write_request(batch), timeout=60)
        assert r.status_code == 204, r.text
    return (now - 2 * 3600_000) / 1000, now / 1000


def _lanes(metrics_url: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in requests.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith("filodb_worker_leaf_pieces{"):
            lane = line.split('lane="')[1].split('"')[0]
            state = line.split('state="')[1].split('"')[0]
            out[(lane, state)] = float(line.split()[-1])
    return out


def test_a_cheap_query_overtakes_eight_heavy_ones(up) -> None:  # type: ignore[no-untyped-def]
    start, end = _load(up.url, int(time.time()) * 1000)
    s = requests.Session()

    def run(q: str) -> tuple[float, dict]:
        t = time.perf_counter()
        r = s.get(up.url + "/api/v1/query_range",
                  params={"query": q, "start": start, "end": end, "step": "15"}, timeout=300)  # fmt: skip
        assert r.status_code == 200, r.text
        return time.perf_counter() - t, r.json()

    wait_for(lambda: len(run("count_over_time(fs_temp[1m])")[1]["data"]["result"]) == N_SERIES,
             60, "every series ingested")  # fmt: skip
    (node,) = requests.get(up.url + "/admin/nodes", timeout=10).json()["data"]
    metrics_url = f"http://127.0.0.1:{node['metrics_port']}/metrics"
    heavy_s, heavy_answer = run(HEAVY)  # the node learns what each query costs
    idle = statistics.median(run(CHEAP)[0] for _ in range(7))
    cheap_answer = run(CHEAP)[1]
    assert len(heavy_answer["data"]["result"]) == 4 and len(cheap_answer["data"]["result"]) == 1

    done: list[tuple[float, dict]] = []

    def heavy() -> None:
        hs = requests.Session()
        r = hs.get(up.url + "/api/v1/query_range",
                   params={"query": HEAVY, "start": start, "end": end, "step": "15"}, timeout=600)  # fmt: skip
        done.append((time.perf_counter(), r.json()))

    threads = [threading.Thread(target=heavy) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        # the heavy queries' pieces wait in the worker's queue, one runner is kept free
        wait_for(lambda: _lanes(metrics_url).get(("heavy", "queued"), 0) >= 8, 60,
                 "heavy pieces queued", interval=0.02)  # fmt: skip
        took, got = run(CHEAP)
        answered = time.perf_counter()
        assert got == cheap_answer
        lanes = _lanes(metrics_url)
        assert lanes[("heavy", "queued")] > 0  # it overtook heavy work queued before it
        assert not done or min(t for t, _ in done) > answered  # no heavy query answered first
        # generous on a loaded 2-core machine: a FIFO queue made it wait for 8 heavy queries
        # (each took heavy_s alone)
        assert took < max(20 * idle, 2 * idle + heavy_s), (took, idle, heavy_s)
    finally:
        for t in threads:
            t.join(600)
    assert len(done) == 8 and all(body == heavy_answer for _, body in done)  # none starved
