"""Exemplars from remote write to a shard's ring and back: the wire (remote write, log record,
split per shard), the ring's Prometheus rules (newest ``capacity`` kept, an exemplar not newer
than its series' newest dropped) and the leaf op."""

from __future__ import annotations

import cramjam
import msgpack
import numpy as np

from filodb.memstore.exemplars import ExemplarRing
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.exemplars import Exemplars
from filodb.model.labels import Matcher, make_labels
from filodb.prom.remote_write import _decode_protobuf, decode_write_request, encode_write_request
from filodb.tasks.leaf import run_op
from filodb.tasks.wire import unflat_labels, unpack

SERIES = [make_labels({"__name__": "req_total", "i": str(i)}) for i in range(5)]
TRACE = [(("trace_id", "a"),), (("trace_id", "b"),), (("span_id", "x"), ("trace_id", "c"))]


def _batch(with_exemplars: bool = True) -> SampleBatch:
    ex = Exemplars(np.array([1, 3, 3]), np.array([1000, 2000, 3000]),
                   np.array([0.5, 1.5, 2.5]), list(TRACE))  # fmt: skip
    return SampleBatch(SERIES, np.repeat(np.arange(5), 3), np.tile([1000, 2000, 3000], 5),
                       np.arange(15.0), exemplars=ex if with_exemplars else None)  # fmt: skip


def _triples(b: SampleBatch) -> list[tuple]:
    e = b.exemplars
    assert e is not None
    return [(b.series[s], t, v, lb) for s, t, v, lb in
            zip(e.sidx.tolist(), e.ts.tolist(), e.vals.tolist(), e.labels, strict=True)]  # fmt: skip


def test_remote_write_field_3_decoded_by_both_decoders_and_kept_in_the_log() -> None:
    want = [(SERIES[1], 1000, 0.5, TRACE[0]), (SERIES[3], 2000, 1.5, TRACE[1]),
            (SERIES[3], 3000, 2.5, TRACE[2])]  # fmt: skip
    body = encode_write_request(_batch())
    fast = decode_write_request(body)
    ref, _ = _decode_protobuf(bytes(cramjam.snappy.decompress_raw(body)))
    assert _triples(fast) == _triples(ref) == want
    assert np.array_equal(fast.vals, np.arange(15.0))  # the samples are all there too
    back = SampleBatch.from_bytes(fast.to_bytes())
    assert _triples(back) == want
    parts = back.split(np.array([0, 1, 0, 1, 1]), 2)
    assert parts[0].exemplars is None and _triples(parts[1]) == want
    assert _triples(back.take_series(np.array([0, 0, 0, 1, 0], bool))) == want[1:]


def test_a_record_without_exemplars_is_unchanged_and_an_old_reader_skips_them() -> None:
    plain = _batch(False).to_bytes()
    hlen = int.from_bytes(plain[:4], "little")
    assert "x" not in msgpack.unpackb(plain[4 : 4 + hlen])
    assert SampleBatch.from_bytes(plain).exemplars is None
    rec = _batch().to_bytes()
    hlen = int.from_bytes(rec[:4], "little")
    header = msgpack.unpackb(rec[4 : 4 + hlen])
    # the section is one header entry: the payload (what a reader of v2 decodes) is the same
    assert rec[4 + hlen :] == plain[int.from_bytes(plain[:4], "little") + 4 :]
    assert set(header) - {"x"} == set(
        msgpack.unpackb(plain[4 : 4 + int.from_bytes(plain[:4], "little")])
    )


