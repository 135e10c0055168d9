"""Downsampling: job throughput, and a 30-day query from raw data vs from downsampled data.

Prints one JSON object per line (``{"metric", "value", "unit", ...}``):

- ``downsample_raw_samples_per_s``: raw samples read / wall time of the job (``mode``:
  ``in-process``, and ``local[2]`` when the spark extra is installed);
- ``query_30d_ms_raw`` / ``query_30d_ms_downsampled``: p50 latency of
  ``sum by (job) (rate(node_cpu_seconds_total[5m]))`` over the whole range at a 1 h step, on
  raw data only vs through the long-range planner (by default raw for the last day, the 5 m
  level for the 7 days before, the 1 h level for the rest: ``--raw-keep``, ``--keep``);
  ``query_speedup`` is their ratio (aim: 20x);
- ``ds_bytes_ratio``: vector bytes of every ds dataset / raw vector bytes (aim: under 5 %).

    python bench/downsample.py                        # 1 k series x 30 days at 15 s (173 M samples)
    python bench/downsample.py --series 100 --days 3  # quick

Data: ``filodb gen``'s exporter-shaped workload (``filodb.tools.generate.Workload``), written
straight into a SQLite column store (4 shards, 480-sample chunks, as flushes write them);
remote write would take hours for that volume. Queries run in this process on the nodes' read
path: shards whose part keys are loaded from the store and whose chunks are paged on demand
(page cache off, so each repeat reads the store), through the distributed engine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from filodb.downsample.job import run_local, shard_tasks  # noqa: E402
from filodb.encoding import encode_doubles, encode_timestamps  # noqa: E402
from filodb.memstore.shard import TimeSeriesShard  # noqa: E402
from filodb.model.partkey import part_key  # noqa: E402
from filodb.node.flush import make_pager  # noqa: E402
from filodb.query.distributed import DistributedEngine, LocalShards  # noqa: E402
from filodb.query.longrange import Tier, plan_range, stitch  # noqa: E402
from filodb.query.parser import parse  # noqa: E402
from filodb.store import ChunkSet, PartKeyRecord, open_store  # noqa: E402
from filodb.tools.generate import Workload  # noqa: E402

DAY, HOUR, SHARDS, CHUNK = 86_400_000, 3_600_000, 4, 480
QUERY = "sum by (job) (rate(node_cpu_seconds_total[5m]))"


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(
        json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, **extra}), flush=True
    )


def generate(stores, series: int, days: int, t0: int) -> int:  # type: ignore[no-untyped-def]
    w = Workload(series, seed=1)
    pks = [part_key(lb) for lb in w.series]
    col = stores.column
    col.initialize("m", SHARDS)
    per_day = DAY // 15_000
    for d in range(days):
        vals = w.next_values(per_day)
        ts = t0 + d * DAY + 15_000 * np.arange(1, per_day + 1, dtype=np.int64)
        by_shard: dict[int, list[ChunkSet]] = {}
        for i, pk in enumerate(pks):
            for a in range(0, per_day, CHUNK):
                t, v = ts[a : a + CHUNK], vals[i, a : a + CHUNK]
                by_shard.setdefault(i % SHARDS, []).append(
                    ChunkSet(
                        pk,
                        int(t[0]),
                        int(t[0]),
                        int(t[-1]),
                        len(t),
                        (encode_timestamps(t), encode_doubles(v)),
                    )
                )
        for s, chunks in by_shard.items():
            col.write_chunks("m", s, chunks)
    for s in range(SHARDS):
        col.write_part_keys("m", s, [PartKeyRecord(pk, t0 + 15_000, t0 + days * DAY)
                                     for i, pk in enumerate(pks) if i % SHARDS == s])  # fmt: skip
    return series * days * per_day


def engine(stores, dataset: str, lookback_ms: int = 300_000) -> DistributedEngine:  # type: ignore[no-untyped-def]
    shards = []
    for s in range(SHARDS):
        ms = TimeSeriesShard(
            dataset, s, pager=make_pager(stores.column, dataset, s), page_cache_bytes=0
        )
        ms.load_part_keys(stores.column.scan_part_keys(dataset, s))
        shards.append(ms)
    return DistributedEngine(
        LocalShards(shards), lookback_ms=lookback_ms, max_samples=2_000_000_000
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--levels", default="5,60", help="resolutions in minutes, finest first")
    ap.add_argument(
        "--keep", default="7,0", help="days each level is kept, as in the tiers (0: forever)"
    )
    ap.add_argument("--raw-keep", type=float, default=1.0, help="days of raw data the planner uses")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--spark", default="local[2]", help="Spark master for the second run ('' skips)"
    )
    a = ap.parse_args()
    res = tuple(int(m) * 60_000 for m in a.levels.split(","))
    t0 = 1_700_000_000_000 // DAY * DAY
    end = t0 + a.days * DAY
    with tempfile.TemporaryDirectory() as d:
        stores = open_store("sqlite", d)
        spec = {"kind": "sqlite", "data_dir": d, "options": {}}
        n = generate(stores, a.series, a.days, t0)
        tasks = shard_tasks(spec, "m", SHARDS, t0, end, res)
        run_local(tasks[:1])  # numba compilation out of the timing
        t = time.perf_counter()
        got = run_local(tasks)
        secs = time.perf_counter() - t
        emit("downsample_raw_samples_per_s", sum(r["raw_samples"] for r in got) / secs, "samples/s",
             mode="in-process", series=a.series, days=a.days, raw_samples=n)  # fmt: skip
        if a.spark:
            from filodb.downsample.job import downsample_shard

            try:
                from filodb.spark.runner import run_tasks

                t = time.perf_counter()
                got = run_tasks(
                    a.spark,
                    downsample_shard,
                    shard_tasks(spec, "m", SHARDS, t0, end, res, None, DAY),
                )
                secs = time.perf_counter() - t
                emit("downsample_raw_samples_per_s", sum(r["raw_samples"] for r in got) / secs, "samples/s",
                     mode=a.spark, series=a.series, days=a.days)  # fmt: skip
            except Exception as e:  # noqa: BLE001 - the extra is optional
                print(json.dumps({"skipped": f"spark run: {e}"}), file=sys.stderr)
        raw_bytes = sum(stores.column.stats("m", s)["vector_bytes"] for s in range(SHARDS))
        ds_bytes = sum(stores.column.stats(f"m_ds_{r // 60_000}", s)["vector_bytes"]
                       for r in res for s in range(SHARDS))  # fmt: skip
        emit(
            "ds_bytes_ratio",
            100 * ds_bytes / raw_bytes,
            "%",
            raw_bytes=raw_bytes,
            ds_bytes=ds_bytes,
        )
        for r in res:  # per level: the coarser, the smaller
            level = sum(
                stores.column.stats(f"m_ds_{r // 60_000}", s)["vector_bytes"] for s in range(SHARDS)
            )
            emit("ds_bytes_ratio", 100 * level / raw_bytes, "%", level=f"{r // 60_000}m")

        q0 = t0 + HOUR
        raw_eng = engine(stores, "m")
        keep = [float(k) for k in a.keep.split(",")]
        tiers = [Tier("m", 0, end - int(a.raw_keep * DAY))] + [
            Tier(f"m_ds_{r // 60_000}", r, end - int(k * DAY) if k else None, end)
            for r, k in zip(res, keep, strict=True)
        ]
        pieces, _warn = plan_range(parse(QUERY), q0, end, HOUR, tiers, 300_000)
        engines = {p.tier.dataset: engine(stores, p.tier.dataset, p.lookback_ms) for p in pieces}

        def raw_q() -> object:
            return raw_eng.range(QUERY, q0, end, HOUR)

        def ds_q() -> object:
            return stitch(
                [
                    engines[p.tier.dataset].range(p.expr, p.start_ms, p.end_ms, p.step_ms)
                    for p in pieces
                ]
            )

        times = {}
        for name, fn in (("raw", raw_q), ("downsampled", ds_q)):
            fn()
            lat = []
            for _ in range(a.repeat):
                t = time.perf_counter()
                fn()
                lat.append((time.perf_counter() - t) * 1000)
            times[name] = statistics.median(lat)
            emit(f"query_30d_ms_{name}", times[name], "ms", days=a.days, series=a.series,
                 tiers=[p.tier.dataset for p in pieces] if name == "downsampled" else ["m"])  # fmt: skip
        emit("query_speedup", times["raw"] / times["downsampled"], "x")
        stores.close()


if __name__ == "__main__":
    main()
