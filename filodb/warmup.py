"""``filodb warm``: compile numba's kernels ahead, so that no user meets the first-start cost.

numba compiles a kernel the first time a process calls it and keeps the machine code in the
cache of this state of the sources (:mod:`filodb.numbacache`). After an install, an upgrade or
any change to the sources that cache is empty, and the first ``filodb up`` compiles every
kernel on the way of the first writes and queries: ingestion then runs at a small fraction of
its speed for a minute or more, and a query a second after a write may not see it yet.

Warming runs what a user runs, in a throwaway ``filodb up`` (its own data directory, free
ports, no ``FILODB_*`` settings of the caller): remote write, Influx over HTTP and TCP and
Graphite over TCP; a set of queries over HTTP; a clean stop (which flushes); a second start,
which recovers from the column store and the log, and queries the flushed data again. Every
process of that tree compiles into the shared cache; later starts load from it.
``scripts/setup`` runs it once after installing.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from rich.console import Console

from filodb.errors import FiloError
from filodb.prom.remote_write import encode_write_request
from filodb.redisproc import free_port
from filodb.tools.client import RW_HEADERS, write_url
from filodb.tools.generate import EXAMPLE_QUERIES, Workload, blocks, influx_body
from filodb.uptree import UpTree

SERIES = 96  # three exporter instances: counters, gauges and a histogram
SAMPLES = 400  # more than a chunk holds, so chunks close, encode and flush
WIDE = 2500  # series of one Influx body
INTERVAL_MS = 15_000

QUERIES = (
    *EXAMPLE_QUERIES,
    "sum by (job) (rate(node_cpu_seconds_total[5m]))",
    "max_over_time(node_load1[10m])",
    "avg_over_time(node_load1[10m])",
    "quantile_over_time(0.9, node_load1[10m])",
    "deriv(node_memory_MemAvailable_bytes[10m])",
    "predict_linear(node_memory_MemAvailable_bytes[10m], 3600)",
    "increase(node_network_receive_bytes_total[10m])",
    "irate(node_network_transmit_bytes_total[5m])",
    "node_load1 * on (instance) group_left node_memory_MemAvailable_bytes",
    'count_values("v", round(node_load1))',
    'label_replace(node_load1, "x", "$1", "instance", "(.*):.*")',
    "max_over_time(rate(node_cpu_seconds_total[5m])[30m:1m])",
    "absent(nonexistent_metric)",
    "bottomk(3, node_load1)",
    'sum(rate(node_cpu_seconds_total{mode=~"user|system"}[5m]))',
    "warm_graphite_total",
    "warm_influx_total",
)


@dataclass
class WarmReport:
    seconds: float = 0.0
    samples: int = 0
    queries: int = 0
    steps: list[str] = field(default_factory=list)


class _Up(UpTree):
    """One ``filodb up`` of the warm-up: its own data directory and ports, no metrics ports."""

    def __init__(self, data_dir: Path, log_path: Path, deadline: float) -> None:
        self.deadline = deadline
        self.influx, self.graphite = free_port(), free_port()
        super().__init__(data_dir, shards=4, log_path=log_path,
                         extra=["--influx-port", str(self.influx), "--graphite-port",
                                str(self.graphite), "--gateway-metrics-port", "-1",
                                "--rules-metrics-port", "-1"])  # fmt: skip
        self.spawn()
        # "not healthy yet" too: a door that lost its port to a race restarts and gets it
        try:
            self.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _wait(self, ok: Callable[[], bool], what: str) -> None:
        self.wait_until(ok, what, self.deadline)

    def send_tcp(self, port: int, body: bytes) -> None:
        """``body`` to a TCP door, once it listens (the gateway may be restarting)."""

        def sent() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
                    c.sendall(body)
                return True
            except ConnectionRefusedError:
                return False

        self._wait(sent, f"the TCP door on port {port}")

    def count(self, selector: str) -> int:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": f"count({selector})"},
                         timeout=60)  # fmt: skip
        r.raise_for_status()
        res = r.json()["data"]["result"]
        return int(float(res[0]["value"][1])) if res else 0

    def wait_series(self, selector: str, n: int) -> None:
        self._wait(lambda: self.count(selector) >= n, f"{n} series of {selector} to answer")

    def queries(self, end_ms: int) -> int:
        """Every query of :data:`QUERIES`, instant and range, plus the metadata calls."""
        s = requests.Session()
        end = end_ms / 1000
        done = 0
        for q in QUERIES:
            calls: tuple[tuple[str, dict[str, str | float]], ...] = (
                ("query", {"query": q, "time": end}),
                ("query_range", {"query": q, "start": end - 3600, "end": end, "step": 60}),
            )
            for path, params in calls:
                r = s.get(f"{self.url}/api/v1/{path}", params=params, timeout=120)
                if r.status_code != 200:
                    raise FiloError(f"warm-up: {path} {q!r} answered {r.status_code}: {r.text}")
                done += 1
        for path in ("series?match[]=node_load1", "labels", "label/instance/values", "metadata"):
            s.get(f"{self.url}/api/v1/{path}", timeout=60).raise_for_status()
        return done

    def stop(self, timeout: float | None = None) -> int:
        return super().stop(
            max(10.0, self.deadline - time.monotonic()) if timeout is None else timeout
        )


def _write_all(up: _Up, t0_ms: int) -> int:
    """The workload through every door; returns the samples sent."""
    w = Workload(SERIES, INTERVAL_MS / 1000, seed=1)
    s = requests.Session()
    sent = 0
    rw, influx = (
        write_url(up.url, "prometheus", "remote-write"),
        write_url(up.url, "prometheus", "influx"),
    )
    half = SAMPLES // 2
    # the first half as backfill bodies (many samples a series), the rest as live scrapes
    for i, b in enumerate(blocks(w, t0_ms, INTERVAL_MS, half, 4000)):
        s.post(rw, data=encode_write_request(b, w.metadata if i == 0 else None),
               headers=RW_HEADERS, timeout=60).raise_for_status()  # fmt: skip
        sent += len(b)
    for b in blocks(w, t0_ms + half * INTERVAL_MS, INTERVAL_MS, SAMPLES - half, SERIES):
        s.post(rw, data=encode_write_request(b), headers=RW_HEADERS, timeout=60).raise_for_status()
        sent += len(b)
    last = t0_ms + (SAMPLES - 1) * INTERVAL_MS
    # more distinct series than a door's series-key cache starts with, so it grows
    lines = [b"warm_influx_total,n=%d value=%d %d\n" % (k, k, last - k % 8 * INTERVAL_MS)
             for k in range(WIDE)]  # fmt: skip
    s.post(influx, data=b"".join(lines), timeout=60).raise_for_status()  # precision=ms
    w2 = Workload(SERIES, INTERVAL_MS / 1000, seed=2)  # Influx over TCP: ns timestamps
    t_tcp = t0_ms + (SAMPLES - 40) * INTERVAL_MS  # the last 40 scrapes: answers at "now"
    body_tcp = b"".join(influx_body(b) for b in blocks(w2, t_tcp, INTERVAL_MS, 40, 2000))
    body_tcp = re.sub(rb" (\d+)\n", rb" \g<1>000000\n", body_tcp.replace(b"node_", b"warm_tcp_"))
    graphite = b"".join(
        b"warm_graphite_total;host=h%d %d %d\n" % (k % 8, k, t0_ms // 1000 + k * 15)
        for k in range(SAMPLES)
    )
    for port, body in ((up.influx, body_tcp), (up.graphite, graphite)):
        up.send_tcp(port, body)
    return sent + WIDE + SAMPLES + body_tcp.count(b"\n")


def warm(console: Console | None = None, timeout_s: float = 900.0) -> WarmReport:
    """Run the warm-up; raises :class:`FiloError` (with the tree's log tail) if it fails."""
    say = console.print if console is not None else (lambda *a, **k: None)
    rep = WarmReport()
    started = time.monotonic()
    deadline = started + timeout_s
    tmp = Path(tempfile.mkdtemp(prefix="filodb-warm-"))
    up: _Up | None = None
    try:
        end_ms = int(time.time() * 1000)
        t0_ms = end_ms - SAMPLES * INTERVAL_MS
        say("warm-up: starting filodb up (compiling on this first start)")
        up = _Up(tmp / "data", tmp / "up.log", deadline)
        rep.samples = _write_all(up, t0_ms)
        say(f"warm-up: wrote {rep.samples:,} samples through remote write, Influx and Graphite")
        up.wait_series("node_load1", SERIES // 32)
        up.wait_series("warm_graphite_total", 8)
        up.wait_series("warm_influx_total", WIDE)
        up.wait_series("warm_tcp_load1", 1)
        rep.queries += up.queries(end_ms)
        rep.steps.append("first start: writes and queries")
        up.stop()
        say("warm-up: restarting to recover and read flushed data")
        up = _Up(tmp / "data", tmp / "up2.log", deadline)
        up.wait_series("node_load1", SERIES // 32)
        rep.queries += up.queries(end_ms)
        rep.steps.append("second start: recovery and queries")
        up.stop()
        up = None
    finally:
        if up is not None:
            up.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    rep.seconds = time.monotonic() - started
    return rep


__all__ = ["QUERIES", "WarmReport", "warm"]
