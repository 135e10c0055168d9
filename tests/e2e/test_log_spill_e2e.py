"""The embedded log's spill as a user meets it: under a steady write the applied records leave
Redis's memory for ``<data_dir>/log-spill`` (past ``log_spill_mb``) with no chunk flush at all,
and after kill -9 of the worker the shards recover from the spill plus the stream: every
acknowledged sample answers once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import redis
import requests

from filodb.ingest.redis_streams import SPILL_KEY
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import wait_for
from filodb.tools.client import RW_HEADERS

SERIES, SCRAPES, BODIES = 500, 20, 30


def _body(i: int, base_ms: int) -> bytes:
    """SERIES series x SCRAPES random samples of metric ``spill_<i>`` (~70 kB of log)."""
    series = [make_labels({"__name__": f"spill_{i}", "host": f"h{h}"}) for h in range(SERIES)]
    ts = base_ms + 15_000 * np.arange(SCRAPES)
    vals = np.random.default_rng(i).random(SERIES * SCRAPES)
    return encode_write_request(
        SampleBatch(series, np.repeat(np.arange(SERIES), SCRAPES), np.tile(ts, SERIES), vals)
    )


def test_applied_records_spill_out_of_redis_and_a_killed_worker_recovers_from_them(
    tmp_path: Path,
) -> None:
    env = {"FILODB_LOG_SPILL_MB": "1",  # no chunk flush for the log's size: only the spill
           "FILODB_LOG_BACKLOG_MB": "0", "FILODB_FLUSH_LOG_MB": "0"}  # fmt: skip
    up = UpProcess(tmp_path / "data", shards=2, env=env).start()
    try:
        r = redis.Redis(port=int((up.data_dir / "redis" / "port").read_text()))
        base = (int(time.time()) - 1800) * 1000
        for i in range(BODIES):  # ~2 MB of log
            got = requests.post(f"{up.url}/api/v1/write", data=_body(i, base),
                                headers=RW_HEADERS, timeout=60)  # fmt: skip
            assert got.status_code == 204, got.text

        def in_redis() -> int:
            return sum(r.xlen(k) for k in r.scan_iter("filodb:log:*"))

        # a body is a record on each of two partitions; 1 MB is ~14 bodies' records
        wait_for(lambda: r.hlen(SPILL_KEY) > 0 and in_redis() <= 2 * 16, 60,
                 "the applied records spilled", up.log_tail)  # fmt: skip
        on_disk = sum(f.stat().st_size for f in (up.data_dir / "log-spill").rglob("*.seg"))
        assert on_disk > 1 << 20  # the records are on disk (segment files)
        at = base / 1000 + 15 * SCRAPES

        def counts() -> tuple[float, ...] | None:
            out = []
            for q in ('sum(count_over_time({__name__=~"spill_.*"}[1h]))',
                      'sum(sum_over_time({__name__=~"spill_.*"}[1h]))'):  # fmt: skip
                res = requests.get(f"{up.url}/api/v1/query", params={"query": q, "time": at},
                                   timeout=30).json()  # fmt: skip
                if res.get("status") != "success" or not res["data"]["result"]:
                    return None
                out.append(round(float(res["data"]["result"][0]["value"][1]), 3))
            return tuple(out)

        total = sum(np.random.default_rng(i).random(SERIES * SCRAPES).sum() for i in range(BODIES))
        want = (float(SERIES * SCRAPES * BODIES), round(float(total), 3))
        wait_for(lambda: counts() == want, 60, "every sample answers", up.log_tail)
        (pid,) = up.pids("worker")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: up.pids("worker") not in ([], [pid]), 60, "the worker back", up.log_tail)
        # nothing was flushed: the replay reads the spill, then the stream, each record once
        wait_for(lambda: counts() == want, 90, "every sample answers after the replay",
                 up.log_tail)  # fmt: skip
    finally:
        up.stop()
