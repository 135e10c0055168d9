"""The worker's apply path alone: log records of Prometheus's live shape (2000 series x one
sample per remote-write body; ``--shape backfill``: 500 series x 20 samples) read and ingested
by a shard's :class:`LogApplier`, in one process (no Redis, no HTTP), CPU time per body.

Records are made as the web door makes them (remote-write body decoded, split per shard by
route and spread, ``shard_records``) before timing; then each scrape's (time block's) records
are applied ``--per-apply`` at a time per shard (what one read of the node's reader hands a
shard). The first block registers every series (``apply_new_ms_per_body``, best of
``--repeat`` passes, each into new shards); the later ones are the steady state
(``apply_ms_per_body``, best of ``--repeat`` passes over them; ``apply_us_per_series``: per
series and sample, heads closed into chunks included). Before timing, the process loads its
numba kernels as a node does when it starts (:func:`~filodb.node.warm.warm_read_path`), so a
first call's loading is not counted as registering series. ``load_part_keys_us_per_series``:
recovery's first step, a shard registering the part keys the column store lists for it
(``TimeSeriesShard.load_part_keys`` of every series of the run), best of ``--repeat``.

    python bench/log_apply.py                         # 10 000 series x 20 scrapes, 4 shards
    python bench/log_apply.py --series 100000 --samples 5 --per-apply 8
    python bench/log_apply.py --series 100000 --samples 5 --shards 256 --spread 8 --per-apply 2
    python bench/log_apply.py --shape backfill --samples 720 --per-apply 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from ingest import SHAPES, body_plan, rw_body  # noqa: E402
from promql import emit, workload  # noqa: E402

from filodb.memstore.shard import TimeSeriesShard  # noqa: E402
from filodb.model.record import read_record_groups  # noqa: E402
from filodb.model.shardkey import shards_of_routes  # noqa: E402
from filodb.node.applier import LogApplier  # noqa: E402
from filodb.node.warm import warm_read_path  # noqa: E402
from filodb.prom.remote_write import decode_write_request  # noqa: E402


def records(a: argparse.Namespace) -> tuple[int, list[dict[int, list[bytes]]]]:
    """The number of series and, per time block (a scrape for ``live``), the log records of
    each shard, in sending order."""
    series, vals = workload(a.series, a.samples)
    t0 = 1_700_000_000_000
    group = np.arange(len(series))
    k = SHAPES[a.shape][1]
    out: list[dict[int, list[bytes]]] = [{} for _ in range(-(-a.samples // k))]
    for idx, lo, hi in body_plan(group, a.samples, a.shape):
        batch = decode_write_request(rw_body(series, vals, idx, lo, hi, t0, 15_000))
        assert batch.routes is not None
        recs, _ = batch.shard_records(shards_of_routes(batch.routes, a.shards, a.spread), a.shards)
        for shard, rec in recs.items():
            out[lo // k].setdefault(shard, []).append(rec)
    return len(series), out


def apply_scrape(appliers: dict[int, LogApplier], scrape: dict[int, list[bytes]],
                 offsets: dict[int, int], per_apply: int, pass_read: bool = True) -> None:  # fmt: skip
    """As the node's reader: each read brings every shard's next ``per_apply`` records, read
    by one call for all shards (``pass_read``; else each shard's by its applier)."""
    longest = max((len(r) for r in scrape.values()), default=0)
    for i in range(0, longest, per_apply):
        todo = []
        for shard, recs in scrape.items():
            part = []
            for r in recs[i : i + per_apply]:
                offsets[shard] += 1
                part.append((offsets[shard], r))
            if part:
                todo.append((appliers[shard], part))
        batches = (
            read_record_groups([[r for _, r in part] for _, part in todo])
            if pass_read
            else [None] * len(todo)
        )
        for (ap, part), batch in zip(todo, batches, strict=True):
            ap.apply(part, batch)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=20, help="samples per series")
    ap.add_argument("--shape", choices=list(SHAPES), default="live")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--spread", type=int, default=1, help="a shard key's series on 2^spread shards")
    ap.add_argument("--per-apply", type=int, default=1, help="records per apply call")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--per-shard-read",
        action="store_true",
        help="each shard's records read by its applier (before the reader read a pass's at once)",
    )
    a = ap.parse_args()
    n_series, scrapes = records(a)
    bodies = -(-n_series // SHAPES[a.shape][0])  # per time block
    ctx = {"series": n_series, "shards": a.shards, "spread": a.spread, "per_apply": a.per_apply, "shape": a.shape,
           "pass_read": not a.per_shard_read, "record_bytes": round(np.mean([len(r) for s in scrapes for rs in s.values()
                                          for r in rs]))}  # fmt: skip
    warm_read_path()
    best = best_new = float("inf")
    for _ in range(a.repeat):
        shards = {s: TimeSeriesShard("bench", s) for s in range(a.shards)}
        appliers = {s: LogApplier.without_store(ms, None) for s, ms in shards.items()}  # type: ignore[arg-type]
        offsets = dict.fromkeys(shards, 0)
        c = time.process_time()
        apply_scrape(appliers, scrapes[0], offsets, a.per_apply, not a.per_shard_read)
        best_new = min(best_new, time.process_time() - c)
        c = time.process_time()
        for scrape in scrapes[1:]:
            apply_scrape(appliers, scrape, offsets, a.per_apply, not a.per_shard_read)
        best = min(best, time.process_time() - c)
        assert sum(ms.samples_ingested for ms in shards.values()) == n_series * a.samples
    emit("apply_new_ms_per_body", 1000 * best_new / bodies, "ms", **ctx)
    n_bodies = bodies * (len(scrapes) - 1)
    steady = n_series * (a.samples - SHAPES[a.shape][1])  # samples after the first block
    emit("apply_ms_per_body", 1000 * best / n_bodies, "ms", **ctx)
    emit("apply_us_per_series", 1e6 * best / steady, "us", **ctx)
    emit(
        "load_part_keys_us_per_series",
        1e6 * load_part_keys(shards, a.repeat) / n_series,
        "us",
        **ctx,
    )


class PartKeyRecord(NamedTuple):
    part_key: bytes
    start_ms: int
    end_ms: int


def load_part_keys(shards: dict[int, TimeSeriesShard], repeat: int) -> float:
    """CPU seconds (best of ``repeat``) to register every series of ``shards`` again in new
    shards from their part keys, as recovery does before it replays the log."""
    recs = {s: [PartKeyRecord(ms._part_key(i), 0, 1) for i in range(ms.num_series)]
            for s, ms in shards.items()}  # fmt: skip
    best = float("inf")
    for _ in range(repeat):
        fresh = {s: TimeSeriesShard("bench", s) for s in shards}
        c = time.process_time()
        for s, ms in fresh.items():
            ms.load_part_keys(recs[s])
        best = min(best, time.process_time() - c)
        assert all(fresh[s]._labels == ms._labels for s, ms in shards.items())
    return best


if __name__ == "__main__":
    main()
