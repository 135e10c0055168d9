"""Cluster benchmark: query latency with 1, 2 and 3 worker nodes on the same data, and the time
from a worker's death (SIGKILL) to every shard Active again.

Prints one JSON object per line (``{"metric", "value", "unit", ...context}``):

- ``remote_write_ack_samples_per_s``: the load, through the web tier into the log;
- ``range_query_latency_ms`` per query and worker count (median of ``--repeat``), with
  ``latency_ratio_vs_1_worker``;
- ``rebalance_seconds``: from a node's start to the shards spread evenly again;
- ``failover_seconds``: from SIGKILL of the node owning the unflushed shards to every shard
  Active on the others (heartbeat expiry + lease expiry + recovery from store and log), with the
  samples per shard it replayed, and ``failover_recovery_seconds`` (from the first shard leaving
  Active to the last one back).

    python bench/cluster.py                         # 4 shards x 1 M samples, 1..3 workers
    python bench/cluster.py --samples-per-shard 200000 --repeat 3   # quick

The data is bench/promql.py's exporter-like workload. Processes are separate (no supervisor),
as tests/e2e/test_cluster.py runs them, all on this machine (2 cores: more workers add
parallelism only up to the cores; the figures show the cost of the fan-out).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promql import QUERIES, bodies, emit, push, time_query, wait_count, workload  # noqa: E402

from filodb.testing.cluster import ClusterProcesses  # noqa: E402


def wait(pred, timeout: float, what: str, c: ClusterProcesses):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = pred()
            if got:
                return got
        except Exception:  # noqa: BLE001 - the web tier may be busy; try again
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached in {timeout} s\n{c.log_tail()}")


def even(c: ClusterProcesses, nodes: int, shards: int) -> dict:
    own = c.owners()
    if not own or any(st != "Active" for _, st in own.values()):
        return {}
    counts = Counter(n for n, _ in own.values())
    want = sorted([shards // nodes + (1 if i < shards % nodes else 0) for i in range(nodes)])
    return own if sorted(counts.values()) == want and len(counts) == nodes else {}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--samples-per-shard", type=int, default=1_000_000)
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--interval", type=int, default=15, help="seconds between samples")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()

    total = a.shards * a.samples_per_shard
    series, _ = workload(a.series, 1)
    n = max(2, total // len(series))
    series, vals = workload(a.series, n)
    total = len(series) * n
    now = int(time.time() * 1000)
    t0 = (now - n * a.interval * 1000 - 600_000) // 60_000 * 60_000 + 7_123
    start_s = (t0 // 60_000 + 1) * 60
    end_s = (t0 + (n - 1) * a.interval * 1000) // 60_000 * 60
    ctx = {"shards": a.shards, "series": len(series), "samples": total,
           "hours": round(n * a.interval / 3600, 2)}  # fmt: skip
    payloads = bodies(series, vals, t0, a.interval * 1000)
    n_temp = sum(1 for s in series if s[0][1] == "bench_temp")

    with tempfile.TemporaryDirectory() as d:
        c = ClusterProcesses(Path(d), shards=a.shards, env={"FILODB_HEARTBEAT_TTL": "5"})
        try:
            c.start(workers=1)
            wait(lambda: even(c, 1, a.shards), 120, "1 node owns every shard", c)
            took = push(c.url + "/api/v1/write", payloads)
            emit("remote_write_ack_samples_per_s", total / took, "samples/s", **ctx)
            wait_count(c.url, "count(count_over_time(bench_temp[1m]))", n_temp, end_s)
            wait(lambda: all(r["lag"] == 0 for r in c.status()), 300, "lag 0", c)
            base: dict[str, float] = {}
            for w in range(1, a.workers + 1):
                if w > 1:
                    t = time.monotonic()
                    c.start_worker(f"node-{w}")
                    wait(lambda w=w: even(c, w, a.shards), 300, f"{w} nodes share the shards", c)
                    emit("rebalance_seconds", time.monotonic() - t, "s", workers=w, **ctx)
                wait_count(c.url, "count(count_over_time(bench_temp[1m]))", n_temp, end_s)
                for name, q in QUERIES.items():
                    ms, _ = time_query(c.url, q, start_s, end_s, a.repeat)
                    emit("range_query_latency_ms", ms, "ms", workers=w, query=name, **ctx)
                    if w == 1:
                        base[name] = ms
                    else:
                        emit("latency_ratio_vs_1_worker", ms / base[name], "ratio", workers=w,
                             query=name, **ctx)  # fmt: skip

            # node-1 holds the shards it never handed over: nothing of them is flushed yet
            own = c.owners()
            victim = "node-1"
            moved = sorted(s for s, (node, _) in own.items() if node == victim)
            per_shard = {r["shard"]: r["ingested_offset"] for r in c.status()}
            t_kill = time.monotonic()
            c.kill_worker(victim, signal.SIGKILL)
            t_left = wait(lambda: any(c.owners()[s][1] != "Active" for s in moved) and time.monotonic(),
                          60, "a shard leaves Active", c)  # fmt: skip
            wait(lambda: even(c, a.workers - 1, a.shards), 300, "every shard Active again", c)
            t_back = time.monotonic()
            emit("failover_seconds", t_back - t_kill, "s", shards_moved=len(moved),
                 samples_per_shard=total // a.shards, log_records_per_shard=statistics.mean(
                     per_shard[s] for s in moved) if moved else 0, **ctx)  # fmt: skip
            emit("failover_recovery_seconds", t_back - t_left, "s", shards_moved=len(moved), **ctx)
            wait_count(c.url, "count(count_over_time(bench_temp[1m]))", n_temp, end_s)
        finally:
            c.stop()


if __name__ == "__main__":
    main()
