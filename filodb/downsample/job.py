"""The downsample job: a shard's raw chunks of a time window into its ds datasets.

:func:`downsample_shard` is the unit of work (one shard, one time range; plain, picklable
arguments): the in-process run (:func:`run_local`), the cluster's periodic run and Spark
partitions all call it. Work goes window by window (``WINDOW_MS``-aligned, a multiple of the
coarsest resolution) and, within a window, ``BATCH_SERIES`` series at a time: their chunks are
read and decoded at once, every level of every series is computed from the raw samples with
numpy (:mod:`filodb.downsample.periods`) and written as one chunk per (series, column, window)
whose chunk id is the window start, then the part keys. The output of a window is a function
of the raw data in it (and the one sample before it, to see a reset at its first sample), so
running a window again rewrites the same bytes: running twice, or again after a kill, leaves
the ds datasets as one clean run does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from filodb.downsample.kinds import is_counter, metric_name
from filodb.downsample.periods import GAUGE_COLUMNS, counter_keep, gauge_periods
from filodb.encoding import (
    decode_doubles_many,
    decode_timestamps_many,
    encode_doubles,
    encode_timestamps,
)
from filodb.errors import BadInputError
from filodb.model.labels import Labels
from filodb.model.partkey import labels_of, part_key
from filodb.model.resolution import ds_dataset_name
from filodb.store import ChunkSet, PartKeyRecord, open_store_spec

COL_LABEL = "__ds_col__"  # which downsampled column a ds series holds
COUNTER_COLUMN = "last"
# Job windows (and ds chunks) span a day, or a multiple of the coarsest resolution: a 6 h
# window left 6-sample chunks at 1 h whose headers doubled that level's bytes (measured:
# 3.4 % of raw bytes vs 1.5 % with a day); the cost is that ds data trails by up to a day.
WINDOW_MS = 24 * 3600_000
CONTEXT_MS = 3600_000  # how far before a window to look for the sample preceding it
BATCH_SERIES = 1000  # series decoded at once (a day of 15 s samples: ~90 MB)


def window_ms(resolutions: Sequence[int]) -> int:
    """The job window: ``WINDOW_MS`` rounded up to a multiple of the coarsest resolution."""
    top = max(resolutions)
    return -(-WINDOW_MS // top) * top


def windows(start_ms: int, end_ms: int, win: int) -> Iterator[tuple[int, int]]:
    """Whole windows ``(w, w + win]`` whose end lies in ``(start_ms, end_ms]``: a window is
    downsampled only once all of it is before ``end_ms``."""
    w = (start_ms // win) * win
    while w + win <= end_ms:
        if w + win > start_ms:
            yield w, w + win
        w += win


def ds_labels(labels: Labels, column: str) -> Labels:
    """The label set of one downsampled column of a series."""
    return tuple(sorted((*labels, (COL_LABEL, column))))


def _decode(
    chunks: Sequence[ChunkSet], index: Mapping[bytes, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts, offs = decode_timestamps_many([c.vectors[0] for c in chunks])
    vals, _ = decode_doubles_many([c.vectors[1] for c in chunks])
    sid = np.repeat(np.array([index[c.part_key] for c in chunks], np.int64), np.diff(offs))
    return sid, ts, vals


def _clean(
    sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, ...]:
    """Samples in ``(lo, hi]``, not NaN, sorted by (series, time), one per timestamp."""
    m = (ts > lo) & (ts <= hi) & ~np.isnan(vals)
    sid, ts, vals = sid[m], ts[m], vals[m]
    order = np.lexsort((ts, sid))
    sid, ts, vals = sid[order], ts[order], vals[order]
    dup = np.zeros(len(ts), bool)
    dup[1:] = (sid[1:] == sid[:-1]) & (ts[1:] == ts[:-1])
    return sid[~dup], ts[~dup], vals[~dup]


class _Catalog:
    """A shard's series in a task: part keys (sorted), their time spans, labels and kinds, and
    the part keys of their downsampled columns (each made once per task, not per window)."""

    def __init__(self, recs: Sequence[PartKeyRecord], types: Mapping[str, str] | None) -> None:
        recs = sorted(recs, key=lambda r: r.part_key)
        self.pks = [r.part_key for r in recs]
        self.start = np.array([r.start_ms for r in recs], np.int64)
        self.end = np.array([r.end_ms for r in recs], np.int64)
        self.labels = [labels_of(pk) for pk in self.pks]
        kinds: dict[str, bool] = {}
        names = [metric_name(lb) for lb in self.labels]
        self.counter = np.fromiter((kinds.setdefault(n, is_counter(n, types)) for n in names), bool,
                                   len(names))  # fmt: skip
        self._ds_keys: dict[tuple[int, str], bytes] = {}

    def live(self, lo: int, hi: int) -> np.ndarray:
        """Indices of the series with samples in ``(lo, hi]``."""
        return np.flatnonzero((self.end > lo) & (self.start <= hi))

    def ds_key(self, i: int, col: str) -> bytes:
        key = self._ds_keys.get((i, col))
        if key is None:
            key = self._ds_keys[(i, col)] = part_key(ds_labels(self.labels[i], col))
        return key


def downsample_batch(
    counter: np.ndarray, sid: np.ndarray, ts: np.ndarray, vals: np.ndarray,
    resolutions: Sequence[int], window_start: int,
) -> dict[int, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]:  # fmt: skip
    """Every level of a batch of series over one window: ``{resolution: [(column, sid, ts,
    vals), ...]}`` sorted by series. ``counter[s]`` is series ``s``'s kind; samples as
    :func:`_clean` leaves them, those at or before ``window_start`` only show resets."""
    is_c = counter[sid] if len(sid) else np.zeros(0, bool)
    g = ~is_c & (ts > window_start)
    gsid, gts, gvals = sid[g], ts[g], vals[g]
    csid, cts, cvals = sid[is_c], ts[is_c], vals[is_c]
    out = {}
    for res in resolutions:
        gp = gauge_periods(gsid, gts, gvals, res)
        rows = [(col, gp.sid, gp.ts, gp.columns[col]) for col in GAUGE_COLUMNS]
        keep = counter_keep(csid, cts, cvals, res) & (cts > window_start)
        rows.append((COUNTER_COLUMN, csid[keep], cts[keep], cvals[keep]))
        out[res] = rows
    return out


def _chunks(cat: _Catalog, batch: np.ndarray, col: str, sid: np.ndarray, ts: np.ndarray,
            vals: np.ndarray, chunk_id: int) -> list[ChunkSet]:  # fmt: skip
    """One chunk per series of ``sid`` (indices into ``batch``); the encoders run per chunk."""
    if len(sid) == 0:
        return []
    bounds = np.flatnonzero(np.diff(sid)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [len(sid)]]).tolist()
    out = []
    for a, b in zip(starts, ends, strict=True):
        t = ts[a:b]
        out.append(ChunkSet(cat.ds_key(int(batch[sid[a]]), col), chunk_id, int(t[0]), int(t[-1]),
                            b - a, (encode_timestamps(t), encode_doubles(vals[a:b]))))  # fmt: skip
    return out


def downsample_shard(
    store_cfg: dict[str, Any], dataset: str, shard: int, start_ms: int, end_ms: int,
    resolutions: Sequence[int] = (), types: Mapping[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Downsample one shard of ``dataset`` over the whole windows ending in
    ``(start_ms, end_ms]`` into ``<dataset>_ds_<min>`` for each of ``resolutions`` (ms).

    ``store_cfg`` is :func:`filodb.store.store_spec`'s plain description of the store;
    ``types`` maps metric family names to their metadata type (see
    :mod:`filodb.downsample.kinds`). Returns counts: ``raw_samples`` read, ``ds_samples`` and
    ``ds_chunks`` written, ``windows``, ``seconds``."""
    if not resolutions:
        raise BadInputError(f"dataset {dataset!r} has no downsample levels")
    t0 = time.perf_counter()
    stats = {"shard": shard, "raw_samples": 0, "ds_samples": 0, "ds_chunks": 0, "windows": 0}
    stores = open_store_spec(store_cfg)
    try:
        col = stores.column
        shards = col.num_shards(dataset)
        names = {res: ds_dataset_name(dataset, res) for res in resolutions}
        for name in names.values():
            col.initialize(name, shards)
        wins = list(windows(start_ms, end_ms, window_ms(resolutions)))
        if not wins:
            return {**stats, "seconds": time.perf_counter() - t0}
        lo_all, hi_all = wins[0][0] - CONTEXT_MS, wins[-1][1]
        cat = _Catalog([r for r in col.scan_part_keys(dataset, shard)
                        if r.end_ms > lo_all and r.start_ms <= hi_all], types)  # fmt: skip
        for w0, w1 in wins:
            live = cat.live(w0 - CONTEXT_MS, w1)
            for i in range(0, len(live), BATCH_SERIES):
                batch = live[i : i + BATCH_SERIES]
                pks = [cat.pks[j] for j in batch.tolist()]
                chunks = col.read_chunks(dataset, shard, pks, w0 - CONTEXT_MS + 1, w1)
                if not chunks:
                    continue
                index = {pk: j for j, pk in enumerate(pks)}
                sid, ts, vals = _clean(*_decode(chunks, index), w0 - CONTEXT_MS, w1)
                stats["raw_samples"] += int(np.count_nonzero(ts > w0))
                levels = downsample_batch(cat.counter[batch], sid, ts, vals, resolutions, w0)
                for res, rows in levels.items():
                    out = [c for column, rsid, rts, rvals in rows
                           for c in _chunks(cat, batch, column, rsid, rts, rvals, w0)]  # fmt: skip
                    if out:  # chunks, then part keys: a part key never names missing chunks
                        col.write_chunks(names[res], shard, out)
                        col.write_part_keys(names[res], shard,
                                            [PartKeyRecord(c.part_key, c.start_ms, c.end_ms) for c in out])  # fmt: skip
                    stats["ds_samples"] += sum(c.num_rows for c in out)
                    stats["ds_chunks"] += len(out)
            stats["windows"] += 1
    finally:
        stores.close()
    return {**stats, "seconds": time.perf_counter() - t0}


def shard_tasks(
    store_cfg: dict[str, Any], dataset: str, shards: int, start_ms: int, end_ms: int,
    resolutions: Sequence[int], types: Mapping[str, str] | None = None, split_ms: int = 0,
) -> list[tuple[Any, ...]]:  # fmt: skip
    """The job as task tuples (the arguments of :func:`downsample_shard`), one per shard and
    ``split_ms``-long slice of time (0: the whole range), for Spark or :func:`run_local`."""
    win = window_ms(resolutions)
    step = max(win, (split_ms // win) * win) if split_ms else 0
    slices = [(start_ms, end_ms)]
    if step:
        first = (start_ms // win) * win
        slices = [(max(start_ms, a), min(end_ms, a + step)) for a in range(first, end_ms, step)]
    types_d = dict(types or {})
    return [(store_cfg, dataset, s, a, b, tuple(resolutions), types_d)
            for s in range(shards) for a, b in slices]  # fmt: skip


def run_local(tasks: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Run task tuples one after another in this process."""
    return [downsample_shard(*t) for t in tasks]
