from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.errors import BadInputError
from filodb.model.batch import SampleBatch, concat_batches, pick, series_identity
from filodb.model.exemplars import Exemplars
from filodb.model.labels import make_labels
from filodb.model.partkey import part_key
from filodb.model.partkeys import PartKeyLabels, PartKeys
from filodb.model.shardkey import shards_of_routes

STALE = np.array([0x7FF0000000000002], np.uint64).view(np.float64)[0]

labelsets = st.lists(
    st.dictionaries(st.sampled_from(["__name__", "a", "b", "job"]), st.text(min_size=1, max_size=5), min_size=1),
    min_size=1, max_size=5, unique_by=lambda d: tuple(sorted(d.items())),
).map(lambda ds: [make_labels(d) for d in ds])  # fmt: skip


@given(labelsets, st.data())
def test_wire_round_trip_is_bit_exact(series, data) -> None:  # type: ignore[no-untyped-def]
    n = data.draw(st.integers(0, 50))
    sidx = np.array(
        data.draw(st.lists(st.integers(0, len(series) - 1), min_size=n, max_size=n)), np.int32
    )
    ts = np.array(
        data.draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)), np.int64
    )
    bits = data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n))
    vals = np.array(bits, np.uint64).view(np.float64)
    b = SampleBatch(series, sidx, ts, vals, {"m": "counter"})
    c = SampleBatch.from_bytes(b.to_bytes())
    assert c.series == b.series and c.types == b.types
    assert (c.sidx == b.sidx).all() and (c.ts == b.ts).all()
    assert (c.vals.view(np.uint64) == b.vals.view(np.uint64)).all()


def test_split_keeps_each_series_samples_together() -> None:
    s = [make_labels({"__name__": f"m{i}"}) for i in range(4)]
    b = SampleBatch(s, [0, 1, 2, 3, 0, 2], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, STALE])
    parts = b.split(np.array([1, 0, 1, 0]), 2)
    assert parts[1].series == [s[0], s[2]]
    assert parts[1].ts.tolist() == [1, 3, 5, 6]
    assert parts[1].sidx.tolist() == [0, 1, 0, 1]
    assert parts[1].vals.view(np.uint64)[-1] == 0x7FF0000000000002
    assert parts[0].ts.tolist() == [2, 4]


def test_concat_reinterns_series() -> None:
    a, b2 = make_labels({"__name__": "a"}), make_labels({"__name__": "b"})
    x = SampleBatch([a, b2], [0, 1], [1, 2], [1.0, 2.0])
    y = SampleBatch([b2], [0], [3], [3.0])
    z = concat_batches([x, y])
    assert z.series == [a, b2] and z.sidx.tolist() == [0, 1, 1] and z.keys is None


def test_concat_of_records_keeps_each_series_key() -> None:
    s = [make_labels({"__name__": "m", "i": str(i)}) for i in range(5)]
    recs = [SampleBatch([s[2], s[0]], [0, 1], [1, 2], [1.0, 2.0]),
            SampleBatch([s[0], s[4], s[4], s[1]], [0, 1, 2, 3], [3, 4, 5, 6], [3.0, 4, 5, 6])]  # fmt: skip
    z = concat_batches([SampleBatch.from_bytes(r.to_bytes()) for r in recs])
    assert z.series == [s[2], s[0], s[4], s[1]] and z.sidx.tolist() == [0, 1, 1, 2, 2, 3]
    assert z.keys is not None and (z.keys == SampleBatch(z.series, [], [], []).series_keys()).all()


@pytest.mark.parametrize("data", [b"", b"\x05\x00\x00\x00abc", b"\x01\x00\x00\x00\xc1"])
def test_malformed_records_raise_bad_input(data: bytes) -> None:
    with pytest.raises(BadInputError):
        SampleBatch.from_bytes(data)


