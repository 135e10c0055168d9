"""End-to-end ingestion through every door, side by side with Prometheus 2.42 (remote write)
and VictoriaMetrics (remote write and Influx line protocol), on the same generated workload.

Prints one JSON object per line (``{"metric", "value", "unit", "system", "door", ...}``):

- ``ingest_ack_samples_per_s``: samples / time from the first byte sent to the last HTTP
  acknowledgement (HTTP doors only; TCP line protocols have no acknowledgement);
- ``ingest_queryable_samples_per_s``: samples / time until a count query sees every series'
  last sample (every door);
- ``ingest_ratio``: filodb's figure / the peer's on the same door (above 1: filodb faster).

    python bench/ingest.py                  # 10 000 series x 60 samples (600 k), 3 repeats
    python bench/ingest.py --quick          # 2 000 series x 30 samples, 1 repeat

Workload: bench/promql.py's exporter-like series, time-major (every series at t0, then t1,
...), encoded before timing. Remote write goes as ~200 k-sample snappy protobuf requests from
``--senders`` concurrent connections, each owning a share of the series and sending it in
time order (as Prometheus's remote-write shards do);
Influx bodies are 10 000 lines (timestamps in ns, the protocol's default precision); the TCP
doors get the same lines over ``--senders`` connections (Graphite in its tagged form
``bench_temp;job=...;instance=... value ts``). Each door of filodb-py gets a fresh
``filodb up`` (4 shards); each peer a fresh process. Figures are medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import requests  # noqa: E402
from promql import Peer, bodies, emit, wait_count, workload  # noqa: E402

from filodb.redisproc import free_port  # noqa: E402
from filodb.testing.cluster import UpProcess  # noqa: E402

LINES_PER_BODY = 10_000
COUNT_Q = 'count(count_over_time({__name__=~"bench_temp|bench_temp_value"}[1m]))'


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def line_prefixes(series: list, graphite: bool) -> list[str]:
    out = []
    for lb in series:
        d = dict(lb)
        if graphite:
            tags = "".join(f";{k}={v}" for k, v in lb if k != "__name__")
            out.append(f"{d['__name__']}{tags} ")
        else:
            tags = "".join(f",{_esc(k)}={_esc(v)}" for k, v in lb if k != "__name__")
            out.append(f"{_esc(d['__name__'])}{tags} value=")
    return out


def lines(series: list, vals: np.ndarray, t0: int, interval_ms: int, graphite: bool) -> list[str]:
    """Time-major lines: Influx ``name,tags value=v ts_ns`` or Graphite ``name;tags v ts_s``."""
    pre = line_prefixes(series, graphite)
    n_series, n = vals.shape
    out = []
    for j in range(n):
        ts = t0 + j * interval_ms
        stamp = str(ts // 1000) if graphite else str(ts * 1_000_000)
        col = vals[:, j].tolist()
        out.extend(f"{p}{v!r} {stamp}\n" for p, v in zip(pre, col, strict=True))
    return out


def chunks(items: list[str], size: int) -> list[bytes]:
    return ["".join(items[i : i + size]).encode() for i in range(0, len(items), size)]


def post_all(url: str, parts: list[list[bytes]], headers: dict[str, str]) -> float:
    """POST each part's payloads in order from a thread of its own; seconds until the last
    acknowledgement."""
    errors: list[str] = []

    def send(part: list[bytes]) -> None:
        s = requests.Session()
        for body in part:
            r = s.post(url, data=body, headers=headers, timeout=600)
            if r.status_code not in (200, 204):
                errors.append(f"{r.status_code} {r.text[:200]}")
                return

    t = time.perf_counter()
    threads = [threading.Thread(target=send, args=(p,)) for p in parts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise RuntimeError(f"{url}: {errors[0]}")
    return time.perf_counter() - t


def tcp_all(port: int, parts: list[list[bytes]]) -> None:
    def send(part: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            for body in part:
                s.sendall(body)

    threads = [threading.Thread(target=send, args=(p,)) for p in parts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}  # fmt: skip


def run_once(system: str, door: str, data: dict, workdir: Path) -> dict[str, float]:
    """One fresh server, one door; returns the figures."""
    env = {}
    influx_port = graphite_port = 0
    if system == "filodb" and door in ("influx_tcp", "graphite_tcp"):
        influx_port, graphite_port = free_port(), free_port()
        env = {"FILODB_INFLUX_PORT": str(influx_port), "FILODB_GRAPHITE_PORT": str(graphite_port)}
    elif system == "filodb":
        env = {"FILODB_INFLUX_PORT": "0", "FILODB_GRAPHITE_PORT": "0"}
    stop: Callable[[], None]
    if system == "filodb":
        up = UpProcess(workdir / f"filodb-{door}-{time.monotonic_ns()}", shards=4, env=env).start()
        base, stop = up.url, up.stop
    else:
        peer = Peer(system, workdir / f"{door}-{time.monotonic_ns()}")
        base, stop = peer.base, peer.stop
    try:
        out: dict[str, float] = {}
        t = time.perf_counter()
        if door == "remote_write":
            took = post_all(base + "/api/v1/write", data["rw"], RW_HEADERS)
            out["ingest_ack_samples_per_s"] = data["samples"] / took
        elif door == "influx_http":
            url = base + ("/write?db=prometheus" if system == "filodb" else "/write")
            took = post_all(url, data["influx"], {"Content-Type": "text/plain"})
            out["ingest_ack_samples_per_s"] = data["samples"] / took
        elif door == "influx_tcp":
            tcp_all(influx_port, data["influx"])
        elif door == "graphite_tcp":
            tcp_all(graphite_port, data["graphite"])
        if system == "victoria-metrics":
            requests.get(base + "/internal/force_flush", timeout=60)
        wait_count(base, COUNT_Q, data["n_temp"], data["end_s"], 1800)
        out["ingest_queryable_samples_per_s"] = data["samples"] / (time.perf_counter() - t)
        return out
    finally:
        stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--interval", type=int, default=15)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.series, a.samples, a.repeat = 2000, 30, 1

    series, vals = workload(a.series, a.samples)
    n_series, n = vals.shape
    now = int(time.time() * 1000)
    t0 = (now - n * a.interval * 1000 - 600_000) // 60_000 * 60_000 + 7_123
    # Each sender owns a share of the series and sends them in time order, as Prometheus's
    # remote-write shards do (a peer without out-of-order ingestion refuses anything else).
    groups = [list(range(i, n_series, a.senders)) for i in range(a.senders)]
    t = time.perf_counter()
    rw = [bodies([series[i] for i in g], vals[g], t0, a.interval * 1000) for g in groups]
    t_rw = time.perf_counter() - t
    t = time.perf_counter()
    influx = [chunks(lines([series[i] for i in g], vals[g], t0, a.interval * 1000, False),
                     LINES_PER_BODY) for g in groups]  # fmt: skip
    graphite = [chunks(lines([series[i] for i in g], vals[g], t0, a.interval * 1000, True),
                       LINES_PER_BODY) for g in groups]  # fmt: skip
    t_lines = time.perf_counter() - t
    data = {"rw": rw, "influx": influx, "graphite": graphite, "samples": n_series * n,
            "n_temp": sum(1 for s in series if s[0][1] == "bench_temp"),
            "end_s": (t0 + (n - 1) * a.interval * 1000) / 1000}  # fmt: skip
    ctx = {"series": n_series, "samples": n_series * n, "senders": a.senders}
    emit("encode_seconds", t_rw, "s", what="remote_write", **ctx)
    emit("encode_seconds", t_lines, "s", what="influx+graphite lines", **ctx)

    plan = [("filodb", d) for d in ("remote_write", "influx_http", "influx_tcp", "graphite_tcp")]
    plan += [("prometheus", "remote_write"), ("victoria-metrics", "remote_write"),
             ("victoria-metrics", "influx_http")]  # fmt: skip
    med: dict[tuple[str, str, str], float] = {}
    with tempfile.TemporaryDirectory() as d:
        for system, door in plan:
            runs = [run_once(system, door, data, Path(d)) for _ in range(a.repeat)]
            for metric in runs[0]:
                v = statistics.median(r[metric] for r in runs)
                med[(system, door, metric)] = v
                emit(metric, v, "samples/s", system=system, door=door, repeat=a.repeat, **ctx)
    for (system, door, metric), v in med.items():
        if system == "filodb":
            continue
        mine = med.get(("filodb", door, metric))
        if mine:
            emit(
                "ingest_ratio",
                mine / v,
                "filodb/peer",
                peer=system,
                door=door,
                figure=metric,
                **ctx,
            )


if __name__ == "__main__":
    main()
