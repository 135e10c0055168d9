"""Column store benchmark: Cassandra beside SQLite on the same flushes and reads.

Prints one JSON object per line: ``{"metric", "value", "unit", "backend", ...context}``.

    python bench/cassandra_store.py --quick        # 10 000 series x 2 flush rounds
    python bench/cassandra_store.py                # 10 000 series x 6 flush rounds
    python bench/cassandra_store.py --backends cassandra --max-in-flight 256

Cassandra comes from ``filodb.devservices`` (a running ``scripts/services up cassandra`` node
is reused, else one is started and stopped again). The workload is what the flush task writes:
10 000 series of one shard in 16 flush groups; per round every series gets one chunk of 480
samples whose vectors hold 200-600 bytes (random, incompressible), and each group is one
``write_flush`` (chunks, part keys, checkpoint). Then bench/store.py's reads: every chunk,
1 000 series per ``read_chunks`` call (a wide query paging a shard back), single-series reads
of one chunk (p50 latency), and a part-key scan (recovery).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from store import bench_reads, emit, part_key  # noqa: E402  (bench/store.py)

from filodb.store.base import ChunkSet, PartKeyRecord  # noqa: E402

GROUPS = 16
SAMPLES = 480
STEP_MS = 10_000  # one sample per 10 s: a chunk spans 80 minutes
CHUNK_MS = SAMPLES * STEP_MS


def make_round(n: int, rnd: int, rng: random.Random) -> list[ChunkSet]:
    """One chunk per series for flush round ``rnd``: two vectors, 200-600 bytes in all."""
    blob = rng.randbytes(1 << 16)
    out = []
    start = rnd * CHUNK_MS
    for i in range(n):
        size = rng.randrange(200, 601)
        ts = size * 2 // 5  # timestamps compress better than values
        off = rng.randrange(len(blob) - size)
        out.append(ChunkSet(part_key(i), start, start, start + CHUNK_MS - STEP_MS, SAMPLES,
                            (blob[off : off + ts], blob[off + ts : off + size])))  # fmt: skip
    return out


def run(cs, ms, args, ctx) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    cs.initialize("bench", 1)
    n_chunks = n_bytes = 0
    elapsed = 0.0
    for rnd in range(args.rounds):
        chunks = make_round(args.series, rnd, rng)
        groups = [chunks[g::GROUPS] for g in range(GROUPS)]
        t0 = time.perf_counter()
        for g, grp in enumerate(groups):
            recs = [PartKeyRecord(c.part_key, 0, c.end_ms) for c in grp]
            cs.write_flush(ms, "bench", 0, g, grp, recs, rnd * GROUPS + g + 1)
        elapsed += time.perf_counter() - t0
        n_chunks += len(chunks)
        n_bytes += sum(c.nbytes for c in chunks)
    per_call = args.series // GROUPS
    emit(
        "store_flush_chunks_per_s", n_chunks / elapsed, "chunks/s", chunks_per_call=per_call, **ctx
    )
    emit("store_flush_mb_per_s", n_bytes / elapsed / 1e6, "MB/s", chunks_per_call=per_call, **ctx)

    bench_reads(cs, args.series, n_chunks, args.rounds, CHUNK_MS, 300 if args.quick else 1000, ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 flush rounds")
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--backends", default="sqlite,cassandra")
    ap.add_argument("--max-in-flight", type=int, default=128)
    args = ap.parse_args()
    if args.rounds is None:
        args.rounds = 2 if args.quick else 6
    base_ctx = {"series": args.series, "rounds": args.rounds, "samples_per_chunk": SAMPLES}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            from filodb.store.sqlite import open_sqlite

            with tempfile.TemporaryDirectory() as tmp:
                cs, ms = open_sqlite(tmp)
                run(cs, ms, args, {"backend": "sqlite", "synchronous": "FULL", **base_ctx})
                cs.close()
        elif backend == "cassandra":
            from filodb.devservices import base
            from filodb.devservices.cassandra import VERSION
            from filodb.store.cassandra import TABLES, open_cassandra

            started = base.running("cassandra") is None
            env = base.ensure("cassandra")
            try:
                cs, ms = open_cassandra([env["FILODB_CASSANDRA_HOSTS"]],
                                        port=int(env["FILODB_CASSANDRA_PORT"]),
                                        keyspace="filodb_bench", max_in_flight=args.max_in_flight)  # fmt: skip
                for table in TABLES:
                    cs.ks.session.execute(f"TRUNCATE filodb_bench.{table}", timeout=60)
                run(cs, ms, args, {"backend": "cassandra", "cassandra": VERSION, "nodes": 1,
                                   "max_in_flight": args.max_in_flight, **base_ctx})  # fmt: skip
                cs.close()
            finally:
                if started:
                    base.stop("cassandra")
        else:
            raise SystemExit(f"unknown backend {backend!r} (have: sqlite, cassandra)")


if __name__ == "__main__":
    main()
