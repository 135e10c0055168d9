"""Remote write: the numpy fast path decodes exactly what protobuf's parser decodes; the encoder
writes what protobuf writes."""

from __future__ import annotations

import cramjam
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.errors import BadInputError, ErrPayloadTooLarge
from filodb.model.batch import SampleBatch, series_identity
from filodb.model.labels import make_labels
from filodb.prom import proto
from filodb.prom import remote_write as rw

STALE = 0x7FF0000000000002

label_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8
)
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
    return SampleBatch(
        series, np.array(sidx, np.int32), np.array(ts, np.int64), np.array(vals, np.float64)
    )


@settings(max_examples=150, deadline=None)
@given(series_st, st.data())
def test_fast_path_equals_protobuf(series, data) -> None:  # type: ignore[no-untyped-def]
    n = data.draw(st.integers(0, 40))
    sidx = np.array(
        data.draw(st.lists(st.integers(0, len(series) - 1), min_size=n, max_size=n)), np.int32
    )
    ts = np.array(data.draw(st.lists(ts_st, min_size=n, max_size=n)), np.int64)
    vals = np.array(data.draw(st.lists(val_st, min_size=n, max_size=n)), np.float64)
    body = rw.encode_write_request(SampleBatch(series, sidx, ts, vals))
    got, want = rw.decode_write_request(body), _slow(body)
    assert got.series == want.series
    assert got.sidx.tolist() == want.sidx.tolist() and got.ts.tolist() == want.ts.tolist()
    assert got.vals.view(np.uint64).tolist() == want.vals.view(np.uint64).tolist()
    _identity_matches(got)


def _identity_matches(got: SampleBatch) -> None:
    """What the door's series table attached is each series' own identity."""
    if got.pks is None:  # the protobuf path knows none
        assert got.routes is None
        return
    want = [series_identity(lb) for lb in got.series]
    assert got.pks == [w[0] for w in want]
    assert got.keys is not None and got.keys.tolist() == [w[1] for w in want]
    assert got.routes is not None and got.routes.tolist() == [w[2] for w in want]


def test_typical_request_takes_the_fast_path_bit_exactly() -> None:
    series = [make_labels({"__name__": "up", "instance": f"h{i}"}) for i in range(50)]
    vals = np.random.default_rng(0).random(50 * 20) + 1
    vals[3] = np.array([STALE], np.uint64).view(np.float64)[0]
    b = SampleBatch(
        series,
        np.repeat(np.arange(50), 20),
        np.tile(1_700_000_000_000 + 15_000 * np.arange(20), 50),
        vals,
    )
    raw = bytes(cramjam.snappy.decompress_raw(rw.encode_write_request(b)))
    fast = rw._decode_fast(raw)
    assert fast is not None
    batch, meta = fast
    assert meta == [] and batch.series == series
    assert batch.vals.view(np.uint64).tolist() == b.vals.view(np.uint64).tolist()
    assert batch.ts.tolist() == b.ts.tolist()


def test_metadata_is_kept() -> None:
    b = SampleBatch([make_labels({"__name__": "req_total"})], [0], [1_700_000_000_000], [1.0])
    body = rw.encode_write_request(
        b, [{"metric": "req_total", "type": "counter", "help": "Requests.", "unit": ""}]
    )
    batch, meta = rw.decode_write_request_full(body)
    assert batch.types == {"req_total": "counter"} and meta[0]["help"] == "Requests."


@pytest.mark.parametrize(
    "body", [b"", b"garbage", bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a\x03abc"))]
)
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


def _ts_field(payload: bytes) -> bytes:
    return proto.field(0x0A, payload)


def _sample(v: float | None, t: int | None) -> bytes:
    body = b""
    if v is not None:
        body += b"\x09" + np.array([v], "<f8").tobytes()
    if t is not None:
        body += b"\x10" + proto.varint_bytes(t & (2**64 - 1))
    return proto.field(0x12, body)


def _check_same(raw: bytes) -> SampleBatch:
    body = bytes(cramjam.snappy.compress_raw(raw))
    got, want = rw.decode_write_request(body), _slow(body)
    assert got.series == want.series
    assert got.sidx.tolist() == want.sidx.tolist() and got.ts.tolist() == want.ts.tolist()
    assert got.vals.view(np.uint64).tolist() == want.vals.view(np.uint64).tolist()
    _identity_matches(got)
    return got


def test_a_series_in_several_timeseries_is_one_series_with_its_identity() -> None:
    """The same Label bytes twice, and the same label set spelled with an empty-valued label
    (other bytes): one series, its samples in request order, its own part key and route."""
    m = rw._encode_labels((("__name__", "m"), ("job", "x")))
    m_empty = rw._encode_labels((("__name__", "m"), ("a", ""), ("job", "x")))
    other = rw._encode_labels((("__name__", "n"),))
    raw = b"".join(_ts_field(lb + _sample(float(i + 1), 1000 * (i + 1)))
                   for i, lb in enumerate([m, other, m, m_empty]))  # fmt: skip
    got = _check_same(raw)
    assert got.series == [
        make_labels({"__name__": "m", "job": "x"}),
        make_labels({"__name__": "n"}),
    ]
    assert got.sidx.tolist() == [0, 1, 0, 0]
    # once cached, the same request decodes the same
    assert _check_same(raw).series == got.series


@settings(max_examples=100, deadline=None)
@given(series_st, st.data())
def test_encoder_is_byte_identical_to_protobuf(series, data) -> None:  # type: ignore[no-untyped-def]
    n = data.draw(st.integers(0, 30))
    sidx = np.array(
        data.draw(st.lists(st.integers(0, len(series) - 1), min_size=n, max_size=n)), np.int32
    )
    ts = np.array(data.draw(st.lists(st.one_of(ts_st, st.just(0), st.integers(-(2**63), 2**63 - 1)),
                                     min_size=n, max_size=n)), np.int64)  # fmt: skip
    vals = np.array(data.draw(st.lists(val_st, min_size=n, max_size=n)), np.float64)
    meta = data.draw(st.lists(st.fixed_dictionaries({"metric": st.sampled_from(["m", "x_total"]),
                                                     "type": st.sampled_from(sorted(rw._TYPE_CODES)),
                                                     "help": label_values, "unit": st.just("")}), max_size=2))  # fmt: skip
    b = SampleBatch(series, sidx, ts, vals)
    assert rw.encode_raw(b, meta) == rw._encode_protobuf(b, meta)
    got, got_meta = rw.decode_write_request_full(rw.encode_write_request(b, meta))
    assert got_meta == meta and len(got) == n


def test_special_values_and_timestamps_round_trip() -> None:
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.5]
    bits = np.array([s for s in specials], np.float64).view(np.uint64).tolist() + [
        STALE,
        0x7FF8000000000001,
    ]
    vals = np.array(bits, np.uint64).view(np.float64)
    ts = np.array([0, -1, 1, -(2**63), 2**63 - 1, 127, 128, 1_700_000_000_000], np.int64)
    b = SampleBatch([make_labels({"__name__": "x"})], np.zeros(8, np.int32), ts, vals)
    got = rw.decode_write_request(rw.encode_write_request(b))
    assert got.vals.view(np.uint64).tolist() == bits and got.ts.tolist() == ts.tolist()


