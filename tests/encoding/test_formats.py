"""Every vector format on its own: each one forced, round-tripped bit for bit over any input,
the old formats (still in data directories written before the v2 formats) read back, the
encoder's per-chunk choice, and garbage in each format refused with BadInputError."""

from __future__ import annotations

from collections.abc import Callable

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
)
from filodb.encoding import kernels as K
from filodb.encoding.gorilla import xor_encode
from filodb.errors import BadInputError

STALE = 0x7FF0000000000002
bits64 = st.integers(0, 2**64 - 1)
# values as they come: runs of repeats, stale markers, NaN payloads, signed zeros, noise
special = st.sampled_from([STALE, 0x7FF8000000000001, 0xFFF0000000000000, 0x8000000000000000, 0,
                           0x3FF0000000000000, 0x000FFFFFFFFFFFFF])  # fmt: skip
vals_bits = st.lists(st.one_of(bits64, special), max_size=300)

DOUBLE_FORMATS: dict[str, Callable[[np.ndarray], bytes]] = {
    "chosen": lambda v: encode_doubles(v),
    "xor": lambda v: xor_encode(v.view(np.uint64)).tobytes(),
    "raw": lambda v: K._raw(v.view(np.uint64)).tobytes(),
    "v1 (formats 0/2/3)": lambda v: K.encode_values_v1(v, 6).tobytes(),
}
TS_FORMATS: dict[str, Callable[[np.ndarray], bytes]] = {
    "chosen": lambda t: K.encode_ts(t).tobytes(),
    "grid": lambda t: K._ts_v2(t, K.MODE_GRID).tobytes(),
    "dod": lambda t: K._ts_v2(t, K.MODE_DOD).tobytes(),
    "v1 (format 1)": lambda t: K.encode_ts_v1(t).tobytes(),
}


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))


@pytest.mark.parametrize("fmt", DOUBLE_FORMATS)
@settings(max_examples=200, deadline=None)
@given(bits=vals_bits)
def test_every_double_format_round_trips_every_bit_pattern(fmt: str, bits: list[int]) -> None:
    v = np.array(bits, np.uint64).view(np.float64)
    enc = DOUBLE_FORMATS[fmt](v)
    assert _same_bits(decode_doubles(enc), v)
    got, offs = decode_doubles_many([enc, enc])
    assert _same_bits(got, np.concatenate([v, v])) and offs.tolist() == [0, len(v), 2 * len(v)]


@pytest.mark.parametrize("fmt", DOUBLE_FORMATS)
@settings(max_examples=100, deadline=None)
@given(ms=st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=300), k=st.integers(0, 6),
       odd=st.lists(st.tuples(st.integers(0, 299), special), max_size=8))  # fmt: skip
def test_every_double_format_round_trips_decimals_with_oddities(fmt, ms, k, odd) -> None:  # type: ignore[no-untyped-def]
    v = np.array(ms, np.float64) / 10.0**k
    for i, b in odd:
        if i < len(v):
            v.view(np.uint64)[i] = b
    assert _same_bits(decode_doubles(DOUBLE_FORMATS[fmt](v)), v)


@pytest.mark.parametrize("fmt", TS_FORMATS)
@settings(max_examples=200, deadline=None)
@given(ts=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=200))
def test_every_timestamp_format_round_trips_any_int64(fmt: str, ts: list[int]) -> None:
    t = np.array(ts, np.int64)
    for arr in (t, np.sort(t)):
        enc = TS_FORMATS[fmt](arr)
        assert decode_timestamps(enc).tolist() == arr.tolist()
        got, _ = decode_timestamps_many([enc, enc])
        assert got.tolist() == arr.tolist() * 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=3, max_size=480), st.sets(st.integers(0, 479)))
def test_scrape_timestamps_pack_into_their_jitter(jitter: list[int], gaps: set[int]) -> None:
    """15 s scrapes with 0-4 ms of jitter: the grid costs 2.3-5.5 bits a sample (the jitter's
    differences span 9 values; block headers on top); missed scrapes cost at most what deltas
    of deltas would."""
    n = len(jitter)
    t = 1_700_000_000_000 + 15_000 * np.arange(n) + np.array(jitter)
    keep = np.array([i not in gaps for i in range(n)])
    keep[0] = True
    t = t[keep]
    enc = K.encode_ts(t).tobytes()
    assert decode_timestamps(enc).tolist() == t.tolist()
    assert len(enc) <= len(K.encode_ts_v1(t).tobytes())
    if keep.all():
        assert len(enc) <= 24 + (11 * n + 15) // 16


def test_noisy_gauges_choose_xor_and_beat_raw() -> None:
    rng = np.random.default_rng(5)
    walk = 0.5 + np.cumsum(rng.normal(0, 0.01, 480))
    third = np.full(480, 100 / 3)  # constant, but no short decimal form
    for v, limit in ((walk, 7.2), (third, 0.2)):
        enc = encode_doubles(v)
        assert enc[0] == 4 and len(enc) / len(v) <= limit
        assert _same_bits(decode_doubles(enc), v)


def test_counters_and_decimal_gauges_choose_the_decimal_format() -> None:
    rng = np.random.default_rng(6)
    counter = np.cumsum(rng.integers(0, 20, 480)).astype(float)
    counter[-1] = np.array([STALE], np.uint64).view(np.float64)[0]
    gauge = np.round(20 + 5 * np.sin(np.arange(480) / 40), 1)
    for v, limit in ((counter, 0.7), (gauge, 0.3)):
        enc = encode_doubles(v)
        assert enc[0] == 5 and len(enc) / len(v) <= limit, (enc[0], len(enc) / len(v))
        assert _same_bits(decode_doubles(enc), v)


def _valid() -> list[bytes]:
    rng = np.random.default_rng(2)
    ts = 1_700_000_000_000 + 15_000 * np.arange(200) + rng.integers(0, 5, 200)
    return [
        K.encode_ts(ts).tobytes(),
        K._ts_v2(ts, K.MODE_DOD).tobytes(),
        encode_doubles(np.cumsum(rng.integers(0, 20, 200)).astype(float)),
        xor_encode(rng.random(200).view(np.uint64)).tobytes(),
    ]


@pytest.mark.parametrize("which", range(4))
def test_truncated_v2_vectors_are_bad_input(which: int) -> None:
    b = _valid()[which]
    dec = decode_timestamps if which < 2 else decode_doubles
    for cut in range(1, len(b), max(1, len(b) // 40)):
        with pytest.raises(BadInputError):
            dec(b[:cut])


@pytest.mark.parametrize("fmt", [4, 5, 6])
@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=120))
def test_garbage_in_v2_formats_is_bad_input_or_decodes(fmt: int, body: bytes) -> None:
    buf = bytes([fmt]) + body
    for fn in (decode_doubles, decode_timestamps):
        try:
            fn(buf)
        except BadInputError:
            pass
    for many in (decode_doubles_many, decode_timestamps_many):
        try:
            many([buf, buf])
        except BadInputError:
            pass


def test_huge_claimed_counts_are_refused_before_allocating() -> None:
    for fmt in (4, 5, 6):
        buf = bytes([fmt]) + b"\xff\xff\xff\xff\x7f" + bytes(30)
        with pytest.raises(BadInputError):
            decode_doubles(buf)
        with pytest.raises(BadInputError):
            decode_timestamps_many([buf])
