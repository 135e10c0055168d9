"""Raw samples straight from the column store, one (shard, time window) at a time, as Arrow.

This is what a Spark read task runs (no Spark here, so it is tested and benchmarked alone):
scan the shard's part keys, keep the series whose first/last times overlap the window and
whose labels the selector matches (the memstore's :class:`TagIndex`, so a regex runs once per
distinct label value), read their chunks, decode them all at once, keep
``start <= t <= end``, drop stale markers (as a range selector and ``/api/v1/export`` do) and
duplicates (a chunk rewritten after a crash), and hand out Arrow record batches of
``(labels map<string,string>, timestamp timestamp[us, UTC], value double)``.

Series are read :data:`SERIES_PER_READ` at a time, so a task's memory is bounded whatever
the shard holds. Python loops run per series (part keys) and per chunk (the store's records),
never per sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from filodb.encoding import decode_doubles_many, decode_timestamps_many
from filodb.errors import BadInputError, UnknownDatasetError
from filodb.memstore.chunks import write_order_of_ids
from filodb.memstore.index import TagIndex
from filodb.memstore.shard import dedupe_samples
from filodb.model.labels import Labels, Matcher
from filodb.model.partkey import labels_of
from filodb.query.values import is_stale
from filodb.spark.options import ReadOptions
from filodb.store import ColumnStore, PartKeyRecord

SERIES_PER_READ = 5000
BATCH_ROWS = 1 << 17
LABELS_TYPE = pa.map_(pa.string(), pa.string())
ARROW_SCHEMA = pa.schema([("labels", LABELS_TYPE), ("timestamp", pa.timestamp("us", tz="UTC")),
                          ("value", pa.float64())])  # fmt: skip


def matching_series(records: Sequence[PartKeyRecord], matchers: Sequence[Matcher],
                    start_ms: int, end_ms: int) -> tuple[list[bytes], list[Labels]]:  # fmt: skip
    """Part keys and label sets of the records that overlap the window and match."""
    first = np.fromiter((r.start_ms for r in records), np.int64, len(records))
    last = np.fromiter((r.end_ms for r in records), np.int64, len(records))
    near = np.flatnonzero((first <= end_ms) & (last >= start_ms)).tolist()
    labels = [labels_of(records[i].part_key) for i in near]
    index = TagIndex()
    for sid, lb in enumerate(labels):
        index.add(sid, lb)
    ids = index.match(matchers).tolist()
    return [records[near[i]].part_key for i in ids], [labels[i] for i in ids]


def read_samples(store: ColumnStore, dataset: str, shard: int, part_keys: Sequence[bytes],
                 start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``(owner, ts, vals)``: samples ``start_ms <= t <= end_ms`` of the series (``owner``
    indexes ``part_keys``), sorted by series then time, no stale markers, no duplicates."""
    chunks = store.read_chunks(dataset, shard, part_keys, start_ms, end_ms)
    where = {pk: i for i, pk in enumerate(part_keys)}
    chunk_owner = np.fromiter((where[c.part_key] for c in chunks), np.int64, len(chunks))
    ids = np.fromiter((c.chunk_id for c in chunks), np.int64, len(chunks))
    in_order = np.lexsort((write_order_of_ids(ids), chunk_owner))  # as the memstore pages them
    chunks = [chunks[i] for i in in_order.tolist()]
    ts, offsets = decode_timestamps_many([c.vectors[0] for c in chunks])
    vals, _ = decode_doubles_many([c.vectors[1] for c in chunks])
    owner = np.repeat(chunk_owner[in_order], np.diff(offsets))
    # one rule with the memstore: sorted by time, of one timestamp the last write wins
    ts, vals, owner = dedupe_samples(ts, vals, owner)
    keep = (ts >= start_ms) & (ts <= end_ms) & ~is_stale(vals)
    return owner[keep], ts[keep], vals[keep]


def labels_array(series: Sequence[Labels]) -> pa.MapArray:
    """One map per label set."""
    sizes = np.fromiter((len(lb) for lb in series), np.int32, len(series))
    offsets = np.zeros(len(series) + 1, np.int32)
    np.cumsum(sizes, out=offsets[1:])
    keys = pa.array([k for lb in series for k, _ in lb], pa.string())
    items = pa.array([v for lb in series for _, v in lb], pa.string())
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items)


def to_batches(series: Sequence[Labels], owner: np.ndarray, ts: np.ndarray, vals: np.ndarray
               ) -> Iterator[pa.RecordBatch]:  # fmt: skip
    """Record batches of at most :data:`BATCH_ROWS` rows; ``owner`` indexes ``series``."""
    maps = labels_array(series)
    for a in range(0, len(ts), BATCH_ROWS):
        b = min(a + BATCH_ROWS, len(ts))
        cols = [maps.take(pa.array(owner[a:b])),
                pa.array(ts[a:b] * 1000, pa.timestamp("us", tz="UTC")),
                pa.array(vals[a:b], pa.float64())]  # fmt: skip
        yield pa.RecordBatch.from_arrays(cols, schema=ARROW_SCHEMA)


def read_window(opts: ReadOptions, shard: int, start_ms: int, end_ms: int
                ) -> Iterator[pa.RecordBatch]:  # fmt: skip
    """Every sample of the selector's series in one shard and window, as record batches."""
    with opts.store.open() as stores:
        records = list(stores.column.scan_part_keys(opts.dataset, shard))
        pks, labels = matching_series(records, opts.matchers, start_ms, end_ms)
        for i in range(0, len(pks), SERIES_PER_READ):
            part = pks[i : i + SERIES_PER_READ]
            owner, ts, vals = read_samples(stores.column, opts.dataset, shard, part,
                                           start_ms, end_ms)  # fmt: skip
            yield from to_batches(labels[i : i + SERIES_PER_READ], owner, ts, vals)


def plan(opts: ReadOptions) -> list[tuple[int, int, int]]:
    """``(shard, start_ms, end_ms)`` of every read task: each shard times each window."""
    with opts.store.open() as stores:
        try:
            n = stores.column.num_shards(opts.dataset)
        except UnknownDatasetError as e:
            raise BadInputError(f"option 'dataset': {e}") from None
    return [(s, a, b) for s in range(n) for a, b in opts.windows()]