def test_mixed_layouts_walk_and_slow_paths_match_protobuf() -> None:
    lab = rw._labels_bytes(make_labels({"__name__": "m", "i": "1"}))
    lab2 = rw._labels_bytes(make_labels({"__name__": "m", "i": "2"}))
    mixed = [_sample(1.0, 1_700_000_000_000), _sample(None, 1_700_000_015_000), _sample(2.0, None),
             _sample(None, None), _sample(3.0, -5), _sample(4.0, 1)]  # fmt: skip
    many = [mixed[k % len(mixed)] for k in range(100)]  # long and irregular: the upb hand-over
    raw = b"".join([
        _ts_field(lab + b"".join(mixed)),
        _ts_field(lab2 + b"".join(many)),
        _ts_field(lab + _sample(5.0, 2) + b"\x1a\x00"),  # an (empty) exemplar after the samples
        _ts_field(lab2),  # no samples
    ] + [_ts_field(rw._labels_bytes(make_labels({"__name__": "w", "k": str(k)})) + b"".join(mixed[k % 3 :]))
         for k in range(60)])  # many irregular series: the lock-step walk  # fmt: skip
    assert rw._decode_fast(raw) is not None  # decoded by the numpy path, not the fallback
    got = _check_same(raw)
    assert len(got) == len(mixed) + 100 + 1 + sum(len(mixed[k % 3 :]) for k in range(60))


def test_labels_after_samples_and_odd_field_order_fall_back_to_protobuf() -> None:
    lab = rw._labels_bytes(make_labels({"__name__": "m"}))
    extra = rw._labels_bytes((("z", "1"),))
    _check_same(_ts_field(lab + _sample(1.0, 5) + extra))
    ts_first = proto.field(0x12, b"\x10\x05\x09" + np.array([2.0], "<f8").tobytes())
    _check_same(_ts_field(lab + ts_first + ts_first))


def test_label_cache_does_not_hide_errors() -> None:
    bad = rw._labels_bytes((("__name__", "m"), ("a", "1"), ("a", "2")))
    raw = _ts_field(bad + _sample(1.0, 1))
    for _ in range(2):
        with pytest.raises(BadInputError, match="duplicate label"):
            rw.decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))


@pytest.mark.parametrize("raw,match", [
    (b"\x0a\x09" + b"\x0a\x07\x0a\x01\xff\x12\x02ab", "UTF-8"),
    (b"\x0a\x0c" + b"\x0a\x0a\x0a\x08__name__", "metric name"),
    (b"\x0a\x10" + b"\x0a\x0f\x0a\x08__name__\x12\x02ab", "WriteRequest"),
    (b"\x0a\x05\x12\x03\x09\x00\x00", "WriteRequest"),
    (b"\x0a\x02\x12\x05", "WriteRequest"),
    (b"\xff\xff\xff", "WriteRequest"),
])  # fmt: skip
def test_malformed_protobuf_messages(raw: bytes, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        rw.decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))


def test_live_shaped_bodies_take_the_gathered_fast_path() -> None:
    """Prometheus's own shape (one to a few samples per series, thousands of series; one series
    sent twice) is decoded by the numpy path with one gather per record stride, bit-exactly
    as protobuf decodes it."""
    parts = []
    for k in range(3000):
        lab = rw._labels_bytes(make_labels({"__name__": "live", "i": str(k % 2999)}))  # 0 twice
        parts.append(_ts_field(lab + b"".join(_sample(float(k + j), 1_700_000_000_000 + 15_000 * j)
                                              for j in range(1 + k % 3))))  # fmt: skip
    raw = b"".join(parts)
    assert rw._decode_fast(raw) is not None
    got = _check_same(raw)
    assert len(got) == sum(1 + k % 3 for k in range(3000)) and len(got.series) == 2999
