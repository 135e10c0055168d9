"""``read_records`` (many log records in two numba calls) reads what ``read_record`` reads,
one record at a time, over any mix of versions and any damage: the same columns, in log order,
and the same records refused."""

from __future__ import annotations

import numpy as np
import pytest

from filodb.errors import BadInputError
from filodb.model.batch import SampleBatch
from filodb.model.exemplars import Exemplars
from filodb.model.labels import make_labels
from filodb.model.record import RecordBatch, read_record, read_record_groups, read_records

POOL = [make_labels({"__name__": "m", "job": "j", "i": str(i)}) for i in range(600)]


def _batch(rng: np.random.Generator, big: bool = False) -> SampleBatch:
    ns = int(rng.integers(300, 600)) if big else int(rng.integers(1, 12))
    idx = rng.choice(len(POOL), size=ns, replace=False)
    n = ns if big else int(rng.integers(0, 20))
    types = {"m": "gauge"} if rng.random() < 0.1 else {}
    return SampleBatch([POOL[i] for i in idx], rng.integers(0, ns, n),
                       rng.integers(-(10**13), 10**13, n), rng.normal(size=n), types)  # fmt: skip


def _same(a: RecordBatch, b: RecordBatch) -> None:
    assert a.pk_data.tobytes() == b.pk_data.tobytes()
    assert a.pk_ends.tolist() == b.pk_ends.tolist() and a.sidx.tolist() == b.sidx.tolist()
    assert a.ts.tolist() == b.ts.tolist()
    assert a.vals.view(np.uint64).tolist() == b.vals.view(np.uint64).tolist()
    assert a.types == b.types


def _one_by_one(recs: list[bytes]) -> tuple[RecordBatch, list[int]]:
    parts, bad = [], []
    for i, r in enumerate(recs):
        try:
            parts.append(read_record(r))
        except BadInputError:
            bad.append(i)
    return RecordBatch.concat(parts), bad


@pytest.mark.parametrize("big_share", [0.1, 0.8])  # big: LZ4 payloads the library reads
@pytest.mark.parametrize("seed", range(20))
def test_many_records_read_as_one_by_one_whatever_the_damage(seed: int, big_share: float) -> None:
    rng = np.random.default_rng(seed)
    recs = []
    for _ in range(int(rng.integers(1, 30))):
        r = bytearray(_batch(rng, big=rng.random() < big_share).to_bytes())
        if rng.random() < 0.3:  # a byte or a few changed anywhere, or the record cut short
            for _ in range(int(rng.integers(1, 4))):
                r[int(rng.integers(len(r)))] = int(rng.integers(256))
        if rng.random() < 0.05:
            del r[int(rng.integers(len(r))) :]
        recs.append(bytes(r))
    got, bad = read_records(recs)
    want, want_bad = _one_by_one(recs)
    assert bad == want_bad
    _same(got, want)


@pytest.mark.parametrize("big_share", [0.1, 0.8])
@pytest.mark.parametrize("seed", range(12))
def test_groups_read_at_once_as_each_group_alone(seed: int, big_share: float) -> None:
    """A reader pass's records of every shard read by one call: a group whose records the
    kernel read whole is what reading that group alone gives; a group with a record it
    could not read (damaged, metadata types, a tombstone) or no record is None."""
    rng = np.random.default_rng(seed)
    groups: list[list[bytes]] = []
    for _ in range(int(rng.integers(1, 40))):
        g = []
        for _ in range(int(rng.integers(0, 4))):
            r = bytearray(_batch(rng, big=rng.random() < big_share).to_bytes())
            if rng.random() < 0.1:
                r[int(rng.integers(len(r)))] ^= 1 + int(rng.integers(255))
            g.append(bytes(r))
        groups.append(g)
    got = read_record_groups(groups)
    assert len(got) == len(groups)
    alone_ok = {r: read_record_groups([[r]])[0] is not None for g in groups for r in g}
    for g, b in zip(groups, got, strict=True):
        assert (b is None) == (not g or not all(alone_ok[r] for r in g))
        if b is not None:
            alone, bad = read_records(g)
            assert not bad and b.types == {}
            _same(b, alone)
    assert any(b is not None for b in got) or not any(alone_ok.values())


def test_payloads_are_compressed_where_that_makes_them_smaller() -> None:
    """LZ4 blocks the kernel writes are LZ4's block format (cramjam reads them); a payload
    too small to gain, or that does not shrink, is stored as it is."""
    import cramjam

    rng = np.random.default_rng(3)
    tiny = SampleBatch([POOL[0]], [0], [1], [2.0])
    text = "".join(map(chr, rng.integers(0x4E00, 0x9FFF, 300).tolist()))  # no 4 bytes repeat
    noise = SampleBatch([(("__name__", text),)], [0], [1], [2.0])
    for b, lz4 in ((tiny, 0), (noise, 0), (_batch(rng), 1), (_batch(rng, big=True), 1)):
        raw = b.to_bytes()
        hlen = int.from_bytes(raw[:4], "little")
        assert raw[4 + 27] == lz4 and raw[5:8] == b"\xa1v\x04"
        z = int.from_bytes(raw[4 + 21 : 4 + 25], "big")
        body = raw[4 + hlen :]
        if lz4:
            assert len(body) < z and len(cramjam.lz4.decompress_block(body)) == z
        else:
            assert len(body) == z
        c = SampleBatch.from_bytes(raw)
        assert c.series == b.series and c.sidx.tolist() == b.sidx.tolist()
        assert c.ts.tolist() == b.ts.tolist() and c.vals.tolist() == b.vals.tolist()


@pytest.mark.parametrize("exemplars", [False, True])
def test_shard_records_are_each_parts_record(exemplars: bool) -> None:
    """Every shard's record written in one call is the record of that shard's part alone,
    exemplars and types included."""
    rng = np.random.default_rng(5)
    b = _batch(rng, big=True)
    b.types = {"m": "counter"}
    if exemplars:
        b.exemplars = Exemplars(np.array([0, 3, 3], np.int32), np.array([1, 2, 3]),
                                np.array([1.0, 2.0, 3.0]), [(("trace_id", "a"),), (), ()])  # fmt: skip
    of = rng.integers(0, 64, len(b.series))
    recs, counts = b.shard_records(of, 64)
    parts = b.split(of, 64)
    assert recs.keys() == parts.keys() and counts == {s: len(p) for s, p in parts.items()}
    for s, p in parts.items():
        assert recs[s] == p.to_bytes()
        c = SampleBatch.from_bytes(recs[s])
        assert c.series == p.series and c.types == {"m": "counter"}
        assert (c.exemplars is None) == (p.exemplars is None or not len(p.exemplars))


def test_a_record_claiming_a_huge_payload_is_refused_without_allocating_it() -> None:
    """A compressed record's header and block size may claim up to 4 GB: refused as
    ``read_record`` refuses it (payloads are bounded), nothing allocated for it."""
    raw = bytearray(SampleBatch(POOL[:50], np.arange(50), np.arange(50), np.ones(50)).to_bytes())
    assert raw[4 + 27] == 1
    huge = (0xFFFFFF00).to_bytes(4, "big")
    raw[4 + 21 : 4 + 25] = huge
    raw[4 + 28 : 4 + 32] = (0xFFFFFF00).to_bytes(4, "little")
    good = SampleBatch(POOL[:2], [0, 1], [1, 2], [1.0, 2.0]).to_bytes()
    got, bad = read_records([good, bytes(raw), good])
    assert bad == [1] and len(got) == 4
