"""Influx line protocol: syntax, naming, precisions, and bad lines that spare good ones."""

from __future__ import annotations

import gzip

import pytest

from filodb.errors import BadInputError, ErrPayloadTooLarge
from filodb.gateway.influx import gunzip_if_needed, parse_lines


def _samples(body: bytes, precision: str = "ns", now_ms: int = 7) -> dict:  # type: ignore[type-arg]
    r = parse_lines(body, precision, now_ms)
    b = r.batch
    return {(dict(b.series[s])["__name__"], tuple(kv for kv in b.series[s] if kv[0] != "__name__"), int(t)): float(v)
            for s, t, v in zip(b.sidx, b.ts, b.vals, strict=True)}  # fmt: skip


def test_naming_value_counter_and_fields() -> None:
    got = _samples(
        b"mem value=4 1000000000\nreq counter=10u 1000000000\ncpu usage=0.5,idle=3i 1000000000\n"
    )
    assert got == {("mem", (), 1000): 4.0, ("req", (), 1000): 10.0,
                   ("cpu_usage", (), 1000): 0.5, ("cpu_idle", (), 1000): 3.0}  # fmt: skip
    assert parse_lines(b"req counter=1 1").batch.types == {"req": "counter"}


def test_escapes_quotes_booleans_and_strings() -> None:
    body = b'my\\ cpu,host=a\\ b,dc=x\\,y ok=t,bad=FALSE,msg="hi, there=x \\"q\\"" 5000000000\n'
    got = _samples(body)
    assert got == {("my_cpu_ok", (("dc", "x,y"), ("host", "a b")), 5000): 1.0,
                   ("my_cpu_bad", (("dc", "x,y"), ("host", "a b")), 5000): 0.0}  # fmt: skip


@pytest.mark.parametrize("precision,ts,ms", [("ns", 1_500_000_000, 1500), ("us", 1_500_000, 1500),
                                             ("u", 1_500_000, 1500), ("ms", 1500, 1500), ("s", 2, 2000),
                                             ("m", 1, 60_000), ("h", 1, 3_600_000)])  # fmt: skip
def test_precisions(precision: str, ts: int, ms: int) -> None:
    assert list(_samples(f"a value=1 {ts}".encode(), precision)) == [("a", (), ms)]


def test_missing_timestamp_uses_now_and_comments_blank_crlf() -> None:
    got = _samples(b"# comment\r\n\r\na value=1\r\n", now_ms=42)
    assert got == {("a", (), 42): 1.0}


def test_bad_lines_are_reported_and_good_ones_kept() -> None:
    r = parse_lines(
        b"ok value=1 1\nno_fields\nbad value=abc 1\nx,t value=1 1\nok2 value=2 2\ny value=1 notanumber\n"
    )
    assert sorted(dict(lb)["__name__"] for lb in r.batch.series) == ["ok", "ok2"]
    assert [n for n, _ in r.errors] == [2, 3, 4, 6]


def test_invalid_input() -> None:
    with pytest.raises(BadInputError):
        parse_lines(b"a value=1", "weeks")
    with pytest.raises(BadInputError):
        parse_lines(b"\xff\xfe value=1")
    assert gunzip_if_needed(gzip.compress(b"a value=1"), "gzip") == b"a value=1"
    with pytest.raises(ErrPayloadTooLarge):
        gunzip_if_needed(gzip.compress(b"x" * 5000), "gzip", limit=1000)
    with pytest.raises(BadInputError):
        gunzip_if_needed(b"not gzip", "gzip")
    with pytest.raises(BadInputError):
        gunzip_if_needed(b"x", "br")


def test_quotes_in_key_are_literal_and_strings_may_hold_anything() -> None:
    got = _samples(b'm,t=a"b value=1 1000000\nm2 s="a b,c=d\\\\",x=2i 2000000\n', "ns")
    assert got == {("m", (("t", 'a"b'),), 1): 1.0, ("m2_x", (), 2): 2.0}


def test_escaped_field_keys_and_equals_in_tag_values() -> None:
    got = _samples(b"m,k=a\\=b f\\ 1=1,f\\,2=2,f\\=3=3 5000000\n")
    assert got == {("m_f_1", (("k", "a=b"),), 5): 1.0, ("m_f_2", (("k", "a=b"),), 5): 2.0,
                   ("m_f_3", (("k", "a=b"),), 5): 3.0}  # fmt: skip


def test_number_forms_and_rejections() -> None:
    r = parse_lines(b"a value=1e3 1\nb value=-.5 1\nc value=-3i 1\nd value=18446744073709551615u 1\n"
                    b"e value=inf 1\nf value=1_0 1\ng value=-1u 1\nh value=3x 1\ni value=true 1\nj value=T 1\n"
                    b"k value=1 1_0\nl value=1 +5\n", "ns")  # fmt: skip
    assert [n for n, _ in r.errors] == [5, 6, 7, 8, 11]
    got = {
        dict(r.batch.series[s])["__name__"]: float(v)
        for s, v in zip(r.batch.sidx, r.batch.vals, strict=True)
    }
    assert got == {
        "a": 1000.0,
        "b": -0.5,
        "c": -3.0,
        "d": 18446744073709551615.0,
        "i": 1.0,
        "j": 1.0,
        "l": 1.0,
    }


def test_negative_and_floor_precision_and_range() -> None:
    assert list(_samples(b"a value=1 -1500001", "ns")) == [("a", (), -2)]
    r = parse_lines(b"a value=1 99999999999999999999\nb value=1 9999999999999999 \n", "h")
    assert [n for n, _ in r.errors] == [1, 2]


def test_single_field_naming_ignores_string_fields_and_sanitises() -> None:
    got = _samples(b'disk-io,host.name=a value=1,msg="x" 1000000\n9lives,x-y=1 counter=2 1000000\n')
    assert got == {("disk_io", (("host_name", "a"),), 1): 1.0, ("_9lives", (("x_y", "1"),), 1): 2.0}
    assert parse_lines(b"9lives counter=2 1").batch.types == {"_9lives": "counter"}


def test_duplicate_tags_unterminated_string_and_series_reuse() -> None:
    r = parse_lines(b'a,t=1,t=2 value=1 1\nb s="open 1\nc value=1 1\nc value=2 2\n')
    assert [n for n, _ in r.errors] == [1, 2]
    assert r.batch.sidx.tolist() == [0, 0] and len(r.batch.series) == 1
