"""Fuzzing the ingestion parsers and the HTTP doors with hypothesis.

Each parser gets at least 10 000 generated inputs: valid-looking lines mixed with bad escapes,
NaN/Inf, huge numbers, timestamps in the wrong unit, invalid label names and non-UTF-8 bytes
(remote write: raw protobuf, snappy-compressed garbage, snappy *framed* data, truncated and
corrupted valid messages, hand-built messages with odd field numbers and wire types). A parser
must return a well-formed batch or raise BadInputError / ErrPayloadTooLarge, nothing else. The
HTTP doors must answer 2xx or 4xx, never 5xx.

Speed: hypothesis costs about 1 ms per example on a loaded 2-core machine even for one draw,
and ~0.2 ms per further draw, so a body is built by a small grammar from one hypothesis-drawn
``Random`` (one draw per example) instead of dozens of draws: 10 000 examples take seconds,
not minutes. A failing case is printed as the body itself (``body=b'...'``), which is what an
``@example`` keeps.
"""

from __future__ import annotations

import gzip
import random
import struct

import cramjam
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from filodb.config import Config
from filodb.errors import BadInputError, ErrPayloadTooLarge
from filodb.gateway.graphite import parse_graphite
from filodb.gateway.influx import parse_lines
from filodb.model.batch import SampleBatch
from filodb.model.labels import valid_label_name
from filodb.prom import remote_write as rw
from filodb.web import create_app

N_PARSER = 10_000
N_HTTP = 1_000  # per HTTP test (two tests)
SETTINGS = dict(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])  # fmt: skip
NOW_MS = 1_700_000_000_000

# --- a small grammar of line pieces, good and bad --------------------------------------------
NAME_TOKENS = ["cpu", "mem", "a", "x_y", "ns:metric", "ü", "中文", "1abc", "a-b", "a.b", "/path",
               "\\ ", "\\,", "\\=", "\\\\", "\\", "\\n", " ", ",", "=", '"', "'", "\t", "#", ";",
               "__name__", "le", "name", "__x", "value", "counter", "sum", "count", "+Inf", "0.5",
               "1", "1e400", "nan", "inf", "1_0", "", "\x00", "\x7f", "\u2028", "\U0001f600"]  # fmt: skip
NUMBERS = ["NaN", "nan", "-NaN", "Inf", "+Inf", "-inf", "infinity", "1e309", "-1e309", "1e-400",
           "0x10", "1_000", "", ".", "-", "+", "1.", ".5", "--1", "1e", "0", "-0", "+0.0",
           "99999999999999999999999999", "1.7976931348623157e308", "4.9e-324", "1,5", "١٢"]  # fmt: skip
INFLUX_VALUES = ["t", "T", "true", "FALSE", "f", "yes", '"str"', '""', '"un', '"a \\" b"',
                 '"x,y=z w"', "-5u", "5iu", "i", "u", "1i", "9223372036854775808i",
                 "18446744073709551616u", "-9223372036854775809i"]  # fmt: skip
TIMESTAMPS = ["1700000000", "1700000000000", "1700000000000000", "1700000000000000000", "0", "-1",
              "9" * 30, "-" + "9" * 25, "1.5", "1e9", "-0", "+5", "1_0", "abc", "0x1f",
              "9223372036854775807", "-9223372036854775808", "9223372036854775808",
              "1700000000.123", "nan", "inf", "-inf", "1e300"]  # fmt: skip
SEPS = [" ", " ", " ", " ", "  ", "\t", "", " \t "]


def _name(r: random.Random) -> str:
    if r.random() < 0.75:
        return "".join(r.choice(NAME_TOKENS) for _ in range(r.randint(1, 3)))
    return "".join(chr(r.choice([r.randint(32, 126), r.randint(0, 0x2FF), r.randint(0xE000, 0x10FFFF)]))
                   for _ in range(r.randint(0, 6)))  # fmt: skip


def _number(r: random.Random) -> str:
    k = r.random()
    if k < 0.35:
        return repr(r.choice([r.uniform(-1e3, 1e3), r.expovariate(1e-9), -r.expovariate(1e-300),
                              struct.unpack("<d", r.randbytes(8))[0]]))  # fmt: skip
    if k < 0.6:
        return str(r.randint(-(2 ** r.randint(1, 80)), 2 ** r.randint(1, 80)))
    return r.choice(NUMBERS)


def _timestamp(r: random.Random) -> str | None:
    k = r.random()
    if k < 0.25:
        return None
    if k < 0.5:
        return str(r.randint(-(2**64), 2**64) >> r.randint(0, 64))
    return r.choice(TIMESTAMPS)


