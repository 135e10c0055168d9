"""Codecs: bit-exact round trips for any float64 and any int64 timestamps, batch decoding equal
to one-by-one, realistic data below stated sizes, garbage rejected cleanly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.encoding import (
    decode_doubles,
    decode_doubles_many,
    decode_timestamps,
    decode_timestamps_many,
    encode_doubles,
    encode_timestamps,
)
from filodb.encoding.kernels import F_DEC_ULP
from filodb.errors import BadInputError

STALE = np.array([0x7FF0000000000002], np.uint64).view(np.float64)[0]
bits64 = st.integers(0, 2**64 - 1)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.view(np.uint64).tolist() == np.asarray(b, np.float64).view(np.uint64).tolist()


@settings(max_examples=400, deadline=None)
@given(st.lists(bits64, max_size=300))
def test_any_float_bits_round_trip(bits: list[int]) -> None:
    v = np.array(bits, np.uint64).view(np.float64)
    assert _same_bits(decode_doubles(encode_doubles(v)), v)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=300), st.integers(0, 4),
       st.lists(st.integers(0, 299), max_size=5), st.sampled_from([STALE, np.nan, np.inf, -0.0, 0.1]))  # fmt: skip
def test_decimal_values_with_exceptions_round_trip(ms, k, at, odd) -> None:  # type: ignore[no-untyped-def]
    v = np.array(ms, np.float64) / 10.0**k
    for i in at:
        if i < len(v):
            v[i] = odd
    assert _same_bits(decode_doubles(encode_doubles(v)), v)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(-(10**5), 10**5), min_size=2, max_size=30), min_size=1,
                max_size=200), st.integers(1, 4), st.sampled_from([1.0, -1.0, 1e-300]))  # fmt: skip
def test_float_sums_of_decimals_round_trip(groups, k, scale) -> None:  # type: ignore[no-untyped-def]
    v = np.array([sum(x / 10.0**k for x in g) for g in groups]) * scale  # a few ulps off
    assert _same_bits(decode_doubles(encode_doubles(v)), v)


def test_float_sums_cost_about_what_their_decimals_cost() -> None:
    parts = np.round(np.random.default_rng(5).normal(1, 0.3, (480, 20)), 2)
    sums = np.array([sum(row.tolist()) for row in parts])  # a plain loop's float sums
    assert np.mean(sums != np.round(sums, 2)) > 0.1  # many are not 2-decimal values
    enc = encode_doubles(sums)
    assert enc[0] == F_DEC_ULP and _same_bits(decode_doubles(enc), sums)
    assert len(enc) < 1.7 * len(encode_doubles(np.round(sums, 2)))  # XOR took 3.3x that


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=200))
def test_any_int64_timestamps_round_trip(ts: list[int]) -> None:
    t = np.array(ts, np.int64)
    assert decode_timestamps(encode_timestamps(t)).tolist() == ts
    t.sort()
    assert decode_timestamps(encode_timestamps(t)).tolist() == sorted(ts)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(bits64, max_size=50), max_size=12))
def test_many_equals_one_by_one(chunks: list[list[int]]) -> None:
    vals = [np.array(c, np.uint64).view(np.float64) for c in chunks]
    ts = [np.cumsum(np.array(c, np.uint64).astype(np.int64) % 10_000) for c in chunks]
    got, offs = decode_doubles_many([encode_doubles(v) for v in vals])
    assert (
        offs.tolist()
        == np.concatenate([[0], np.cumsum([len(v) for v in vals])]).astype(int).tolist()
    )
    assert _same_bits(got, np.concatenate(vals) if vals else np.zeros(0))
    gt, toffs = decode_timestamps_many([encode_timestamps(t) for t in ts])
    assert np.array_equal(toffs, offs)
    assert gt.tolist() == (np.concatenate(ts).tolist() if ts else [])


def _realistic(seed: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n = 480
    ts = 1_700_000_000_000 + 10_000 * np.arange(n) + rng.integers(0, 5, n)  # 10 s, ms jitter
    counter = np.cumsum(rng.integers(0, 20, n)).astype(float)
    counter[300:] -= counter[299]  # a reset
    return {
        "counter": (ts, counter),
        "gauge_1dp": (ts, np.round(20 + 5 * np.sin(np.arange(n) / 40), 1)),
        "bytes_gauge": (
            ts,
            (1 << 30) + 4096.0 * np.cumsum(rng.integers(-3, 4, n)),
        ),  # pages come and go
        "constant": (ts, np.full(n, 1.0)),
        "counter_then_stale": (ts, np.r_[counter[:-1], STALE]),
    }


@pytest.mark.parametrize("kind,limit", [("counter", 1.6), ("gauge_1dp", 1.4), ("bytes_gauge", 1.6),
                                        ("constant", 0.8), ("counter_then_stale", 1.6)])  # fmt: skip
def test_realistic_data_is_small(kind: str, limit: float) -> None:
    ts, vals = _realistic()[kind]
    bt, bv = encode_timestamps(ts), encode_doubles(vals)
    assert _same_bits(decode_doubles(bv), vals) and decode_timestamps(bt).tolist() == ts.tolist()
    assert (len(bt) + len(bv)) / len(ts) <= limit, (kind, (len(bt) + len(bv)) / len(ts))


def test_noise_falls_back_to_raw_exactly() -> None:
    v = np.random.default_rng(3).random(100)
    b = encode_doubles(v)
    assert len(b) <= 8 * 100 + 16 and _same_bits(decode_doubles(b), v)


@pytest.mark.parametrize("buf", [b"", b"\x01", b"\x09\x01\x00\x00\x00", b"\x01\xff\xff\xff\xff" + bytes(17),
                                 b"\x02\x05\x00\x00\x00\x01", b"\x00\x03\x00\x00\x00abc"])  # fmt: skip
def test_garbage_is_bad_input(buf: bytes) -> None:
    with pytest.raises(BadInputError):
        decode_doubles(buf)
    with pytest.raises(BadInputError):
        decode_timestamps(buf)
    with pytest.raises(BadInputError):
        decode_doubles_many([encode_doubles(np.ones(3)), buf])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_never_crash(buf: bytes) -> None:
    for fn in (decode_doubles, decode_timestamps):
        try:
            fn(buf)
        except BadInputError:
            pass


def test_truncated_valid_vectors_are_bad_input() -> None:
    ts, vals = _realistic()["counter"]
    for b in (encode_timestamps(ts), encode_doubles(vals)):
        for cut in (1, 5, 10, len(b) // 2, len(b) - 1):
            with pytest.raises(BadInputError):
                (decode_timestamps if b[0] == 1 else decode_doubles)(b[:cut])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=800))
def test_the_encoders_sorted_sample_is_numpys_sort_of_the_strided_values(xs: list[int]) -> None:
    """The sample a range block's and a timestamp vector's encoder choose their bounds from
    (sorted by insertion, not numba's recursive sort): a wrong one would only cost bytes, so
    the round trips above cannot see it."""
    from filodb.encoding.blocks import sorted_sample

    v = np.array(xs, np.int64)
    np.testing.assert_array_equal(sorted_sample(v), np.sort(v[:: max(1, len(v) // 63)]))
