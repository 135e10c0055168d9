"""Downsampling under a real ``filodb up``: the default dataset with levels from the config,
data written by remote write and flushed, ``filodb downsample`` run as a command, then a
``query_range`` over the web API that spans downsampled and raw data, equal to references
over the samples written; the cluster's own periodic run (a Celery task on the coordinator's
worker) shown in ``/metrics`` and ``filodb status``, an instant query and a cached range query
over what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis
import requests

from filodb.downsample.job import window_ms
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.redisproc import free_port, start_redis
from filodb.shards.redis_map import DOWNSAMPLED_KEY
from filodb.store import open_store
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually, wait_for

pytestmark = pytest.mark.e2e

WIN = window_ms((60_000, 300_000))  # the job's window for 1m/5m levels
STEP = 15_000


def test_query_range_spans_downsampled_and_raw_data(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    t0 = (now - WIN - 6 * 3_600_000) // WIN * WIN  # at least one whole window, 6 h before now
    ts = np.arange(t0 + STEP, now - 60_000, STEP, dtype=np.int64)
    rng = np.random.default_rng(3)
    series = [make_labels({"__name__": "temp", "host": f"h{i}"}) for i in range(3)]
    series += [make_labels({"__name__": "req_total", "host": f"h{i}"}) for i in range(2)]
    vals = {i: np.round(rng.normal(50, 10, len(ts)), 2) for i in range(3)}
    vals |= {i: np.cumsum(rng.integers(0, 9, len(ts))).astype(float) for i in range(3, 5)}
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    env = {"FILODB_FLUSH_INTERVAL": "2", "FILODB_FLUSH_GROUPS": "2", "FILODB_REDIS_URL": redis_url,
           "FILODB_DOWNSAMPLE": "1m:2d,5m:3d", "FILODB_RETENTION": str(4 * 3600)}  # fmt: skip
    up = UpProcess(tmp_path / "data", shards=2, env=env).start()
    try:
        for a in range(0, len(ts), 1000):  # time-major batches, as Prometheus sends
            t = ts[a : a + 1000]
            b = SampleBatch(series, np.repeat(np.arange(5), len(t)), np.tile(t, 5),
                            np.concatenate([vals[i][a : a + 1000] for i in range(5)]))  # fmt: skip
            r = requests.post(up.url + "/api/v1/write", data=encode_write_request(b), timeout=30)
            assert r.status_code == 204, r.text
        stores = open_store("sqlite", tmp_path / "data")

        def flushed() -> None:  # every sample written is in the column store
            rows = 0
            for s in range(2):
                pks = [p.part_key for p in stores.column.scan_part_keys("prometheus", s)]
                rows += sum(
                    c.num_rows for c in stores.column.read_chunks("prometheus", s, pks, 0, 2**62)
                )
            assert rows == 5 * len(ts)

        eventually(flushed, 90, 0.5)
        # the periodic run waits for every group's flush; this test runs the command itself
        cmd = [sys.executable, "-m", "filodb", "downsample", "--dataset", "prometheus",
               "--from", str(t0 // 1000), "--to", "now", "--redis-url", redis_url]  # fmt: skip
        p = subprocess.run(cmd, env={**os.environ, "FILODB_DATA_DIR": str(tmp_path / "data")},
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert p.returncode == 0, p.stderr
        listed = subprocess.run([sys.executable, "-m", "filodb", "dataset", "list", "--url", up.url],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert "prometheus_ds_5" in listed.stdout and "5m" in listed.stdout

        start, end = (t0 + 3_600_000) // 1000, now // 1000 // 3600 * 3600
        grid = np.arange(start, end + 1, 3600) * 1000

        def answered() -> requests.Response:
            r = requests.get(
                up.url + "/api/v1/query_range",
                params={
                    "query": "count_over_time(temp[1h])",
                    "start": start,
                    "end": end,
                    "step": 3600,
                },
                timeout=60,
            )
            assert r.status_code == 200, r.text
            assert "prometheus_ds_1" in r.headers["X-Filodb-Resolution"], r.headers
            res = r.json()["data"]["result"]
            assert len(res) == 3
            for item in res:  # the ds part keys reached the shards' owners
                assert [int(float(t) * 1000) for t, _ in item["values"]] == grid.tolist()
            return r

        r = eventually(answered, 60, 0.5)
        assert "(raw)" in r.headers["X-Filodb-Resolution"] and r.json()["infos"]
        for item in r.json()["data"]["result"]:
            assert "__ds_col__" not in item["metric"]
            got = [float(v) for _, v in item["values"]]
            want = [float(np.count_nonzero((ts > g - 3_600_000) & (ts <= g))) for g in grid]
            assert got == want  # every step, once: no gap, nothing counted twice at the seam
        direct = requests.get(up.url + "/promql/prometheus_ds_5/api/v1/query", params={
            "query": 'count(temp{__ds_col__="max"})', "time": (t0 + WIN) // 1000}, timeout=30)  # fmt: skip
        assert direct.status_code == 200 and direct.json()["data"]["result"][0]["value"][1] == "3"
        # a deleted series goes from the downsampled datasets too, not only from raw
        d = requests.post(up.url + "/api/v1/admin/tsdb/delete_series",
                          params={"match[]": 'temp{host="h0"}'}, timeout=120)  # fmt: skip
        assert d.status_code == 204, d.text
        for level in ("prometheus_ds_1", "prometheus_ds_5"):
            left = requests.get(up.url + f"/promql/{level}/api/v1/series",
                                params={"match[]": "temp"}, timeout=30)  # fmt: skip
            assert sorted({x["host"] for x in left.json()["data"]}) == ["h1", "h2"], left.text
        hosts = requests.get(up.url + "/api/v1/query_range", params={
            "query": "count_over_time(temp[1h])", "start": start, "end": end, "step": 3600},
            timeout=60).json()["data"]["result"]  # fmt: skip
        assert sorted(x["metric"]["host"] for x in hosts) == ["h1", "h2"]
        stores.close()
    finally:
        up.stop()


def _metric(url: str, name: str) -> float | None:
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return None


def test_the_cluster_downsamples_on_its_interval_and_queries_read_it(tmp_path: Path) -> None:
    """The periodic run as a Celery task of the coordinator's worker (interval 1 s), then an
    instant query past the raw retention and a cached long-range query over what it wrote."""
    now = int(time.time() * 1000)
    # the last whole job window: the run completes it and no later one (with "ended 10 min ago
    # or more", in the first 10 min of a window the one after it was whole too, the watermark
    # went past day_end and the test failed: seen at 00:02 UTC)
    day_end = now // WIN * WIN
    t0 = day_end - WIN
    ts = np.arange(t0 + 60_000, now - 60_000, 60_000, dtype=np.int64)
    series = [make_labels({"__name__": "temp", "host": f"h{i}"}) for i in range(3)]
    vals = np.round(np.random.default_rng(5).normal(50, 10, (3, len(ts))), 2)
    rp = start_redis(tmp_path / "redis")
    r = redis.Redis.from_url(rp.url)
    # The samples are backfilled (older than their arrival), which the run's bound (every
    # shard's last flush, a wall time) does not see: the watermark says the window is done
    # until they are flushed, then it is set back.
    r.hset(DOWNSAMPLED_KEY, "prometheus", day_end)
    env = {"FILODB_FLUSH_INTERVAL": "2", "FILODB_FLUSH_GROUPS": "2", "FILODB_REDIS_URL": rp.url,
           "FILODB_DOWNSAMPLE": "1m:3d,5m:4d", "FILODB_RETENTION": str(2 * 86400),
           "FILODB_DOWNSAMPLE_INTERVAL": "1"}  # fmt: skip
    up = UpProcess(tmp_path / "data", shards=2, env=env).start()
    stores = open_store("sqlite", tmp_path / "data")
    try:
        b = SampleBatch(series, np.repeat(np.arange(3), len(ts)), np.tile(ts, 3), vals.ravel())
        resp = requests.post(up.url + "/api/v1/write", data=encode_write_request(b), timeout=30)
        assert resp.status_code == 204, resp.text

        def flushed() -> bool:
            rows = 0
            for s in range(2):
                pks = [p.part_key for p in stores.column.scan_part_keys("prometheus", s)]
                rows += sum(
                    c.num_rows for c in stores.column.read_chunks("prometheus", s, pks, 0, 2**62)
                )
            return rows == 3 * len(ts)

        wait_for(flushed, 90, "every sample flushed", up.log_tail)
        runs = wait_for(
            lambda: _metric(up.url, "filodb_downsample_runs_total"), 60, "a run", up.log_tail
        )

        def downsampled() -> bool:  # a run may put back the watermark it read: set it again
            done = (_metric(up.url, "filodb_downsample_ds_samples_total") or 0) > 0
            if not done and r.hget(DOWNSAMPLED_KEY, "prometheus") == str(day_end).encode():
                r.hset(DOWNSAMPLED_KEY, "prometheus", t0)
            return done and r.hget(DOWNSAMPLED_KEY, "prometheus") == str(day_end).encode()

        wait_for(downsampled, 120, "the periodic run over the window", up.log_tail)
        assert (_metric(up.url, "filodb_downsample_runs_total") or 0) > runs
        assert _metric(up.url, "filodb_downsample_last_run_errors") == 0
        assert _metric(up.url, "filodb_downsample_failed_runs_total") == 0
        assert r.hget("filodb:downsample:run", "node")  # the coordinator's worker ran it
        st = subprocess.run([sys.executable, "-m", "filodb", "status", "--url", up.url],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
        assert st.returncode == 0 and "downsampled through: " + time.strftime(
            "%Y-%m-%d %H:%M:%S", time.gmtime(day_end / 1000)) in st.stdout, st.stdout  # fmt: skip
        assert "downsample run" in st.stdout

        # instant: a 3-day window at the window's end is past the raw retention (2 days)
        def instant() -> requests.Response:
            resp = requests.get(up.url + "/api/v1/query", params={
                "query": "count_over_time(temp[3d])", "time": day_end / 1000}, timeout=60)  # fmt: skip
            assert resp.status_code == 200, resp.text
            assert "prometheus_ds_5" in resp.headers["X-Filodb-Resolution"], resp.headers
            assert len(resp.json()["data"]["result"]) == 3  # the owners reloaded the part keys
            return resp

        got = eventually(instant, 60, 0.5).json()["data"]["result"]
        want = float(np.count_nonzero(ts <= day_end))
        assert [float(x["value"][1]) for x in got] == [want] * 3
        assert all("__ds_col__" not in x["metric"] for x in got)

        # range: windows reaching past the raw retention up to the window's end read 1m data
        rng = 2 * 86400_000 - (now - day_end) + 2 * 3_600_000
        rng -= rng % 60_000
        q = f"count_over_time(temp[{rng // 60_000}m])"
        start, end = (
            (day_end - 6 * 3_600_000) // 1000,
            min(day_end + 4 * 3_600_000, now - 600_000) // 1000,
        )
        params = {"query": q, "start": start, "end": end, "step": "300"}

        def ranged(**extra: str) -> dict:
            resp = requests.get(
                up.url + "/api/v1/query_range", params={**params, **extra}, timeout=60
            )
            assert resp.status_code == 200, resp.text
            assert "prometheus_ds_1" in resp.headers["X-Filodb-Resolution"], resp.headers
            return resp.json()

        plain = ranged(cache="false")
        hits = _metric(up.url, 'filodb_query_cache_extents_total{result="hit"}') or 0
        first, second = ranged(), ranged()
        assert first == plain and second == plain
        assert (_metric(up.url, 'filodb_query_cache_extents_total{result="hit"}') or 0) > hits
        grid = np.arange(start, end + 1, 300) * 1000
        ref = [float(np.count_nonzero((ts > g - rng) & (ts <= g))) for g in grid]
        for item in plain["data"]["result"]:
            assert [int(float(t) * 1000) for t, _ in item["values"]] == grid.tolist()
            assert [float(v) for _, v in item["values"]] == ref
    finally:
        stores.close()
        up.stop()
        rp.stop()
