"""End-to-end ingestion through every door, side by side with Prometheus 2.42 (remote write)
and VictoriaMetrics (remote write and Influx line protocol), on the same generated workload.

Prints one JSON object per line (``{"metric", "value", "unit", "system", "door", ...}``):

- ``ingest_ack_samples_per_s``: samples / time from the first byte sent to the last HTTP
  acknowledgement (HTTP doors only; TCP line protocols have no acknowledgement);
- ``ingest_queryable_samples_per_s``: samples / time until a count query sees every sample
  sent (every door; VictoriaMetrics's Influx TCP door is ``-influxListenAddr``);
- ``rss_bytes_per_series``: resident memory of the whole process tree (``filodb up``: the
  supervisor, web tier, workers, gateway and Redis) / series, after the run;
  ``rss_bytes_per_series_settled`` the same after the check queries and ``SETTLE_S`` idle
  (its ``..._by_process`` line also gives ``tree``: the tree's memory counting each page
  once, :func:`~filodb.testing.cluster.tree_memory`; summed RSS counts numba's LLVM library
  once per process); ``memory_bytes_per_series`` and ``..._settled``: that tree figure at
  both points, with its ratio (what the machine gives the tree: filodb's Python children
  share the pages forked from their zygote, which summed RSS counts in each);
- ``redis_log_bytes_per_series`` (the log streams' share of Redis's memory) and
  ``data_dir_bytes`` (by part: Redis's AOF, the column store, the log's spill) after the run;
- ``worker_bytes_per_series_by_part``: the workers' own byte counters after the settled
  figure (head pages, encoded chunks, decoded-vector cache);
- ``ingest_check_ok``: 1 when the final count and sum of every sample answer what was sent
  (``sum(count_over_time(...))``, ``sum(sum_over_time(...))`` over the whole span), else 0 with
  the figures in the context: nothing acknowledged may be lost;
- ``ingest_cpu_s_per_msample``: CPU seconds per million samples of every process of the
  server's tree by kind (``web``, ``worker``, ``redis-server``, ``up``, a peer's binary) and
  of the client (``client``: this process, whose threads are the senders), over the window
  until the last acknowledgement (``window=ack``) and until queryable (``queryable``), with
  the machine's busy cores over it (``busy_cores``; ``others_cores``: not ours);
- ``--tcp-warm``: ``filodb up`` starts its gateway (the TCP doors) at their first connection,
  so by default the TCP figures include that start, once per tree (a few seconds); with
  ``--tcp-warm`` one probe line is answered through the door before timing (steady state);
- ``ingest_ratio``: filodb's figure / the peer's on the same door (above 1: filodb faster;
  for ``rss_bytes_per_series`` and ``memory_bytes_per_series`` above 1 means filodb uses
  more).

    python bench/ingest.py                                # bulk shape, 10 000 series x 60
    python bench/ingest.py --shape live --series 100000 --samples 240 --shards 256
    python bench/ingest.py --shape backfill --doors remote_write --systems filodb,prometheus
    python bench/ingest.py --quick                        # 2 000 series x 30 samples, 1 repeat

Shapes (the body is what one HTTP request or TCP write carries):

- ``live``: Prometheus's own remote-write shape: one sample per series, 2000 series per body,
  consecutive scrapes ``--interval`` s apart in sample time;
- ``backfill``: 500 series x 20 samples per body, time-ordered;
- ``bulk`` (the default, as before): ~200 k samples per body (every series of a sender).

Workload: bench/promql.py's exporter-like series, encoded before timing. ``--senders``
concurrent connections each own a share of the series and send it in time order (as
Prometheus's remote-write shards do). Influx bodies carry the same samples as the
remote-write bodies (timestamps in ns, the protocol's default precision); the TCP doors get
the same lines (Graphite in its tagged form ``bench_temp;job=...;instance=... value ts``).
Each door of filodb-py gets a fresh ``filodb up`` (``--shards``); each peer a fresh process.
Figures are medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
from promql import PER_REQUEST_SAMPLES, POLL_S, Peer, emit, wait_count, workload  # noqa: E402

from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.prom.remote_write import encode_write_request  # noqa: E402
from filodb.redisproc import free_port  # noqa: E402
from filodb.testing.cluster import UpProcess, children_of, cmdline, tree_memory  # noqa: E402

# Memory is measured twice: right after the count queries (a query's working set included)
# and after this many idle seconds (filodb's malloc trimmer runs every 5 s; Go's GC its own)
SETTLE_S = 10.0
COUNT_Q = 'count(count_over_time({__name__=~"bench_temp|bench_temp_value"}[1m]))'
ALL_SEL = '{__name__=~"bench_.+"}'
SHAPES = {"live": (2000, 1), "backfill": (500, 20)}  # series per body, samples per series
DOORS = ("remote_write", "influx_http", "influx_tcp", "graphite_tcp")
PEER_DOORS = {"prometheus": ("remote_write",),
              "victoria-metrics": ("remote_write", "influx_http", "influx_tcp")}  # fmt: skip


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


def body_plan(group: np.ndarray, n: int, shape: str) -> Iterator[tuple[np.ndarray, int, int]]:
    """The bodies of one sender, in sending order: (series, first sample, end sample); time
    blocks outer, series chunks inner (a scrape is sent whole before the next)."""
    if shape == "bulk":
        per_body, k = len(group), max(1, min(n, max(10, PER_REQUEST_SAMPLES // len(group))))
    else:
        per_body, k = SHAPES[shape]
    for a in range(0, n, k):
        for i in range(0, len(group), per_body):
            yield group[i : i + per_body], a, min(n, a + k)


def rw_body(series: list, vals: np.ndarray, idx: np.ndarray, a: int, b: int, t0: int,
            interval_ms: int) -> bytes:  # fmt: skip
    ts = t0 + interval_ms * np.arange(a, b)
    batch = SampleBatch([series[i] for i in idx.tolist()], np.repeat(np.arange(len(idx)), b - a),
                        np.tile(ts, len(idx)), vals[idx, a:b].ravel())  # fmt: skip
    return encode_write_request(batch)


def line_body(pre: list[str], vals: np.ndarray, idx: np.ndarray, a: int, b: int, t0: int,
              interval_ms: int, graphite: bool) -> bytes:  # fmt: skip
    """Time-major lines: Influx ``name,tags value=v ts_ns`` or Graphite ``name;tags v ts_s``."""
    out = []
    for j in range(a, b):
        ts = t0 + j * interval_ms
        stamp = str(ts // 1000) if graphite else str(ts * 1_000_000)
        col = vals[idx, j].tolist()
        out.extend(f"{pre[i]}{v!r} {stamp}\n" for i, v in zip(idx.tolist(), col, strict=True))
    return "".join(out).encode()


def post_all(url: str, parts: list[list[bytes]], headers: dict[str, str]) -> float:
    """POST each part's payloads in order from a thread of its own, over one keep-alive
    connection (``http.client``: a tenth of ``requests``'s CPU per request, which shares the
    machine's cores with the server measured; the same client for every system); seconds
    until the last acknowledgement."""
    errors: list[str] = []
    u = urlsplit(url)
    path = u.path + (f"?{u.query}" if u.query else "")

    def send(part: list[bytes]) -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        try:
            for body in part:
                conn.request("POST", path, body, headers)
                r = conn.getresponse()
                answer = r.read()
                if r.status not in (200, 204):
                    errors.append(f"{r.status} {answer[:200]!r}")
                    return
        finally:
            conn.close()

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


def warm_tcp_door(base: str, port: int, door: str) -> None:
    """``--tcp-warm``: one probe line through a TCP door, waited for until a query answers it:
    ``filodb up`` starts its gateway at the doors' first connection, and without this the
    figure includes that start (a few seconds, once per tree)."""
    now = int(time.time())
    line = (f"filodb_bench_probe value=1 {now * 1_000_000_000}\n" if door == "influx_tcp"
            else f"filodb_bench_probe 1 {now}\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(line.encode())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = requests.get(base + "/api/v1/query", params={"query": "filodb_bench_probe",
                                                         "time": now}, timeout=30)  # fmt: skip
        if r.ok and r.json()["data"]["result"]:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{door}: the probe line never answered")


RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}  # fmt: skip


def proc_kind(pid: int) -> str:
    """``redis-server``, ``worker``, ``web``, ...: the first word after ``-m filodb`` or the
    program's name."""
    words = cmdline(pid).split() or ["?"]
    return words[words.index("filodb") + 1] if "filodb" in words[:-1] else Path(words[0]).name


def tree_rss(pid: int) -> tuple[int, dict[str, int]]:
    """Resident bytes of ``pid`` and every descendant, and per kind of process
    (:func:`proc_kind`)."""
    total, parts = 0, {}
    for p in [pid, *children_of(pid)]:
        try:
            with open(f"/proc/{p}/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
        kind = proc_kind(p)
        total += rss
        parts[kind] = parts.get(kind, 0) + rss
    return total, parts


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (fields 14 and 15 of /proc/<pid>/stat)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def cpu_snapshot(pid: int) -> dict[str, float]:
    """CPU seconds so far of the server tree under ``pid`` by :func:`proc_kind`, of this
    process (``client``: the senders), of the whole machine (``machine``: every core's busy
    time, /proc/stat) and the wall clock (``wall``)."""
    out: dict[str, float] = {}
    for p in [pid, *children_of(pid)]:
        kind = proc_kind(p)
        out[kind] = out.get(kind, 0.0) + cpu_s([p])
    out["client"] = cpu_s([os.getpid()])
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    out["machine"] = (sum(f[:8]) - f[3] - f[4]) / _TICK  # all but idle and iowait
    out["wall"] = time.perf_counter()
    return out


def emit_cpu(a: dict[str, float], b: dict[str, float], samples: int, window: str,
             **ctx: object) -> None:  # fmt: skip
    """``ingest_cpu_s_per_msample``: CPU seconds per million samples between two
    :func:`cpu_snapshot` s, per process kind (the value: the server tree's and the client's
    sum); ``busy_cores`` the machine's busy cores over the window, ``others_cores`` those
    not ours (other jobs on the machine), ``ours_cores`` the tree's and the client's."""
    wall = b["wall"] - a["wall"]
    per = {k: (b[k] - a.get(k, 0.0)) for k in b if k not in ("machine", "wall")}
    ours = sum(per.values())
    busy = (b["machine"] - a["machine"]) / wall
    emit("ingest_cpu_s_per_msample", ours * 1e6 / samples, "s", window=window,
         wall_s=round(wall, 3), busy_cores=round(busy, 2), ours_cores=round(ours / wall, 2),
         others_cores=round(busy - ours / wall, 2),
         **{k: round(v * 1e6 / samples, 3) for k, v in per.items()}, **ctx)  # fmt: skip


def instant(base: str, q: str, at_s: float) -> float:
    r = requests.get(base + "/api/v1/query", params={"query": q, "time": at_s}, timeout=600)
    body = r.json()
    if body.get("status") != "success":  # e.g. more samples than the system's query limit
        raise SystemExit(f"{base}: {q} answered {r.status_code}: {body.get('error', body)}")
    res = body["data"]["result"]
    return float(res[0]["value"][1]) if res else 0.0


QUERY_SAMPLES = 40_000_000  # at most this many samples a check query loads (the limit is 50 M)


def over_windows(base: str, data: dict, fn: str) -> float:
    """``sum(fn(every series[W]))`` summed over consecutive windows that cover every sample
    sent, each loading at most :data:`QUERY_SAMPLES` (a 6 h backfill of 100 k series is
    158 M samples: one query over it all is refused by filodb and Prometheus alike, as more
    than their 50 M). Window edges fall half a scrape between samples, so no sample is on an
    edge whether a system's ranges are closed or left-open."""
    n, step_s = data["samples_per_series"], data["interval_s"]
    windows = -(-data["samples"] // QUERY_SAMPLES)
    per = -(-n // windows)  # scrapes a window
    first_s = data["end_s"] - (n - 1) * step_s
    total = 0.0
    for j in range(windows):
        at = first_s - step_s / 2 + (j + 1) * per * step_s
        total += instant(base, f"sum({fn}({ALL_SEL}[{per * step_s}s]))", at)
    return total


def full_count(base: str, data: dict, timeout_s: float = 600) -> float:
    """Wait until every sample sent answers a count query (or ``timeout_s`` passed); the
    count last seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = over_windows(base, data, "count_over_time")
        if got == data["samples"] or time.monotonic() > deadline:
            return got
        time.sleep(POLL_S)


def vm_flush_until_counted(base: str, data: dict, timeout_s: float = 600) -> None:
    """VictoriaMetrics: ``/internal/force_flush`` (pending rows become searchable at once)
    until every sample answers the count, so its figure does not wait for its own timers."""
    deadline = time.monotonic() + timeout_s
    while True:
        requests.get(base + "/internal/force_flush", timeout=60)
        if full_count(base, data, 0) == data["samples"] or time.monotonic() > deadline:
            return
        time.sleep(POLL_S)


def check(base: str, data: dict) -> dict[str, float]:
    """The final count and sum of every sample, against what was sent."""
    got_n = full_count(base, data, 0)
    got_sum = over_windows(base, data, "sum_over_time")
    want_sum = data["sum"]
    ok = got_n == data["samples"] and abs(got_sum - want_sum) <= 1e-9 * abs(want_sum)
    return {"ok": float(ok), "count": got_n, "sum": got_sum}


def run_once(system: str, door: str, data: dict, workdir: Path, a: argparse.Namespace
             ) -> dict[str, float]:  # fmt: skip
    """One fresh server, one door; returns the figures."""
    env = dict(kv.split("=", 1) for kv in a.env)
    influx_port = graphite_port = 0
    if system == "filodb" and door in ("influx_tcp", "graphite_tcp"):
        influx_port, graphite_port = free_port(), free_port()
        env |= {"FILODB_INFLUX_PORT": str(influx_port), "FILODB_GRAPHITE_PORT": str(graphite_port)}
    elif system == "filodb":
        env |= {"FILODB_INFLUX_PORT": "0", "FILODB_GRAPHITE_PORT": "0"}
    stop: Callable[[], object]
    if system == "filodb":
        up = UpProcess(workdir / f"filodb-{door}-{time.monotonic_ns()}", shards=a.shards,
                       extra=list(a.up_arg), env=env).start()  # fmt: skip
        assert up.proc is not None
        base, stop, pid = up.url, up.stop, up.proc.pid
    else:
        extra: tuple[str, ...] = ()
        if system == "prometheus" and data["samples"] > 50_000_000:  # its default limit: the
            extra = (f"--query.max-samples={2 * data['samples']}",)  # check queries read all
        if door == "influx_tcp":  # VictoriaMetrics's TCP door for Influx lines
            influx_port = free_port()
            extra = (f"-influxListenAddr=127.0.0.1:{influx_port}",)
        peer = Peer(system, workdir / f"{door}-{time.monotonic_ns()}", extra=extra)
        base, stop, pid = peer.base, peer.stop, peer.proc.pid
    try:
        out: dict[str, float] = {}
        if a.tcp_warm and door in ("influx_tcp", "graphite_tcp") and system == "filodb":
            warm_tcp_door(base, influx_port if door == "influx_tcp" else graphite_port, door)
        cpu0 = cpu_snapshot(pid)
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
        if "ingest_ack_samples_per_s" in out:  # the HTTP doors acknowledge; TCP ones do not
            emit_cpu(cpu0, cpu_snapshot(pid), data["samples"], "ack", system=system, door=door)
        if system == "victoria-metrics":  # its TCP door hands rows on after the socket closes:
            vm_flush_until_counted(base, data)  # flush until they are in, not once
        wait_count(base, COUNT_Q, data["n_temp"], data["end_s"], 3600)  # the last scrape
        full_count(base, data)  # then every sample (other shards may lag)
        out["ingest_queryable_samples_per_s"] = data["samples"] / (time.perf_counter() - t)
        emit_cpu(cpu0, cpu_snapshot(pid), data["samples"], "queryable", system=system, door=door)
        rss, parts = tree_rss(pid)
        out["rss_bytes_per_series"] = rss / data["series"]
        out["memory_bytes_per_series"] = tree_memory(pid) / data["series"]
        emit("rss_bytes_per_series_by_process", rss / data["series"], "bytes", system=system,
             door=door, **{k: round(v / data["series"]) for k, v in parts.items()})  # fmt: skip
        if system == "filodb":
            emit_storage(up.data_dir, door, data["series"])
        got = check(base, data)
        emit("ingest_check_ok", got["ok"], "bool", system=system, door=door,
             count=got["count"], want_count=data["samples"], sum=got["sum"],
             want_sum=data["sum"])  # fmt: skip
        time.sleep(SETTLE_S)  # the same idle time for every system, then memory again
        rss, parts = tree_rss(pid)
        parts["tree"] = tree_memory(pid)  # each page once: shared libraries not per process
        out["rss_bytes_per_series_settled"] = rss / data["series"]
        out["memory_bytes_per_series_settled"] = parts["tree"] / data["series"]
        emit("rss_bytes_per_series_settled_by_process", rss / data["series"], "bytes",
             system=system, door=door, settle_s=SETTLE_S,
             **{k: round(v / data["series"]) for k, v in parts.items()})  # fmt: skip
        if system == "filodb":
            emit_worker_parts(base, door, data["series"])
            emit_redis_settled(up.data_dir, door, data["series"])
        return out
    finally:
        stop()


WORKER_PARTS = {  # the workers' own byte counters (their /metrics), summed over shards
    "head": "filodb_worker_head_bytes",
    "chunks": "filodb_worker_chunk_bytes",
    "decode_cache": "filodb_worker_decode_cache_bytes",
}


def emit_worker_parts(base: str, door: str, series: int) -> None:
    """``worker_bytes_per_series_by_part``: where a worker's memory goes by its own counters
    (the head's pages, encoded chunks, the decoded-vector cache); the value is their sum."""
    sums = dict.fromkeys(WORKER_PARTS, 0.0)
    for node in requests.get(base + "/admin/nodes", timeout=30).json()["data"]:
        text = requests.get(f"http://127.0.0.1:{node['metrics_port']}/metrics", timeout=60).text
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            for part, metric in WORKER_PARTS.items():
                if name == metric:
                    sums[part] += float(line.rsplit(" ", 1)[1])
    emit("worker_bytes_per_series_by_part", sum(sums.values()) / series, "bytes", door=door,
         **{k: round(v / series) for k, v in sums.items()})  # fmt: skip


def dir_bytes(path: Path) -> int:
    """Bytes on disk of the files under ``path``."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


REDIS_MEMORY_FIELDS = (
    "used_memory",
    "used_memory_rss",
    "used_memory_peak",
    "allocator_frag_bytes",
    "allocator_rss_bytes",
    "rss_overhead_bytes",
)


def redis_memory_fields(info: dict) -> dict[str, int]:
    """Redis's own accounting (``INFO memory``): what it holds against what its allocator
    keeps resident (fragmentation, pages not yet given back)."""
    return {k: int(info[k]) for k in REDIS_MEMORY_FIELDS if k in info}


def emit_redis_settled(data_dir: Path, door: str, series: int) -> None:
    """``redis_rss_bytes_per_series_settled``: Redis's resident memory after the settle wait,
    with its own accounting beside it."""
    port_file = data_dir / "redis" / "port"
    if port_file.exists():
        r = redis.Redis(port=int(port_file.read_text()))
        info = r.info("memory")
        r.close()
        emit("redis_rss_bytes_per_series_settled", int(info["used_memory_rss"]) / series,
             "bytes", door=door, **redis_memory_fields(info))  # fmt: skip


def emit_storage(data_dir: Path, door: str, series: int) -> None:
    """What ``filodb up`` keeps after the run: Redis's memory (the log streams' share of it:
    records past the lowest checkpoints) and the data directory by part (Redis's AOF, the
    column store)."""
    port_file = data_dir / "redis" / "port"
    if port_file.exists():
        r = redis.Redis(port=int(port_file.read_text()))
        keys = list(r.scan_iter("filodb:log:*", count=1000))
        pipe = r.pipeline()
        for k in keys:
            pipe.memory_usage(k, samples=0)
        log_bytes = sum(v or 0 for v in pipe.execute())
        info = r.info("memory")
        r.close()
        emit("redis_log_bytes_per_series", log_bytes / series, "bytes", door=door,
             streams=len(keys), **redis_memory_fields(info))  # fmt: skip
    parts = {p.name: dir_bytes(p) for p in data_dir.iterdir() if p.is_dir()}
    emit("data_dir_bytes", dir_bytes(data_dir), "bytes", door=door, **parts)


def build(a: argparse.Namespace, doors: set[str]) -> dict:
    series, vals = workload(a.series, a.samples)
    n_series, n = vals.shape
    interval_ms = a.interval * 1000
    now = int(time.time() * 1000)
    t0 = (now - n * interval_ms - 600_000) // 60_000 * 60_000 + 7_123
    groups = [np.arange(i, n_series, a.senders) for i in range(a.senders)]
    plans = [list(body_plan(g, n, a.shape)) for g in groups]
    ctx = {"series": n_series, "samples": n_series * n, "senders": a.senders, "shape": a.shape}
    data: dict = {"samples": n_series * n, "series": n_series, "sum": float(vals.sum()),
                  "n_temp": sum(1 for s in series if s[0][1] == "bench_temp"),
                  "end_s": (t0 + (n - 1) * interval_ms) / 1000,
                  "samples_per_series": n, "interval_s": a.interval}  # fmt: skip
    t = time.perf_counter()
    if "remote_write" in doors:
        data["rw"] = [[rw_body(series, vals, *b, t0, interval_ms) for b in p] for p in plans]
        emit("encode_seconds", time.perf_counter() - t, "s", what="remote_write", **ctx)
    for kind, graphite in (("influx", False), ("graphite", True)):
        if not doors & ({"graphite_tcp"} if graphite else {"influx_http", "influx_tcp"}):
            continue
        t = time.perf_counter()
        pre = line_prefixes(series, graphite)
        data[kind] = [[line_body(pre, vals, *b, t0, interval_ms, graphite) for b in p]
                      for p in plans]  # fmt: skip
        emit("encode_seconds", time.perf_counter() - t, "s", what=f"{kind} lines", **ctx)
    data["ctx"] = ctx | {"bodies": sum(len(p) for p in plans)}
    return data


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=60, help="samples per series (scrapes)")
    ap.add_argument("--interval", type=int, default=15, help="seconds between samples")
    ap.add_argument("--shape", choices=["bulk", *SHAPES], default="bulk")
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--shards", type=int, default=4, help="filodb up --shards")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--doors", default=",".join(DOORS))
    ap.add_argument("--systems", default="filodb,prometheus,victoria-metrics")
    ap.add_argument("--up-arg", action="append", default=[], help="extra `filodb up` argument")
    ap.add_argument("--env", action="append", default=[], help="FILODB_X=v for filodb up")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tcp-warm", action="store_true",
                    help="filodb's TCP doors: one probe line answered before timing (the gateway "
                         "starts at the doors' first connection; without it the figure includes "
                         "that start)")  # fmt: skip
    a = ap.parse_args()
    if a.quick:
        a.series, a.samples, a.repeat = 2000, 30, 1
    doors = set(a.doors.split(","))
    systems = a.systems.split(",")
    data = build(a, doors)
    ctx = data["ctx"] | ({"shards": a.shards} if a.up_arg == [] else
                         {"shards": a.shards, "up_args": " ".join(a.up_arg)})  # fmt: skip

    plan = [("filodb", d) for d in DOORS if d in doors and "filodb" in systems]
    plan += [(s, d) for s in systems if s != "filodb" for d in PEER_DOORS[s] if d in doors]
    med: dict[tuple[str, str, str], float] = {}
    with tempfile.TemporaryDirectory() as d:
        for system, door in plan:
            runs = [run_once(system, door, data, Path(d), a) for _ in range(a.repeat)]
            for metric in runs[0]:
                v = statistics.median(r[metric] for r in runs)
                med[(system, door, metric)] = v
                unit = "bytes" if metric.startswith(("rss_", "memory_")) else "samples/s"
                emit(metric, v, unit, system=system, door=door, repeat=a.repeat, **ctx)
    for (system, door, metric), v in med.items():
        mine = med.get(("filodb", door, metric))
        if system != "filodb" and mine:
            emit("ingest_ratio", mine / v, "filodb/peer", peer=system, door=door,
                 figure=metric, **ctx)  # fmt: skip


if __name__ == "__main__":
    main()
