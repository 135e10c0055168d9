"""The applier reads records as part keys (``read_record``) and ingests each read's records
as one batch: the answers are those of ingesting every record's samples in log order, for
version 1 to 4 records alike; a record with a part key that is not one is skipped alone."""

from __future__ import annotations

import cramjam
import msgpack
import numpy as np
import pytest

from filodb.errors import BadInputError
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels
from filodb.model.partkey import part_key
from filodb.model.record import RecordBatch, read_record, read_record_groups
from filodb.node.applier import LogApplier

ALL = [Matcher("__name__", "=~", ".+")]
POOL = [make_labels({"__name__": "m", "i": str(i)}) for i in range(40)]


def _answer(ms: TimeSeriesShard) -> dict:
    b = ms.select(ALL, -(10**12), 10**12)
    return {b.labels[i]: (b.ts[b.offsets[i] : b.offsets[i + 1]].tolist(),
                          b.vals[b.offsets[i] : b.offsets[i + 1]].tolist())
            for i in range(len(b.labels))}  # fmt: skip


def v1_record(b: SampleBatch) -> bytes:
    h = msgpack.packb({"v": 1, "n": len(b), "series": [[x for p in lb for x in p] for lb in b.series],
                       "types": b.types})  # fmt: skip
    return b"".join([len(h).to_bytes(4, "little"), h, b.sidx.astype("<i4").tobytes(),
                     b.ts.astype("<i8").tobytes(), b.vals.astype("<f8").tobytes()])  # fmt: skip


def v2_record(pks: list[bytes], sidx: list[int], ts: list[int], vals: list[float]) -> bytes:
    """A version 2 record written by hand (docs/architecture.md), any bytes as part keys."""
    ends = np.cumsum([len(p) for p in pks]).astype("<u4")
    payload = b"".join([np.array(sidx, "<i4").tobytes(), np.array(ts, "<i8").tobytes(),
                        np.array(vals, "<f8").tobytes(), ends.tobytes(), *pks])  # fmt: skip
    h = msgpack.packb({"v": 2, "n": len(ts), "s": len(pks), "z": len(payload), "types": {}})
    return len(h).to_bytes(4, "little") + h + bytes(cramjam.zstd.compress(payload, 1))


def v3_record(pks: list[bytes], sidx: list[int], ts: list[int], vals: list[float]) -> bytes:
    """A version 3 record written by hand (docs/architecture.md)."""
    n = len(ts)
    planes = np.array(vals, "<f8").view(np.uint8).reshape(n, 8).T.tobytes()
    payload = b"".join([np.diff(sidx, prepend=0).astype("<i4").tobytes(),
                        np.diff(ts, prepend=0).astype("<i8").tobytes(), planes,
                        np.array([len(p) for p in pks], "<u4").tobytes(), *pks])  # fmt: skip
    h = msgpack.packb({"v": 3, "n": n, "s": len(pks), "z": len(payload), "types": {}})
    return len(h).to_bytes(4, "little") + h + bytes(cramjam.lz4.compress_block(payload))


def v4_record(pks: list[bytes], sidx: list[int], ts: list[int], vals: list[float],
              lz4: bool) -> bytes:  # fmt: skip
    """A version 4 record written by hand (docs/architecture.md)."""
    v3 = v3_record(pks, sidx, ts, vals)
    block = v3[4 + int.from_bytes(v3[:4], "little") :]
    payload = cramjam.lz4.decompress_block(block)
    h = b"".join([b"\x85\xa1v\x04", *(b"\xa1" + k + b"\xce" + v.to_bytes(4, "big")
                  for k, v in ((b"n", len(ts)), (b"s", len(pks)), (b"z", len(payload)))),
                  b"\xa1c", bytes([lz4])])  # fmt: skip
    return len(h).to_bytes(4, "little") + h + (block if lz4 else bytes(payload))