def _influx_line(r: random.Random) -> str:
    key = _name(r)
    for _ in range(r.choice([0, 0, 1, 2, 3])):
        key += "," + _name(r) + r.choice(["=", "=", "=", ""]) + _name(r)
    fields = []
    for _ in range(r.choice([0, 1, 1, 1, 2, 3, 5])):
        v = _number(r)
        v = r.choice([v, v, v + "i", v + "u", r.choice(INFLUX_VALUES)])
        fields.append(_name(r) + r.choice(["=", "=", "=", "", "=="]) + v)
    if r.random() < 0.2:  # a histogram-shaped field set
        fields += [f"sum={_number(r)}", f"count={_number(r)}", f"+Inf={_number(r)}"]
        r.shuffle(fields)
    line = key + r.choice(SEPS) + ",".join(fields)
    ts = _timestamp(r)
    return line if ts is None else line + r.choice(SEPS) + ts


def _graphite_line(r: random.Random) -> str:
    path = ".".join(_name(r) for _ in range(r.choice([0, 1, 2, 3, 4])))
    for _ in range(r.choice([0, 0, 1, 2, 3])):
        path += ";" + _name(r) + r.choice(["=", "=", "=", ""]) + _name(r)
    parts = [path, _number(r)]
    ts = _timestamp(r)
    if ts is not None:
        parts.append(ts)
    if r.random() < 0.08:
        parts.append(_name(r))  # a stray fourth field
    return r.choice(SEPS).join(parts)


def _body(r: random.Random, line) -> bytes:  # type: ignore[no-untyped-def]
    """1-6 lines, LF or CRLF, some blank or comments, sometimes raw bytes (non-UTF-8 too)."""
    lines = [line(r) if r.random() < 0.9 else r.choice(["", "# comment", "   ", "#"])
             for _ in range(r.randint(1, 6))]  # fmt: skip
    out = r.choice(["\n", "\r\n"]).join(lines).encode("utf-8", "surrogatepass")
    if r.random() < 0.2:
        at = r.randint(0, len(out))
        out = out[:at] + r.randbytes(r.randint(1, 4)) + out[at:]
    return out


seeds = st.randoms(use_true_random=True)
influx_bodies = seeds.map(lambda r: _body(r, _influx_line))
graphite_bodies = seeds.map(lambda r: _body(r, _graphite_line))


def _check_batch(b: SampleBatch) -> None:
    """What every consumer of a batch relies on."""
    assert len(b.sidx) == len(b.ts) == len(b.vals)
    assert b.sidx.dtype == np.int32 and b.ts.dtype == np.int64 and b.vals.dtype == np.float64
    if len(b.sidx):
        assert 0 <= b.sidx.min() and b.sidx.max() < len(b.series)
    assert len(set(b.series)) == len(b.series)
    for lb in b.series:
        names = [k for k, _ in lb]
        assert names == sorted(set(names)), lb
        assert dict(lb).get("__name__"), lb


def _check_line_batch(b: SampleBatch) -> None:
    _check_batch(b)
    for lb in b.series:
        assert all(valid_label_name(k) for k, _ in lb), lb
        assert all(v for _, v in lb), lb


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


# --- line parsers ---------------------------------------------------------------------------
@settings(max_examples=N_PARSER, **SETTINGS)
@given(body=influx_bodies, precision=st.sampled_from(["ns", "us", "ms", "s", "m", "h"]))
@example(body=b"h sum=1,count=1,+Inf=1,1_0=2 1", precision="ns")
@example(body=b"a value=1 " + b"9" * 30, precision="h")
@example(body=b'm\\ ,t=\\ f="x\\" 1', precision="ns")
@example(body=b"h,le=1 sum=1,count=2,+Inf=3,0.5=1 9223372036854775807", precision="ms")
def test_influx_parser(body: bytes, precision: str) -> None:
    try:
        r = parse_lines(body, precision, NOW_MS)
    except (BadInputError, ErrPayloadTooLarge):
        assert _not_utf8(body)  # the only whole-body rejection
        return
    _check_line_batch(r.batch)
    assert all(1 <= n <= r.lines for n, _ in r.errors)


@settings(max_examples=N_PARSER, **SETTINGS)
@given(body=graphite_bodies)
@example(body=b"a.b;x=y nan nan")
@example(body=b"a 1 1e300\nb 2 -1")
@example(body=b";t=v 1 1")
def test_graphite_parser(body: bytes) -> None:
    try:
        r = parse_graphite(body, NOW_MS)
    except (BadInputError, ErrPayloadTooLarge):
        assert _not_utf8(body)
        return
    _check_line_batch(r.batch)
    assert all(1 <= n <= r.lines for n, _ in r.errors)


