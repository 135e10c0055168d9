from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from filodb.errors import BadInputError
from filodb.store import open_store
from filodb.store.base import ChunkSet, PartKeyRecord
from filodb.store.sqlite import SqliteColumnStore, SqliteMetaStore, open_sqlite
from filodb.testing.store_suite import Stores, StoreSuite, make_chunk, pk_of

ROOT = Path(__file__).resolve().parents[2]


def _raw(stores: Stores, dataset: str, shard: int) -> sqlite3.Connection:
    cs = stores[0]
    assert isinstance(cs, SqliteColumnStore)
    path = cs.files.root / dataset / f"shard-{shard}.db"
    assert path.exists()
    return sqlite3.connect(path)


def _vectors(blob: bytes) -> tuple[bytes, ...]:
    """The stored layout, parsed here on its own: u32 n, n x u32 length, the bytes."""
    n = int.from_bytes(blob[:4], "little")
    lengths = [int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "little") for i in range(n)]
    out, pos = [], 4 + 4 * n
    for ln in lengths:
        out.append(blob[pos : pos + ln])
        pos += ln
    assert pos == len(blob)
    return tuple(out)


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
            rows = con.execute("SELECT part_key, start_ms, end_ms FROM part_keys").fetchall()
        return [PartKeyRecord(*r) for r in rows]

    def raw_checkpoints(self, stores, dataset, shard):  # type: ignore[no-untyped-def]
        with _raw(stores, dataset, shard) as con:
            return dict(con.execute("SELECT flush_group, log_offset FROM checkpoints").fetchall())

    def raw_put_chunks(self, stores, dataset, shard, chunks):  # type: ignore[no-untyped-def]
        con = _raw(stores, dataset, shard)
        with con:
            for c in chunks:
                vs = c.vectors
                blob = len(vs).to_bytes(4, "little") + b"".join(
                    len(v).to_bytes(4, "little") for v in vs
                )
                con.execute("INSERT OR IGNORE INTO series (part_key) VALUES (?)", (c.part_key,))
                (sid,) = con.execute(
                    "SELECT id FROM series WHERE part_key = ?", (c.part_key,)
                ).fetchone()
                con.execute(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
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
    out, err = p.communicate()
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