def test_hand_written_records_read_as_the_writer_writes_them() -> None:
    s = POOL[:3]
    sidx, ts, vals = [2, 0, 2], [5, 6, 7], [1.5, 2.5, 3.5]
    pks = [part_key(lb) for lb in s]
    rec = SampleBatch(s, sidx, ts, vals).to_bytes()
    # the door's LZ4 is LZ4 (its blocks may differ from cramjam's, not what they hold)
    assert read_record(rec).pk_data.tobytes() == b"".join(pks)
    for r in (read_record(rec), read_record(v4_record(pks, sidx, ts, vals, False)),
              read_record(v4_record(pks, sidx, ts, vals, True)),
              read_record(v3_record(pks, sidx, ts, vals)),
              read_record(v2_record(pks, sidx, ts, vals))):  # fmt: skip
        assert [r.part_key(i) for i in range(3)] == [part_key(lb) for lb in s]
        assert [r.labels(i) for i in range(3)] == s and r.sidx.tolist() == sidx
        assert r.ts.tolist() == ts and r.vals.tolist() == vals


def test_records_of_the_previous_version_in_a_log_apply_after_an_upgrade() -> None:
    """A log written by version 2 doors, then version 3: a node reads both, in order."""
    pks = [part_key(lb) for lb in POOL[:4]]
    ms = TimeSeriesShard("ds", 0)
    app = LogApplier.without_store(ms, None)  # type: ignore[arg-type]
    app.apply([(1, v2_record(pks, [0, 1, 2, 3], [1, 1, 1, 1], [1.0, 2.0, 3.0, 4.0])),
               (2, SampleBatch(POOL[:4], [3, 2, 1, 0], [2, 2, 2, 2], [5.0, 6.0, 7.0, 8.0]).to_bytes()),
               (3, v2_record(pks[:2], [1, 0], [3, 3], [9.0, 10.0]))])  # fmt: skip
    assert app.malformed == 0 and app.offset == 3
    got = _answer(ms)
    assert got[POOL[0]] == ([1, 2, 3], [1.0, 8.0, 10.0])
    assert got[POOL[1]] == ([1, 2, 3], [2.0, 7.0, 9.0])
    assert got[POOL[3]] == ([1, 2], [4.0, 5.0])


def test_live_records_are_no_larger_than_the_previous_version() -> None:
    """The log's bytes live in Redis's memory until trimmed: LZ4 of version 3's columns
    (differences, byte planes, lengths) may cost little more than version 2's zstd did
    (docs/architecture.md: 1.0-1.15x on live records)."""
    rng = np.random.default_rng(1)
    s = [make_labels({"__name__": "node_cpu_seconds_total", "job": "node", "mode": m,
                      "instance": f"10.0.{i // 250}.{i % 250}:9100", "cpu": str(i % 8)})
         for i in range(125) for m in ("idle", "user", "system", "iowait")]  # fmt: skip
    n = len(s)
    g = rng.gamma(2.0, 5000.0, n)
    vals = np.where(np.arange(n) % 2, np.round(g, 2), np.round(g))  # gauges and counters
    ts = np.full(n, 1_700_000_015_000)
    v3 = SampleBatch(s, np.arange(n), ts, vals).to_bytes()
    v2 = v2_record([part_key(lb) for lb in s], list(range(n)), ts.tolist(), vals.tolist())
    assert len(v3) <= 1.2 * len(v2), (len(v3), len(v2))