# --- remote write ---------------------------------------------------------------------------
def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if not v:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _fld(num: int, wire: int, payload: bytes | int) -> bytes:
    key = _varint((num << 3) | wire)
    if wire == 0:
        return key + _varint(payload if isinstance(payload, int) else len(payload))
    if wire == 2:
        data = payload if isinstance(payload, bytes) else _varint(payload)
        return key + _varint(len(data)) + data
    if wire in (1, 5):
        n = 8 if wire == 1 else 4
        data = (
            payload if isinstance(payload, bytes) else (payload & (2**64 - 1)).to_bytes(8, "little")
        )
        return key + data[:n].ljust(n, b"\0")
    return key  # 3/4 (groups), 6/7 (invalid wire types)


LABEL_STRS = [b"__name__", b"job", b"", b"le", b"1bad", b"a-b", b"\xff\xfe", "ü".encode(), b"m"]


def _odd_field(r: random.Random) -> bytes:
    num = r.choice([1, 2, 3, 4, 5, 15, 16, 2**29 - 1, 0])
    wire = r.choice([0, 1, 2, 2, 5, 3, 4, 6, 7])
    return _fld(
        num, wire, r.choice([r.randbytes(r.randint(0, 12)), r.randint(-(2**63), 2**64 - 1)])
    )


def _sample(r: random.Random) -> bytes:
    out = b""
    if r.random() < 0.7:
        out += _fld(1, 1, r.choice([struct.pack("<d", r.uniform(-1e6, 1e6)), r.randbytes(8),
                                    struct.pack("<d", float("nan"))]))  # fmt: skip
    if r.random() < 0.7:
        out += _fld(2, 0, r.choice([r.randint(1_600_000_000_000, 1_800_000_000_000),
                                    r.randint(-(2**63), 2**64 - 1)]))  # fmt: skip
    if r.random() < 0.15:
        out += _odd_field(r)
    return out


def _timeseries(r: random.Random) -> bytes:
    parts = []
    for _ in range(r.randint(0, 4)):
        lab = b""
        if r.random() < 0.85:
            lab += _fld(1, 2, r.choice(LABEL_STRS))
        if r.random() < 0.85:
            lab += _fld(2, 2, r.choice(LABEL_STRS + [r.randbytes(r.randint(0, 5))]))
        parts.append(_fld(1, 2, lab))
    parts += [_fld(2, 2, _sample(r)) for _ in range(r.randint(0, 6))]
    if r.random() < 0.2:
        parts.append(_odd_field(r))
    if r.random() < 0.3:
        r.shuffle(parts)
    return b"".join(parts)


def _write_request(r: random.Random) -> bytes:
    parts = [_fld(1, 2, _timeseries(r)) for _ in range(r.randint(0, 4))]
    if r.random() < 0.25:
        parts.append(_fld(3, 2, _fld(1, 0, r.randint(-5, 10)) + _fld(2, 2, r.choice(LABEL_STRS))))
    return b"".join(parts)


def _valid_then_damaged(r: random.Random) -> bytes:
    """A valid request (fast-path encoder), truncated and/or with a byte changed."""
    n, k = r.randint(1, 5), r.randint(1, 30)
    series = [(("__name__", f"m{i}"), ("job", _name(r) or "j")) for i in range(n)]
    ts = np.array([r.randint(-(2**62), 2**62) for _ in range(k)], np.int64)
    vals = np.frombuffer(r.randbytes(8 * k), np.float64)
    raw = rw.encode_raw(SampleBatch(series, np.arange(k) % n, ts, vals))
    if r.random() < 0.6:
        raw = raw[: r.randint(0, len(raw))]
    if raw and r.random() < 0.6:
        at = r.randrange(len(raw))
        raw = raw[:at] + bytes([r.randrange(256)]) + raw[at + 1 :]
    return raw


def _snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def _remote_body(r: random.Random) -> bytes:
    k = r.randrange(9)
    if k == 0:
        return r.randbytes(r.randint(0, 64))  # neither snappy nor protobuf
    if k == 1:
        return _write_request(r)  # raw protobuf, no snappy
    if k in (2, 3):
        return _snappy(_write_request(r))
    if k in (4, 5):
        return _snappy(_valid_then_damaged(r))
    if k == 6:
        return _snappy(r.randbytes(r.randint(0, 64)))  # snappy around garbage
    if k == 7:
        return bytes(cramjam.snappy.compress(r.randbytes(r.randint(0, 64))))  # framed format
    return _varint(r.randint(0, 2**35)) + r.randbytes(r.randint(0, 16))  # a lying length header


