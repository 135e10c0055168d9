"""Many shards on one node: time to healthy, idle CPU, memory per idle shard.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/shards.py            # 2 / 256 / 1024 (one dataset) and 64 datasets x 16
    python bench/shards.py --quick    # shorter idle window, no 64 x 16 layout
    python bench/shards.py --node-only   # the node runtime alone, without the worker process
    python bench/shards.py --quick --counts 2,256 --idle-s 75   # RSS after idle files close

``--node-only`` runs the same layouts as a bare :class:`~filodb.node.runtime.NodeRuntime` in a
child process against its own redis-server: what the node itself (recovery, the log reader,
progress reports, ticks) costs, apart from the worker process around it (Celery, the leaf
request threads).

Each layout is a real ``filodb up`` (its own Redis, one worker, TCP doors off) in a throw-away
data directory. ``node_healthy_s`` is the time from the start until ``/admin/health`` answers
200 (every shard Active); ``idle_cpu_percent`` is the worker process's user+system CPU over an
idle window read from ``/proc/<pid>/stat``, in percent of one core; ``worker_rss_bytes`` its
``VmRSS`` after that window. ``bytes_per_idle_shard`` is the RSS difference between two shard
counts divided by the difference in shards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from filodb.redisproc import free_port  # noqa: E402

HEALTHY_DEADLINE_S = 180.0
TICKS = os.sysconf("SC_CLK_TCK")


def emit(metric: str, value: float | None, unit: str, **ctx: object) -> None:
    """One JSON line (``value`` null when the layout never got there)."""
    v = round(value, 3) if value is not None else None
    print(json.dumps({"metric": metric, "value": v, "unit": unit, **ctx}), flush=True)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def _rss(pid: int) -> int:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) * 1024 if m else 0


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _worker_pid(sup: int) -> int | None:
    """The worker child of the supervisor (``... worker``), via /proc."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            # a child forked from the zygote has its title as one string: words, not argv
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").split()
        except OSError:
            continue
        if int(stat[1]) == sup and b"worker" in cmd:
            return int(d.name)
    return None


def _health(base: str) -> tuple[int, dict]:
    try:
        r = requests.get(f"{base}/admin/health", timeout=5)
        return r.status_code, r.json()
    except (requests.RequestException, ValueError):
        return 0, {}


