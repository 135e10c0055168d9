"""New series in bulk at both HTTP doors (:mod:`filodb.model.fastkeys`): the fast path gives
exactly what the per-key Python path gives (label sets, part keys, keys, routes, metric
types), takes every usual key, and leaves every unusual one (refusals included) to Python."""

from __future__ import annotations

import cramjam
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filodb.gateway import influx, influx_keys
from filodb.gateway.influx_fast import COUNTER, FIELD, VALUE
from filodb.model.batch import series_identity
from filodb.model.fastkeys import Made
from filodb.model.identity import SeriesKeyCache
from filodb.model.labels import intern_labels
from filodb.model.xxh64 import xxh64_many
from filodb.prom import label_spans
from filodb.prom import remote_write as rw
from filodb.prom.proto import field as pb_field


def _check_row(made: Made, j: int, want: tuple) -> None:  # type: ignore[type-arg]
    """Row ``j`` of ``made`` is the label set ``want`` with its identity, bit for bit."""
    pk, key, route = series_identity(want)
    assert made.series[j] == want
    assert bytes(made.arena[made.start[j] : made.end[j]]) == pk
    assert int(made.keys[j]) == key
    assert int(made.routes[j]) == route


def _body(keys: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ends = np.cumsum([len(k) for k in keys], dtype=np.int64)
    return np.frombuffer(b"".join(keys) + b"\0", np.uint8), ends - [len(k) for k in keys], ends


# --- remote write ---------------------------------------------------------------------------

_ASCII = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=12)
_NAMES = st.one_of(st.sampled_from(["__name__", "job", "instance", "_ws_", "_ns_", "le", "a",
                                    "aa", "a_b", "B", ""]), _ASCII)  # fmt: skip
_VALUES = st.one_of(
    st.sampled_from(["", "x", "node", "host-1:9100"]),
    _ASCII,
    st.text(max_size=6),  # unicode: Python's path
    st.sampled_from([31, 32, 255, 256, 65535, 65536]).map(lambda n: "v" * n),  # msgpack strs
)
_PAIRS = st.lists(st.tuples(_NAMES, _VALUES), max_size=20)


def _label_fields(pairs: list[tuple[str, str]], odd: int) -> bytes:
    """Label fields as senders write them; ``odd`` picks a rarer but valid encoding."""
    out = []
    for n, v in pairs:
        nb, vb = n.encode(), v.encode()
        name = pb_field(0x0A, nb) if nb or odd == 1 else b""
        value = pb_field(0x12, vb) if vb or odd == 2 else b""
        body = value + name if odd == 3 else name + value  # value first: Python's path
        out.append(pb_field(0x0A, body))
    return b"".join(out)


def _rw_reference(raw: bytes) -> tuple | None:  # type: ignore[type-arg]
    got = rw._series_of_fields(raw, b"", 0)
    return None if got is None else got[0]


def _plain(pairs: list[tuple[str, str]]) -> bool:
    """A label set the fast path must take."""
    names = [n for n, _ in pairs]
    return (
        all(n and n.isascii() and v.isascii() and "\0" not in n + v for n, v in pairs)
        and len(set(names)) == len(names)
        and any(n == "__name__" and v for n, v in pairs)
        and len(pairs) <= 128
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_PAIRS, st.sampled_from([0, 0, 0, 1, 2, 3])), min_size=1, max_size=8))
def test_remote_write_fast_path_equals_python(cases) -> None:  # type: ignore[no-untyped-def]
    keys = [_label_fields(p, odd) for p, odd in cases]
    buf, a0, a1 = _body(keys)
    made = label_spans.spans(buf, a0, a1)
    row = {r: j for j, r in enumerate(made.rows.tolist())}
    for i, ((pairs, odd), raw) in enumerate(zip(cases, keys, strict=True)):
        want = _rw_reference(raw)
        if made.ok[i]:
            assert want is not None  # never takes a key Python refuses
            _check_row(made, row[i], want)
        elif _plain(pairs) and odd in (0, 2):
            pytest.fail(f"a usual label set left to Python: {pairs!r}")


@pytest.mark.parametrize("n", [0, 1, 15, 16, 40, 129])
def test_remote_write_label_counts(n: int) -> None:
    pairs = [("__name__", "m")] + [(f"l{i:03d}", f"v{i}") for i in range(n)]
    raw = _label_fields(pairs[::-1], 0)
    made = label_spans.spans(*_body([raw]))
    assert bool(made.ok[0]) == (n + 1 <= 128)
    if made.ok[0]:
        _check_row(made, 0, _rw_reference(raw))