remote_bodies = seeds.map(_remote_body)


@settings(max_examples=N_PARSER, **SETTINGS)
@given(body=remote_bodies)
@example(body=b"\xff\xff\xff\xff\x0f")  # claims 4 GiB decompressed
@example(body=_snappy(_fld(1, 2, _fld(2, 2, _fld(2, 0, 2**64 - 1)))))  # ts -1 as 10 bytes
@example(body=_snappy(_fld(1, 2, _fld(2, 2, _fld(2, 0, 2**70)))))  # an 11-byte varint
def test_remote_write_decoder(body: bytes) -> None:
    try:
        b = rw.decode_write_request(body, 1 << 20)
    except (BadInputError, ErrPayloadTooLarge):
        return
    _check_batch(b)


# --- HTTP doors -----------------------------------------------------------------------------
@pytest.fixture
def client(redis_url: str):  # type: ignore[no-untyped-def]
    app = create_app(Config(redis_url=redis_url, max_body_bytes=1 << 16))
    app.extensions["filodb"].shard_map.create_dataset("prometheus", 4, 1)
    return app.test_client()


def _influx_request(r: random.Random) -> tuple[str, bytes, dict[str, str]]:
    path = r.choice(["/write?db=prometheus", "/api/v2/write?bucket=prometheus", "/write",
                     "/influx/prometheus/write", "/write?db=nosuch", "/api/v2/write",
                     "/influx/%s/write" % (_name(r).replace("/", "").replace("?", "") or "x")])  # fmt: skip
    precision = r.choice([None, None, "ns", "n", "u", "us", "µ", "ms", "s", "m", "h", "", "weeks"])
    if precision is not None:
        path += ("&" if "?" in path else "?") + f"precision={precision}"
    body = _body(r, _influx_line)
    enc = r.choice([None, None, "gzip", "gzip", "GZIP", "identity", "snappy", "br", "gzip-bad"])
    if enc is None:
        return path, body, {}
    if enc == "gzip-bad":  # says gzip, is not
        return path, body, {"Content-Encoding": "gzip"}
    if enc.lower() == "gzip":
        z = gzip.compress(body)
        return path, z[: r.randint(1, len(z))] if r.random() < 0.2 else z, {"Content-Encoding": enc}
    return path, body, {"Content-Encoding": enc}


@settings(max_examples=N_HTTP, **SETTINGS)
@given(req=seeds.map(_influx_request))
def test_influx_http_doors_never_5xx(client, req: tuple[str, bytes, dict[str, str]]) -> None:  # type: ignore[no-untyped-def]
    path, body, headers = req
    r = client.post(path, data=body, headers=headers)
    assert 200 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True))


@settings(max_examples=N_HTTP, **SETTINGS)
@given(body=remote_bodies, path=st.sampled_from(["/api/v1/write", "/promql/prometheus/api/v1/write",
                                                 "/promql/nosuch/api/v1/write"]))  # fmt: skip
def test_remote_write_http_door_never_5xx(client, body: bytes, path: str) -> None:  # type: ignore[no-untyped-def]
    r = client.post(path, data=body, headers={"Content-Encoding": "snappy",
                                              "Content-Type": "application/x-protobuf"})  # fmt: skip
    assert 200 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True))


# --- the generators reach what the tests claim to cover ----------------------------------------
def test_generators_reach_the_interesting_cases() -> None:
    r = random.Random(1)
    seen = {k: 0 for k in ("samples", "bad_lines", "non_utf8", "nan_inf", "histogram", "huge_ts",
                           "rw_ok", "rw_bad", "rw_too_large")}  # fmt: skip
    for _ in range(2000):
        try:
            p = parse_lines(_body(r, _influx_line), "ns", NOW_MS)
        except BadInputError:
            seen["non_utf8"] += 1
            continue
        seen["samples"] += len(p.batch) > 0
        seen["bad_lines"] += bool(p.errors)
        seen["nan_inf"] += bool(len(p.batch)) and not np.isfinite(p.batch.vals).all()
        seen["histogram"] += "histogram" in p.batch.types.values()
        seen["huge_ts"] += any("out of range" in m for _, m in p.errors)
    for _ in range(2000):
        try:
            seen["rw_ok"] += len(rw.decode_write_request(_remote_body(r), 1 << 20)) > 0
        except ErrPayloadTooLarge:
            seen["rw_too_large"] += 1
        except BadInputError:
            seen["rw_bad"] += 1
    assert all(v > 0 for v in seen.values()), seen
