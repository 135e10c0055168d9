"""Downsampling tests' data: raw series written straight into a real SQLite column store
(as flushes write them), and readers of what the job wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from filodb.downsample.job import run_local, shard_tasks
from filodb.encoding import decode_doubles, decode_timestamps, encode_doubles, encode_timestamps
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.labels import Labels, make_labels
from filodb.model.partkey import labels_of, part_key
from filodb.node.flush import make_pager
from filodb.store import ChunkSet, PartKeyRecord, Stores

DAY = 86_400_000
START = 1_700_000_000_000 // DAY * DAY  # a day boundary
DAYS = 8
RES = (60_000, 300_000)


@dataclass
class Raw:
    data_dir: Path
    stores: Stores
    series: dict[Labels, tuple[np.ndarray, np.ndarray]]

    @property
    def spec(self) -> dict:
        return {"kind": "sqlite", "data_dir": str(self.data_dir), "options": {}}

    def run(self, start: int = START, end: int = START + DAYS * DAY) -> list[dict]:
        return run_local(shard_tasks(self.spec, "m", 2, start, end, RES))


def _samples(rng: np.random.Generator, counter: bool, n: int) -> tuple[np.ndarray, np.ndarray]:
    ts = START + np.cumsum(rng.integers(5_000, 25_000, n)).astype(np.int64)  # irregular, ~15 s
    n = int(np.count_nonzero(ts <= START + DAYS * DAY))  # inside the windows the tests run
    ts = ts[:n]
    if not counter:
        return ts, np.round(rng.normal(100, 30, n), 3)
    vals = np.cumsum(rng.integers(0, 50, n)).astype(np.float64)
    for cut in rng.choice(n, 12, replace=False):  # resets, some close together
        vals[cut:] -= vals[cut] - rng.integers(0, 3)
        if cut + 3 < n:
            vals[cut + 3 :] -= vals[cut + 3] - 1  # a second reset in the same period
    return ts, np.maximum(vals, 0)


def write_raw(stores: Stores, series: dict[Labels, tuple[np.ndarray, np.ndarray]]) -> None:
    col = stores.column
    col.initialize("m", 2)
    for i, (lb, (ts, vals)) in enumerate(sorted(series.items())):
        pk = part_key(lb)
        chunks = [ChunkSet(pk, int(ts[a]), int(ts[a]), int(ts[min(a + 480, len(ts)) - 1]),
                           len(ts[a : a + 480]),
                           (encode_timestamps(ts[a : a + 480]), encode_doubles(vals[a : a + 480])))
                  for a in range(0, len(ts), 480)]  # fmt: skip
        col.write_chunks("m", i % 2, chunks)
        col.write_part_keys("m", i % 2, [PartKeyRecord(pk, int(ts[0]), int(ts[-1]))])


def raw_series() -> dict[Labels, tuple[np.ndarray, np.ndarray]]:
    """3 gauges and 2 counters (with resets, two in one period) over DAYS days, irregular ~15 s."""
    rng = np.random.default_rng(7)
    n = DAYS * DAY // 15_000
    series = {}
    for i in range(3):
        series[make_labels({"__name__": "temp", "host": f"h{i}"})] = _samples(rng, False, n)
    for i in range(2):
        series[make_labels({"__name__": "req_total", "host": f"h{i}"})] = _samples(rng, True, n)
    return series


def dump(stores: Stores, dataset: str, shards: int = 2) -> dict:
    """Every part-key record and chunk (vectors as stored) of a dataset."""
    out = {}
    for s in range(shards):
        recs = sorted(stores.column.scan_part_keys(dataset, s), key=lambda r: r.part_key)
        chunks = stores.column.read_chunks(dataset, s, [r.part_key for r in recs], -(2**62), 2**62)
        out[s] = (recs, [(c.part_key, c.chunk_id, c.start_ms, c.end_ms, c.num_rows, c.vectors)
                         for c in chunks])  # fmt: skip
    return out


def read_ds(stores: Stores, dataset: str) -> dict[Labels, tuple[np.ndarray, np.ndarray]]:
    """Every ds series' samples, by label set (``__ds_col__`` included)."""
    out = {}
    for s in range(2):
        for rec in stores.column.scan_part_keys(dataset, s):
            cs = stores.column.read_chunks(dataset, s, [rec.part_key], -(2**62), 2**62)
            ts = np.concatenate([decode_timestamps(c.vectors[0]) for c in cs])
            vs = np.concatenate([decode_doubles(c.vectors[1]) for c in cs])
            out[labels_of(rec.part_key)] = (ts, vs)
    return out


def memstore(stores: Stores, dataset: str, shard: int) -> TimeSeriesShard:
    """A shard as a node serves it after a restart: part keys loaded, chunks paged."""
    ms = TimeSeriesShard(dataset, shard, pager=make_pager(stores.column, dataset, shard))
    ms.load_part_keys(stores.column.scan_part_keys(dataset, shard))
    return ms
