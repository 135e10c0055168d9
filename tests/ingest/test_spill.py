"""The Redis log's spill (:mod:`filodb.ingest.spill`): applied records moved from Redis's
memory to a file are gone from Redis, read back in order by any process (a recovery on
another node), never twice, and dropped with the trim that the column store allows (a
spill's row, once its last record is)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from filodb.ingest.redis_streams import SPILL_KEY, RedisStreamsLog, stream_key
from filodb.ingest.spill import LogSpill


def _log(redis_url: str, tmp_path: Path) -> RedisStreamsLog:
    return RedisStreamsLog(redis_url, spill_path=tmp_path / "spill")


def _read_all(log: RedisStreamsLog, shard: int, pos: int = 0, count: int = 3) -> list:
    out = []
    while True:
        got = log.read("ds", {shard: pos}, count, 0).get(shard, [])
        if not got:
            return out
        out += got
        pos = got[-1][0]


def test_spilled_records_leave_redis_and_read_back_in_order_from_another_process(
    redis_url: str, tmp_path: Path
) -> None:
    r = redis.Redis.from_url(redis_url)
    node = _log(redis_url, tmp_path)
    recs = [b"r%d" % i for i in range(10)]
    node.append("ds", 0, recs)
    node.append("ds", 1, [b"other"])
    assert node.spill({("ds", 0): 7}) == sum(len(x) for x in recs[:7])
    assert r.xlen(stream_key("ds", 0)) == 3 and r.xlen(stream_key("ds", 1)) == 1
    assert node.spilled[("ds", 0)] == 7
    # a fresh process (another node recovering the shard) reads through the spill, in pages
    other = _log(redis_url, tmp_path)
    assert _read_all(other, 0) == list(enumerate(recs, 1))
    assert _read_all(other, 0, pos=5) == list(enumerate(recs, 1))[5:]
    # the node's own reader, from a position below what it spilled, gets them too
    got = node.read_many({("ds", 0): 2, ("ds", 1): 0}, 100, 0)
    assert got[("ds", 0)] == [(3, b"r2"), (4, b"r3"), (5, b"r4"), (6, b"r5"), (7, b"r6")]
    # a second spill moves only what came since; nothing new moves nothing
    node.append("ds", 0, [b"r10"])
    assert node.spill({("ds", 0): 11}) == len(b"r7r8r9r10")
    assert node.spill({("ds", 0): 11}) == 0
    assert r.xlen(stream_key("ds", 0)) == 0
    assert [rec for _, rec in _read_all(other, 0)] == [*recs, b"r10"]
    assert node.end_offset("ds", 0) == 11
    node.close()
    other.close()


def test_a_trim_drops_spilled_records_and_reads_skip_them_as_trimmed_ones(
    redis_url: str, tmp_path: Path
) -> None:
    log = _log(redis_url, tmp_path)
    log.append("ds", 0, [b"a", b"b", b"c", b"d", b"e"])
    log.spill({("ds", 0): 4})
    log.trim("ds", 0, 3)  # the column store holds 1..3
    spill = LogSpill(tmp_path / "spill")
    # a replay starts at the checkpoint; a spill's row goes once its last record is trimmed
    assert spill.read(("ds", 0), 3, 10, 10) == [(4, b"d")]
    assert _read_all(log, 0, pos=3) == [(4, b"d"), (5, b"e")]
    log.trim("ds", 0, 4)
    assert spill.read(("ds", 0), 0, 10, 10) == []
    assert _read_all(log, 0) == [(5, b"e")]
    log.trim("ds", 0, 5)
    assert spill.read(("ds", 0), 0, 10, 10) == []
    assert _read_all(log, 0) == []
    spill.close()
    log.close()


def test_a_spill_cut_short_before_redis_trimmed_reads_each_record_once(
    redis_url: str, tmp_path: Path
) -> None:
    """A crash after the file's commit and before Redis noted the spill: the records are in
    both; the stream is read, and the next spill writes them again over the same rows."""
    log = _log(redis_url, tmp_path)
    log.append("ds", 0, [b"a", b"b", b"c"])
    LogSpill(tmp_path / "spill").write({("ds", 0): (1, [b"a", b"b"])})
    assert _read_all(log, 0) == [(1, b"a"), (2, b"b"), (3, b"c")]
    log.spill({("ds", 0): 3})
    assert _read_all(_log(redis_url, tmp_path), 0) == [(1, b"a"), (2, b"b"), (3, b"c")]
    log.close()


def test_deleting_a_dataset_drops_its_spill(redis_url: str, tmp_path: Path) -> None:
    r = redis.Redis.from_url(redis_url)
    log = _log(redis_url, tmp_path)
    log.append("ds", 0, [b"a", b"b"])
    log.append("keep", 0, [b"k"])
    log.spill({("ds", 0): 2, ("keep", 0): 1})
    log.delete_dataset("ds", 1)
    assert not r.hexists(SPILL_KEY, stream_key("ds", 0))
    spill = LogSpill(tmp_path / "spill")
    assert spill.read(("ds", 0), 0, 10, 10) == []
    assert spill.read(("keep", 0), 0, 10, 10) == [(1, b"k")]
    log.append("ds", 0, [b"new"])  # the name again: a new log from offset 1
    assert _read_all(_log(redis_url, tmp_path), 0) == [(1, b"new")]
    spill.close()
    log.close()


def test_a_log_without_a_spill_file_refuses_to_spill(redis_url: str) -> None:
    log = RedisStreamsLog(redis_url)
    assert not log.spills
    with pytest.raises(NotImplementedError):
        log.spill({("ds", 0): 1})
    log.close()


def test_the_spill_file_gives_back_what_was_trimmed(redis_url: str, tmp_path: Path) -> None:
    """The data directory must not keep what the log trimmed: after ~4 MB spilled and then
    trimmed, the file and its write-ahead log are small again."""
    import os

    log = _log(redis_url, tmp_path)
    for shard in range(4):
        log.append("ds", shard, [os.urandom(1000) for _ in range(1000)])
    log.spill({("ds", shard): 1000 for shard in range(4)})
    files = [f for f in (tmp_path / "spill").rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) > 4_000_000
    for shard in range(4):
        log.trim("ds", shard, 1000)
    files = [f for f in (tmp_path / "spill").rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 200_000, [
        (f.name, f.stat().st_size) for f in files
    ]
    log.close()


def test_a_spill_of_thousands_of_records_reads_back_whole(tmp_path: Path) -> None:
    """More records than one writev takes (the kernel's limit is 1024 buffers)."""
    spill = LogSpill(tmp_path / "spill")
    recs = [b"%d" % i * (1 + i % 7) for i in range(3000)]
    assert spill.write({("ds", 3): (11, recs)}) == sum(map(len, recs))
    assert spill.read(("ds", 3), 10, 10_000, 10_000) == list(enumerate(recs, 11))
    assert spill.read(("ds", 3), 2000, 2004, 10) == [(i, recs[i - 11]) for i in range(2001, 2005)]
    assert spill.read(("ds", 3), 10, 10_000, 2) == [(11, recs[0]), (12, recs[1])]


def test_a_spill_of_many_partitions_syncs_the_file_system_twice_not_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filodb.ingest import spill as spill_mod

    if spill_mod._SYNCFS is None:  # off Linux 5.8+: every spill syncs each file
        monkeypatch.setattr(spill_mod, "_SYNCFS", lambda fd: 0)
    calls: list[Path] = []
    real = spill_mod._sync_file_system
    monkeypatch.setattr(spill_mod, "_sync_file_system", lambda p: (calls.append(p), real(p)))
    spill = LogSpill(tmp_path / "spill")
    many = {(f"ds{i % 3}", i): (5, [b"%d-a" % i, b"%d-b" % i]) for i in range(20)}
    spill.write(many)
    assert calls == [tmp_path / "spill"] * 2  # the bytes, then the names
    for (ds, shard), (_, recs) in many.items():
        assert spill.read((ds, shard), 0, 100, 100) == [(5, recs[0]), (6, recs[1])]
    assert not [f for f in (tmp_path / "spill").rglob("*.tmp")]
    spill.write({("ds0", 0): (7, [b"c"]), ("ds1", 1): (7, [b"c"])})
    assert len(calls) == 2  # a few partitions: each file and directory fsynced
    assert spill.read(("ds0", 0), 6, 100, 100) == [(7, b"c")]


def test_a_segment_that_is_not_whole_is_an_error_not_a_silent_gap(tmp_path: Path) -> None:
    spill = LogSpill(tmp_path / "spill")
    spill.write({("ds", 0): (1, [b"abc", b"def"])})
    (seg,) = (tmp_path / "spill" / "ds" / "0").glob("*.seg")
    whole = seg.read_bytes()
    seg.write_bytes(whole[:-1])
    with pytest.raises(ValueError, match="not the segment's"):
        spill.read(("ds", 0), 0, 10, 10)
    seg.write_bytes(whole)  # whole again, under a name that says three records
    seg.rename(seg.with_name(f"{1:020d}-{3:020d}.seg"))
    with pytest.raises(ValueError, match="2 records, not 3"):
        spill.read(("ds", 0), 0, 10, 10)


def _legacy_file(path: Path, rows: list[tuple[str, int, int, list[bytes]]]) -> None:
    """An older version's spill.db (one SQLite table, a row per partition's spill)."""
    import sqlite3

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE spill (dataset TEXT NOT NULL, shard INTEGER NOT NULL, "
                "first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL, lengths BLOB "
                "NOT NULL, records BLOB NOT NULL, PRIMARY KEY (dataset, shard, first_offset)) "
                "WITHOUT ROWID")  # fmt: skip
    for ds, shard, first, recs in rows:
        lengths = np.array([len(r) for r in recs], np.uint32).tobytes()
        con.execute("INSERT INTO spill VALUES (?, ?, ?, ?, ?, ?)",
                    (ds, shard, first, first + len(recs) - 1, lengths, b"".join(recs)))  # fmt: skip
    con.close()


def test_an_older_version_s_spill_file_is_read_after_the_upgrade_then_removed(
    redis_url: str, tmp_path: Path
) -> None:
    """Records an older version spilled into spill.db (Redis no longer has them) are what a
    recovering shard reads after the upgrade: nothing it acknowledged is lost."""
    r = redis.Redis.from_url(redis_url)
    _legacy_file(tmp_path / "spill" / "spill.db",
                 [("ds", 0, 1, [b"a", b"b"]), ("ds", 0, 3, [b"c"]), ("ds", 1, 1, [b"x"])])  # fmt: skip
    old = _log(redis_url, tmp_path)
    old.append("ds", 0, [b"a", b"b", b"c", b"d"])
    old.append("ds", 1, [b"x", b"y"])
    r.hset(SPILL_KEY, mapping={stream_key("ds", 0): 3, stream_key("ds", 1): 1})
    r.xtrim(stream_key("ds", 0), minid="0-4")  # the older version trimmed what it spilled
    r.xtrim(stream_key("ds", 1), minid="0-2")
    old.close()
    log = _log(redis_url, tmp_path)
    assert _read_all(log, 0) == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]
    assert _read_all(log, 1) == [(1, b"x"), (2, b"y")]
    assert not (tmp_path / "spill" / "spill.db").exists()
    assert sorted(p.name for p in (tmp_path / "spill" / "ds" / "0").iterdir()) == [
        f"{1:020d}-{2:020d}.seg", f"{3:020d}-{3:020d}.seg"]  # fmt: skip
    log.trim("ds", 0, 2)
    assert _read_all(_log(redis_url, tmp_path), 0, pos=2) == [(3, b"c"), (4, b"d")]
    log.close()
