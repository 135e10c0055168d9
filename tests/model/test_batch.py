from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filodb.errors import BadInputError
from filodb.model.batch import SampleBatch, concat_batches
from filodb.model.labels import make_labels

STALE = np.array([0x7FF0000000000002], np.uint64).view(np.float64)[0]

labelsets = st.lists(
    st.dictionaries(st.sampled_from(["__name__", "a", "b", "job"]), st.text(min_size=1, max_size=5), min_size=1),
    min_size=1, max_size=5, unique_by=lambda d: tuple(sorted(d.items())),
).map(lambda ds: [make_labels(d) for d in ds])  # fmt: skip


@given(labelsets, st.data())
def test_wire_round_trip_is_bit_exact(series, data) -> None:  # type: ignore[no-untyped-def]
    n = data.draw(st.integers(0, 50))
    sidx = np.array(
        data.draw(st.lists(st.integers(0, len(series) - 1), min_size=n, max_size=n)), np.int32
    )
    ts = np.array(
        data.draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)), np.int64
    )
    bits = data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n))
    vals = np.array(bits, np.uint64).view(np.float64)
    b = SampleBatch(series, sidx, ts, vals, {"m": "counter"})
    c = SampleBatch.from_bytes(b.to_bytes())
    assert c.series == b.series and c.types == b.types
    assert (c.sidx == b.sidx).all() and (c.ts == b.ts).all()
    assert (c.vals.view(np.uint64) == b.vals.view(np.uint64)).all()


def test_split_keeps_each_series_samples_together() -> None:
    s = [make_labels({"__name__": f"m{i}"}) for i in range(4)]
    b = SampleBatch(s, [0, 1, 2, 3, 0, 2], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, STALE])
    parts = b.split(np.array([1, 0, 1, 0]), 2)
    assert parts[1].series == [s[0], s[2]]
    assert parts[1].ts.tolist() == [1, 3, 5, 6]
    assert parts[1].sidx.tolist() == [0, 1, 0, 1]
    assert parts[1].vals.view(np.uint64)[-1] == 0x7FF0000000000002
    assert parts[0].ts.tolist() == [2, 4]


def test_concat_reinterns_series() -> None:
    a, b2 = make_labels({"__name__": "a"}), make_labels({"__name__": "b"})
    x = SampleBatch([a, b2], [0, 1], [1, 2], [1.0, 2.0])
    y = SampleBatch([b2], [0], [3], [3.0])
    z = concat_batches([x, y])
    assert z.series == [a, b2] and z.sidx.tolist() == [0, 1, 1]


@pytest.mark.parametrize("data", [b"", b"\x05\x00\x00\x00abc", b"\x01\x00\x00\x00\xc1"])
def test_malformed_records_raise_bad_input(data: bytes) -> None:
    with pytest.raises(BadInputError):
        SampleBatch.from_bytes(data)


def test_out_of_range_series_index_is_rejected() -> None:
    b = SampleBatch([make_labels({"__name__": "a"})], [0], [1], [1.0])
    raw = bytearray(b.to_bytes())
    hlen = int.from_bytes(raw[:4], "little")
    raw[4 + hlen] = 7  # sidx[0] = 7, but there is one series
    with pytest.raises(BadInputError):
        SampleBatch.from_bytes(bytes(raw))


@pytest.mark.parametrize("series", [[["__name__"]], [["__name__", 5]], [["a", "b", "c"]], [[{"x": 1}]],
                                    [["__name__", ["nested"]]]])  # fmt: skip
def test_label_sets_that_are_not_string_pairs_are_rejected(series: list) -> None:
    import msgpack

    h = msgpack.packb({"v": 1, "n": 0, "series": series, "types": {}})
    with pytest.raises(BadInputError):
        SampleBatch.from_bytes(len(h).to_bytes(4, "little") + h)


def test_decoded_label_sets_are_shared_and_equal_across_records() -> None:
    lb = make_labels({"__name__": "up", "job": "a"})
    raw = SampleBatch([lb], [0], [1], [1.0]).to_bytes()
    x, y = SampleBatch.from_bytes(raw), SampleBatch.from_bytes(raw)
    assert x.series == y.series == [lb] and x.series[0] is y.series[0]
