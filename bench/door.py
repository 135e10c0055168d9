"""Door benchmark: CPU a body costs at the remote-write and Influx HTTP doors, in process.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/door.py                      # live shape: 10 000 series, 2000 a body
    python bench/door.py --series 100000 --shards 16 --only remote_write
    python bench/door.py --series 100000 --shards 256 --spread 8 --only remote_write

What a web process does for one request, without HTTP and without Redis: decode the body
(:func:`~filodb.prom.remote_write.decode_write_request_full` or
:func:`~filodb.gateway.influx.parse_lines`), then :meth:`IngestRouter.write` (shard of each
series, split per shard, ``to_bytes`` of each part) into a log that only keeps the records.
The bodies are ``bench/ingest.py``'s live shape (one sample per series, ``--per-body`` series a
body, the series dealt to ``--senders`` senders), encoded before timing; every body is sent
once to warm the caches (as a steady sender's series are known), then the whole set again
``--repeat`` times and the best pass counts. Figures: ms of CPU per body (thread CPU time,
the GIL-bound cost a web process pays) and per stage (``decode``, ``route``), and samples/s
of one core, and the log's bytes a sample (records as the log gets them: what Redis holds
until a flush trims it). No peer runs here: ``bench/ingest.py`` compares the doors end to end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ingest import body_plan, line_body, line_prefixes, rw_body  # noqa: E402
from promql import workload  # noqa: E402
from store import emit  # noqa: E402

from filodb.gateway.influx import parse_lines  # noqa: E402
from filodb.gateway.router import IngestRouter  # noqa: E402
from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.model.dataset import Dataset  # noqa: E402
from filodb.prom.remote_write import decode_write_request_full  # noqa: E402


class _Map:
    """The one thing the router asks a shard map: the dataset's description."""

    def __init__(self, desc: Dataset) -> None:
        self.desc = desc

    def dataset(self, name: str) -> Dataset:
        return self.desc


class _Log:
    """A log that keeps the bytes it was given (counted, then dropped)."""

    def __init__(self) -> None:
        self.records = 0
        self.nbytes = 0

    def append_many(self, dataset: str, records: Mapping[int, Sequence[bytes]]) -> dict:
        for recs in records.values():
            self.records += len(recs)
            self.nbytes += sum(map(len, recs))
        return {}


def sender_bodies(door: str, n_series: int, per_body: int, senders: int,
                  samples: int) -> list[list[bytes]]:  # fmt: skip
    """The live shape's bodies of each sender, in sending order."""
    series, vals = workload(n_series, samples)
    pre = line_prefixes(series, False) if door == "influx_http" else []
    out = []
    for i in range(senders):
        group = np.arange(i, len(series), senders)
        mine = []
        for idx, a, b in body_plan(group, samples, "live"):
            for k in range(0, len(idx), per_body):
                part = idx[k : k + per_body]
                if door == "remote_write":
                    mine.append(rw_body(series, vals, part, a, b, 1_700_000_000_000, 15_000))
                else:
                    mine.append(line_body(pre, vals, part, a, b, 1_700_000_000_000, 15_000, False))
        out.append(mine)
    return out


def bodies(door: str, n_series: int, per_body: int, senders: int, samples: int) -> list[bytes]:
    return [b for part in sender_bodies(door, n_series, per_body, senders, samples) for b in part]


def decoder(door: str) -> Callable[[bytes], SampleBatch]:
    if door == "remote_write":
        return lambda body: decode_write_request_full(body)[0]
    return lambda body: parse_lines(body, precision="ns", now_ms=0).batch


def run(door: str, a: argparse.Namespace) -> None:
    data = bodies(door, a.series, a.per_body, a.senders, a.samples)
    router = IngestRouter(_Map(Dataset.create("prometheus", a.shards, a.spread)), _Log())  # type: ignore[arg-type]
    decode = decoder(door)
    samples = 0
    for body in data:  # warm: every series known, every kernel loaded
        samples += len(decode(body))
    best = {"total": float("inf"), "decode": float("inf"), "route": float("inf")}
    for _ in range(a.repeat):
        t_dec = t_route = 0.0
        for body in data:
            t0 = time.thread_time()
            batch = decode(body)
            t1 = time.thread_time()
            router.write("prometheus", batch)
            t2 = time.thread_time()
            t_dec += t1 - t0
            t_route += t2 - t1
        best["decode"] = min(best["decode"], t_dec)
        best["route"] = min(best["route"], t_route)
        best["total"] = min(best["total"], t_dec + t_route)
    ctx = {"door": door, "series": a.series, "per_body": a.per_body, "shards": a.shards,
           "spread": a.spread,
           "bodies": len(data), "repeat": a.repeat}  # fmt: skip
    for stage, secs in best.items():
        emit("door_cpu_ms_per_body", 1000 * secs / len(data), "ms", stage=stage, **ctx)
    emit("door_samples_per_cpu_s", samples / best["total"], "samples/s", **ctx)
    log = router.ingest_log
    passes = 1 + a.repeat  # the warm pass and the timed ones wrote the same records
    emit("door_log_bytes_per_sample", log.nbytes / passes / samples, "bytes",
         records_per_body=log.records / passes / len(data), **ctx)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=2, help="scrapes (bodies per series)")
    ap.add_argument("--per-body", type=int, default=2000, help="at most 2000")
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--spread", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--only", choices=["remote_write", "influx_http"], action="append")
    a = ap.parse_args()
    for door in a.only or ["remote_write", "influx_http"]:
        run(door, a)


if __name__ == "__main__":
    main()
