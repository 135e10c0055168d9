"""The embedded log stays bounded by ``flush_log_mb`` under a real ``filodb up``: past it, a
shard's oldest flush group is flushed early and the Redis stream is trimmed behind it, long
before the time-based flush; every sample is still there exactly once."""

from __future__ import annotations

import numpy as np
import pytest
import redis
import requests

from filodb.ingest.redis_streams import stream_key
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.store import open_store
from filodb.testing.cluster import UpProcess, cmdline
from filodb.testing.wait import eventually

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000_000
STEP = 15_000
SERIES = [make_labels({"__name__": "lb_gauge", "i": str(i)}) for i in range(500)]
PER = 40  # samples per series per body: 20 000 samples, ~160 kB of random doubles a record
BODIES = 40  # ~6.4 MB of records in all


def _body(k: int, rng: np.random.Generator) -> tuple[bytes, float]:
    ts = T0 + STEP * np.arange(k * PER, (k + 1) * PER)
    vals = rng.random(len(SERIES) * PER)
    b = SampleBatch(SERIES, np.repeat(np.arange(len(SERIES)), PER), np.tile(ts, len(SERIES)), vals)
    return encode_write_request(b), float(vals.sum())


def _scalar(url: str, q: str) -> float:
    t = (T0 + STEP * (BODIES * PER - 1)) / 1000
    r = requests.get(url + "/api/v1/query", params={"query": q, "time": t}, timeout=30)
    assert r.status_code == 200, r.text
    res = r.json()["data"]["result"]
    return float(res[0]["value"][1]) if res else 0.0


def _run(tmp_path, flush_log_mb: int, log_backlog_mb: int = 0) -> tuple[list[list[int]], int]:  # type: ignore[no-untyped-def]
    """Ingest every body, check every sample; return the record sizes of each shard's stream
    once they settle, and their XLEN in all."""
    env = {"FILODB_FLUSH_LOG_MB": str(flush_log_mb), "FILODB_FLUSH_GROUPS": "4",
           "FILODB_LOG_BACKLOG_MB": str(log_backlog_mb),
           "FILODB_INFLUX_PORT": "0", "FILODB_GRAPHITE_PORT": "0"}  # fmt: skip
    up = UpProcess(tmp_path / f"data{flush_log_mb}-{log_backlog_mb}", shards=2, env=env).start()
    try:
        (rpid,) = up.pids("redis-server")
        port = cmdline(rpid).split()[1].rsplit(":", 1)[1]
        r = redis.Redis(port=int(port))
        rng = np.random.default_rng(7)
        want = 0.0
        for k in range(BODIES):
            body, s = _body(k, rng)
            want += s
            resp = requests.post(up.url + "/api/v1/write", data=body, timeout=30)
            assert resp.status_code == 204, resp.text
        span = f"[{BODIES * PER * STEP // 1000 + 60}s]"

        def all_there() -> None:
            assert (
                _scalar(up.url, f"sum(count_over_time(lb_gauge{span}))")
                == len(SERIES) * PER * BODIES
            )
            assert _scalar(up.url, f"sum(sum_over_time(lb_gauge{span}))") == pytest.approx(
                want, rel=1e-12
            )

        eventually(all_there, 90, 0.3, (AssertionError, requests.RequestException))
        keys = [stream_key("prometheus", s) for s in (0, 1)]

        def settled() -> list[list[int]]:
            sizes = [[len(f[b"d"]) for _, f in r.xrange(k)] for k in keys]
            if flush_log_mb:  # per shard
                assert all(sum(s) <= flush_log_mb << 20 for s in sizes), [sum(s) for s in sizes]
            if log_backlog_mb:  # the node's shards together
                assert sum(map(sum, sizes)) <= log_backlog_mb << 20, [sum(s) for s in sizes]
            return sizes

        sizes = eventually(settled, 60, 0.3, (AssertionError,))
        xlen = sum(int(r.xlen(k)) for k in keys)
        all_there()  # flushed and trimmed, still exactly once (read back from the store)
        return sizes, xlen
    finally:
        up.stop()


def test_unflushed_log_is_bounded_by_flush_log_mb(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sizes, xlen = _run(tmp_path, 1)
    assert all(sum(s) <= 1 << 20 for s in sizes) and xlen == sum(map(len, sizes)) < BODIES


def test_node_log_budget_bounds_the_log_without_shrinking_chunks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sizes, xlen = _run(tmp_path, 0, 1)
    assert sum(map(sum, sizes)) <= 1 << 20 and xlen < BODIES
    # the early flushes left the heads open: every stored chunk but a series' newest (its
    # head, stored provisionally) is a whole chunk of max_chunk_samples (480) or more rows
    column, meta = open_store("sqlite", tmp_path / "data0-1")
    rows: dict[bytes, list[tuple[int, int]]] = {}
    for shard in (0, 1):
        pks = [p.part_key for p in column.scan_part_keys("prometheus", shard)]
        for c in column.read_chunks("prometheus", shard, pks, 0, 2**62):
            rows.setdefault(c.part_key, []).append((c.start_ms, c.num_rows))
    column.close()
    meta.close()
    assert len(rows) == len(SERIES)
    for got in rows.values():
        got.sort()
        assert all(n >= 480 for _, n in got[:-1]), got
        assert sum(n for _, n in got) <= PER * BODIES  # stored once (the newest is provisional)


def test_without_a_size_limit_the_log_keeps_everything_until_the_time_flush(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sizes, xlen = _run(tmp_path, 0)
    assert xlen == 2 * BODIES and sum(map(sum, sizes)) > 4 << 20  # what the limit above trims
