"""Churn and deletion in one shard's memstore (one core, in process).

Prints one JSON object per line ``{"metric", "value", "unit", ...context}``:
``churn_ingest_new_series_per_s`` (registering a cycle's new series with two samples each),
``churn_purge_s`` (``drop_before`` + ``purge_empty`` forgetting one cycle of series while the
next is held: renumbering, tag-index compaction), ``churn_rss_mib`` (RSS after the first cycle
and after the last: flat means the purge keeps memory bounded), ``delete_series_s`` (one
``delete_series`` of a tenth of the series by regex, all time: whole series purged) and
``delete_range_s`` (the same matcher over half of each series' samples: chunks re-encoded).

    python bench/churn.py                       # 10 cycles of 100 000 series (1 M in all)
    python bench/churn.py --per 20000 --cycles 4   # quick
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    print(json.dumps({"metric": metric, "value": round(value, 4), "unit": unit, **ctx}), flush=True)


def churn(per: int, cycles: int) -> None:
    ms = TimeSeriesShard("ds", 0)
    ingest_s = purge_s = 0.0
    rss = []
    for c in range(cycles):
        series = [make_labels({"__name__": "churn", "job": "j", "pod": f"p{c}-{i}"})
                  for i in range(per)]  # fmt: skip
        t0 = time.perf_counter()
        for k in range(2):
            ms.ingest(SampleBatch(series, np.arange(per, dtype=np.int32),
                                  np.full(per, c * 60_000 + k * 1000, np.int64), np.ones(per)))  # fmt: skip
        t1 = time.perf_counter()
        ms.drop_before(c * 60_000)
        ms.purge_empty()
        t2 = time.perf_counter()
        ingest_s += t1 - t0
        purge_s += (t2 - t1) if c else 0.0
        rss.append(_rss_mib())
    ctx = {"series_per_cycle": per, "cycles": cycles}
    emit("churn_ingest_new_series_per_s", per * cycles / ingest_s, "series/s", **ctx)
    emit("churn_purge_s", purge_s / max(cycles - 1, 1), "s", **ctx)
    emit("churn_rss_mib", rss[0], "MiB", after_cycle=1, **ctx)
    emit("churn_rss_mib", rss[-1], "MiB", after_cycle=cycles, **ctx)


def deletion(n: int) -> None:
    series = [make_labels({"__name__": "m", "id": str(i)}) for i in range(n)]
    for kind, lo, hi in (("delete_series_s", -(2**62), 2**62), ("delete_range_s", 0, 59_999)):
        ms = TimeSeriesShard("ds", 0, max_chunk_samples=60)
        ts = np.arange(120, dtype=np.int64) * 1000  # 2 chunks per series
        for k in range(0, 120, 30):
            ms.ingest(SampleBatch(series, np.repeat(np.arange(n), 30), np.tile(ts[k : k + 30], n),
                                  np.ones(30 * n)))  # fmt: skip
        t0 = time.perf_counter()
        d = ms.delete_series([Matcher("id", "=~", "1.*")], lo, hi)
        emit(kind, time.perf_counter() - t0, "s", series=n,
             matched=len(d.whole) + len(d.partial))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per", type=int, default=100_000, help="new series per cycle")
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--delete-series", type=int, default=100_000)
    a = ap.parse_args()
    churn(a.per, a.cycles)
    deletion(a.delete_series)


if __name__ == "__main__":
    main()
