"""Column store benchmark: chunk write and read throughput of the SQLite backend.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/store.py --quick              # 10 000 part keys x 2 chunks, under a minute
    python bench/store.py                      # 10 000 part keys x 10 chunks
    python bench/store.py --synchronous NORMAL

The workload is a flush: one shard, part keys spread over 16 flush groups, each chunk two random
(incompressible) vectors of ``--vector-bytes / 2``; every ``write_flush`` call writes one group's
chunks, part keys and checkpoint in one transaction, as the flush task does. Then single-chunk
writes (the cost of one commit), bulk reads of every chunk (paging back a whole shard), narrow
reads of one part key (a query paging one series back), a part-key scan (recovery) and the bytes
on disk per vector byte. No peer runs here: Prometheus and VictoriaMetrics have no column store
API to compare with.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filodb.store.base import ChunkSet, PartKeyRecord  # noqa: E402
from filodb.store.sqlite import open_sqlite  # noqa: E402

GROUPS = 16
CHUNK_MS = 3_600_000  # one chunk per series and hour


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    line = {"metric": metric, "value": round(value, 3), "unit": unit, **ctx}
    print(orjson.dumps(line).decode(), flush=True)


def part_key(i: int) -> bytes:
    """A part key of realistic size (~90 bytes): metric, job, instance, a few labels."""
    return (
        b"\x01http_requests_total\x00job=api-server\x00instance=host-%05d:9100\x00" % (i % 997)
        + b"handler=/api/v1/query_range\x00code=200\x00id=%d" % i
    )


def make_chunks(n_keys: int, hour: int, vector_bytes: int, rng: random.Random) -> list[ChunkSet]:
    half = vector_bytes // 2
    blob = rng.randbytes(half * 64)  # vectors are slices of one random buffer: cheap to make
    out = []
    for i in range(n_keys):
        off = (i * 7919) % (len(blob) - half)
        start = hour * CHUNK_MS
        out.append(
            ChunkSet(part_key(i), start, start, start + CHUNK_MS - 1, 240,
                     (blob[off : off + half], blob[-off - half : len(blob) - off]))
        )  # fmt: skip
    return out


def bench_writes(cs, ms, args, ctx) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    rng = random.Random(1)
    n_chunks = n_bytes = 0
    elapsed = 0.0
    for hour in range(args.chunks_per_key):
        chunks = make_chunks(args.part_keys, hour, args.vector_bytes, rng)
        groups = [chunks[g::GROUPS] for g in range(GROUPS)]
        t0 = time.perf_counter()
        for g, grp in enumerate(groups):
            recs = [PartKeyRecord(c.part_key, 0, c.end_ms) for c in grp]
            cs.write_flush(ms, "bench", 0, g, grp, recs, hour * 1000 + g)
        elapsed += time.perf_counter() - t0
        n_chunks += len(chunks)
        n_bytes += sum(c.nbytes for c in chunks)
    per_call = args.part_keys // GROUPS
    emit(
        "store_write_chunks_per_s", n_chunks / elapsed, "chunks/s", chunks_per_call=per_call, **ctx
    )
    emit("store_write_mb_per_s", n_bytes / elapsed / 1e6, "MB/s", chunks_per_call=per_call, **ctx)
    return n_chunks, n_bytes


def bench_small_writes(cs, args, ctx) -> None:  # type: ignore[no-untyped-def]
    calls = 100 if args.quick else 500
    chunks = make_chunks(calls, 10_000, args.vector_bytes, random.Random(2))
    t0 = time.perf_counter()
    for c in chunks:
        cs.write_chunks("bench", 1, [c])
    emit("store_write_calls_per_s", calls / (time.perf_counter() - t0), "calls/s",
         chunks_per_call=1, **ctx)  # fmt: skip


def bench_reads(cs, n_keys: int, n_chunks: int, slots: int, chunk_ms: int, calls: int, ctx) -> None:  # type: ignore[no-untyped-def]
    """Reads of every chunk (1 000 part keys a call), ``calls`` single-chunk reads of one part
    key in one of ``slots`` chunk spans of ``chunk_ms`` (p50), and a part-key scan."""
    keys = [part_key(i) for i in range(n_keys)]
    t0 = time.perf_counter()
    got = nbytes = 0
    for i in range(0, len(keys), 1000):
        chunks = cs.read_chunks("bench", 0, keys[i : i + 1000], 0, 2**62)
        got += len(chunks)
        nbytes += sum(c.nbytes for c in chunks)
    dt = time.perf_counter() - t0
    assert got == n_chunks, (got, n_chunks)
    emit("store_read_chunks_per_s", got / dt, "chunks/s", part_keys_per_call=1000, **ctx)
    emit("store_read_mb_per_s", nbytes / dt / 1e6, "MB/s", part_keys_per_call=1000, **ctx)

    rng = random.Random(3)
    lat = []
    for _ in range(calls):
        slot = rng.randrange(slots)
        t1 = time.perf_counter()
        one = cs.read_chunks(
            "bench", 0, [rng.choice(keys)], slot * chunk_ms + 5, slot * chunk_ms + 9
        )
        lat.append(time.perf_counter() - t1)
        assert len(one) == 1
    emit("store_read_one_series_p50", statistics.median(lat) * 1e3, "ms", **ctx)

    t0 = time.perf_counter()
    n = sum(1 for _ in cs.scan_part_keys("bench", 0))
    assert n == n_keys
    emit("store_scan_part_keys_per_s", n / (time.perf_counter() - t0), "part keys/s", **ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 chunks per part key")
    ap.add_argument("--part-keys", type=int, default=10_000)
    ap.add_argument("--chunks-per-key", type=int, default=None)
    ap.add_argument("--vector-bytes", type=int, default=1024, help="vector bytes per chunk")
    ap.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL"])
    ap.add_argument("--dir", default=None, help="data directory (default: a fresh temp dir)")
    args = ap.parse_args()
    if args.chunks_per_key is None:
        args.chunks_per_key = 2 if args.quick else 10
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        ctx = {"backend": "sqlite", "sqlite": sqlite3.sqlite_version, "synchronous": args.synchronous,
               "part_keys": args.part_keys, "chunks_per_key": args.chunks_per_key,
               "vector_bytes_per_chunk": args.vector_bytes}  # fmt: skip
        cs, ms = open_sqlite(tmp, synchronous=args.synchronous)
        cs.initialize("bench", 2)
        n_chunks, n_bytes = bench_writes(cs, ms, args, ctx)
        bench_small_writes(cs, args, ctx)
        bench_reads(cs, args.part_keys, n_chunks, args.chunks_per_key, CHUNK_MS,
                    200 if args.quick else 2000, ctx)  # fmt: skip
        cs.close()  # the last connection of a file folds its WAL back in
        on_disk = sum(p.stat().st_size for p in (Path(tmp) / "store").rglob("*") if p.is_file())
        shard1 = sum(p.stat().st_size for p in (Path(tmp) / "store").rglob("shard-1.db*"))
        emit("store_disk_bytes_per_vector_byte", (on_disk - shard1) / n_bytes, "ratio", **ctx)


if __name__ == "__main__":
    main()
