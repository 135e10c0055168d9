"""Graphite's new series in bulk (:mod:`filodb.gateway.graphite_keys`): the kernel gives exactly
what the per-path Python path gives (label sets, part keys, keys, routes, metric names), takes
every usual path, and leaves every unusual one (refusals, repeated tags) to Python."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filodb.gateway import graphite, graphite_keys
from filodb.model.batch import series_identity
from filodb.model.identity import SeriesKeyCache

_IDENT = st.text(st.sampled_from("abcXYZ019_:.-=/é"), min_size=0, max_size=6)
_TAG_NAMES = st.one_of(_IDENT, st.sampled_from(["name", "__name__", "__x", "_-y", "0a", "le"]))


@st.composite
def _path(draw) -> bytes:  # type: ignore[no-untyped-def]
    tags = draw(st.lists(st.tuples(_TAG_NAMES, _IDENT), max_size=5))
    key = ";".join([draw(_IDENT), *(f"{k}={v}" for k, v in tags)])
    if draw(st.booleans()):
        key += draw(st.sampled_from([";", ";;", ";a", "\0", ";a=b=c", ";name=x"]))
    return key.encode()


def _reference(key: bytes):  # type: ignore[no-untyped-def]
    try:
        return graphite._fast_labels(key, b"", 0)
    except UnicodeDecodeError:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_path(), min_size=1, max_size=8))
def test_kernel_equals_python(keys: list[bytes]) -> None:
    raw, a0, a1 = b"", [], []
    for k in keys:
        a0.append(len(raw))
        raw += k
        a1.append(len(raw))
        raw += b" 1 1\n"
    x0, x1 = np.array(a0, np.int64), np.array(a1, np.int64)
    made, extras = graphite_keys.spans(np.frombuffer(raw, np.uint8), x0, x1, x1, x1,
                                       np.zeros(len(keys), np.uint8))  # fmt: skip
    row = {r: j for j, r in enumerate(made.rows.tolist())}
    for i, k in enumerate(keys):
        want = _reference(k)
        if made.ok[i]:
            assert want is not None, k
            j = row[i]
            pk, key, route = series_identity(want[0])
            assert made.series[j] == want[0]
            assert bytes(made.arena[made.start[j] : made.end[j]]) == pk
            assert (int(made.keys[j]), int(made.routes[j])) == (key, route)
            assert extras[j] == want[1]
        elif want is not None:  # left to Python: only non-ASCII, NUL, or a tag named twice
            names = [graphite.label_name(t.partition("=")[0]) for t in k.decode().split(";")[1:]]
            assert not k.isascii() or b"\0" in k or len(names) != len(set(names)), k


def test_usual_paths_are_all_taken() -> None:
    body = b"servers.web-1.cpu 1 1\ndisk;host=h1;dc=x=y;name=n;__ws=1 2 1\n9m;0a=b 3 1\n"
    f = graphite.graphite_fast.scan(body)
    made, extras = graphite_keys.spans(np.frombuffer(body, np.uint8), f.key_a, f.key_b, f.key_b,
                                       f.key_b, np.zeros(len(f.line), np.uint8))  # fmt: skip
    assert made.ok.all()
    got = dict(zip(made.rows.tolist(), zip(made.series, extras, strict=True), strict=True))
    assert got[0] == ((("__name__", "servers_web_1_cpu"),), ("servers_web_1_cpu",))
    assert got[1] == ((("__name__", "disk"), ("dc", "x=y"), ("host", "h1")), ("disk",))
    assert got[2] == ((("_0a", "b"), ("__name__", "_9m")), ("_9m",))


_LINES = st.lists(
    st.builds(
        lambda p, tags, v, ts: f"{p}{''.join(f';{a}={b}' for a, b in tags)} {v}{ts}",
        st.sampled_from(["cpu", "a.b.c", "9x", "m:x", "web-1.load", "é.x"]),
        st.lists(
            st.tuples(
                st.sampled_from(["host", "dc", "0", "a-b", "a_b", "name", "__n"]),
                st.sampled_from(["h1", "h2", "x=y", "", "é"]),
            ),
            max_size=3,
        ),  # fmt: skip
        st.sampled_from(["1", "-2.5", "nan", "1e3"]),
        st.sampled_from(["", " 100", " 100.5", " -1"]),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_LINES)
def test_bodies_through_the_cache(lines: list[str]) -> None:
    """A body parses the same with the kernel as with the per-path Python path alone."""
    body = "\n".join(lines).encode()

    def parse(fast: bool) -> tuple:  # type: ignore[type-arg]
        old = graphite._SERIES
        graphite._SERIES = SeriesKeyCache(graphite._fast_labels, 1000,
                                          graphite_keys.spans if fast else None)  # fmt: skip
        try:
            r = graphite.parse_graphite(body, 5_000)
        finally:
            graphite._SERIES = old
        b = r.batch
        keys = None if b.keys is None else b.keys.tolist()
        routes = None if b.routes is None else b.routes.tolist()
        pks = None if b.pks is None else list(b.pks)
        return (b.series, b.sidx.tolist(), b.ts.tolist(), list(map(repr, b.vals.tolist())), b.types, keys,
                routes, pks, r.errors)  # fmt: skip

    assert parse(True) == parse(False)