@pytest.mark.parametrize("read_first", [False, True])  # True: read as the node's reader does
@pytest.mark.parametrize("per_apply", [1, 3, 50])
@pytest.mark.parametrize("seed", range(3))
def test_applied_records_answer_as_their_batches_one_by_one(
    per_apply: int, seed: int, read_first: bool
) -> None:
    rng = np.random.default_rng(seed)
    applied = TimeSeriesShard("ds", 0, max_chunk_samples=7)
    ref = TimeSeriesShard("ds", 0, max_chunk_samples=7)
    app = LogApplier.without_store(applied, None)  # type: ignore[arg-type]  # no replay
    recs = []
    for off in range(1, 60):
        idx = rng.choice(len(POOL), size=int(rng.integers(1, 15)), replace=False)
        n = int(rng.integers(1, 30))
        b = SampleBatch([POOL[i] for i in idx], rng.integers(0, len(idx), n),
                        rng.integers(0, 2000, n), rng.normal(size=n))  # fmt: skip
        ref.ingest(b, off)
        pks = [part_key(lb) for lb in b.series]
        old = (v1_record(b), v3_record(pks, b.sidx.tolist(), b.ts.tolist(), b.vals.tolist()))
        recs.append((off, old[int(rng.integers(2))] if rng.random() < 0.2 else b.to_bytes()))
    parts = [recs[i : i + per_apply] for i in range(0, len(recs), per_apply)]
    if read_first:  # the reads of several shards' records at once: every part is one shard's
        batches = read_record_groups([[d for _, d in part] for part in parts])
        assert per_apply > 1 or sum(b is not None for b in batches) > len(parts) // 2
    else:
        batches = [None] * len(parts)
    for part, batch in zip(parts, batches, strict=True):
        app.apply(part, batch)
    assert app.offset == applied.offset == 59 and app.malformed == 0
    assert _answer(applied) == _answer(ref)
    assert applied.num_series == ref.num_series
    assert applied.samples_ingested == ref.samples_ingested
    assert applied.rejected == ref.rejected


@pytest.mark.parametrize(
    "bad", [b"\xc1\xc1", msgpack.packb(["__name__", 5]), msgpack.packb({"a": "b"})]
)
def test_a_record_with_a_bad_part_key_is_skipped_alone(bad: bytes) -> None:
    ms = TimeSeriesShard("ds", 0)
    app = LogApplier.without_store(ms, None)  # type: ignore[arg-type]  # no replay
    good = [part_key(lb) for lb in POOL[:2]]
    with pytest.raises(BadInputError):
        ms.ingest(read_record(v2_record([good[0], bad], [0, 1], [1, 1], [1.0, 1.0])), 1)
    assert ms.num_series == 0 and ms.offset == 0  # refused whole: nothing changed
    app.apply([(1, v2_record(good, [0, 1], [1, 1], [1.0, 2.0])),
               (2, v2_record([good[1], bad], [0, 1], [2, 2], [3.0, 4.0])),  # known, bad
               (3, v2_record(good, [0, 1], [3, 3], [5.0, 6.0]))])  # fmt: skip
    assert app.malformed == 1 and app.offset == ms.offset == 3
    assert _answer(ms) == {POOL[0]: ([1, 3], [1.0, 5.0]), POOL[1]: ([1, 3], [2.0, 6.0])}


def test_concat_keeps_each_records_series_and_exemplars() -> None:
    from filodb.model.exemplars import Exemplars

    a = SampleBatch(POOL[:2], [1, 0], [1, 2], [1.0, 2.0])
    a.exemplars = Exemplars(np.array([1], np.int32), np.array([1]), np.array([9.0]),
                            [make_labels({"trace": "t"})])  # fmt: skip
    b = SampleBatch(POOL[1:4], [0, 2], [3, 4], [3.0, 4.0])
    c = RecordBatch.concat([read_record(a.to_bytes()), read_record(b.to_bytes())])
    assert [c.labels(i) for i in range(c.num_series)] == [*POOL[:2], *POOL[1:4]]
    assert c.sidx.tolist() == [1, 0, 2, 4] and c.ts.tolist() == [1, 2, 3, 4]
    assert c.exemplars is not None and c.exemplars.sidx.tolist() == [1]
    assert c.series_keys().tolist() == [*a.series_keys().tolist(), *b.series_keys().tolist()]
