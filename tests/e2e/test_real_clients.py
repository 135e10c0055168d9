"""Real Prometheus clients against a real ``filodb up``: Debian's Prometheus 2.42 scraping the
project's own /metrics and remote-writing what it scraped, Prometheus reading through remote
read, and promtool querying. The binaries are required: a missing one fails the test."""

from __future__ import annotations

import math
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.prometheus import PROMTOOL, PromServer, need
from filodb.testing.wait import eventually, wait_for

pytestmark = pytest.mark.e2e

SCRAPE_S = 10


def _filodb(up, path: str, **params: object) -> dict:  # type: ignore[no-untyped-def]
    r = requests.get(up.url + path, params=params, timeout=30)
    assert r.status_code == 200, f"filodb {path}: {r.status_code} {r.text}"
    return r.json()["data"]


def _matrix(data: dict) -> dict[tuple, list[tuple[int, float]]]:
    """A matrix answer as sorted label pairs -> [(ms, value)]."""
    assert data["resultType"] == "matrix", data
    return {tuple(sorted(s["metric"].items())): [(round(float(t) * 1000), float(v)) for t, v in s["values"]]
            for s in data["result"]}  # fmt: skip


def _wait_ingested(up, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Until every shard has ingested its log up to the end offset."""

    def caught_up() -> None:
        rows = _filodb(up, "/api/v1/cluster/prometheus/status")
        caught = all(r["lag"] == 0 and r["status"] == "Active" for r in rows)
        assert caught, f"shards still lag: {rows}"

    eventually(caught_up, timeout)


def _same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    return len(a) == len(b) and all(
        ta == tb and (va == vb or (math.isnan(va) and math.isnan(vb)))
        for (ta, va), (tb, vb) in zip(a, b, strict=True)
    )


def test_prometheus_remote_write_delivers_every_scraped_sample(up, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nodes = _filodb(up, "/admin/nodes")
    assert len(nodes) == 1 and nodes[0]["metrics_port"] > 0
    web, worker = urlparse(up.url).netloc, f"127.0.0.1:{nodes[0]['metrics_port']}"
    prom = PromServer(tmp_path / "prom-rw", {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "filodb-web", "static_configs": [{"targets": [web]}]},
            {"job_name": "filodb-worker", "static_configs": [{"targets": [worker]}]},
        ],
        "remote_write": [{"url": up.url + "/api/v1/write",
                          "queue_config": {"batch_send_deadline": "1s"}}],
    })  # fmt: skip
    prom.start()
    try:
        wait_for(
            lambda: len(prom.get("/api/v1/query", query="up")["result"]) >= 2,
            30,
            "prometheus scraping both targets",
            prom.log,
        )  # it applies targets after ~5 s
        time.sleep(SCRAPE_S)
        # A scrape that started at or before t_q has ended (timeout 1 s) before Prometheus is
        # asked, so its answer holds every sample stamped <= t_q that it will ever hold.
        t_q = round(time.time() - 2.0, 3)
        want = _matrix(prom.get("/api/v1/query", query='{job=~"filodb-.*"}[5m]', time=t_q))
        t_stop = time.time()
    finally:
        code = prom.stop()
    assert code == 0, prom.log()

    up_series = {k: v for k, v in want.items() if ("__name__", "up") in k}
    assert len(up_series) == 2 and all(len(v) >= SCRAPE_S - 4 and all(x == 1.0 for _, x in v)
                                       for v in up_series.values()), up_series  # fmt: skip
    names = {dict(k)["__name__"] for k in want}
    assert {
        "filodb_http_requests_total",
        "filodb_shards",
        "filodb_worker_samples_ingested_total",
        "filodb_worker_info",
        "scrape_duration_seconds",
    } <= names, names

    # Every sample stamped <= t_q was in Prometheus's WAL >= 1 s before SIGTERM: the WAL
    # watcher reads every 10 ms and a batch waits at most batch_send_deadline (1 s), and the
    # shutdown flushes what is queued. Only samples scraped after t_q may be missing.
    _wait_ingested(up)
    got = _matrix(_filodb(up, "/api/v1/query", query='{job=~"filodb-.*"}[5m]', time=t_q))
    assert set(got) == set(want), set(want) ^ set(got)
    differ = {k: (want[k], got[k]) for k in want if not _same(want[k], got[k])}
    assert not differ, list(differ.items())[:3]
    assert sum(len(v) for v in got.values()) > 500

    # After t_q: at most one sample per scrape interval per series, and nothing stamped after
    # Prometheus stopped.
    tail = _matrix(_filodb(up, "/api/v1/query", query='{job=~"filodb-.*"}[5m]', time=t_stop + 5))
    for k, v in tail.items():
        after = [t for t, _ in v if t > t_q * 1000]
        assert all(t <= t_stop * 1000 for t in after), (k, after)
        assert len(after) <= math.ceil(t_stop - t_q) + 1, (k, after)
        assert _same([s for s in v if s[0] <= t_q * 1000], want.get(k, [])), k

    # The counters Prometheus scraped tell the same story: it wrote to /api/v1/write.
    rw = [v for k, v in got.items() if ("__name__", "filodb_ingest_samples_total") in k
          and ("door", "remote_write") in k]  # fmt: skip
    assert len(rw) == 1 and rw[0][-1][1] > rw[0][0][1] > 0


def _write(up, batch: SampleBatch) -> None:  # type: ignore[no-untyped-def]
    r = requests.post(up.url + "/api/v1/write", data=encode_write_request(batch), timeout=30)
    assert r.status_code == 204, r.text


def test_prometheus_remote_read_returns_what_was_written(up, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = (int(time.time()) // 60 - 30) * 60_000  # half an hour ago, on a minute
    rng = np.random.default_rng(7)
    series = [make_labels({"__name__": "rr_probe", "host": f"h{i}", "zone": "z1" if i % 2 else "z2"})
              for i in range(4)]  # fmt: skip
    n = 40
    ts = base + 15_000 * np.arange(n) + rng.integers(0, 900, n)  # not on a step: raw samples
    vals = {lb: np.round(rng.normal(0, 1e3, n), 3) for lb in series}
    vals[series[0]][3] = 1e-300
    vals[series[1]][5] = -0.0
    vals[series[2]][7] = 123456789.123456789
    _write(up, SampleBatch(series, np.repeat(np.arange(4), n), np.tile(ts, 4),
                           np.concatenate([vals[lb] for lb in series])))  # fmt: skip
    _wait_ingested(up)

    prom = PromServer(tmp_path / "prom-rr", {
        "global": {"scrape_interval": "15s"},
        "remote_read": [{"url": up.url + "/api/v1/read", "read_recent": True}],
    }).start()  # fmt: skip
    try:
        t = (int(ts[-1]) + 1) / 1000
        got = _matrix(prom.get("/api/v1/query", query='rr_probe{zone=~"z.*"}[15m]', time=t))
        assert set(got) == {tuple(sorted(lb)) for lb in series}
        for lb in series:
            assert got[tuple(sorted(lb))] == [
                (int(a), float(b)) for a, b in zip(ts, vals[lb], strict=True)
            ]
        # PromQL in Prometheus over the remotely read samples: exact sums per zone at a step
        step_t = (base + 300_000) / 1000
        vec = prom.get("/api/v1/query", query="sum by (zone) (rr_probe)", time=step_t)["result"]
        i = int(np.searchsorted(ts, base + 300_000, side="right") - 1)
        for s in vec:
            zone = s["metric"]["zone"]
            expect = sum(vals[lb][i] for lb in series if dict(lb)["zone"] == zone)
            assert float(s["value"][1]) == pytest.approx(expect, rel=1e-12, abs=1e-9)
        assert len(vec) == 2
        # a matcher that matches nothing comes back empty, not as an error
        assert prom.get("/api/v1/query", query='rr_probe{host="nope"}[15m]', time=t)["result"] == []
    finally:
        prom.stop()


_INSTANT = re.compile(r"^(?P<metric>\S*?\{.*\}|\S+) => (?P<value>\S+) @\[(?P<t>[0-9.]+)\]$")


def _promtool(*args: str) -> subprocess.CompletedProcess:
    need(PROMTOOL)
    return subprocess.run([PROMTOOL, "query", *args], capture_output=True, text=True, timeout=60)


def _labels(text: str) -> dict[str, str]:
    name, _, rest = text.partition("{")
    out = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
    if name:
        out["__name__"] = name
    return out


def test_promtool_instant_range_and_errors(up) -> None:  # type: ignore[no-untyped-def]
    base = (int(time.time()) // 60 - 20) * 60_000
    series = [make_labels({"__name__": "pt_probe", "host": h}) for h in ("a", "b")]
    k = np.arange(30)
    _write(up, SampleBatch(series, np.repeat([0, 1], 30), np.tile(base + 10_000 * k, 2),
                           np.concatenate([k * 1.5, -k.astype(float)])))  # fmt: skip
    _wait_ingested(up)

    t = base / 1000 + 100
    p = _promtool("instant", f"--time={t:.0f}", up.url, "pt_probe")
    assert p.returncode == 0, p.stderr
    rows = [_INSTANT.match(line) for line in p.stdout.strip().splitlines()]
    assert all(rows), p.stdout
    got = {_labels(m["metric"])["host"]: (float(m["value"]), float(m["t"])) for m in rows if m}
    assert got == {"a": (15.0, t), "b": (-10.0, t)}
    assert all(_labels(m["metric"]) == {"__name__": "pt_probe", "host": m["metric"].split('"')[1]}
               for m in rows if m)  # fmt: skip

    start, end = base / 1000, base / 1000 + 290
    p = _promtool("range", f"--start={start:.0f}", f"--end={end:.0f}", "--step=20s", up.url,
                  'sum(pt_probe)')  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].strip().endswith("=>"), p.stdout
    points = [re.fullmatch(r"(\S+) @\[([0-9.]+)\]", ln.strip()) for ln in lines[1:]]
    assert all(points), p.stdout
    got_range = [(float(m[2]), float(m[1])) for m in points if m]
    assert got_range == [(start + 20 * j, 0.5 * 2 * j) for j in range(15)]  # 1.5k - k at k = 2j

    # a bad expression: promtool fails and shows the server's own error message
    r = requests.get(up.url + "/api/v1/query", params={"query": "sum(pt_probe"}, timeout=10)
    assert r.status_code == 400
    p = _promtool("instant", up.url, "sum(pt_probe")
    assert p.returncode != 0
    assert r.json()["error"] in p.stderr, (r.json()["error"], p.stderr)