def test_remote_write_refusals_are_pythons() -> None:
    """Refused label sets are never taken: Python's errors stay the door's answers."""
    for pairs in ([("job", "x")], [("__name__", "")], [("__name__", "m"), ("a", "1"), ("a", "")],
                  [("__name__", "m"), ("__name__", "m")], []):  # fmt: skip
        raw = _label_fields(pairs, 0)
        made = label_spans.spans(*_body([raw]))
        assert not made.ok[0] and _rw_reference(raw) is None
    bad_utf8 = pb_field(0x0A, pb_field(0x0A, b"__name__") + pb_field(0x12, b"\xff"))
    assert not label_spans.spans(*_body([bad_utf8])).ok[0]
    truncated = _label_fields([("__name__", "m")], 0)[:-1]
    assert not label_spans.spans(*_body([truncated])).ok[0]


def _series_batch(body: bytes, fast: bool) -> tuple:  # type: ignore[type-arg]
    old = rw.SERIES
    rw.SERIES = SeriesKeyCache(rw._series_of_fields, 1000, rw._fast_series if fast else None)
    try:
        b = rw.decode_write_request(body)
    except Exception as e:  # the error is part of the answer
        return (type(e), str(e))
    finally:
        rw.SERIES = old
    return (b.series, b.sidx.tolist(), b.keys.tolist(), b.routes.tolist(), list(b.pks))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PAIRS, min_size=1, max_size=6))
def test_remote_write_bodies_through_the_cache(series) -> None:  # type: ignore[no-untyped-def]
    """Whole bodies: the batch (or the error) is the same with and without the fast path."""
    sample = pb_field(0x12, b"\x09" + b"\0" * 7 + b"\x3f" + b"\x10\x01")
    raw = b"".join(pb_field(0x0A, _label_fields(p, 0) + sample) for p in series)
    body = bytes(cramjam.snappy.compress_raw(raw))
    assert _series_batch(body, True) == _series_batch(body, False)


# --- Influx ---------------------------------------------------------------------------------

_IDENT = st.text(st.sampled_from("abcXYZ019_:.-=/é"), min_size=0, max_size=6)


@st.composite
def _influx_key(draw) -> tuple[bytes, bytes, int]:  # type: ignore[no-untyped-def]
    measurement = draw(_IDENT)
    tags = draw(st.lists(st.tuples(st.one_of(_IDENT, st.sampled_from(["__name__", "le", "0a"])),
                                   _IDENT), max_size=6))  # fmt: skip
    key = ",".join([measurement, *(f"{k}={v}" for k, v in tags)])
    if draw(st.booleans()):
        key += draw(st.sampled_from([",", ",,", ",a", "\\,", "\0"]))
    kind = draw(st.sampled_from([FIELD, VALUE, COUNTER]))
    name = draw(_IDENT) if kind == FIELD else ("value", "counter")[kind == COUNTER]
    return key.encode(), name.encode(), kind


def _influx_reference(key: bytes, name: bytes, kind: int):  # type: ignore[no-untyped-def]
    try:
        return influx._fast_labels(key, name, kind)
    except UnicodeDecodeError:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_influx_key(), min_size=1, max_size=8))
def test_influx_fast_path_equals_python(keys) -> None:  # type: ignore[no-untyped-def]
    raw, a0, a1, b0, b1 = b"", [], [], [], []
    for k, n, _ in keys:
        a0.append(len(raw))
        raw += k
        a1.append(len(raw))
        raw += b" "
        b0.append(len(raw))
        raw += n
        b1.append(len(raw))
        raw += b"\n"
    arr = [np.array(x, np.int64) for x in (a0, a1, b0, b1)]
    kinds = np.array([k for *_, k in keys], np.uint8)
    made, extras = influx_keys.spans(np.frombuffer(raw, np.uint8), *arr, kinds)
    row = {r: j for j, r in enumerate(made.rows.tolist())}
    for i, (k, n, kind) in enumerate(keys):
        want = _influx_reference(k, n, kind)
        if made.ok[i]:
            assert want is not None
            _check_row(made, row[i], want[0])
            assert extras[row[i]] == want[1]
        elif want is not None:  # taken by Python: only for bytes the kernel leaves
            assert not (k + n).isascii() or b"\\" in k or b"\0" in k + n


