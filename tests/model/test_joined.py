"""Door batches joined: every sample kept in order, each series named once with its own part
key, route and key, and only batches of one series-key cache joined."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.gateway.influx import parse_lines
from filodb.model.batch import SampleBatch
from filodb.model.exemplars import Exemplars
from filodb.model.joined import join, joinable
from filodb.model.labels import make_labels
from filodb.model.partkey import part_key
from filodb.prom import remote_write as rw

T0 = 1_700_000_000_000


def _influx(rows: list[tuple[int, int, float]]) -> SampleBatch:
    """A door's batch of ``(host, ms, value)`` lines, as the Influx door parses them."""
    body = "".join(f"jn,host=h{h} v={v!r} {(T0 + ms) * 1_000_000}\n" for h, ms, v in rows)
    return parse_lines(body.encode(), precision="ns", now_ms=T0).batch


def _samples(b: SampleBatch) -> list[tuple[tuple, int, float]]:
    return [(tuple(b.series[i]), int(t), float(v))
            for i, t, v in zip(b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), strict=True)]  # fmt: skip


bodies = st.lists(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 10_000), st.floats(-1e9, 1e9)),
        min_size=1,
        max_size=12,
    ),  # fmt: skip
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(bodies)
def test_a_joined_batch_holds_every_sample_in_order_and_each_series_once(rows: list) -> None:
    batches = [_influx(r) for r in rows]
    got = join(batches)
    assert got is not None and joinable(got)
    assert _samples(got) == [s for b in batches for s in _samples(b)]
    names = [tuple(lb) for lb in got.series]
    assert len(set(names)) == len(names)  # a log record names a series once
    assert names == list(dict.fromkeys(s[0] for s in _samples(got)))  # in arrival order
    assert list(got.pks) == [part_key(lb) for lb in got.series]  # type: ignore[arg-type]
    by_name = {tuple(b.series[i]): (int(b.routes[i]), int(b.keys[i]), int(b.routed.ids[i]))  # type: ignore[index, union-attr]
               for b in batches for i in range(len(b.series))}  # fmt: skip
    assert [by_name[n] for n in names] == list(zip(got.routes.tolist(), got.keys.tolist(),  # type: ignore[union-attr]
                                                   got.routed.ids.tolist(), strict=True))  # type: ignore[union-attr]  # fmt: skip


def test_batches_a_cache_did_not_resolve_are_not_joined() -> None:
    door = _influx([(1, 0, 1.0)])
    plain = SampleBatch([make_labels({"__name__": "jn_v", "host": "h1"})], np.zeros(1, np.int32),
                        np.array([T0]), np.array([2.0]))  # fmt: skip
    assert joinable(door) and not joinable(plain)
    assert join([door, plain]) is None
    body = rw.encode_write_request(SampleBatch(
        plain.series, plain.sidx, plain.ts, plain.vals,
        exemplars=Exemplars(np.zeros(1), np.array([T0]), np.array([1.0]),
                            [make_labels({"trace_id": "t"})]),
    ))  # fmt: skip
    with_exemplars = rw.decode_write_request_full(body, 1 << 20)[0]
    assert with_exemplars.exemplars is not None and len(with_exemplars.exemplars)
    assert not joinable(with_exemplars) and join([door, with_exemplars]) is None
    no_exemplars = rw.decode_write_request_full(rw.encode_write_request(plain), 1 << 20)[0]
    assert joinable(no_exemplars)
    # two doors' caches (remote write's and Influx's): their ids mean different series
    assert join([door, no_exemplars]) is None
    assert join([door]) is door and join([]) is None


def test_a_joined_batch_is_written_as_its_parts_are() -> None:
    a, b = _influx([(1, 0, 1.0), (2, 0, 2.0)]), _influx([(2, 15_000, 3.0), (3, 15_000, 4.0)])
    got = join([a, b])
    assert got is not None
    shard_of = np.zeros(len(got.series), np.int64)
    (record,) = got.shard_records(shard_of, 1)[0].values()
    back = SampleBatch.from_bytes(record)
    assert _samples(back) == _samples(a) + _samples(b)
