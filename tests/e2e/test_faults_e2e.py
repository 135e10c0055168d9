"""Faults without loss under ``filodb up``: redis-server (the embedded log and cluster state)
killed with SIGKILL while writes go on, and a full disk under the data directory (a 64 MB
tmpfs). Writes answer 503 while the log cannot take them; the supervisor starts Redis again on
the same port and append-only file; once space returns writes and flushes go on; every
acknowledged sample is then present exactly once (count and sum per series), no SQLite file is
corrupted and a restart on the same directory finds everything, with no hand on the cluster."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess, running
from filodb.testing.wait import eventually, wait_for

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000_000
STEP = 10_000
N_SERIES = 8
PER = 5  # samples per series per batch
ENV = {
    "FILODB_FLUSH_INTERVAL": "2",
    "FILODB_FLUSH_GROUPS": "2",
    "FILODB_RETENTION": "0",
}  # 2023 data


def _batch(k: int) -> SampleBatch:
    series = [make_labels({"__name__": "fault_total", "i": str(i)}) for i in range(N_SERIES)]
    idx = np.arange(k * PER, k * PER + PER)
    return SampleBatch(series, np.repeat(np.arange(N_SERIES), PER), np.tile(T0 + STEP * idx, N_SERIES),
                       np.tile(idx.astype(float), N_SERIES))  # fmt: skip


def _over_time(url: str, fn: str, n: int) -> dict[str, float]:
    t = (T0 + STEP * (n - 1)) / 1000
    r = requests.get(url + "/api/v1/query", params={"query": f"{fn}(fault_total[{n * 10 + 10}s])",
                                                    "time": t}, timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    return {x["metric"]["i"]: float(x["value"][1]) for x in r.json()["data"]["result"]}


class Writer(threading.Thread):
    """Sends batch after batch; a batch not acknowledged (non-204 or no answer) is sent again
    until it is. Records every status seen."""

    def __init__(self, url: str, limit: int, timeout_s: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.url, self.limit, self.timeout_s = url, limit, timeout_s
        self.acked = 0
        self.codes: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set() and self.acked < self.limit:
            try:
                r = requests.post(self.url + "/api/v1/write",
                                  data=encode_write_request(_batch(self.acked)), timeout=self.timeout_s)  # fmt: skip
                code = r.status_code
            except requests.RequestException:
                code = 0
            self.codes.append(code)
            if code == 204:
                self.acked += 1
            else:
                self.halt.wait(0.05)


def _exactly_once(url: str, acked: int) -> None:
    n = acked * PER

    def check() -> None:
        assert _over_time(url, "count_over_time", n) == {str(i): float(n) for i in range(N_SERIES)}
        assert _over_time(url, "sum_over_time", n) == {
            str(i): float(sum(range(n))) for i in range(N_SERIES)
        }

    eventually(check, 120, 0.5, (AssertionError, requests.RequestException, KeyError))


def test_redis_sigkill_during_ingestion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    up = UpProcess(tmp_path / "data", shards=2, env=ENV).start()
    w = Writer(up.url, 100_000)
    w.start()
    try:
        wait_for(lambda: w.acked >= 20, 60, "writes acknowledged before the kill")
        (pid,) = up.pids("redis-server")
        seen = len(w.codes)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not running(pid), 10, "redis-server gone")
        wait_for(lambda: 503 in w.codes[seen:], 30, "a write refused with 503 while Redis is down")
        wait_for(lambda: up.pids("redis-server") not in ([], [pid]), 30, "redis-server restarted")
        after = w.acked
        wait_for(lambda: w.acked >= after + 20, 90, "writes acknowledged again")
    finally:
        w.halt.set()
        w.join(30)
    try:
        assert set(w.codes) <= {204, 503}, sorted(set(w.codes))  # never a 500, never no answer
        _exactly_once(up.url, w.acked)
        assert requests.get(up.url + "/admin/health", timeout=10).status_code == 200
    finally:
        up.stop()


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)  # fmt: skip
    return done.returncode == 0


def _fill(disk: Path) -> Path:
    """A file taking every free byte of ``disk``."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a size-limited tmpfs needs root")
def test_full_disk_under_the_data_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    disk = tmp_path / "disk"
    assert _mount_tmpfs(disk, "64m"), "root could not mount a 64 MB tmpfs"
    try:
        up = UpProcess(disk / "data", shards=2, env=ENV).start()
        acked = 0
        try:
            w = Writer(up.url, 20)
            w.start()
            w.join(60)
            acked = w.acked
            filler = _fill(disk)
            codes = []
            for k in range(acked, acked + 30):  # Redis cannot append its AOF: 503, retry later
                r = requests.post(up.url + "/api/v1/write",
                                  data=encode_write_request(_batch(k)), timeout=10)  # fmt: skip
                codes.append(r.status_code)
                if r.status_code == 204:  # taken before Redis saw its AOF write fail
                    acked = k + 1
                else:
                    break
            assert codes[-1] == 503, codes
            # a few small records still fit in the AOF file's last, partly used page
            assert len(codes) <= 10, codes
            filler.unlink()  # space returns: writes, flushes and the worker go on
            w = Writer(up.url, acked + 20)
            w.acked = acked
            w.start()
            w.join(120)
            assert w.acked == acked + 20 and set(w.codes) <= {204, 503}, w.codes
            acked = w.acked
            _exactly_once(up.url, acked)
        finally:
            up.kill9_all()
        for db in (disk / "data").rglob("*.db"):  # no file corrupted
            with sqlite3.connect(db) as con:
                assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",), db
        again = UpProcess(disk / "data", shards=2, env=ENV)  # Redis's AOF loads again
        again.port, again.url, again.args = up.port, up.url, up.args
        again.start()
        try:
            _exactly_once(again.url, acked)
        finally:
            again.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_kafka_broker_sigkill_during_ingestion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A broker of this test's own (``filodb.devservices.kafka``), killed with SIGKILL while
    writes go on and started again on the same port and data."""
    from filodb.devservices import base, kafka

    workdir = tmp_path / "kafka"
    workdir.mkdir()
    broker, kenv = kafka.start(workdir, base.cache_dir())
    env = {**ENV, **kenv, "FILODB_LOG": "kafka", "FILODB_KAFKA_TOPIC_PREFIX": "fault-"}
    up = UpProcess(tmp_path / "data", shards=2, env=env)
    try:
        up.start(wait_s=180)
        # an append waits up to the producer's delivery timeout (30 s) before it answers 503,
        # as long as Prometheus's remote-write client waits by default
        w = Writer(up.url, 100_000, timeout_s=60)
        w.start()
        try:
            wait_for(lambda: w.acked >= 20, 90, "writes acknowledged before the kill")
            seen = len(w.codes)
            os.killpg(broker.pid, signal.SIGKILL)
            broker.wait()
            wait_for(lambda: any(c != 204 for c in w.codes[seen:]), 90,
                     "a write refused while the broker is down")  # fmt: skip
            broker, _ = kafka.launch(workdir, base.cache_dir())
            after = w.acked
            wait_for(lambda: w.acked >= after + 20, 180, "writes acknowledged again")
        finally:
            w.halt.set()
            w.join(60)
        refused = {c for c in w.codes if c != 204}
        assert refused and refused <= {503}, sorted(set(w.codes))  # never a 500 or no answer
        _exactly_once(up.url, w.acked)
    finally:
        up.stop()
        try:
            os.killpg(broker.pid, signal.SIGKILL)
        except OSError:
            pass
