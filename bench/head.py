"""The memstore head in-process: how fast one shard appends batches, and what it holds per series.

Prints one JSON object per line ``{"metric", "value", "unit", ...context}``:

- ``head_append_samples_per_s`` (``shape``, ``series``): samples one ``TimeSeriesShard``
  ingests per second, batches built beforehand (no decoding, no log), series registered
  beforehand (the first scrape or backfill round is not timed). Shapes: ``live`` is
  Prometheus's remote-write body (one sample per series, 2000 series per batch, consecutive
  scrapes 15 s apart); ``backfill`` is 500 series x 20 samples per batch, time-ordered.
- ``head_bytes_per_series`` (``series``, ``scrapes``): bytes the shard allocated (tracemalloc:
  numpy buffers, chunks, registry and index; the label sets come from the batches and are not
  counted) per series after ``--mem-scrapes`` live scrapes, and the shard's own
  ``memory_bytes`` per series beside it.

    python bench/head.py                        # 10 000 and 100 000 series
    python bench/head.py --series 10000 --scrapes 20 --profile   # cProfile's top entries too
    python bench/head.py --keys       # batches carry a 64-bit key per series, as log records do

Prometheus's whole process costs about 17 KB per active series (issue 14's table).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import pstats
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filodb.memstore.shard import TimeSeriesShard  # noqa: E402
from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.model.labels import make_labels  # noqa: E402
from filodb.model.partkey import part_key  # noqa: E402

T0 = 1_700_000_000_000
STEP = 15_000


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    print(orjson.dumps({"metric": metric, "value": round(value, 3), "unit": unit, **ctx}).decode(),
          flush=True)  # fmt: skip


def series_labels(n: int) -> list:
    return [make_labels({"__name__": f"bench_m{i % 50}", "instance": f"host-{i // 50}",
                         "job": "bench"}) for i in range(n)]  # fmt: skip


def with_keys(batches: list[SampleBatch], labels: list) -> list[SampleBatch]:
    """Give each batch ``keys`` (a 64-bit hash per series, as decoded log records carry)."""
    key = {lb: int.from_bytes(hashlib.blake2b(part_key(lb), digest_size=8).digest(), "little")
           for lb in labels}  # fmt: skip
    for b in batches:
        b.keys = np.array([key[lb] for lb in b.series], np.uint64)  # type: ignore[attr-defined]
    return batches


def live_batches(labels: list, scrapes: int, per_batch: int = 2000) -> list[SampleBatch]:
    """Scrape k: every series once at T0 + k*15 s, in bodies of ``per_batch`` series."""
    rng = np.random.default_rng(1)
    out = []
    for k in range(scrapes):
        for a in range(0, len(labels), per_batch):
            part = labels[a : a + per_batch]
            m = len(part)
            vals = np.round(rng.random(m) * 100, 1) + k
            out.append(SampleBatch(part, np.arange(m), np.full(m, T0 + k * STEP), vals))
    return out


def backfill_batches(labels: list, total_samples: int, per: int = 500, rows: int = 20) -> list:
    """500 series x 20 samples per batch; each group of series walks forward in time."""
    out = []
    rng = np.random.default_rng(2)
    n_groups = max(1, len(labels) // per)
    rounds = max(1, total_samples // (per * rows * n_groups))
    for r in range(rounds):
        for g in range(n_groups):
            part = labels[g * per : (g + 1) * per]
            m = len(part)
            sidx = np.repeat(np.arange(m), rows)
            ts = T0 + (r * rows + np.tile(np.arange(rows), m)) * STEP
            vals = np.round(rng.random(m * rows) * 100, 1)
            out.append(SampleBatch(part, sidx, ts, vals))
    return out


def run(batches: list[SampleBatch], warm: int, profile: bool) -> tuple[float, int]:
    """Samples/s of the batches after the first ``warm`` (those register the series: the
    steady state is timed, series creation is not)."""
    shard = TimeSeriesShard("bench", 0)
    for b in batches[:warm]:
        shard.ingest(b)
    batches = batches[warm:]
    n = sum(len(b) for b in batches)
    prof = cProfile.Profile() if profile else None
    gc.collect()
    t = time.perf_counter()
    if prof:
        prof.enable()
    for b in batches:
        shard.ingest(b)
    if prof:
        prof.disable()
    dt = time.perf_counter() - t
    assert shard.samples_rejected == 0, "the head refused samples"
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
        print(s.getvalue(), file=sys.stderr)
    return n / dt, n


def memory(labels: list, scrapes: int) -> tuple[float, float]:
    batches = live_batches(labels, scrapes)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    shard = TimeSeriesShard("bench", 0)
    for b in batches:
        shard.ingest(b)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / len(labels), shard.memory_bytes / len(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--series", default="10000,100000", help="comma-separated series counts")
    ap.add_argument("--scrapes", type=int, default=0, help="live scrapes (0: 2 M samples' worth)")
    ap.add_argument("--backfill-samples", type=int, default=2_000_000)
    ap.add_argument("--mem-scrapes", type=int, default=240,
                    help="live scrapes before measuring memory (240: 1 h)")  # fmt: skip
    ap.add_argument("--shape", default="live,backfill")
    ap.add_argument("--profile", action="store_true", help="cProfile's top entries on stderr")
    ap.add_argument("--keys", action="store_true", help="batches carry SampleBatch.keys")
    a = ap.parse_args()
    for n in [int(x) for x in a.series.split(",")]:
        labels = series_labels(n)
        shapes = []
        if "live" in a.shape:
            scrapes = a.scrapes or max(2, 2_000_000 // n)
            shapes.append(("live", live_batches(labels, scrapes + 1), -(-n // 2000)))
        if "backfill" in a.shape:
            bf = backfill_batches(labels, a.backfill_samples + n * 20)
            shapes.append(("backfill", bf, max(1, n // 500)))
        for shape, batches, warm in shapes:
            if a.keys:
                batches = with_keys(batches, labels)
            rate, total = run(batches, warm, a.profile)
            emit("head_append_samples_per_s", rate, "samples/s", shape=shape, series=n,
                 samples=total, keys=a.keys)  # fmt: skip
        if a.mem_scrapes:
            traced, own = memory(labels, a.mem_scrapes)
            emit("head_bytes_per_series", traced, "bytes", series=n, scrapes=a.mem_scrapes,
                 memory_bytes_per_series=round(own, 1))  # fmt: skip


if __name__ == "__main__":
    main()