def reencode(raw: bytes, edit: Callable[[dict, bytearray], None]) -> bytes:
    """A version 4 record with its header and payload changed by ``edit`` (its payload
    compressed or not, as it was)."""
    import cramjam
    import msgpack

    hlen = int.from_bytes(raw[:4], "little")
    header = msgpack.unpackb(raw[4 : 4 + hlen])
    assert header["v"] == 4
    lz4 = header["c"]
    body = raw[4 + hlen :]
    payload = bytearray(cramjam.lz4.decompress_block(body) if lz4 else body)
    edit(header, payload)
    h = msgpack.packb(header)
    out = bytes(cramjam.lz4.compress_block(bytes(payload))) if lz4 else bytes(payload)
    return len(h).to_bytes(4, "little") + h + out


def test_out_of_range_series_index_is_rejected() -> None:
    raw = SampleBatch([make_labels({"__name__": "a"})], [0], [1], [1.0]).to_bytes()

    def edit(h: dict, p: bytearray) -> None:
        p[0] = 7  # sidx[0] = 7 (the first difference), but there is one series

    with pytest.raises(BadInputError, match="out of range"):
        SampleBatch.from_bytes(reencode(raw, edit))


def v1_record(b: SampleBatch) -> bytes:
    """A record as version 1 wrote it (full label sets in the msgpack header)."""
    import msgpack

    h = msgpack.packb({"v": 1, "n": len(b), "series": [[x for p in lb for x in p] for lb in b.series],
                       "types": b.types})  # fmt: skip
    return b"".join([len(h).to_bytes(4, "little"), h, b.sidx.astype("<i4").tobytes(),
                     b.ts.astype("<i8").tobytes(), b.vals.astype("<f8").tobytes()])  # fmt: skip


@given(labelsets, st.integers(0, 30))
def test_version_1_records_still_decode(series, n) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(n)
    b = SampleBatch(series, rng.integers(0, len(series), n), rng.integers(0, 10**12, n),
                    rng.normal(size=n), {"m": "gauge"})  # fmt: skip
    c = SampleBatch.from_bytes(v1_record(b))
    assert c.series == b.series and c.types == b.types and c.keys is not None
    assert (c.sidx == b.sidx).all() and (c.ts == b.ts).all() and (c.vals == b.vals).all()
    assert (c.keys == SampleBatch.from_bytes(b.to_bytes()).keys).all()


def test_records_give_each_series_key_the_xxh64_of_its_part_key() -> None:
    import xxhash

    from filodb.model.partkey import part_key

    s = [make_labels({"__name__": "up", "job": str(i)}) for i in range(3)]
    c = SampleBatch.from_bytes(SampleBatch(s, [2, 0], [1, 2], [1.0, 2.0]).to_bytes())
    assert c.keys is not None and c.keys.dtype == np.uint64
    assert c.keys.tolist() == [xxhash.xxh64_intdigest(part_key(lb)) for lb in s]
    assert c.split(np.array([1, 0, 1]), 2)[1].keys.tolist() == c.keys[[0, 2]].tolist()


def test_records_are_compressed() -> None:
    """Live-shaped records (one sample per series) are mostly label sets: LZ4 takes them
    to a fraction of their raw size (what the log holds in Redis's memory)."""
    s = [make_labels({"__name__": "http_requests_total", "job": "api", "instance": f"host-{i}:9100",
                      "code": str(200 + i % 5)}) for i in range(500)]  # fmt: skip
    raw = SampleBatch(
        s, np.arange(500), np.full(500, 1_700_000_000_000), np.arange(500.0)
    ).to_bytes()
    assert len(raw) < 500 * 20  # the raw arrays alone would be 20 bytes a sample


