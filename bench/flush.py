"""Flush benchmark: what a node's flush costs a shard, from its memstore to the SQLite store.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/flush.py                        # 430 series a shard (100 k over 256 shards)
    python bench/flush.py --series 2000 --shards 4

Each of ``--shards`` shards takes ``--scrapes`` live scrapes of ``--series`` exporter-like
series (counters, gauges of a few values, noisy gauges; one sample per series per body, 15 s
apart), is flushed once for the log's size (the heads left open, every group, as the node
does when the log holds too much: the first flush creates the series' rows), takes
``--more`` scrapes, and is timed on that second flush for the log (``flush_log_ms_per_shard``,
median of ``--repeat`` rounds, each round after ``--more`` more scrapes), then on the
schedule's flush of one group, heads closed (``flush_group_ms_per_shard``). SQLite runs with
``synchronous=FULL`` (a commit is an fsync), as the node's store does. No peer runs here:
Prometheus and VictoriaMetrics have no flush to compare with (their heads go to disk in
their own ways; ``bench/ingest.py`` compares the whole path).
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

from filodb.memstore.shard import TimeSeriesShard  # noqa: E402
from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.model.labels import make_labels  # noqa: E402
from filodb.node.flush import flush_group, flush_groups, make_pager  # noqa: E402
from filodb.store import open_store  # noqa: E402

T0 = 1_700_000_000_000
STEP_MS = 15_000


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    print(orjson.dumps({"metric": metric, "value": round(value, 3), "unit": unit, **ctx}).decode(),
          flush=True)  # fmt: skip


class _NoLog:
    def trim(self, dataset: str, shard: int, upto: int) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=430, help="series a shard")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--scrapes", type=int, default=120, help="before the first flush")
    ap.add_argument("--more", type=int, default=20, help="scrapes before each timed flush")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    n = args.series
    series = [make_labels({"__name__": f"m{i % 50}", "job": "node", "instance": f"h{i // 50}"})
              for i in range(n)]  # fmt: skip
    kind = np.arange(n) % 3  # counters, gauges of a few values, noisy gauges
    counters = rng.integers(0, 10**6, n).astype(np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        cs, meta = open_store("sqlite", tmp)
        cs.initialize("bench", args.shards)
        shards = [TimeSeriesShard("bench", s, pager=make_pager(cs, "bench", s))
                  for s in range(args.shards)]  # fmt: skip
        scrape = [0]

        def feed(k: int) -> None:
            for _ in range(k):
                counters[:] += rng.integers(0, 100, n)
                vals = np.where(kind == 0, counters,
                                np.where(kind == 1, rng.integers(0, 3, n), rng.random(n) * 100))  # fmt: skip
                b = SampleBatch(series, np.arange(n), np.full(n, T0 + STEP_MS * scrape[0]), vals)
                scrape[0] += 1
                for ms in shards:
                    ms.ingest(b, scrape[0])

        def for_log() -> float:
            t = time.perf_counter()
            for ms in shards:
                flush_groups(ms, cs, meta, list(range(ms.num_groups)), _NoLog(), close_heads=False)
            return (time.perf_counter() - t) * 1000 / len(shards)

        feed(args.scrapes)
        for_log()  # creates the series' rows
        log_ms = []
        for _ in range(args.repeat):
            feed(args.more)
            log_ms.append(for_log())
        ctx = {"series_per_shard": n, "shards": args.shards, "groups": shards[0].num_groups}
        emit("flush_log_ms_per_shard", statistics.median(log_ms), "ms", runs=log_ms, **ctx)
        feed(args.more)
        t = time.perf_counter()
        for ms in shards:
            flush_group(ms, cs, meta, 0, _NoLog())
        emit("flush_group_ms_per_shard", (time.perf_counter() - t) * 1000 / len(shards), "ms",
             **ctx)  # fmt: skip
        emit("zstd_tries_won", cs.zstd.won / max(cs.zstd.tried, 1), "ratio",
             tried=cs.zstd.tried, **ctx)  # fmt: skip
        cs.close()
        meta.close()


if __name__ == "__main__":
    main()
