"""The doors' series-key cache: exact hits by bytes, one series per label set with its
identity (part key, key, route), refusals not cached, bounded, shared by threads."""

from __future__ import annotations

import threading

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.model.batch import series_identity
from filodb.model.identity import SeriesKeyCache


def _body(keys: list[tuple[bytes, bytes, int]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One buffer holding every key's two ranges, and the ranges."""
    raw, a0, a1, b0, b1 = b"", [], [], [], []
    for a, b, _ in keys:
        a0.append(len(raw))
        raw += a
        a1.append(len(raw))
        raw += b" "
        b0.append(len(raw))
        raw += b
        b1.append(len(raw))
        raw += b"\n"
    arrays = [np.array(x, np.int64) for x in (a0, a1, b0, b1)]
    return np.frombuffer(raw, np.uint8), [*arrays, np.array([k for *_, k in keys], np.uint8)]


class Maker:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes, int]] = []

    def __call__(self, a: bytes, b: bytes, kind: int):  # type: ignore[no-untyped-def]
        self.calls.append((a, b, kind))
        if a.startswith(b"bad"):
            return None
        name = a.decode("latin-1").lower()  # "M" and "m" name the same series
        extra = ("typed", name) if kind == 2 else None
        return ((("__name__", name), ("f", b.decode("latin-1")), ("k", str(kind))), extra)


def _labels(cache: SeriesKeyCache, keys: list[tuple[bytes, bytes, int]]) -> list:
    buf, ranges = _body(keys)
    got = cache.resolve(buf, *ranges)
    _check_identity(got)
    return [None if s < 0 else got.series[s] for s in got.sidx.tolist()]


def _check_identity(got) -> None:  # type: ignore[no-untyped-def]
    """Every series comes with its own part key, key and route, whatever the cache did."""
    idents = [series_identity(lb) for lb in got.series]
    assert list(got.part_keys) == [w[0] for w in idents]
    assert got.keys.tolist() == [w[1] for w in idents]
    assert got.routes.tolist() == [w[2] for w in idents]
    assert len(set(got.series)) == len(got.series)  # distinct


def _want(keys: list[tuple[bytes, bytes, int]]) -> list:
    m = Maker()
    return [None if (h := m(*k)) is None else h[0] for k in keys]


KEY = st.tuples(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
                st.binary(max_size=6).map(lambda b: b.replace(b"\n", b"")),
                st.integers(0, 2))  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(KEY, max_size=40), max_size=4))
def test_every_body_resolves_as_make_says(bodies: list) -> None:
    cache = SeriesKeyCache(Maker(), max_entries=30)  # small: the bound is crossed too
    for keys in bodies:
        assert _labels(cache, keys) == _want(keys)


def test_series_are_distinct_in_first_appearance_order_and_hits_skip_make() -> None:
    make = Maker()
    cache = SeriesKeyCache(make)
    keys = [(b"m", b"x", 0), (b"a", b"x", 0), (b"M", b"x", 0), (b"m", b"x", 0), (b"m", b"x", 1)]
    buf, ranges = _body(keys)
    got = cache.resolve(buf, *ranges)
    assert got.sidx.tolist() == [0, 1, 0, 0, 2]
    assert [s[0][1] for s in got.series] == ["m", "a", "m"]
    assert len(make.calls) == 4  # the repeated key is built once
    again = cache.resolve(buf, *ranges)
    assert again.sidx.tolist() == [0, 1, 0, 0, 2] and again.series == got.series
    assert len(make.calls) == 4  # every key a hit


def test_many_keys_probe_past_each_other_and_survive_growth() -> None:
    make = Maker()
    cache = SeriesKeyCache(make)
    keys = [(f"host-{i}".encode(), b"value", i % 3) for i in range(20_000)]
    want = _want(keys)
    assert _labels(cache, keys) == want
    n = len(make.calls)
    assert _labels(cache, keys[::-1]) == want[::-1]
    assert len(make.calls) == n and len(cache) == 20_000
    # same bytes split differently between the two ranges are other keys
    assert _labels(cache, [(b"host-1v", b"alue", 1)]) == _want([(b"host-1v", b"alue", 1)])