def test_large_records_are_compressed_only_where_it_pays() -> None:
    """A body's records past the LZ4 library's threshold: one that shrinks goes compressed,
    one that does not (random labels and values) goes as it is (a small one is the kernel's
    own LZ4's to decide); each decodes to its shard's samples."""
    from filodb.model.recordpack import C_AT, LZ4_LIBRARY_MIN

    rng = np.random.default_rng(7)
    alike = [make_labels({"__name__": "http_requests_total", "job": "api", "i": f"h{i}"})
             for i in range(600)]  # fmt: skip
    noise = [make_labels({"__name__": "m", "r": rng.bytes(LZ4_LIBRARY_MIN).decode("latin-1")})]
    few = [make_labels({"__name__": "up", "job": str(i)}) for i in range(3)]
    series = alike + noise + few
    n = len(series)
    vals = np.where(np.arange(n) < len(alike), 1.0, rng.normal(size=n))
    b = SampleBatch(series, np.arange(n), np.full(n, 1_700_000_000_000) + np.arange(n), vals)
    of = np.array([0] * len(alike) + [1] * len(noise) + [2] * len(few))
    records, counts = b.shard_records(of, 3)
    assert counts == {0: len(alike), 1: len(noise), 2: len(few)}
    assert len(records[1]) > LZ4_LIBRARY_MIN and len(records[2]) < LZ4_LIBRARY_MIN
    assert [records[s][4 + C_AT] for s in (0, 1)] == [1, 0]  # 1: an LZ4 block
    assert len(records[0]) < len(alike) * 20
    for shard, part in b.split(of, 3).items():
        got = SampleBatch.from_bytes(records[shard])
        assert got.series == part.series and got.sidx.tolist() == part.sidx.tolist()
        assert got.ts.tolist() == part.ts.tolist()
        assert got.vals.tobytes() == part.vals.tobytes()


@pytest.mark.parametrize("where", ["offset", "part_key", "size", "prefix", "frame", "columns"])
def test_records_whose_payload_does_not_agree_are_rejected(where: str) -> None:
    s = [make_labels({"__name__": "a"}), make_labels({"__name__": "bb"})]
    raw = SampleBatch(s, [0, 1], [1, 2], [1.0, 2.0]).to_bytes()

    def edit(h: dict, p: bytearray) -> None:
        if where == "offset":
            p[40] += 1  # the first part key's length (after 2 x 20 bytes of samples)
        elif where == "part_key":
            p[-3:] = b"\xc1\xc1\xc1"  # not msgpack
        elif where == "size":
            h["z"] += 1
        elif where == "columns":
            h["n"] = 100  # more samples than the payload holds

    if where == "prefix":  # the LZ4 block's own size disagrees with the header's
        hlen = int.from_bytes(raw[:4], "little")
        pos = 4 + hlen
        bad = raw[:pos] + (int.from_bytes(raw[pos : pos + 4], "little") + 1).to_bytes(4, "little")
        bad += raw[pos + 4 :]
    else:
        bad = reencode(raw, edit) if where != "frame" else raw[:-3]
    with pytest.raises(BadInputError):
        SampleBatch.from_bytes(bad)


def _arena(pks: list[bytes], rng: np.random.Generator) -> PartKeys:
    """The part keys as a door's arena holds them: back to back in a random order, with gaps."""
    order = rng.permutation(len(pks))
    raw, start, end = b"", np.zeros(len(pks), np.int64), np.zeros(len(pks), np.int64)
    for i in order.tolist():
        raw += b"#" * int(rng.integers(0, 3))
        start[i] = len(raw)
        raw += pks[i]
        end[i] = len(raw)
    return PartKeys(np.frombuffer(raw + b"#", np.uint8), start, end)


@settings(deadline=None)  # the first call with an arena loads the gather kernel
@given(st.integers(1, 60), st.integers(0, 300), st.integers(1, 9), st.integers(0, 2**32),
       st.sampled_from(["arena", "list", "none"]))  # fmt: skip