def run_layout(datasets: int, shards: int, idle_s: float, label: str) -> dict:
    """Start ``filodb up`` with ``datasets`` datasets of ``shards`` shards; measure; stop."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out: dict = {"layout": label, "shards_total": datasets * shards}
    with tempfile.TemporaryDirectory() as tmp:
        logf = open(Path(tmp) / "up.log", "wb")  # noqa: SIM115 - closed below
        env = {**os.environ, "FILODB_METRICS_PORT": "0"}
        argv = [sys.executable, "-m", "filodb", "up", "--data-dir", tmp, "--port", str(port),
                "--shards", str(shards), "--influx-port", "0", "--graphite-port", "0",
                "--gateway-metrics-port", "-1"]  # fmt: skip
        t0 = time.monotonic()
        sup = subprocess.Popen(argv, env=env, stdout=logf, stderr=subprocess.STDOUT)
        try:
            created = datasets == 1
            healthy = None
            body: dict = {}
            while time.monotonic() - t0 < HEALTHY_DEADLINE_S:
                if sup.poll() is not None:
                    out["error"] = (Path(tmp) / "up.log").read_text()[-500:]
                    return out
                code, body = _health(base)
                if code and not created:
                    for i in range(1, datasets):
                        requests.post(f"{base}/api/v1/cluster/bench{i}", json={"shards": shards},
                                      timeout=30).raise_for_status()  # fmt: skip
                    created = True
                    continue
                if code == 200 and len(body.get("data", body).get("datasets", [])) >= datasets:
                    healthy = time.monotonic() - t0
                    break
                time.sleep(0.5)
            out["node_healthy_s"] = round(healthy, 2) if healthy is not None else None
            if healthy is None:
                data = body.get("data", body)
                out["not_active"] = len(data.get("not_active", data.get("shards", [])) or [])
            pid = _worker_pid(sup.pid)
            if pid is None:
                out["error"] = "no worker process"
                return out
            time.sleep(3)  # the last Active shards' first reports
            c0, w0 = _cpu_ticks(pid), time.monotonic()
            time.sleep(idle_s)
            c1, w1 = _cpu_ticks(pid), time.monotonic()
            out["idle_cpu_percent"] = round(100 * (c1 - c0) / TICKS / (w1 - w0), 2)
            out["worker_rss_bytes"] = _rss(pid)
            out["worker_threads"] = _threads(pid)
            out["log_bytes"] = (Path(tmp) / "up.log").stat().st_size
            logs = Path(tmp) / "logs"
            if logs.is_dir():
                out["log_bytes"] += sum(f.stat().st_size for f in logs.rglob("*") if f.is_file())
        finally:
            sup.send_signal(signal.SIGTERM)
            try:
                sup.wait(60)
            except subprocess.TimeoutExpired:
                sup.kill()
                sup.wait()
            logf.close()
    return out


def _node_child(redis_url: str, data_dir: str, shards: int) -> None:
    """The child of ``--node-only``: a NodeRuntime until SIGTERM."""
    import threading

    from filodb.config import Config
    from filodb.node.runtime import NodeRuntime

    cfg = Config(redis_url=redis_url, data_dir=data_dir, shards=shards)
    rt = NodeRuntime(cfg, "node-1")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    rt.start()
    done.wait()
    rt.stop()


def run_node_only(datasets: int, shards: int, idle_s: float, label: str) -> dict:
    from filodb.redisproc import start_redis
    from filodb.shards.redis_map import ShardMapStore
    from filodb.shards.state import ShardStatus

    out: dict = {"layout": label + " (node only)", "shards_total": datasets * shards}
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_redis(Path(tmp) / "redis", free_port())
        maps = ShardMapStore(redis.url)
        for i in range(1, datasets):
            maps.create_dataset(f"bench{i}", shards, 1)
        t0 = time.monotonic()
        child = subprocess.Popen([sys.executable, __file__, "--node-child", redis.url, tmp,
                                  str(shards)])  # fmt: skip
        try:
            healthy = None
            while time.monotonic() - t0 < HEALTHY_DEADLINE_S and child.poll() is None:
                dss = maps.datasets()
                states = [st for ds in dss for st in maps.shard_states(ds)]
                if len(dss) == datasets and all(st.status is ShardStatus.ACTIVE for st in states):
                    healthy = time.monotonic() - t0
                    break
                time.sleep(0.2)
            out["node_healthy_s"] = round(healthy, 2) if healthy is not None else None
            time.sleep(3)
            c0, w0 = _cpu_ticks(child.pid), time.monotonic()
            time.sleep(idle_s)
            c1, w1 = _cpu_ticks(child.pid), time.monotonic()
            out["idle_cpu_percent"] = round(100 * (c1 - c0) / TICKS / (w1 - w0), 2)
            out["worker_rss_bytes"] = _rss(child.pid)
            out["worker_threads"] = _threads(child.pid)
            out["redis_clients"] = len(maps.r.client_list())
        finally:
            child.terminate()
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            maps.r.close()
            redis.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10 s idle window, no 64 x 16 layout")
    ap.add_argument("--counts", default="2,256,1024", help="shard counts of one dataset")
    ap.add_argument("--node-only", action="store_true", help="NodeRuntime alone, no worker process")
    ap.add_argument(
        "--idle-s",
        type=float,
        default=0.0,
        help="idle window in seconds (default 20, --quick 10); past 60 the shard "
        "files' connections unused a minute are closed before the RSS is read",
    )
    ap.add_argument("--node-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.node_child:
        _node_child(args.node_child[0], args.node_child[1], int(args.node_child[2]))
        return
    run = run_node_only if args.node_only else run_layout
    idle_s = args.idle_s or (10.0 if args.quick else 20.0)
    layouts = [(1, int(n), f"up --shards {n}") for n in args.counts.split(",")]
    if not args.quick:
        layouts.append((64, 16, "64 datasets x 16 shards"))
    results = []
    for ds, n, label in layouts:
        r = run(ds, n, idle_s, label)
        results.append(r)
        ctx = {k: v for k, v in r.items() if k not in ("node_healthy_s", "idle_cpu_percent")}
        emit("node_healthy_s", r.get("node_healthy_s"), "s", **ctx)
        emit("idle_cpu_percent", r.get("idle_cpu_percent"), "%", idle_window_s=idle_s, **ctx)
    single = [r for r in results if r["layout"].startswith("up ") and r.get("worker_rss_bytes")
              and r.get("node_healthy_s") is not None]  # fmt: skip
    for lo, hi in zip(single, single[1:], strict=False):
        d = hi["shards_total"] - lo["shards_total"]
        if d > 0:
            per = (hi["worker_rss_bytes"] - lo["worker_rss_bytes"]) / d
            emit("bytes_per_idle_shard", round(per), "B", between=[lo["layout"], hi["layout"]])
    print(json.dumps({"note": "machine shared with other jobs (2 cores)"}), flush=True)


if __name__ == "__main__":
    main()