def test_refused_keys_are_asked_again_and_extras_come_back() -> None:
    make = Maker()
    cache = SeriesKeyCache(make)
    keys = [(b"bad", b"x", 0), (b"c", b"total", 2), (b"g", b"x", 0)]
    buf, ranges = _body(keys)
    got = cache.resolve(buf, *ranges)
    assert got.sidx.tolist() == [-1, 0, 1] and got.extras == [("typed", "c")]
    got = cache.resolve(buf, *ranges)
    assert got.extras == [("typed", "c")]
    assert [c[0] for c in make.calls] == [b"bad", b"c", b"g", b"bad"]


def test_bounded_then_starts_again() -> None:
    make = Maker()
    cache = SeriesKeyCache(make, max_entries=100)
    for start in range(0, 1000, 50):
        keys = [(f"s{i}".encode(), b"v", 0) for i in range(start, start + 50)]
        assert _labels(cache, keys) == _want(keys)
        assert len(cache) <= 150


def test_part_keys_of_a_body_stay_valid_after_the_cache_grows_and_starts_again() -> None:
    cache = SeriesKeyCache(Maker(), max_entries=100)
    keys = [(f"first{i}".encode(), b"v", 0) for i in range(40)]
    buf, ranges = _body(keys)
    got = cache.resolve(buf, *ranges)
    want = [series_identity(lb)[0] for lb in got.series]
    blob, ends = got.part_keys.joined()
    assert blob == b"".join(want) and ends.tolist() == np.cumsum([len(p) for p in want]).tolist()
    for start in range(0, 3000, 300):  # the arenas grow into new arrays, then start over
        more = [(f"s{i}".encode() * 5, b"v", 0) for i in range(start, start + 300)]
        _labels(cache, more)
    assert list(got.part_keys) == want
    some = got.part_keys.take(np.array([3, 1]))
    assert list(some) == [want[3], want[1]] and some.joined()[0] == want[3] + want[1]
    assert list(got.part_keys[5:7]) == want[5:7] and got.part_keys[2] == want[2]


def test_threads_share_a_cache() -> None:
    cache = SeriesKeyCache(Maker(), max_entries=300)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            for r in range(20):
                keys = [(f"m{(k + r) % 7}".encode(), f"{i}".encode(), 0) for i in range(50)]
                assert _labels(cache, keys) == _want(keys)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_body_repeating_new_keys_builds_each_once_in_bulk() -> None:
    """A body of new series carries each key once a sample (an Influx body of 60 scrapes:
    60 times); the bulk builder is given each distinct key once, a refused key stays -1 on
    every line, and the answer is the per-key builder's."""
    from filodb.gateway import influx_keys
    from filodb.gateway.influx import _fast_labels
    from filodb.gateway.influx_fast import FIELD, VALUE

    given: list[int] = []

    def fast(buf, a0, a1, b0, b1, kind):  # type: ignore[no-untyped-def]
        given.append(len(a0))
        return influx_keys.spans(buf, a0, a1, b0, b1, kind)

    distinct = [(f"cpu,host=h{i}".encode(), b"usage", FIELD) for i in range(50)]
    distinct += [(b"mem,host=h1", b"value", VALUE), (b"bad,=x", b"value", VALUE)]
    keys = [k for _ in range(30) for k in distinct]  # time-major, as scrapes are sent
    cache = SeriesKeyCache(_fast_labels, 1000, fast)
    buf, ranges = _body(keys)
    got = cache.resolve(buf, *ranges)
    _check_identity(got)
    assert given == [len(distinct)]
    want = [None if (h := _fast_labels(*k)) is None else h[0] for k in keys]
    assert [None if s < 0 else got.series[s] for s in got.sidx.tolist()] == want
    assert want[-1] is None and want[0] is not None
    assert got.sidx.tolist()[: len(distinct)] == [*range(len(distinct) - 1), -1]
    again = cache.resolve(buf, *ranges)  # all hits but the refused key, asked again once
    assert again.sidx.tolist() == got.sidx.tolist() and given == [len(distinct), 1]
