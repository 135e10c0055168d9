"""``select`` over many series with heads of several pages and closed chunks (the gather
kernel's page-column walk, its whole-page shortcut and partly covered pages) equals the
samples filtered from what was written."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels


@settings(max_examples=40, deadline=None)
@given(
    n_series=st.integers(1, 40),
    rows=st.integers(1, 300),
    chunk=st.integers(40, 480),
    seed=st.integers(0, 2**31),
    a=st.integers(-50, 3500),
    b=st.integers(-50, 3500),
)
def test_select_equals_the_written_samples_in_range(n_series, rows, chunk, seed, a, b) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(n_series)]
    # each series its own increasing times (some series shorter: heads of other lengths)
    lens = rng.integers(0, rows + 1, n_series)
    ts = [np.cumsum(rng.integers(1, 20, k)) for k in lens.tolist()]
    vals = [rng.normal(size=k) for k in lens.tolist()]
    shard = TimeSeriesShard("ds", 0, max_chunk_samples=chunk)
    for lo in range(0, rows, 17):  # time-major batches of 17 scrapes, as scrapers send
        sid, t, v = [], [], []
        for i in range(n_series):
            sid.append(np.full(len(ts[i][lo : lo + 17]), i))
            t.append(ts[i][lo : lo + 17])
            v.append(vals[i][lo : lo + 17])
        shard.ingest(SampleBatch(series, np.concatenate(sid), np.concatenate(t),
                                 np.concatenate(v)))  # fmt: skip
    start, end = min(a, b), max(a, b)
    got = shard.select([Matcher("__name__", "=", "m")], start, end)
    want = {}
    for i in range(n_series):
        keep = (ts[i] >= start) & (ts[i] <= end)
        if keep.any():
            want[series[i]] = (ts[i][keep].tolist(), vals[i][keep].tolist())
    assert {got.labels[i]: (got.series(i)[1].tolist(), got.series(i)[2].tolist())
            for i in range(len(got))} == want  # fmt: skip
    assert got.offsets[-1] == len(got.ts) == len(got.vals)
