"""Spark data source benchmark: how fast ``spark.read.format("filodb")`` reads raw samples.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/spark_read.py                 # 1 000 series x 1 day at 15 s (5.76 M samples)
    python bench/spark_read.py --quick         # 200 series x 6 h
    python bench/spark_read.py --master local[4] --window 3h

The data is written straight to a SQLite column store (chunks of 480 samples, as the memstore
closes them; a counter and a gauge with two decimals per job), then read back whole:

* ``spark_read_samples_per_s``: a Spark action over the DataFrame (count and sum of values),
  median of ``--repeat`` runs after one warm-up run (which starts the Python workers; its
  time is ``spark_read_first_s``);
* ``spark_read_task_samples_per_s``: the same partitions read in this process by the task
  function alone, one after another (no Spark, no Arrow transfer to the JVM): one core's
  ceiling, to tell the data source's cost from Spark's.

The totals are checked against what was written. No peer runs: Prometheus and
VictoriaMetrics have no Spark data source.

Measured on the 2-core machine shared with other jobs (load 7-12, so +-50 %), default size:
the task function 1.3-6.4 M samples/s on one core; Spark local[2] 0.29-0.50 M samples/s,
first read 21-86 s (Python workers starting). Spark's side is the ceiling: a dummy source
yielding the same Arrow batches ran at 0.14-0.27 M rows/s with the labels map column and
0.48-0.61 M without it (the JVM builds a map per row).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filodb.memstore.chunks import encode_chunk  # noqa: E402
from filodb.model.labels import make_labels  # noqa: E402
from filodb.model.partkey import part_key  # noqa: E402
from filodb.spark.options import parse_read_options  # noqa: E402
from filodb.spark.read import plan, read_window  # noqa: E402
from filodb.store import ChunkSet, PartKeyRecord, open_store  # noqa: E402

T0 = 1_767_225_600_000  # 2026-01-01
CHUNK_SAMPLES = 480


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    line = {"metric": metric, "value": round(value, 3), "unit": unit, **ctx}
    print(orjson.dumps(line).decode(), flush=True)


def write_store(data_dir: str, n_series: int, n_samples: int, step_ms: int, shards: int) -> int:
    """Every series straight into the store; returns the number of samples written."""
    stores = open_store("sqlite", data_dir, synchronous="OFF")
    stores.column.initialize("prometheus", shards)
    rng = np.random.default_rng(1)
    ts = T0 + step_ms * np.arange(n_samples, dtype=np.int64)
    by_shard: dict[int, tuple[list[ChunkSet], list[PartKeyRecord]]] = {}
    for i in range(n_series):
        counter = i % 2 == 0
        name = "bench_requests_total" if counter else "bench_temperature"
        lb = make_labels({"__name__": name, "job": f"job-{i % 10}", "instance": f"host-{i:05d}"})
        if counter:
            vals = np.cumsum(rng.integers(0, 50, n_samples)).astype(np.float64)
        else:
            vals = np.round(20 + rng.normal(0, 3, n_samples), 2)
        pk = part_key(lb)
        chunks, pks = by_shard.setdefault(i % shards, ([], []))
        for a in range(0, n_samples, CHUNK_SAMPLES):
            c = encode_chunk(ts[a : a + CHUNK_SAMPLES], vals[a : a + CHUNK_SAMPLES])
            chunks.append(ChunkSet(pk, c.chunk_id, c.start, c.end, c.count, c.vectors))
        pks.append(PartKeyRecord(pk, int(ts[0]), int(ts[-1])))
    for shard, (chunks, pks) in by_shard.items():
        stores.column.write_chunks("prometheus", shard, chunks)
        stores.column.write_part_keys("prometheus", shard, pks)
    stores.close()
    return n_series * n_samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 series x 6 h")
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--step", type=int, default=15, help="seconds between samples")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--window", default="6h", help="time span of one read partition")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="data directory (default: a fresh temp dir)")
    args = ap.parse_args()
    if args.quick:
        args.series, args.hours = 200, 6
    n_samples = int(args.hours * 3600 // args.step)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        data_dir = str(Path(tmp) / "data")
        t0 = time.perf_counter()
        total = write_store(data_dir, args.series, n_samples, args.step * 1000, args.shards)
        ctx = {"series": args.series, "samples": total, "shards": args.shards,
               "window": args.window}  # fmt: skip
        emit("spark_read_store_write_s", time.perf_counter() - t0, "s", **ctx)
        options = {"dataset": "prometheus", "selector": '{__name__=~"bench_.*"}',
                   "start": str(T0 / 1000), "end": str((T0 + args.step * 1000 * (n_samples - 1)) / 1000),
                   "window": args.window, "data_dir": data_dir}  # fmt: skip
        opts = parse_read_options(options)
        tasks = plan(opts)

        t0 = time.perf_counter()
        rows = sum(rb.num_rows for task in tasks for rb in read_window(opts, *task))
        dt = time.perf_counter() - t0
        assert rows == total, (rows, total)
        emit("spark_read_task_samples_per_s", rows / dt, "samples/s", partitions=len(tasks), **ctx)

        from pyspark.sql import SparkSession
        from pyspark.sql import functions as F

        spark = (SparkSession.builder.master(args.master).appName("bench-spark-read")
                 .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                 .config("spark.pyspark.python", sys.executable).getOrCreate())  # fmt: skip
        spark.sparkContext.setLogLevel("ERROR")
        times = []
        for i in range(args.repeat + 1):
            t0 = time.perf_counter()
            df = spark.read.format("filodb").options(**options).load()
            n, _ = df.agg(F.count("*"), F.sum("value")).collect()[0]
            times.append(time.perf_counter() - t0)
            assert n == total, (n, total)
            if i == 0:
                emit("spark_read_first_s", times[0], "s", master=args.master, **ctx)
        spark.stop()
        emit("spark_read_samples_per_s", total / statistics.median(times[1:]), "samples/s",
             master=args.master, partitions=len(tasks), **ctx)  # fmt: skip


if __name__ == "__main__":
    main()
