"""The Graphite fast pass and the per-line parser give the same answer, line for line: the
same samples, the same metric types, the same errors; the cache hands the batch its part keys."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filodb.gateway import graphite, graphite_fast
from filodb.model.partkey import part_key

PATH = st.sampled_from(["a.b", "c", "servers.web-1.cpu", "é.x", "1st", "#x", "a;k=v", "a;k=v;j=w",
                        "a;k=v;k=w", "a;name=n;__x=y", "a;novalue", "a;=v", "a;k=", ";k=v", "a.b;t=x"])  # fmt: skip
VALUE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["1", "-0", "+3", "1.", ".5", "1e5", "1E+05", "1e-300", "1e400", "1.2.3", "1e",
                     "-", "nan", "inf", "-Infinity", "1_0", "0x10", "12345678901234567", ".", "abc"]),
)  # fmt: skip
STAMP = st.one_of(
    st.none(),
    st.integers(-(2**64), 2**64).map(str),
    st.integers(1_600_000_000, 1_800_000_000).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["-1", "-1.0", "0", "1700000000.25", "1e300", "9.3e15", "9.2e15", "nan", "1_0",
                     "x", "+5", "1.5e3", "9223372036854775.807", "-9223372036854775.808"]),
)  # fmt: skip


@st.composite
def line(draw) -> str:  # type: ignore[no-untyped-def]
    kind = draw(st.sampled_from(["ok"] * 8 + ["blank", "comment", "spaces", "junk"]))
    if kind == "blank":
        return draw(st.sampled_from(["", " ", "\t"]))
    if kind == "comment":
        return draw(st.sampled_from(["# a comment", " # x 1 2"]))
    if kind == "junk":
        return draw(st.text(alphabet="ab .;=#1-e\t\r\xa0", max_size=12))
    ts = draw(STAMP)
    parts = [draw(PATH), draw(VALUE)] + ([ts] if ts is not None else [])
    sep = " " if kind == "ok" else draw(st.sampled_from(["  ", "\t", " "]))
    text = sep.join(parts)
    if kind == "spaces":
        text = (
            draw(st.sampled_from([" ", "", "\t"])) + text + draw(st.sampled_from([" ", "", "\r"]))
        )
    return text


def _reference(body: bytes) -> graphite_fast.FastLines:
    """No fast rows: every line to the per-line parser."""
    none = np.zeros(0, np.int64)
    return graphite_fast.FastLines(none, none, none, np.zeros(0), np.zeros(0),
                                   np.arange(body.count(b"\n") + 1))  # fmt: skip


def _samples(r: graphite.ParseResult) -> list[tuple]:
    b = r.batch
    return [(b.series[s], t, "nan" if math.isnan(v) else math.copysign(1, v) if v == 0 else v)
            for s, t, v in zip(b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), strict=True)]  # fmt: skip


def _both(body: bytes) -> tuple[graphite.ParseResult, graphite.ParseResult]:
    fast = graphite.parse_graphite(body, now_ms=1234)
    real = graphite_fast.scan
    graphite_fast.scan = _reference
    try:
        slow = graphite.parse_graphite(body, now_ms=1234)
    finally:
        graphite_fast.scan = real
    return fast, slow


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line(), max_size=12))
def test_fast_pass_answers_as_the_per_line_parser(lines: list[str]) -> None:
    body = "\n".join(lines).encode()
    fast, slow = _both(body)
    assert _samples(fast) == _samples(slow)
    assert fast.batch.types == slow.batch.types
    assert fast.errors == slow.errors
    assert fast.lines == slow.lines and fast.blank == slow.blank
    assert sorted(fast.batch.series) == sorted(slow.batch.series)  # each with a sample
    pks = fast.batch.pks
    assert pks is None or list(pks) == [part_key(s) for s in fast.batch.series]


def test_fast_pass_takes_the_common_shapes_and_the_cache_names_them() -> None:
    body = b"a.b;dc=eu 1.5 1700000000\nc -2 -1\nd 3\nd 0.30000000000000004 1700000000.5\n"
    fast = graphite_fast.scan(body)
    assert fast.line.tolist() == [0, 1, 2, 3] and len(fast.slow) == 0
    r = graphite.parse_graphite(body, now_ms=7)
    assert r.batch.ts.tolist() == [1_700_000_000_000, 7, 7, 1_700_000_000_500]
    assert r.batch.vals.tolist() == [1.5, -2.0, 3.0, 0.30000000000000004]
    assert r.batch.pks is not None and r.batch.types == dict.fromkeys(["a_b", "c", "d"], "gauge")
    again = graphite.parse_graphite(body, now_ms=7)  # known series: from the cache, same ids
    assert again.batch.series == r.batch.series and list(again.batch.pks) == list(r.batch.pks)
