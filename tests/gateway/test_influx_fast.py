"""The vectorised Influx pass and the per-line parser give the same answer, line for line:
the same samples in the same order, the same metric types, the same errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filodb.gateway import influx, influx_fast
from filodb.gateway.numparse import parse_ints, parse_values
from filodb.model.partkey import part_key

MEAS = st.sampled_from(["cpu", "mem", "disk.io", "é", "#x", "", "a-b", "up"])
TAG = st.one_of(
    st.tuples(st.sampled_from(["host", "dc", "le", "__name__", "h-1", "", "host"]),
              st.sampled_from(["a", "b", "c d", "", "x=y", "ü"])).map(lambda t: f"{t[0]}={t[1]}"),
    st.sampled_from(["novalue", "=v", "k="]),
)  # fmt: skip
FNAME = st.sampled_from(
    ["value", "counter", "usage", "sum", "count", "+Inf", "0.5", "1", "x y", ""]
)
FVAL = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**70), 2**70).map(lambda i: f"{i}i"),
    st.integers(0, 2**66).map(lambda i: f"{i}u"),
    st.decimals(allow_nan=False, allow_infinity=False, places=6).map(str),
    st.sampled_from(["1", "-0", "+3", "1.", ".5", "1e5", "1E+05", "1e-300", "1e400", "1.2.3", "1e",
                     "", "-", "t", "false", "1_0", "5i", "-5u", "0x10", "inf", "nan", "12345678901234567",
                     "-0i", "+i", "1.5i", '"str"']),
)  # fmt: skip
TS = st.one_of(
    st.none(),
    st.integers(-(2**64), 2**64).map(str),
    st.integers(1_600_000_000_000_000_000, 1_800_000_000_000_000_000).map(str),
    st.sampled_from(["+5", "-0", "1-2", "1_0", "x", "00000000000000000000012", "9223372036854775807",
                     "9223372036854775808", "-9223372036854775808"]),
)  # fmt: skip


@st.composite
def line(draw) -> str:  # type: ignore[no-untyped-def]
    kind = draw(st.sampled_from(["ok"] * 8 + ["blank", "comment", "spaces", "junk"]))
    if kind == "blank":
        return ""
    if kind == "comment":
        return "# a comment"
    if kind == "junk":
        return draw(st.text(alphabet="ab =,#1.-e", max_size=12))
    key = draw(MEAS) + "".join("," + t for t in draw(st.lists(TAG, max_size=3)))
    fields = ",".join(
        f"{n}={v}" for n, v in draw(st.lists(st.tuples(FNAME, FVAL), min_size=1, max_size=4))
    )
    ts = draw(TS)
    sep = " " if kind == "ok" else draw(st.sampled_from(["  ", " "]))
    text = f"{key}{sep}{fields}" + (f"{sep}{ts}" if ts is not None else "")
    if kind == "spaces":
        text = (
            draw(st.sampled_from([" ", "", "  "])) + text + draw(st.sampled_from([" ", "", "  "]))
        )
    return text


def _samples(r: influx.ParseResult) -> list[tuple]:
    b = r.batch
    return [(b.series[s], t, math.copysign(1, v) if v == 0 else v)
            for s, t, v in zip(b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), strict=True)]  # fmt: skip


def _both(body: bytes, precision: str) -> tuple[influx.ParseResult, influx.ParseResult]:
    fast = influx.parse_lines(body, precision, now_ms=1234)
    real = influx_fast.eligible
    influx_fast.eligible = lambda _b: False
    try:
        slow = influx.parse_lines(body, precision, now_ms=1234)
    finally:
        influx_fast.eligible = real
    return fast, slow


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line(), max_size=12), st.sampled_from(["ns", "us", "ms", "s", "m", "h"]))
def test_fast_pass_answers_as_the_per_line_parser(lines: list[str], precision: str) -> None:
    body = "\n".join(lines).encode()
    fast, slow = _both(body, precision)
    assert _samples(fast) == _samples(slow)
    assert fast.batch.types == slow.batch.types
    assert fast.errors == slow.errors
    assert fast.lines == slow.lines and fast.blank == slow.blank
    pks = fast.batch.pks  # from the series-key cache: those of the series, in order
    assert pks is None or pks == [part_key(s) for s in fast.batch.series]


def test_fast_pass_takes_the_common_shapes() -> None:
    body = b"cpu,host=a usage=1.5,idle=2i 1700000000000000000\nup,job=x value=1\nc counter=3u 5\n"
    fast = influx_fast.scan(body, 1_000_000, 1, 2**63 - 1)
    assert fast is not None and len(fast.slow) == 0 and len(fast.line) == 4
    fast, slow = _both(body, "ns")
    assert _samples(fast) == _samples(slow) and fast.batch.types == {"c": "counter"}


def test_lines_sharing_a_timestamp_read_it_as_their_own() -> None:
    """A line whose timestamp text is the line before's takes its value without reading it
    again: only the same text (not a prefix, not after a timestamp refused) gives it."""
    t = "1700000000000000123"
    lines = [f"m,i={i} value={i} {t}" for i in range(3)] + [
        f"m,i=9 value=1 {t[:-1]}", f"m,i=9 value=2 {t}0", f"m,i=9 value=3 {t}",
        "m,i=8 value=x 1700000000000000999", "m,i=8 value=4 1700000000000000999",
        "m,i=7 value=5 99999999999999999999", "m,i=7 value=6 99999999999999999999",
        f"m,i=6 value=7 -{t}", f"m,i=6 value=8 {t}",
    ]  # fmt: skip
    for precision in ("ns", "us", "ms"):
        fast, slow = _both("\n".join(lines).encode(), precision)
        assert _samples(fast) == _samples(slow) and fast.errors == slow.errors
        assert len(fast.batch.ts) == 8 and len(fast.errors) == 4, fast.errors


@pytest.mark.parametrize("text", ["0", "-0", "0.1", "1e22", "1e23", "123456789012345", "1234567890123456",
                                  "9007199254740993", "1.7976931348623157e308", "5e-324", "4.9e-324",
                                  ".1e1", "1.e1", "+.5", "-1.5E-3", "0.30000000000000004"])  # fmt: skip
def test_numbers_are_python_floats_or_left_to_python(text: str) -> None:
    raw = text.encode()
    buf = np.frombuffer(raw, np.uint8)
    v, ok = parse_values(buf, np.array([0]), np.array([len(raw)]), np.array([False]))
    if ok[0]:
        assert repr(float(v[0])) == repr(float(text))


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
def test_float_reprs_round_trip_exactly(xs: list[float]) -> None:
    raws = [repr(x).encode() for x in xs]
    buf = np.frombuffer(b"".join(raws), np.uint8)
    ends = np.cumsum([len(r) for r in raws])
    v, ok = parse_values(buf, ends - [len(r) for r in raws], ends, np.zeros(len(raws), bool))
    for x, got, good in zip(xs, v.tolist(), ok.tolist(), strict=True):
        if good:
            assert repr(got) == repr(x)


@given(st.lists(st.integers(-(2**64), 2**64), min_size=1, max_size=50))
def test_ints_are_exact_within_the_limit(xs: list[int]) -> None:
    raws = [str(x).encode() for x in xs]
    buf = np.frombuffer(b"".join(raws), np.uint8)
    ends = np.cumsum([len(r) for r in raws])
    limit = 2**63 - 1
    v, ok = parse_ints(buf, ends - [len(r) for r in raws], ends, limit)
    for x, got, good in zip(xs, v.tolist(), ok.tolist(), strict=True):
        assert good == (abs(x) <= limit)
        if good:
            assert got == x
