"""XOR chunks (Prometheus's Gorilla encoding): bit-exact round trips and layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.encoding.xor import decode_chunk, encode_chunk, split_chunks
from filodb.errors import BadInputError

STALE = np.array([0x7FF0000000000002], np.uint64).view(np.float64)[0]


def _roundtrip(ts: np.ndarray, vals: np.ndarray) -> None:
    t2, v2 = decode_chunk(encode_chunk(ts, vals))
    assert np.array_equal(t2, ts)
    assert np.array_equal(v2.view(np.uint64), np.asarray(vals, np.float64).view(np.uint64))


floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, STALE, 1.0])
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**40), 2**40), floats), min_size=1, max_size=130))
def test_roundtrip_any_timestamps_and_bit_patterns(samples) -> None:  # type: ignore[no-untyped-def]
    # deltas of any size and sign exercise every delta-of-delta bucket (1, 14, 17, 20, 64 bits)
    ts = np.cumsum(np.array([s[0] for s in samples], np.int64))
    vals = np.array([s[1] for s in samples], np.float64)
    _roundtrip(ts, vals)


@pytest.mark.parametrize(
    "dod",
    [
        0,
        1,
        -1,
        8192,
        -8191,
        8193,
        -8192,
        65536,
        -65535,
        65537,
        524288,
        -524287,
        524289,
        -524288,
        2**40,
        -(2**40),
    ],
)
def test_bucket_edges(dod: int) -> None:
    ts = np.array(
        [1_700_000_000_000, 1_700_000_015_000, 1_700_000_030_000 + dod, 1_700_000_045_000], np.int64
    )
    _roundtrip(ts, np.array([1.0, 2.0, 2.0, -0.0]))


def test_layout_of_a_small_chunk() -> None:
    # n=2 big-endian; t0=1 zigzag varint 0x02; 64 bits of 1.0; delta 1000 uvarint (e8 07);
    # XOR of 1.0 with itself is 0: one '0' bit, padded
    raw = encode_chunk(np.array([1, 1001]), np.array([1.0, 1.0]))
    assert raw == bytes([0, 2, 0x02]) + np.array([1.0]).byteswap().tobytes() + bytes(
        [0xE8, 0x07, 0x00]
    )


def test_steady_series_is_small() -> None:
    ts = 1_700_000_000_000 + 15_000 * np.arange(120)
    vals = np.round(np.cumsum(np.full(120, 0.5)), 1)
    assert len(encode_chunk(ts, vals)) < 120 * 3  # dod 0 is one bit; values reuse the window


def test_truncated_chunk_is_bad_input() -> None:
    raw = encode_chunk(np.arange(50) * 1000, np.random.default_rng(0).random(50))
    with pytest.raises(BadInputError):
        decode_chunk(raw[: len(raw) // 2])
    with pytest.raises(BadInputError):
        decode_chunk(b"\x01")


def test_split_chunks_at_most_120() -> None:
    ts = np.arange(250, dtype=np.int64) * 1000
    parts = split_chunks(ts, ts * 0.5)
    assert [len(decode_chunk(c)[0]) for _, _, c in parts] == [120, 120, 10]
    assert [(lo, hi) for lo, hi, _ in parts] == [
        (0, 119_000),
        (120_000, 239_000),
        (240_000, 249_000),
    ]
