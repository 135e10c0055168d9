"""Rows of a DataFrame (as the Arrow batches Spark hands a writer) into samples."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from filodb.errors import BadInputError
from filodb.model.labels import make_labels
from filodb.spark.read import ARROW_SCHEMA, to_batches
from filodb.spark.write import in_series_order, to_sample_batch

MAP = pa.map_(pa.string(), pa.string())
TS = pa.timestamp("us", tz="UTC")


def _batch(maps: list, us: list[int], vals: list[float | None], map_type=MAP) -> pa.RecordBatch:  # type: ignore[no-untyped-def]
    return pa.RecordBatch.from_arrays(
        [pa.array(maps, map_type), pa.array(us, TS), pa.array(vals, pa.float64())],
        names=["labels", "timestamp", "value"])  # fmt: skip


def test_rows_become_series_whatever_the_key_order() -> None:
    b = _batch([[("job", "a"), ("__name__", "x")], [("__name__", "x"), ("job", "a")],
                [("__name__", "x"), ("job", "b"), ("empty", "")], [("__name__", "x"), ("job", None)]],
               [1_000_999, 2_000_000, 3_000_000, 4_000_000], [1.0, 2.0, float("nan"), 4.0])  # fmt: skip
    s = to_sample_batch(b)
    got = [(s.series[i], t, v) for i, t, v in zip(s.sidx, s.ts, s.vals, strict=True)]
    xa, xb, x = (make_labels({"__name__": "x", "job": j}) for j in ("a", "b", ""))
    assert got[:2] == [(xa, 1000, 1.0), (xa, 2000, 2.0)]  # microseconds floor to ms
    assert got[2][:2] == (xb, 3000) and np.isnan(got[2][2])
    assert got[3] == (x, 4000, 4.0)
    assert len(s.series) == 3


def test_what_the_reader_yields_writes_back_the_same_samples() -> None:
    series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(4)]
    owner = np.repeat(np.arange(4), 5)
    ts = np.tile(1_700_000_000_000 + 15_000 * np.arange(5), 4)
    vals = np.arange(20, dtype=np.float64)
    batches = list(to_batches(series, owner, ts, vals))
    assert batches[0].schema.equals(ARROW_SCHEMA)
    # the rows shuffled and split in two batches: the writer's order is by series, then time
    perm = np.random.default_rng(0).permutation(20)
    table = pa.Table.from_batches(batches).take(pa.array(perm))
    s = in_series_order(table.to_batches(max_chunksize=7))
    rows = list(zip([s.series[i] for i in s.sidx], s.ts.tolist(), s.vals.tolist(), strict=True))
    assert sorted(rows) == sorted(zip([series[i] for i in owner], ts.tolist(), vals.tolist(),
                                      strict=True))  # fmt: skip
    same = np.diff(s.sidx) == 0
    assert (np.diff(s.sidx) >= 0).all() and (np.diff(s.ts)[same] > 0).all()


@pytest.mark.parametrize(("batch", "message"), [
    (pa.RecordBatch.from_arrays([pa.array([1.0])], names=["value"]), "no column 'labels'"),
    (_batch([[("a", "b")]], [1], [None]), "column 'value' holds nulls"),
    (_batch([None], [1], [1.0]), "column 'labels' holds nulls"),
    (_batch([[]], [1], [1.0]), "empty map"),
    (_batch([[("a", 1)]], [1], [1.0], pa.map_(pa.string(), pa.int64())), "map<string,string>"),
])  # fmt: skip
def test_malformed_rows_are_bad_input(batch: pa.RecordBatch, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        to_sample_batch(batch)