def test_ring_keeps_the_newest_and_drops_what_is_not_newer_per_series() -> None:
    ring = ExemplarRing(4)
    lb = [(("t", str(i)),) for i in range(7)]
    # series 0: 10, 20, then 20 again (duplicate) and 15 (older): both dropped
    assert ring.add(np.array([0, 0, 0, 0]), np.array([10, 20, 20, 15]), np.ones(4), lb[:4]) == 2
    assert ring.dropped == 2
    # three more: the ring holds 4, so series 0's oldest (10) is overwritten
    assert ring.add(np.array([1, 1, 0]), np.array([5, 6, 30]), np.full(3, 2.0), lb[4:]) == 3
    sid, ts, vals, labels = ring.select(np.array([0, 1]), 0, 100)
    assert sid.tolist() == [0, 0, 1, 1] and ts.tolist() == [20, 30, 5, 6]
    assert labels == [lb[1], lb[6], lb[4], lb[5]]
    assert ring.select(np.array([1]), 6, 6)[1].tolist() == [6]
    assert len(ExemplarRing(0)) == 0 and ExemplarRing(0).add(np.array([0]), np.array([1]),
                                                           np.ones(1), lb[:1]) == 0  # fmt: skip


def test_ring_grows_as_exemplars_come_and_keeps_the_newest_capacity() -> None:
    """The ring's slots are allocated as exemplars arrive (none for a shard that has none),
    and across growth and wrap it holds exactly the newest ``capacity`` kept exemplars."""
    cap = 1000
    ring = ExemplarRing(cap)
    assert ring._ts.nbytes == 0 and len(ring) == 0  # nothing allocated up front
    rng = np.random.default_rng(7)
    kept: list[tuple[int, int, float]] = []  # a reference: every kept one, in arrival order
    last: dict[int, int] = {}
    t = 0
    for size in [1, 3, 200, 57, 400, 900, 5, 1300, 2]:
        sid = rng.integers(0, 400, size)
        ts = t + rng.integers(-3, 40, size)  # some not newer than their series' newest
        t += 40
        vals = rng.random(size)
        want = 0
        for s, x, v in zip(sid.tolist(), ts.tolist(), vals.tolist(), strict=True):
            if x > last.get(s, -(1 << 62)):
                last[s] = x
                kept.append((s, x, v))
                want += 1
        assert ring.add(sid, ts, vals, [(("i", str(x)),) for x in ts.tolist()]) == want
        assert len(ring._ts) <= cap
        got_sid, got_ts, got_vals, labels = ring.select(np.arange(400), -(1 << 62), 1 << 62)
        newest = sorted(kept[-cap:], key=lambda e: (e[0], e[1]))
        assert (
            list(zip(got_sid.tolist(), got_ts.tolist(), got_vals.tolist(), strict=True)) == newest
        )
        assert labels == [(("i", str(x)),) for _, x, _ in newest]
    assert len(kept) > cap  # it wrapped
    assert len(ring._ts) == cap and len(ring) == cap


def test_shard_keeps_exemplars_and_the_leaf_answers_them() -> None:
    shard = TimeSeriesShard("ds", 0, max_exemplars=10)
    shard.ingest(decode_write_request(encode_write_request(_batch())))
    only = SampleBatch([make_labels({"__name__": "lonely"})], np.zeros(0, np.int32),
                       np.zeros(0, np.int64), np.zeros(0),
                       exemplars=Exemplars(np.array([0]), np.array([500]), np.array([9.0]),
                                           [(("trace_id", "z"),)]))  # fmt: skip
    shard.ingest(only)  # a series with exemplars and no samples
    got = shard.query_exemplars([Matcher("__name__", "=", "req_total")], 1500, 5000)
    assert [(lb, t.tolist(), v.tolist(), e) for lb, t, v, e in got] == [
        (SERIES[3], [2000, 3000], [1.5, 2.5], TRACE[1:])]  # fmt: skip
    p = {"matchers": [["__name__", "=~", "req_total|lonely"]], "start": 0, "end": 5000}
    h, (ts, vals) = unpack(run_op(shard, [0], "exemplars", p))
    assert unflat_labels(h["series"]) == [SERIES[1], SERIES[3], make_labels({"__name__": "lonely"})]
    assert h["counts"] == [1, 2, 1] and ts.tolist() == [1000, 2000, 3000, 500]
    assert vals.tolist() == [0.5, 1.5, 2.5, 9.0]
    assert unflat_labels(h["labels"]) == [*TRACE, (("trace_id", "z"),)]
    assert not TimeSeriesShard("ds", 0).query_exemplars([Matcher("__name__", "=", "x")], 0, 1)


