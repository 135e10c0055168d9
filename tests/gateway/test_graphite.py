"""Graphite plaintext: paths to metric names, tags to labels, timestamps, bad lines reported."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.errors import BadInputError
from filodb.gateway.graphite import metric_name, parse_graphite


def _rows(body: bytes, now_ms: int = 7) -> list[tuple[dict[str, str], int, float]]:
    r = parse_graphite(body, now_ms=now_ms)
    b = r.batch
    return [
        (dict(b.series[s]), int(t), float(v)) for s, t, v in zip(b.sidx, b.ts, b.vals, strict=True)
    ]


def test_plain_paths_become_metric_names() -> None:
    rows = _rows(b"servers.web-1.cpu 0.5 1700000000\nfoo.bar 3 1700000001\n")
    assert rows == [({"__name__": "servers_web_1_cpu"}, 1_700_000_000_000, 0.5),
                    ({"__name__": "foo_bar"}, 1_700_000_001_000, 3.0)]  # fmt: skip


def test_tagged_form_becomes_labels() -> None:
    rows = _rows(b"disk.used;datacenter=dc1;rack=a1;server=web01 42 1700000000\n")
    assert rows == [({"__name__": "disk_used", "datacenter": "dc1", "rack": "a1", "server": "web01"},
                     1_700_000_000_000, 42.0)]  # fmt: skip


def test_tag_names_sanitised_last_value_wins_reserved_dropped() -> None:
    rows = _rows(b"m;a.b=1;a.b=2;name=x;__name__=evil;9x=y 1 10\n")
    assert rows == [({"__name__": "m", "a_b": "2", "_9x": "y"}, 10_000, 1.0)]


def test_timestamps_fractional_missing_and_minus_one() -> None:
    rows = _rows(b"a 1 1700000000.25\nb 2\nc 3 -1\nd 4 0\n", now_ms=123)
    assert [(r[0]["__name__"], r[1]) for r in rows] == [
        ("a", 1_700_000_000_250),
        ("b", 123),
        ("c", 123),
        ("d", 0),
    ]


def test_values() -> None:
    rows = _rows(b"a -2.5e3 1\nb inf 1\nc nan 1\nd +.5 1\n")
    assert [r[2] for r in rows[:2]] + [r[2] for r in rows[3:]] == [-2500.0, math.inf, 0.5]
    assert math.isnan(rows[2][2])


def test_same_series_shares_an_index_and_name_collisions_merge() -> None:
    r = parse_graphite(b"a.b 1 1\na.b 2 2\na_b 3 3\na.b;t=x 4 4\n")
    assert r.batch.sidx.tolist() == [0, 0, 0, 1]
    assert r.batch.series == [(("__name__", "a_b"),), (("__name__", "a_b"), ("t", "x"))]


def test_bad_lines_reported_good_ones_kept() -> None:
    body = (
        b"ok 1 1\n"  # 1
        b"onlypath\n"  # 2
        b"bad abc 1\n"  # 3
        b"bad 1 notatime\n"  # 4
        b"m;novalue 1 1\n"  # 5
        b"m;=v 1 1\n"  # 6
        b"\n"  # 7 blank
        b"# comment 1 2\n"  # 8
        b"too many fields 1 2\n"  # 9
        b"big 1 1e300\n"  # 10
        b";t=v 1 1\n"  # 11
        b"n 1_000 1\n"  # 12
        b"ok2\t2  2\r\n"
    )  # 13  fmt: skip
    r = parse_graphite(body)
    assert [n for n, _ in r.errors] == [2, 3, 4, 5, 6, 9, 10, 11, 12]
    assert sorted(dict(lb)["__name__"] for lb in r.batch.series) == ["ok", "ok2"]
    assert sorted(r.batch.ts.tolist()) == [1000, 2000]
    assert "out of range" in r.errors[6][1] and "bad value" in r.errors[1][1]


def test_not_utf8_and_empty() -> None:
    with pytest.raises(BadInputError):
        parse_graphite(b"a\xff 1 1")
    r = parse_graphite(b"")
    assert len(r.batch) == 0 and r.errors == []


def test_metric_name() -> None:
    assert metric_name("1st.path:x/y") == "_1st_path:x_y"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a.b", "c", "d.e;k=v", "x-y;k=w;j=1"]),
                          st.floats(allow_nan=False, allow_infinity=False, width=32),
                          st.integers(0, 4_000_000_000)), max_size=30))  # fmt: skip
def test_round_trip_generated(rows) -> None:  # type: ignore[no-untyped-def]
    body = "".join(f"{p} {v!r} {t}\n" for p, v, t in rows).encode()
    r = parse_graphite(body)
    assert r.errors == []
    assert r.batch.ts.tolist() == [t * 1000 for _, _, t in rows]
    assert np.array_equal(r.batch.vals, np.array([v for _, v, _ in rows], np.float64))