def test_split_equals_taking_each_shards_series(n_series, n, n_shards, seed, arena) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    s = [make_labels({"__name__": f"m{i}"}) for i in range(n_series)]
    pks = [part_key(x) for x in s]
    k = int(rng.integers(0, 4))  # exemplars of some series follow them into their shard
    ex = Exemplars(rng.integers(0, n_series, k), np.arange(k), np.arange(k) + 0.5,
                   [make_labels({"trace_id": str(i)}) for i in range(k)]) if k else None  # fmt: skip
    b = SampleBatch(s, rng.integers(0, n_series, n), rng.integers(0, 99, n), rng.normal(size=n),
                    pks={"arena": _arena(pks, rng), "list": pks, "none": None}[arena],
                    exemplars=ex)  # fmt: skip
    of = rng.integers(0, n_shards, n_series)
    parts = b.split(of, n_shards)
    assert sorted(parts) == sorted(set(of.tolist()))
    # the router's records: each part's, without the parts' label sets
    records, counts = b.shard_records(of, n_shards)
    assert records == {shard: p.to_bytes() for shard, p in parts.items()}
    assert counts == {shard: len(p) for shard, p in parts.items()}
    for shard, p in parts.items():
        want = b.take_series(of == shard)
        assert p.series == want.series and p.sidx.tolist() == want.sidx.tolist()
        assert p.ts.tolist() == want.ts.tolist() and p.vals.tolist() == want.vals.tolist()
        # a door's part keys follow their series, and the record is the one without them
        if arena != "none":
            assert p.pks == want.pks == [part_key(x) for x in p.series]
        plain = SampleBatch(p.series, p.sidx, p.ts, p.vals, exemplars=p.exemplars)
        assert p.to_bytes() == plain.to_bytes()  # an arena's record is a list's


@settings(deadline=None)  # the first decode loads the part-key scan's kernels
@given(st.integers(0, 40), st.integers(0, 2**32))
def test_part_key_labels_decode_once_when_asked_and_stay_lazy_when_taken(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = [make_labels({"__name__": f"m{i % 7}", "job": "j", "i": str(i), "x": "é" * (i % 3)})
         for i in range(n)]  # fmt: skip
    lazy = PartKeyLabels(_arena([part_key(x) for x in s], rng))
    assert len(lazy) == n and lazy._list is None  # its length decodes nothing
    keep = rng.random(n) < 0.5
    taken, sliced = lazy.take(keep), lazy[1:]
    assert taken._list is None and sliced._list is None
    assert lazy == s and list(lazy) == s and lazy.items() is lazy.items()
    assert taken == [x for x, k in zip(s, keep.tolist(), strict=True) if k] and sliced == s[1:]
    at = rng.integers(0, max(n, 1), 3).tolist() if n else []
    assert pick(lazy, at) == [s[i] for i in at]
    # a batch of them keeps them lazy through take_series and split, and right
    b = SampleBatch(lazy.take(np.arange(n)), np.arange(n, dtype=np.int32) if n else [], np.arange(n),
                    np.ones(n), pks=lazy.pks)  # fmt: skip
    sub = b.take_series(keep)
    assert isinstance(sub.series, PartKeyLabels) and sub.series == taken
    assert sub.pks == [part_key(x) for x in taken]
    if n:
        parts = b.split(rng.integers(0, 3, n), 3)
        for p in parts.values():
            assert isinstance(p.series, PartKeyLabels)
            assert p.pks == [part_key(x) for x in p.series]


@pytest.mark.parametrize("series", [[["__name__"]], [["__name__", 5]], [["a", "b", "c"]], [[{"x": 1}]],
                                    [["__name__", ["nested"]]]])  # fmt: skip
def test_label_sets_that_are_not_string_pairs_are_rejected(series: list) -> None:
    import msgpack

    h = msgpack.packb({"v": 1, "n": 0, "series": series, "types": {}})
    with pytest.raises(BadInputError):
        SampleBatch.from_bytes(len(h).to_bytes(4, "little") + h)


def test_decoded_label_sets_share_their_pairs_across_records() -> None:
    lb = make_labels({"__name__": "up", "job": "a"})
    raw = SampleBatch([lb, lb], [0, 1], [1, 2], [1.0, 2.0]).to_bytes()
    x, y = SampleBatch.from_bytes(raw), SampleBatch.from_bytes(raw)
    assert x.series == y.series == [lb, lb] and x.series[0] is x.series[1]
    assert all(p is q for p, q in zip(x.series[0], y.series[0], strict=True))


def test_split_and_take_series_keep_the_door_identity_with_its_series() -> None:
    series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(40)]
    ids = [series_identity(lb) for lb in series]
    rng = np.random.default_rng(3)
    sidx = rng.integers(0, 40, 200).astype(np.int32)
    b = SampleBatch(series, sidx, np.arange(200), rng.random(200), keys=[i[1] for i in ids],
                    pks=[i[0] for i in ids], routes=np.array([i[2] for i in ids], np.uint64))  # fmt: skip

    def same(x: SampleBatch) -> None:
        want = [series_identity(lb) for lb in x.series]
        assert x.pks == [w[0] for w in want]
        assert x.routes is not None and x.routes.tolist() == [w[2] for w in want]
        assert SampleBatch.from_bytes(x.to_bytes()).series == x.series

    parts = b.split(shards_of_routes(b.routes, 8, 1), 8)
    assert sum(len(p) for p in parts.values()) == 200
    for p in parts.values():
        same(p)
    same(b.take_series(np.arange(40) % 3 == 0))


