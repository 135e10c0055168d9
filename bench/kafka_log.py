"""Log benchmark: KafkaLog against RedisStreamsLog on the same records.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/kafka_log.py --quick       # 2 000 records, well under a minute
    python bench/kafka_log.py               # 10 000 records of 10 KB (100 MB per backend)

Kafka is the dev service (``filodb.devservices``: started here unless it is up already, stopped
afterwards if started here); Redis is a fresh redis-server with ``appendonly yes`` on a free
port, as ``filodb up`` runs it. Records are random (incompressible) bytes of ``--record-bytes``
(the gateway's records are ~10 KB of encoded samples) spread over 4 shards. Workloads:

* ``bulk``: ``append_many`` with ``--batch`` records per shard per call (a busy gateway);
* ``single``: one record per shard per call, each call waits for its acknowledgement (one remote
  write request); reports calls/s and the median call latency;
* ``read``: a follower per shard reading ``--count`` records per call from 0 to the end, as the
  ingester does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filodb.devservices import base as services  # noqa: E402
from filodb.ingest.base import Log  # noqa: E402
from filodb.ingest.kafka import KafkaLog  # noqa: E402
from filodb.ingest.redis_streams import RedisStreamsLog  # noqa: E402
from filodb.redisproc import start_redis  # noqa: E402

SHARDS = 4


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    line = {"metric": metric, "value": round(value, 3), "unit": unit, **ctx}
    print(orjson.dumps(line).decode(), flush=True)


def make_records(n: int, size: int, seed: int = 1) -> list[bytes]:
    blob = np.random.default_rng(seed).integers(0, 256, n * size, dtype=np.uint8).tobytes()
    return [blob[i * size : (i + 1) * size] for i in range(n)]


def bulk(lg: Log, ds: str, recs: list[bytes], batch: int) -> float:
    """Seconds to append every record, ``batch`` per shard per call."""
    per_call = batch * SHARDS
    t0 = time.perf_counter()
    for i in range(0, len(recs), per_call):
        chunk = recs[i : i + per_call]
        lg.append_many(ds, {s: chunk[s::SHARDS] for s in range(SHARDS)})
    return time.perf_counter() - t0


def single(lg: Log, ds: str, recs: list[bytes]) -> list[float]:
    """Latency of each call appending one record to each shard."""
    lat = []
    for i in range(0, len(recs) - SHARDS + 1, SHARDS):
        t0 = time.perf_counter()
        lg.append_many(ds, {s: [recs[i + s]] for s in range(SHARDS)})
        lat.append(time.perf_counter() - t0)
    return lat


def read_all(lg: Log, ds: str, count: int) -> tuple[float, int, int]:
    """Seconds, records and bytes for one follower per shard reading everything."""
    ends = lg.end_offsets(ds, list(range(SHARDS)))
    n = nbytes = 0
    t0 = time.perf_counter()
    for s in range(SHARDS):
        pos = 0
        while pos < ends[s]:
            got = lg.read(ds, {s: pos}, count, 0)[s]
            n += len(got)
            nbytes += sum(len(r) for _, r in got)
            pos = got[-1][0]
    return time.perf_counter() - t0, n, nbytes


def run(name: str, lg: Log, recs: list[bytes], args: argparse.Namespace) -> None:
    ctx = {"backend": name, "record_bytes": args.record_bytes, "shards": SHARDS}
    ds = f"bench{uuid.uuid4().hex[:8]}"
    lg.ensure_dataset(ds, SHARDS)
    mb = len(recs) * args.record_bytes / 1e6
    secs = bulk(lg, ds, recs, args.batch)
    emit("log_append_bulk_records_per_s", len(recs) / secs, "records/s", batch=args.batch, **ctx)
    emit("log_append_bulk_mb_per_s", mb / secs, "MB/s", batch=args.batch, **ctx)
    lat = single(lg, ds, recs[: args.single])
    emit("log_append_single_calls_per_s", len(lat) / sum(lat), "calls/s", **ctx)
    emit("log_append_single_p50_ms", statistics.median(lat) * 1e3, "ms", **ctx)
    secs, n, nbytes = read_all(lg, ds, args.count)
    emit("log_read_records_per_s", n / secs, "records/s", count=args.count, **ctx)
    emit("log_read_mb_per_s", nbytes / 1e6 / secs, "MB/s", count=args.count, **ctx)
    lg.delete_dataset(ds, SHARDS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--record-bytes", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=16, help="records per shard per bulk call")
    ap.add_argument("--single", type=int, default=2_000, help="records in the single workload")
    ap.add_argument("--count", type=int, default=64, help="records per read (the ingester's)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.records, args.single = 2_000, 400
    recs = make_records(args.records, args.record_bytes)

    started = services.running("kafka") is None
    env = services.ensure("kafka")
    try:
        lg = KafkaLog(env["FILODB_KAFKA_BOOTSTRAP"], topic_prefix="bench-")
        run("kafka", lg, recs, args)
        lg.close()
    finally:
        if started:
            services.stop("kafka")
    with tempfile.TemporaryDirectory() as d:
        rp = start_redis(d)
        try:
            lg = RedisStreamsLog(rp.url)
            run("redis", lg, recs, args)
            lg.close()
        finally:
            rp.stop()


if __name__ == "__main__":
    main()
