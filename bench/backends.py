"""The production backends end to end: ingest through Kafka and recovery from Kafka, with
Cassandra as the column store (real servers from ``scripts/services``), beside the embedded
default (Redis Streams + SQLite) on the same data.

Prints one JSON object per line (``{"metric", "value", "unit", ...context}``):

- ``ingest_ack_samples_per_s``: remote write through the web tier into the log, acknowledged;
- ``ingest_queryable_samples_per_s``: until a count query sees every sample;
- ``recovery_seconds``: from SIGKILL of the worker (``filodb up`` restarts it) until every
  shard is Active again, replaying the whole log (nothing flushed: ``flush_interval`` 1 h),
  and ``recovery_samples_per_s`` = samples replayed / that time.

    python bench/backends.py                          # 1 M and 10 M samples, both stacks
    python bench/backends.py --samples 1000000 --stacks kafka

Cassandra flush throughput on its own is ``bench/cassandra_store.py``; the log backends on
their own are ``bench/kafka_log.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from promql import bodies, emit, push, wait_count, workload  # noqa: E402

from filodb.devservices import base as services  # noqa: E402
from filodb.testing.cluster import UpProcess  # noqa: E402


def status(url: str) -> list[dict]:
    return requests.get(url + "/api/v1/cluster/prometheus/status", timeout=30).json()["data"]


def wait(pred, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return time.monotonic()
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise TimeoutError(what)


def run(stack: str, n_samples: int, n_series: int, interval_s: int, env: dict[str, str]) -> None:
    series, _ = workload(n_series, 1)
    per_series = max(2, n_samples // len(series))
    series, vals = workload(n_series, per_series)
    total = len(series) * per_series
    now = int(time.time() * 1000)
    t0 = (now - per_series * interval_s * 1000 - 600_000) // 60_000 * 60_000 + 7_123
    end_s = (t0 + (per_series - 1) * interval_s * 1000) / 1000
    payloads = bodies(series, vals, t0, interval_s * 1000)
    ctx = {"stack": stack, "samples": total, "series": len(series)}
    n_temp = sum(1 for s in series if s[0][1] == "bench_temp")
    q = "count(count_over_time(bench_temp[1m]))"
    with tempfile.TemporaryDirectory() as d:
        up = UpProcess(Path(d) / "data", shards=4, env={**env, "FILODB_FLUSH_INTERVAL": "3600",
                                                        "FILODB_INFLUX_PORT": "0", "FILODB_GRAPHITE_PORT": "0"})  # fmt: skip
        up.start(wait_s=180)
        try:
            t = time.monotonic()
            took = push(up.url + "/api/v1/write", payloads)
            emit("ingest_ack_samples_per_s", total / took, "samples/s", **ctx)
            wait(lambda: all(r["lag"] == 0 for r in status(up.url)), 1800, "lag 0")
            wait_count(up.url, q, n_temp, end_s, 1800)
            emit(
                "ingest_queryable_samples_per_s", total / (time.monotonic() - t), "samples/s", **ctx
            )

            (pid,) = up.pids(" worker")
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            wait(
                lambda: any(r["status"] != "Active" for r in status(up.url)),
                60,
                "shards leave Active",
            )
            t_back = wait(lambda: all(r["status"] == "Active" for r in status(up.url)), 1800,
                          "shards Active again")  # fmt: skip
            wait_count(up.url, q, n_temp, end_s, 600)
            emit("recovery_seconds", t_back - t_kill, "s", **ctx)
            emit("recovery_samples_per_s", total / (t_back - t_kill), "samples/s", **ctx)
        finally:
            up.stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--samples", default="1000000,10000000")
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--interval", type=int, default=15)
    ap.add_argument(
        "--stacks", default="kafka,redis", help="kafka (Kafka + Cassandra), redis (Redis + SQLite)"
    )
    a = ap.parse_args()
    stacks = a.stacks.split(",")
    started = []
    env_kafka: dict[str, str] = {}
    if "kafka" in stacks:
        for name in ("kafka", "cassandra"):
            if services.running(name) is None:
                started.append(name)
            env_kafka.update(services.ensure(name))
    try:
        for n in (int(x) for x in a.samples.split(",")):
            for stack in stacks:
                tag = uuid.uuid4().hex[:8]
                env = {} if stack == "redis" else {
                    **env_kafka, "FILODB_LOG": "kafka", "FILODB_STORE": "cassandra",
                    "FILODB_KAFKA_TOPIC_PREFIX": f"bench{tag}-", "FILODB_CASSANDRA_KEYSPACE": f"bench{tag}"}  # fmt: skip
                run(stack, n, a.series, a.interval, env)
    finally:
        for name in started:
            services.stop(name)


if __name__ == "__main__":
    main()