_LINES = st.lists(
    st.builds(
        lambda m, tags, f, v, ts: f"{m}{''.join(f',{a}={b}' for a, b in tags)} {f}={v} {ts}",
        st.sampled_from(["cpu", "mem", "9x", "a.b", "m:x"]),
        st.lists(
            st.tuples(
                st.sampled_from(["host", "dc", "0", "a-b", "a_b", "__name__"]),
                st.sampled_from(["h1", "h2", "x=y", "", "é"]),
            ),
            max_size=3,
        ),
        st.sampled_from(["value", "counter", "usage", "f.1", "value,g"]),
        st.sampled_from(["1", "2i", "3u", "-1.5"]),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_LINES)
def test_influx_bodies_through_the_cache(lines) -> None:  # type: ignore[no-untyped-def]
    body = "\n".join(lines).encode()

    def parse(fast: bool) -> tuple:  # type: ignore[type-arg]
        old = influx._SERIES
        influx._SERIES = SeriesKeyCache(influx._fast_labels, 1000,
                                        influx_keys.spans if fast else None)  # fmt: skip
        try:
            r = influx.parse_lines(body, "ms", 0)
        finally:
            influx._SERIES = old
        b = r.batch
        keys = None if b.keys is None else b.keys.tolist()
        routes = None if b.routes is None else b.routes.tolist()
        pks = None if b.pks is None else list(b.pks)
        return (b.series, b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), b.types, keys,
                routes, pks, r.errors)  # fmt: skip

    assert parse(True) == parse(False)


def test_influx_usual_keys_are_taken_with_their_types() -> None:
    body = b"cpu,host=h1,dc=x counter=1 1\nmem,host=h1 free=2,used=3 1\n9m,0a=b value=1 1\n"
    f = influx.influx_fast.scan(body, 1, 1, 2**62)
    made, extras = influx_keys.spans(np.frombuffer(body, np.uint8), f.key_a, f.key_b, f.name_a,
                                     f.name_b, f.kind)  # fmt: skip
    assert made.ok.all()
    by_row = dict(zip(made.rows.tolist(), zip(made.series, extras, strict=True), strict=True))
    assert by_row[0] == ((("__name__", "cpu"), ("dc", "x"), ("host", "h1")), (("cpu", "counter"),))
    assert by_row[2][0] == (("__name__", "mem_used"), ("host", "h1"))
    assert by_row[3] == ((("_0a", "b"), ("__name__", "_9m")), None)


def test_part_key_hashes_match_xxhash() -> None:
    """The keys the kernel hashes are xxh64 of the part keys it wrote."""
    raws = [_label_fields([("__name__", f"m{i}"), ("v", "x" * i)], 0) for i in range(0, 300, 7)]
    made = label_spans.spans(*_body(raws))
    assert made.ok.all()
    arena = np.concatenate([made.arena[a:b] for a, b in zip(made.start, made.end, strict=True)])
    np.testing.assert_array_equal(xxh64_many(arena, np.cumsum(made.end - made.start)), made.keys)


def test_label_sets_share_interned_pairs_and_repeats_are_one_series() -> None:
    """The fast path's label sets hold the pairs every label set holds
    (:func:`~filodb.model.labels.intern_labels`), and a series named twice in a body, or
    by two spellings (label order, an empty label), is one series with one identity."""
    want = intern_labels([("__name__", "up"), ("job", "api")])
    spellings = [[("__name__", "up"), ("job", "api")], [("job", "api"), ("__name__", "up")],
                 [("job", "api"), ("x", ""), ("__name__", "up")]]  # fmt: skip
    made = label_spans.spans(*_body([_label_fields(p, 0) for p in spellings * 2]))
    assert made.ok.all() and all(s == want for s in made.series)
    assert all(a is b for s in made.series for a, b in zip(s, want, strict=True))
    sample = pb_field(0x12, b"\x10\x01")
    raw = b"".join(pb_field(0x0A, _label_fields(p, 0) + sample) for p in spellings * 2)
    rw.SERIES.forget()
    batch = rw.decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))
    assert batch.series == [want] and batch.sidx.tolist() == [0] * 6
    assert list(batch.pks) == [series_identity(want)[0]]
    assert batch.keys.tolist() == [series_identity(want)[1]]
    assert batch.routes.tolist() == [series_identity(want)[2]]
