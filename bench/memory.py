"""Memory of ``filodb up``: what each process holds empty, and what a series adds.

Prints one JSON object per line ``{"metric", "value", "unit", ...context}``:

- ``idle_rss_bytes`` per process kind (``process``: ``up``, ``redis-server``, ``worker``,
  ``web``) of an empty ``filodb up``, ``when="started"`` (healthy, then ``SETTLE_S`` idle)
  and ``when="queried"`` (after one query of each kind the dashboards use, which loads the
  kernels a process loads lazily), and the total (``process="all"``); ``idle_tree_bytes``
  the tree's memory counting each page once (``tree_memory`` of filodb.testing.cluster:
  summed RSS counts the shared libraries, ~95 MB of them with numba's LLVM, once per
  process). A first start after a fresh checkout compiles numba's kernels (their cache is
  written next to the sources) and holds more: run it twice;
- ``rss_bytes`` per process kind after live remote-write ingestion of each ``--series`` count
  (``--samples`` scrapes, each count in a fresh ``filodb up``; measured after the check
  queries and ``SETTLE_S`` idle; ``process="tree"``: ``tree_memory``) with
  ``ingest_check_ok`` (every sample answered);
- ``rss_bytes_per_series`` per process kind: the growth between the two counts divided by the
  series added, and ``fixed_rss_bytes`` the intercept (what the process holds at 0 series by
  that line); with ``--systems ...,prometheus`` Prometheus's figures on the same data.

    python bench/memory.py                                   # 2 000 and 20 000 series x 20
    python bench/memory.py --series 10000,100000 --shards 256 --systems filodb,prometheus
    python bench/memory.py --only-idle --env MALLOC_ARENA_MAX=8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from ingest import RW_HEADERS, SETTLE_S, build, check, full_count, post_all, tree_rss  # noqa: E402
from promql import Peer, emit  # noqa: E402

from filodb.testing.cluster import UpProcess, tree_memory  # noqa: E402

WARM_QUERIES = (  # one of each kind: a range function, an aggregation, a histogram quantile
    "sum by (job) (rate(bench_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    "max_over_time(bench_temp[10m])",
)


def idle(a: argparse.Namespace, workdir: Path) -> None:
    up = UpProcess(workdir / "idle", shards=a.shards, env=QUIET).start()
    assert up.proc is not None
    try:
        time.sleep(SETTLE_S)
        measure_idle(up.proc.pid, "started", a.shards)
        now = time.time()
        for q in WARM_QUERIES:
            requests.get(up.url + "/api/v1/query_range", timeout=300,
                         params={"query": q, "start": now - 3600, "end": now, "step": 60})  # fmt: skip
        time.sleep(SETTLE_S)
        measure_idle(up.proc.pid, "queried", a.shards)
    finally:
        up.stop()


def measure_idle(pid: int, when: str, shards: int) -> None:
    total, parts = tree_rss(pid)
    for kind, rss in sorted(parts.items()):
        emit("idle_rss_bytes", rss, "bytes", process=kind, when=when, shards=shards)
    emit("idle_rss_bytes", total, "bytes", process="all", when=when, shards=shards)
    emit("idle_tree_bytes", tree_memory(pid), "bytes", when=when, shards=shards)


def loaded(system: str, a: argparse.Namespace, n: int, workdir: Path) -> dict[str, int]:
    """Resident bytes per process kind with ``n`` live series (after the check and a settle)."""
    data = build(argparse.Namespace(series=n, samples=a.samples, interval=15, senders=4,
                                    shape="live"), {"remote_write"})  # fmt: skip
    if system == "filodb":
        up = UpProcess(workdir / f"up-{n}", shards=a.shards, env=QUIET).start()
        assert up.proc is not None
        base, stop, pid = up.url, up.stop, up.proc.pid
    else:
        peer = Peer(system, workdir / f"{system}-{n}")
        base, stop, pid = peer.base, peer.stop, peer.proc.pid
    try:
        post_all(base + "/api/v1/write", data["rw"], RW_HEADERS)
        full_count(base, data)
        got = check(base, data)
        emit("ingest_check_ok", got["ok"], "bool", system=system, series=data["series"])
        time.sleep(SETTLE_S)
        total, parts = tree_rss(pid)
        parts["all"], parts["tree"] = total, tree_memory(pid)
        for kind, rss in sorted(parts.items()):
            emit("rss_bytes", rss, "bytes", system=system, process=kind, series=data["series"],
                 samples=a.samples, shards=a.shards)  # fmt: skip
        return {**parts, "_series": data["series"]}
    finally:
        stop()


QUIET = {"FILODB_INFLUX_PORT": "0", "FILODB_GRAPHITE_PORT": "0"}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--series", default="2000,20000", help="two series counts")
    ap.add_argument("--samples", type=int, default=20, help="live scrapes per series")
    ap.add_argument("--shards", type=int, default=4, help="filodb up --shards")
    ap.add_argument("--systems", default="filodb")
    ap.add_argument("--no-idle", action="store_true", help="skip the empty filodb up")
    ap.add_argument("--only-idle", action="store_true", help="only the empty filodb up")
    ap.add_argument("--env", action="append", default=[], help="FILODB_X=v for filodb up")
    a = ap.parse_args()
    QUIET.update(kv.split("=", 1) for kv in a.env)
    counts = [int(x) for x in a.series.split(",")]
    if len(counts) != 2 or counts[0] >= counts[1]:
        raise SystemExit("--series takes two increasing counts")
    with tempfile.TemporaryDirectory() as d:
        if "filodb" in a.systems.split(",") and not a.no_idle:
            idle(a, Path(d))
        if a.only_idle:
            return
        for system in a.systems.split(","):
            lo, hi = (loaded(system, a, n, Path(d)) for n in counts)
            added = hi["_series"] - lo["_series"]
            for kind in sorted(set(lo) & set(hi) - {"_series"}):
                slope = (hi[kind] - lo[kind]) / added
                ctx = {"system": system, "process": kind, "series": f"{lo['_series']},{hi['_series']}",
                       "samples": a.samples, "shards": a.shards}  # fmt: skip
                emit("rss_bytes_per_series", slope, "bytes", **ctx)
                emit("fixed_rss_bytes", lo[kind] - slope * lo["_series"], "bytes", **ctx)


if __name__ == "__main__":
    main()