@given(st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=8), min_size=2, max_size=5))
def test_concat_by_keys_is_concat_by_label_sets(picks: list[list[int]]) -> None:
    pool = [make_labels({"__name__": "m", "i": str(i)}) for i in range(7)]
    recs = []
    for k, p in enumerate(picks):
        n = len(p)
        recs.append(SampleBatch([pool[i] for i in p], np.arange(n), np.arange(n) + 10 * k,
                                np.arange(n) * 1.5 + k))  # fmt: skip
    with_keys = concat_batches([SampleBatch.from_bytes(r.to_bytes()) for r in recs])
    by_labels = concat_batches(recs)
    assert with_keys.series == by_labels.series
    assert with_keys.sidx.tolist() == by_labels.sidx.tolist()
    assert with_keys.ts.tolist() == by_labels.ts.tolist()
    assert with_keys.keys is not None
    assert (
        with_keys.keys.tolist() == SampleBatch(by_labels.series, [], [], []).series_keys().tolist()
    )


def test_concat_keeps_two_label_sets_that_share_a_key_apart() -> None:
    a, b2 = make_labels({"__name__": "a"}), make_labels({"__name__": "b"})
    x = SampleBatch([a], [0], [1], [1.0], keys=[7])
    y = SampleBatch([b2, a], [0, 1], [2, 3], [2.0, 3.0], keys=[7, 7])
    z = concat_batches([x, y])
    assert z.series == [a, b2] and z.sidx.tolist() == [0, 1, 0]


@settings(deadline=None, max_examples=300)
@given(st.integers(0, 2**32), st.integers(1, 4))
def test_corrupt_version_3_records_decode_or_raise_bad_input(seed: int, edits: int) -> None:
    """Flipped bytes and cuts anywhere (header, size, LZ4 block): a record decodes or is
    refused with BadInputError, never another exception."""
    rng = np.random.default_rng(seed)
    s = [make_labels({"__name__": "m", "i": str(i)}) for i in range(5)]
    ex = Exemplars([1], [5], [0.5], [make_labels({"trace_id": "t"})])
    raw = bytearray(SampleBatch(s, [0, 3, 3, 4, 1], [9, 1, 2, 2**40, -5], [1.0, 2, 3, 4, 5],
                                {"m": "gauge"}, exemplars=ex).to_bytes())  # fmt: skip
    for _ in range(edits):
        if not raw:  # cut to nothing: an empty record is refused below
            break
        at = int(rng.integers(0, len(raw)))
        if rng.random() < 0.2:
            del raw[at:]
        else:
            raw[at] = int(rng.integers(0, 256))
    try:
        b = SampleBatch.from_bytes(bytes(raw))
    except BadInputError:
        return
    assert len(b.sidx) == len(b.ts) == len(b.vals)
    assert len(b) == 0 or (0 <= b.sidx.min() and b.sidx.max() < len(b.series))


def test_shard_records_refuse_a_shard_out_of_range() -> None:
    """The layout kernel writes by shard number: one out of range is an error, not a write
    past an array."""
    b = SampleBatch([make_labels({"__name__": "a"}), make_labels({"__name__": "b"})],
                    np.array([0, 1]), np.array([1, 2]), np.array([1.0, 2.0]))  # fmt: skip
    for bad in ([0, 4], [-1, 0]):
        with pytest.raises(ValueError, match="out of range"):
            b.shard_records(np.array(bad), 4)
    assert b.shard_records(np.array([3, 0]), 4)[1] == {0: 1, 3: 1}
