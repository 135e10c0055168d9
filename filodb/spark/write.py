"""DataFrame rows into FiloDB through remote write, acknowledged.

A Spark write task hands :func:`write_batches` the Arrow record batches of its partition
(``labels map<string,string>, timestamp, value``). Each batch becomes a :class:`SampleBatch`
with numpy (the label maps are grouped into series by Arrow compute, so Python runs once per
distinct series, never per row) and goes out as remote-write requests of at most
``batch_samples`` samples to ``<url>/promql/<dataset>/api/v1/write``. A request that is not
answered 2xx raises :class:`~filodb.tools.client.SendError`, which fails the task and so the
Spark job: a write that returned was acknowledged by the web tier, i.e. is in the ingestion
log.

FiloDB, like Prometheus, drops a sample older than its series' newest. A task sorts its rows by
series and time before sending, so a series held by one task arrives in order; a series
spread over tasks that run at once may not. Give each series to one task:
``df.repartition(n, F.to_json("labels"))`` (Spark cannot hash a map column itself).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import requests

from filodb.errors import BadInputError
from filodb.model.batch import SampleBatch, concat_batches
from filodb.model.labels import Labels, make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.spark.options import WriteOptions
from filodb.tools.client import RW_HEADERS, auth_headers, post, write_url

# Bytes that never occur in UTF-8 text: they separate a name from its value, and pairs.
_NAME_END, _PAIR_END = b"\xff", b"\xfe"


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    try:
        col = batch.column(name)
    except KeyError:
        raise BadInputError(f"the DataFrame has no column {name!r} "
                            "(expected labels map<string,string>, timestamp, value)") from None  # fmt: skip
    if col.null_count:
        raise BadInputError(f"column {name!r} holds nulls")
    return col


def _series_keys(labels: pa.MapArray) -> pa.Array:
    """One binary key per row: its map's entries, ``name 0xff value 0xfe`` each, in order."""
    if labels.offset:  # keys and items below are the whole children: re-base a slice
        labels = pa.concat_arrays([labels])
    names = pc.cast(labels.keys, pa.binary())
    values = pc.cast(pc.fill_null(labels.items, ""), pa.binary())
    pairs = pc.binary_join_element_wise(names, values, pa.scalar(_NAME_END, pa.binary()))
    pairs = pc.binary_join_element_wise(pairs, pa.scalar(b"", pa.binary()),
                                        pa.scalar(_PAIR_END, pa.binary()))  # fmt: skip
    rows = pa.ListArray.from_arrays(labels.offsets, pairs)
    return pc.binary_join(rows, pa.scalar(b"", pa.binary()))


def _pair(p: bytes) -> tuple[str, str]:
    name, value = p.split(_NAME_END, 1)
    return name.decode(), value.decode()


def _labels_of_key(key: bytes) -> Labels:
    return make_labels(_pair(p) for p in key.split(_PAIR_END)[:-1])


def to_sample_batch(batch: pa.RecordBatch) -> SampleBatch:
    """The rows of one record batch as samples; a label set spelled in several key orders is
    one series."""
    labels = _column(batch, "labels")
    lt = labels.type
    if not (pa.types.is_map(lt) and pa.types.is_string(lt.key_type)
            and pa.types.is_string(lt.item_type)):  # fmt: skip
        raise BadInputError(f"column 'labels' must be map<string,string>, not {labels.type}")
    stamps = _column(batch, "timestamp")
    if not pa.types.is_timestamp(stamps.type):
        raise BadInputError(f"column 'timestamp' must be a timestamp, not {stamps.type}")
    us = pc.cast(pc.cast(stamps, pa.timestamp("us")), pa.int64()).to_numpy()
    vals = pc.cast(_column(batch, "value"), pa.float64()).to_numpy(zero_copy_only=False)
    encoded = pc.dictionary_encode(_series_keys(labels))
    index: dict[Labels, int] = {}
    remap = np.fromiter((index.setdefault(_labels_of_key(k), len(index))
                         for k in encoded.dictionary.to_pylist()), np.int32)  # fmt: skip
    for lb in index:
        if not lb:
            raise BadInputError("a row of column 'labels' is an empty map")
    sidx = remap[encoded.indices.to_numpy(zero_copy_only=False)]
    return SampleBatch(list(index), sidx, np.floor_divide(us, 1000), vals)


def in_series_order(batches: Iterable[pa.RecordBatch]) -> SampleBatch:
    """Every row of a task, sorted by series, then time (a sample older than its series'
    newest is dropped by the ingestion, so each series goes out in time order)."""
    b = concat_batches([to_sample_batch(rb) for rb in batches if rb.num_rows])
    order = np.lexsort((b.ts, b.sidx))
    return SampleBatch(b.series, b.sidx[order], b.ts[order], b.vals[order])


def write_batches(opts: WriteOptions, batches: Iterable[pa.RecordBatch]) -> int:
    """Send every row of a task; returns the number of samples the server acknowledged."""
    url = write_url(opts.url, opts.dataset, "remote-write")
    headers = {**RW_HEADERS, **auth_headers(opts.token or None), "User-Agent": "filodb-spark"}
    b = in_series_order(batches)
    with requests.Session() as session:
        for a in range(0, len(b), opts.batch_samples):
            z = a + opts.batch_samples
            part = SampleBatch(b.series, b.sidx[a:z], b.ts[a:z], b.vals[a:z])
            post(session, url, encode_write_request(part), headers, opts.timeout_s)
    return len(b)
