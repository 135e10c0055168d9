from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import cramjam
import numpy as np
import pytest

from filodb.errors import BadInputError
from filodb.store import open_store
from filodb.store.base import ChunkSet, GroupFlush, PartKeyRecord
from filodb.store.sqlite import SqliteColumnStore, SqliteMetaStore, ZstdTrials, open_sqlite
from filodb.testing.store_suite import Stores, StoreSuite, make_chunk, pk_of

ROOT = Path(__file__).resolve().parents[2]


def _raw(stores: Stores, dataset: str, shard: int) -> sqlite3.Connection:
    cs = stores[0]
    assert isinstance(cs, SqliteColumnStore)
    path = cs.files.root / dataset / f"shard-{shard}.db"
    assert path.exists()
    return sqlite3.connect(path)


def _uv(blob: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        v |= (blob[pos] & 0x7F) << shift
        pos += 1
        if blob[pos - 1] < 0x80:
            return v, pos
        shift += 7


def _vectors(blob: bytes) -> tuple[bytes, ...]:
    """The stored layout, parsed here on its own: codec byte, varint n, n varint lengths, the
    bytes (one zstd frame when the codec is 1)."""
    codec, (n, pos) = blob[0], _uv(blob, 1)
    lengths = []
    for _ in range(n):
        ln, pos = _uv(blob, pos)
        lengths.append(ln)
    payload = bytes(cramjam.zstd.decompress(blob[pos:])) if codec == 1 else blob[pos:]
    assert codec in (0, 1) and len(payload) == sum(lengths)
    out, pos = [], 0
    for ln in lengths:
        out.append(payload[pos : pos + ln])
        pos += ln
    return tuple(out)


def _hash(pk: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(pk, digest_size=4).digest(), "little") >> 1


class TestSqliteStore(StoreSuite):
    @pytest.fixture
    def stores(self, tmp_path: Path) -> Stores:
        cs, ms = open_store("sqlite", tmp_path)
        yield cs, ms
        cs.close()
        ms.close()

    def raw_chunks(self, stores, dataset, shard):  # type: ignore[no-untyped-def]
        with _raw(stores, dataset, shard) as con:
            rows = con.execute(
                "SELECT s.part_key, c.chunk_id, c.start_ms, c.end_ms, c.num_rows, c.vectors "
                "FROM chunks c JOIN series s ON s.id = c.series"
            ).fetchall()
        return [ChunkSet(pk, cid, s, e, n, _vectors(b)) for pk, cid, s, e, n, b in rows]

    def raw_part_keys(self, stores, dataset, shard):  # type: ignore[no-untyped-def]
        with _raw(stores, dataset, shard) as con:
            rows = con.execute(
                "SELECT part_key, start_ms, end_ms FROM series WHERE start_ms IS NOT NULL"
            ).fetchall()
        return [PartKeyRecord(*r) for r in rows]

    def raw_checkpoints(self, stores, dataset, shard):  # type: ignore[no-untyped-def]
        with _raw(stores, dataset, shard) as con:
            return dict(con.execute("SELECT flush_group, log_offset FROM checkpoints").fetchall())

    def raw_put_chunks(self, stores, dataset, shard, chunks):  # type: ignore[no-untyped-def]
        con = _raw(stores, dataset, shard)
        with con:
            for c in chunks:
                vs = c.vectors
                blob = bytes([0, len(vs)]) + b"".join(bytes([len(v)]) for v in vs)
                assert all(len(v) < 128 for v in vs) and len(vs) < 128
                found = con.execute(
                    "SELECT id FROM series WHERE part_key = ?", (c.part_key,)
                ).fetchone()
                if found is None:
                    con.execute(
                        "INSERT INTO series (key_hash, part_key) VALUES (?, ?)",
                        (_hash(c.part_key), c.part_key),
                    )
                    found = con.execute(
                        "SELECT id FROM series WHERE part_key = ?", (c.part_key,)
                    ).fetchone()
                (sid,) = found
                con.execute(
                    "INSERT INTO chunks (series, chunk_id, start_ms, end_ms, num_rows, "
                    "vector_bytes, vectors) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        sid,
                        c.chunk_id,
                        c.start_ms,
                        c.end_ms,
                        c.num_rows,
                        c.nbytes,
                        blob + b"".join(vs),
                    ),
                )
        con.close()

    # --- SQLite's own ---------------------------------------------------------------------
    def test_file_layout_and_wal(self, tmp_path: Path, store: SqliteColumnStore) -> None:
        root = tmp_path / "store"
        assert (root / "meta.db").exists()
        assert sorted(p.name for p in (root / "ds").glob("*.db")) == [
            f"shard-{i}.db" for i in range(4)
        ]
        with sqlite3.connect(root / "ds" / "shard-2.db") as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_retention_forgets_interned_series(
        self, stores: Stores, store: SqliteColumnStore
    ) -> None:
        store.write_chunks("ds", 0, [make_chunk(b"old", 1, 0, 9), make_chunk(b"new", 1, 0, 99)])
        store.delete_before("ds", 0, 50)
        with _raw(stores, "ds", 0) as con:
            assert con.execute("SELECT part_key FROM series").fetchall() == [(b"new",)]
        store.write_chunks("ds", 0, [make_chunk(b"old", 2, 60, 70)])
        assert store.read_chunks("ds", 0, [b"old", b"new"], 0, 100) == [
            make_chunk(b"old", 2, 60, 70),
            make_chunk(b"new", 1, 0, 99),
        ]

    def test_reopen_after_close(self, tmp_path: Path) -> None:
        cs, ms = open_sqlite(tmp_path)
        cs.initialize("ds", 2)
        cs.write_flush(
            ms, "ds", 1, 0, [make_chunk(b"pk", 1, 0, 10)], [PartKeyRecord(b"pk", 0, 10)], 7
        )
        cs.close()
        with pytest.raises(RuntimeError, match="closed"):
            cs.stats("ds", 1)
        cs2, ms2 = open_sqlite(tmp_path)
        assert cs2.num_shards("ds") == 2
        assert cs2.read_chunks("ds", 1, [b"pk"], 0, 10) == [make_chunk(b"pk", 1, 0, 10)]
        assert list(cs2.scan_part_keys("ds", 1)) == [PartKeyRecord(b"pk", 0, 10)]
        assert ms2.read_checkpoints("ds", 1) == {0: 7}
        cs2.close()

    def test_unknown_kind_and_options(self, tmp_path: Path) -> None:
        with pytest.raises(BadInputError, match="unknown column store .mongo."):
            open_store("mongo", tmp_path)
        with pytest.raises(BadInputError, match="synchronous"):
            open_store("sqlite", tmp_path, synchronous="SOMETIMES")
        cs, ms = open_store("sqlite", tmp_path, synchronous="full", busy_timeout_ms=100)
        assert isinstance(cs, SqliteColumnStore) and isinstance(ms, SqliteMetaStore)
        cs.close()

    def test_write_flush_is_one_transaction(
        self, stores: Stores, store: SqliteColumnStore, meta
    ) -> None:  # type: ignore[no-untyped-def]
        # A bad record after good ones: nothing of the flush may be stored, checkpoint included.
        bad = PartKeyRecord(b"pk", 0, 10)
        object.__setattr__(bad, "end_ms", object())  # unbindable: fails inside the transaction
        with pytest.raises(sqlite3.Error):
            store.write_flush(meta, "ds", 0, 0, [make_chunk(b"pk", 1, 0, 10)], [bad], 5)
        assert self.raw_chunks(stores, "ds", 0) == []
        assert self.raw_checkpoints(stores, "ds", 0) == {}
        store.write_flush(
            meta, "ds", 0, 0, [make_chunk(b"pk", 1, 0, 10)], [PartKeyRecord(b"pk", 0, 10)], 5
        )
        assert self.raw_checkpoints(stores, "ds", 0) == {0: 5}

    def test_write_flushes_of_several_groups_are_one_transaction(
        self, stores: Stores, store: SqliteColumnStore, meta, monkeypatch: pytest.MonkeyPatch
    ) -> None:  # type: ignore[no-untyped-def]
        # the second group's bad record fails inside the transaction: the first's goes too
        bad = PartKeyRecord(b"pk2", 0, 10)
        object.__setattr__(bad, "end_ms", object())
        good = GroupFlush(0, [make_chunk(b"pk1", 1, 0, 10)], [PartKeyRecord(b"pk1", 0, 10)], 5)
        with pytest.raises(sqlite3.Error):
            store.write_flushes(meta, "ds", 1, [good, GroupFlush(1, [], [bad], 6)])
        assert self.raw_chunks(stores, "ds", 1) == []
        assert self.raw_checkpoints(stores, "ds", 1) == {}
        real, transactions = store.files.write, []

        def write(dataset: str, shard: int):  # type: ignore[no-untyped-def]
            transactions.append((dataset, shard))
            return real(dataset, shard)

        monkeypatch.setattr(store.files, "write", write)
        store.write_flushes(meta, "ds", 1, [good, GroupFlush(1, [], [], 6)])
        assert transactions == [("ds", 1)]  # one commit (one fsync) for both groups
        assert self.raw_checkpoints(stores, "ds", 1) == {0: 5, 1: 6}

    def test_kill_9_mid_write_loses_nothing_committed(self, tmp_path: Path) -> None:
        for attempt in range(4):
            data = tmp_path / f"run{attempt}"
            committed = _run_and_kill(data, WRITER, after_lines=5 + 7 * attempt)
            assert committed, "the writer reported no commit before the kill"
            _check_integrity(data)
            cs, ms = open_sqlite(data)
            stored = {
                c.chunk_id for c in cs.read_chunks("ds", 0, [pk_of(b) for b in range(8)], 0, 2**62)
            }
            calls = {cid // 1000 for cid in stored}
            for call in calls:  # every call is whole: atomic
                assert {cid for cid in stored if cid // 1000 == call} == set(
                    range(call * 1000, call * 1000 + 400)
                )
            assert set(committed) <= calls
            assert max(calls) <= max(committed) + 1  # at most the call in flight committed unseen
            assert ms.read_checkpoints("ds", 0)[0] >= max(committed)
            cs.close()

    def test_two_processes_share_a_shard(self, tmp_path: Path) -> None:
        cs, _ = open_sqlite(tmp_path)
        cs.initialize("ds", 1)
        procs = [subprocess.Popen([sys.executable, "-c", SHARER, str(tmp_path), str(w)], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in range(2)]  # fmt: skip
        reads = 0
        while any(p.poll() is None for p in procs):  # a reader in this process meanwhile
            got = cs.read_chunks("ds", 0, [pk_of(0), pk_of(1)], 0, 2**62)
            assert all(c == make_chunk(c.part_key, c.chunk_id, c.start_ms, c.end_ms) for c in got)
            reads += 1
        for p in procs:
            out, err = p.communicate()
            assert p.returncode == 0, err.decode()
            assert out.decode().split() == ["done"]
        assert reads > 0
        assert cs.stats("ds", 0)["chunks"] == 2 * 200 * 20
        cs.close()
        _check_integrity(tmp_path)


def _check_integrity(data_dir: Path) -> None:
    for db in (data_dir / "store").rglob("*.db"):
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", db


def _run_and_kill(data_dir: Path, code: str, after_lines: int) -> list[int]:
    """Start ``code``, SIGKILL it once it printed ``after_lines`` lines; every number it printed."""
    p = subprocess.Popen([sys.executable, "-c", code, str(data_dir)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert p.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while len(lines) < after_lines and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
    os.kill(p.pid, signal.SIGKILL)
    # read through the same buffered reader: readline may already hold later lines, which
    # communicate() (reading the pipes' file descriptors) would never see
    out = p.stdout.read()
    assert p.stderr is not None
    err = p.stderr.read()
    p.wait()
    assert p.returncode == -signal.SIGKILL, err.decode()
    return [int(x) for x in b"".join(lines + [out]).split()]


# A writer that prints each call number once write_flush returned (so it is committed).
WRITER = textwrap.dedent("""
    import sys
    from filodb.store.base import PartKeyRecord
    from filodb.store.sqlite import open_sqlite
    from filodb.testing.store_suite import make_chunk, pk_of
    cs, ms = open_sqlite(sys.argv[1])
    cs.initialize("ds", 1)
    call = 0
    while True:
        chunks = [make_chunk(pk_of(j % 8), call * 1000 + j, call, call + 1, size=2000) for j in range(400)]
        recs = [PartKeyRecord(pk_of(b), 0, call + 1) for b in range(8)]
        cs.write_flush(ms, "ds", 0, 0, chunks, recs, call)
        print(call, flush=True)
        call += 1
""")

# Writes 200 calls of 20 chunks for its own part key to shard 0, sharing the file.
SHARER = textwrap.dedent("""
    import sys
    from filodb.store.sqlite import open_sqlite
    from filodb.testing.store_suite import make_chunk, pk_of
    cs, ms = open_sqlite(sys.argv[1], busy_timeout_ms=20000)
    w = int(sys.argv[2])
    for call in range(200):
        cs.write_chunks("ds", 0, [make_chunk(pk_of(w), call * 20 + j, call, call + 1) for j in range(20)])
        ms.write_checkpoint("ds", 0, w, call)
    print("done")
""")


_V1_SCHEMA = """
CREATE TABLE series (id INTEGER PRIMARY KEY, part_key BLOB NOT NULL UNIQUE);
CREATE TABLE chunks (series INTEGER NOT NULL, chunk_id INTEGER NOT NULL,
    start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, num_rows INTEGER NOT NULL,
    vector_bytes INTEGER NOT NULL, vectors BLOB NOT NULL, PRIMARY KEY (series, chunk_id));
CREATE INDEX chunks_by_end ON chunks (end_ms);
CREATE TABLE part_keys (part_key BLOB PRIMARY KEY, start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE checkpoints (flush_group INTEGER PRIMARY KEY, log_offset INTEGER NOT NULL);
"""


def _write_v1(path: Path, chunks: list[ChunkSet], records: list[PartKeyRecord]) -> None:
    """A shard file as the v1 layout (before schema versions) wrote it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript(_V1_SCHEMA)
    with con:
        for c in chunks:
            con.execute("INSERT OR IGNORE INTO series (part_key) VALUES (?)", (c.part_key,))
            (sid,) = con.execute(
                "SELECT id FROM series WHERE part_key = ?", (c.part_key,)
            ).fetchone()
            head = len(c.vectors).to_bytes(4, "little") + b"".join(
                len(v).to_bytes(4, "little") for v in c.vectors
            )
            con.execute("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", (sid, c.chunk_id,
                        c.start_ms, c.end_ms, c.num_rows, c.nbytes, head + b"".join(c.vectors)))  # fmt: skip
        con.executemany(
            "INSERT INTO part_keys VALUES (?, ?, ?)",
            [(r.part_key, r.start_ms, r.end_ms) for r in records],
        )
        con.execute("INSERT INTO checkpoints VALUES (3, 42)")
    con.close()


def test_v1_data_directory_is_migrated_on_open(tmp_path: Path) -> None:
    from filodb.encoding import encode_doubles, encode_timestamps

    ts = 1_700_000_000_000 + 15_000 * np.arange(480)
    big = (encode_timestamps(ts), encode_doubles(np.cumsum(np.arange(480) % 7).astype(float)))
    chunks = [make_chunk(b"a", 1, 0, 9), make_chunk(b"a", 20, 20, 29), make_chunk(b"b", 5, 5, 50),
              ChunkSet(b"c", int(ts[0]), int(ts[0]), int(ts[-1]), 480, big)]  # fmt: skip
    records = [PartKeyRecord(b"a", 0, 29), PartKeyRecord(b"b", 5, 50),
               PartKeyRecord(b"only-a-record", 1, 2)]  # fmt: skip
    cs, ms = open_sqlite(tmp_path)
    cs.initialize("ds", 2)
    cs.close()
    ms.close()
    path = tmp_path / "store" / "ds" / "shard-1.db"
    path.unlink()
    _write_v1(path, chunks, records)
    cs, ms = open_sqlite(tmp_path)
    try:
        got = cs.read_chunks("ds", 1, [b"a", b"b", b"c"], -(2**63), 2**63 - 1)
        assert got == chunks
        assert sorted(cs.scan_part_keys("ds", 1), key=lambda r: r.part_key) == records
        assert ms.read_checkpoints("ds", 1) == {3: 42}
        assert cs.stats("ds", 1) == {"chunks": 4, "vector_bytes": sum(c.nbytes for c in chunks),
                                     "part_keys": 3}  # fmt: skip
        cs.write_part_keys("ds", 1, [PartKeyRecord(b"a", 0, 99)])
        cs.write_chunks("ds", 1, [make_chunk(b"a", 30, 30, 99)])
        assert cs.read_chunks("ds", 1, [b"a"], 25, 40) == [chunks[1], make_chunk(b"a", 30, 30, 99)]
    finally:
        cs.close()
        ms.close()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 2
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"series", "chunks", "checkpoints"}
        (blob,) = con.execute("SELECT vectors FROM chunks WHERE num_rows = 480").fetchone()
        assert blob[0] in (0, 1) and _vectors(blob) == big


def test_a_newer_layout_is_refused(tmp_path: Path) -> None:
    cs, ms = open_sqlite(tmp_path)
    cs.initialize("ds", 1)
    cs.close()
    ms.close()
    with sqlite3.connect(tmp_path / "store" / "ds" / "shard-0.db") as con:
        con.execute("PRAGMA user_version = 99")
    cs, ms = open_sqlite(tmp_path)
    try:
        with pytest.raises(BadInputError, match="newer"):
            cs.read_chunks("ds", 0, [b"a"], 0, 1)
    finally:
        cs.close()
        ms.close()


def test_compressible_vectors_are_stored_compressed_and_read_back(stores: Stores) -> None:
    cs = stores[0]
    cs.initialize("ds", 1)
    vec = bytes(range(64)) * 20  # compresses well
    chunk = ChunkSet(b"z", 1, 1, 2, 2, (vec, b"tiny", vec[::-1]))
    cs.write_chunks("ds", 0, [chunk])
    assert cs.read_chunks("ds", 0, [b"z"], 0, 5) == [chunk]
    with _raw(stores, "ds", 0) as con:
        (blob,) = con.execute("SELECT vectors FROM chunks").fetchone()
    assert blob[0] == 1 and len(blob) < len(vec) // 4 and _vectors(blob) == chunk.vectors


def test_zstd_is_tried_on_a_sample_while_it_pays_nothing_and_on_all_again_once_it_pays(
    stores: Stores,
) -> None:
    """Chunks the memstore encodes do not compress: after a few tries, one chunk in
    ``ZstdTrials.SAMPLE`` is tried; once sampled chunks compress, every chunk is tried again
    and stored compressed. Every chunk reads back as written either way."""
    cs = stores[0]
    assert isinstance(cs, SqliteColumnStore)
    cs.initialize("ds", 1)
    rng = np.random.default_rng(7)
    noise = [ChunkSet(b"n%d" % i, 1, 1, 2, 2, (rng.bytes(300), rng.bytes(700)))
             for i in range(1600)]  # fmt: skip
    cs.write_chunks("ds", 0, noise)
    tries = cs.zstd.tried
    assert cs.zstd.won == 0 and tries < 1600 // ZstdTrials.SAMPLE + 60
    pattern = rng.bytes(97)
    same = [ChunkSet(b"p%d" % i, 1, 1, 2, 2, (pattern * 8, pattern * 3)) for i in range(400)]
    cs.write_chunks("ds", 0, same)
    assert cs.zstd.tried - tries > 400 - 40  # found by the sample, then tried on all
    with _raw(stores, "ds", 0) as con:
        rows = con.execute("SELECT s.part_key, c.vectors FROM chunks c "
                           "JOIN series s ON s.id = c.series").fetchall()  # fmt: skip
    packed = Counter((bytes(pk[:1]), blob[0]) for pk, blob in rows)
    assert packed[b"n", 1] == 0 and packed[b"n", 0] == 1600
    assert packed[b"p", 1] > 400 - 40  # stored compressed: all but the first few
    keys = [c.part_key for c in noise + same]
    assert sorted(cs.read_chunks("ds", 0, keys, 0, 5), key=lambda c: c.part_key) == sorted(
        noise + same, key=lambda c: c.part_key
    )


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    cs, ms = open_store("sqlite", tmp_path)
    yield cs, ms
    cs.close()
    ms.close()


def test_connections_idle_a_minute_are_closed_when_another_is_given_back(
    tmp_path: Path,
) -> None:
    """A node's idle shard files do not keep their connections (~250 kB each) open for good:
    one unused for ``idle_close_s`` is closed the next time any connection is given back,
    and its file reopens on use, its data intact."""
    from filodb.store.sqlite import _Pool

    clock = [1000.0]
    pool = _Pool("FULL", 1000, max_idle=64, idle_close_s=60, clock=lambda: clock[0])

    def schema(con: sqlite3.Connection) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")

    files = [tmp_path / f"{i}.db" for i in range(3)]
    held = []
    for i, f in enumerate(files):
        with pool.connection(f, schema) as con:
            con.execute("INSERT INTO t VALUES (?)", (i,))
            held.append(con)
        clock[0] += 20  # 0 given back at 1000, 1 at 1020, 2 at 1040
    clock[0] = 1075  # 0 idle 75 s, 1 55 s, 2 35 s
    with pool.connection(files[2], schema) as con:
        assert con is held[2]  # the idle one is reused
    assert set(pool._idle_order) == {held[1], held[2]}
    with pytest.raises(sqlite3.ProgrammingError):  # 0's connection was closed
        held[0].execute("SELECT 1")
    clock[0] = 1081  # 1 idle 61 s: closed when 0's reopened connection is given back
    with pool.connection(files[0], schema) as con:
        assert con is not held[0] and con.execute("SELECT v FROM t").fetchall() == [(0,)]
    assert held[1] not in pool._idle_order and len(pool._idle_order) == 2
    with pool.connection(files[1], schema) as con:
        assert con.execute("SELECT v FROM t").fetchall() == [(1,)]
    pool.close()


def test_idle_connections_are_capped_and_reopened_on_use(tmp_path: Path) -> None:
    """A node with hundreds of shard files keeps at most MAX_IDLE connections open; a file
    whose connection was closed is reopened when used, its data intact."""
    from filodb.store.sqlite import MAX_IDLE

    column, meta = open_sqlite(tmp_path)
    column.initialize("ds", 3 * MAX_IDLE)
    pool = column.files._pool
    assert len(pool._all) <= MAX_IDLE and len(pool._idle_order) <= MAX_IDLE
    c = make_chunk(b"pk", 1_000, 1_000, 1_004)
    for shard in (0, 2 * MAX_IDLE, 0):  # 0's connection went long ago, then comes back
        column.write_chunks("ds", shard, [c])
        got = column.read_chunks("ds", shard, [b"pk"], 0, 10**9)
        assert [(g.chunk_id, g.num_rows, g.vectors) for g in got] == [(1_000, 5, c.vectors)]
    assert len(pool._all) <= MAX_IDLE
    column.close()
    meta.close()
