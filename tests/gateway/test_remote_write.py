"""Remote write: the numpy fast path decodes exactly what protobuf's parser decodes."""

from __future__ import annotations

import cramjam
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.errors import BadInputError, ErrPayloadTooLarge
from filodb.gateway import remote_write as rw
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels

STALE = 0x7FF0000000000002

label_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
series_st = st.lists(
    st.dictionaries(st.sampled_from(["job", "instance", "le", "ü"]), label_values, max_size=3),
    min_size=1, max_size=6,
).map(lambda ds: list({make_labels({"__name__": "m", **d}) for d in ds}))  # fmt: skip
ts_st = st.one_of(st.integers(1_600_000_000_000, 1_900_000_000_000), st.integers(-(2**40), 2**62))
val_st = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0), st.just(-0.0),
                   st.integers(0, 2**64 - 1).map(lambda b: np.array([b], np.uint64).view(np.float64)[0]))  # fmt: skip


def _slow(body: bytes) -> SampleBatch:
    raw = rw._decompress(body, 1 << 30)
    req = rw.WriteRequest()
    req.ParseFromString(raw)
    series, sidx, ts, vals = [], [], [], []
    index: dict = {}
    for i, t in enumerate(req.timeseries):
        lb = rw._labels_of(t, i)
        j = index.setdefault(lb, len(series))
        if j == len(series):
            series.append(lb)
        for s in t.samples:
            sidx.append(j)
            ts.append(s.timestamp)
            vals.append(s.value)
    return SampleBatch(series, np.array(sidx, np.int32), np.array(ts, np.int64), np.array(vals, np.float64))


@settings(max_examples=150, deadline=None)
@given(series_st, st.data())
def test_fast_path_equals_protobuf(series, data) -> None:  # type: ignore[no-untyped-def]
    n = data.draw(st.integers(0, 40))
    sidx = np.array(data.draw(st.lists(st.integers(0, len(series) - 1), min_size=n, max_size=n)), np.int32)
    ts = np.array(data.draw(st.lists(ts_st, min_size=n, max_size=n)), np.int64)
    vals = np.array(data.draw(st.lists(val_st, min_size=n, max_size=n)), np.float64)
    body = rw.encode_write_request(SampleBatch(series, sidx, ts, vals))
    got, want = rw.decode_write_request(body), _slow(body)
    assert got.series == want.series
    assert got.sidx.tolist() == want.sidx.tolist() and got.ts.tolist() == want.ts.tolist()
    assert got.vals.view(np.uint64).tolist() == want.vals.view(np.uint64).tolist()


def test_typical_request_takes_the_fast_path_bit_exactly() -> None:
    series = [make_labels({"__name__": "up", "instance": f"h{i}"}) for i in range(50)]
    vals = np.random.default_rng(0).random(50 * 20) + 1
    vals[3] = np.array([STALE], np.uint64).view(np.float64)[0]
    b = SampleBatch(series, np.repeat(np.arange(50), 20), np.tile(1_700_000_000_000 + 15_000 * np.arange(20), 50), vals)
    raw = bytes(cramjam.snappy.decompress_raw(rw.encode_write_request(b)))
    fast = rw._decode_fast(raw)
    assert fast is not None
    batch, meta = fast
    assert meta == [] and batch.series == series
    assert batch.vals.view(np.uint64).tolist() == b.vals.view(np.uint64).tolist()
    assert batch.ts.tolist() == b.ts.tolist()


def test_metadata_is_kept() -> None:
    b = SampleBatch([make_labels({"__name__": "req_total"})], [0], [1_700_000_000_000], [1.0])
    body = rw.encode_write_request(b, [{"metric": "req_total", "type": "counter", "help": "Requests.", "unit": ""}])
    batch, meta = rw.decode_write_request_full(body)
    assert batch.types == {"req_total": "counter"} and meta[0]["help"] == "Requests."


@pytest.mark.parametrize("body", [b"", b"garbage", bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a\x03abc"))])
def test_malformed_is_bad_input(body: bytes) -> None:
    with pytest.raises(BadInputError):
        rw.decode_write_request(body)


def test_missing_metric_name_and_duplicate_labels_are_rejected() -> None:
    b = SampleBatch([(("job", "x"),)], [0], [1_700_000_000_000], [1.0])
    with pytest.raises(BadInputError, match="metric name"):
        rw.decode_write_request(rw.encode_write_request(b))
    req = rw.WriteRequest()
    t = req.timeseries.add()
    t.labels.add(name="__name__", value="a")
    t.labels.add(name="a", value="1")
    t.labels.add(name="a", value="2")
    with pytest.raises(BadInputError, match="duplicate label"):
        rw.decode_write_request(bytes(cramjam.snappy.compress_raw(req.SerializeToString())))


def test_decompression_bomb_is_refused() -> None:
    body = bytes(cramjam.snappy.compress_raw(b"\x00" * (2 << 20)))
    with pytest.raises(ErrPayloadTooLarge):
        rw.decode_write_request(body, max_decompressed=1 << 20)