def test_a_malformed_exemplar_section_is_a_malformed_record() -> None:
    import pytest

    from filodb.errors import BadInputError

    rec = _batch().to_bytes()
    hlen = int.from_bytes(rec[:4], "little")
    header = msgpack.unpackb(rec[4 : 4 + hlen])
    for bad in ([b"", b""], [b"\x00" * 4, b"", b"", []], [b"\x09\x00\x00\x00", b"\x00" * 8,
                                                           b"\x00" * 8, [["t", "x"]]], "x",
                [b"\x00" * 4, b"\x00" * 8, b"\x00" * 8, [["t", 1]]]):  # fmt: skip
        h = msgpack.packb({**header, "x": bad})
        with pytest.raises(BadInputError):
            SampleBatch.from_bytes(len(h).to_bytes(4, "little") + h + rec[4 + hlen :])


def test_concatenated_records_keep_their_exemplars() -> None:
    """The applier ingests the records of one read as one batch: exemplars follow their series."""
    from filodb.model.batch import concat_batches

    a = SampleBatch.from_bytes(_batch().to_bytes())
    other = [make_labels({"__name__": "other"}), SERIES[3]]
    b = SampleBatch(other, np.array([0, 1]), np.array([5000, 5000]), np.ones(2),
                    exemplars=Exemplars(np.array([1, 0]), np.array([5000, 5000]), np.ones(2),
                                        [(("trace_id", "d"),), (("trace_id", "e"),)]))  # fmt: skip
    both = concat_batches([a, SampleBatch.from_bytes(b.to_bytes())])
    assert _triples(both) == [*_triples(a), (SERIES[3], 5000, 1.0, (("trace_id", "d"),)),
                              (other[0], 5000, 1.0, (("trace_id", "e"),))]  # fmt: skip
    assert both.keys is not None and len(both.keys) == len(both.series) == 6


def test_exemplars_follow_their_series_through_a_purge() -> None:
    """Deleting a series purges it and renumbers the rest: the deleted series' exemplars go,
    the others stay attached to their own series (not to whichever took their id)."""
    shard = TimeSeriesShard("ds", 0, max_exemplars=10)
    shard.ingest(_batch())
    shard.delete_series([Matcher("i", "=", "0")], -(10**12), 10**12)  # series 0 purged
    got = shard.query_exemplars([Matcher("__name__", "=", "req_total")], 0, 10**6)
    assert [(lb, t.tolist(), v.tolist(), ex) for lb, t, v, ex in got] == [
        (SERIES[1], [1000], [0.5], [TRACE[0]]),
        (SERIES[3], [2000, 3000], [1.5, 2.5], [TRACE[1], TRACE[2]]),
    ]
    shard.delete_series([Matcher("i", "=", "3")], -(10**12), 10**12)
    got = shard.query_exemplars([Matcher("__name__", "=", "req_total")], 0, 10**6)
    assert [(lb, t.tolist()) for lb, t, _v, _ex in got] == [(SERIES[1], [1000])]
    # a newer exemplar of a surviving series is still accepted, an older one still dropped
    ex = Exemplars(np.array([0, 0]), np.array([500, 4000]), np.array([9.0, 9.5]),
                   [TRACE[0], TRACE[1]])  # fmt: skip
    shard.ingest(SampleBatch([SERIES[1]], np.zeros(0, np.int64), np.zeros(0, np.int64),
                             np.zeros(0), exemplars=ex))  # fmt: skip
    got = shard.query_exemplars([Matcher("i", "=", "1")], 0, 10**6)
    assert got[0][1].tolist() == [1000, 4000]
