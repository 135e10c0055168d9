"""The embedded column store and meta store: SQLite files in WAL mode, one per (dataset, shard).

Layout under ``<data_dir>/store/``::

    meta.db                        datasets(name, num_shards): the dataset registry
    <dataset>/shard-<n>.db         series (with their part-key records), chunks, checkpoints
                                   of shard n; PRAGMA user_version = SCHEMA_VERSION

One file per shard because a shard is the unit of ownership, flushing and moving: a shard's
flush writer never waits for another shard's, a moved shard is one file, and a shard's
checkpoints share the WAL of its chunks, so they are committed after (and, with ``write_flush``,
together with) the chunks they vouch for: SQLite recovers a prefix of a WAL's transactions, so
even where a power loss drops recent commits (``synchronous=NORMAL``), a surviving checkpoint
has its chunks. See ``docs/store.md`` for the durability argument and measured figures.

Concurrency: connections come from a per-file pool (one connection is used by one thread at a
time). Writes are short ``BEGIN IMMEDIATE`` transactions, so two processes sharing a file queue
on SQLite's write lock (``busy_timeout``) instead of failing; reads never block the writer (WAL).
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cramjam

from filodb.errors import BadInputError, UnknownDatasetError
from filodb.model.dataset import check_dataset_name
from filodb.model.varint import varint, varint_bytes
from filodb.store.base import (
    ChunkSet,
    ColumnStore,
    GroupFlush,
    MetaStore,
    PartKeyRecord,
    check_checkpoint,
    check_range,
)

SCHEMA_VERSION = 2  # PRAGMA user_version of a shard file; 0 is the v1 layout (migrated on open)
_SHARD_SCHEMA = (
    # One row per series: its part key, once (looked up through an index on a 31-bit hash of
    # it, not on the key itself), and its part-key record (start/end; NULL until written).
    # Chunk rows carry the small series id and are appended in rowid order, so their pages are
    # full; the (series, chunk_id) index is what gets split. WITHOUT ROWID, clustered by
    # series, left 12 % of the chunk pages empty after one flush (more as flushes interleave).
    # See docs/store.md for the measured bytes.
    """CREATE TABLE IF NOT EXISTS series (
        id INTEGER PRIMARY KEY,
        key_hash INTEGER NOT NULL,
        part_key BLOB NOT NULL,
        start_ms INTEGER,
        end_ms INTEGER)""",
    "CREATE INDEX IF NOT EXISTS series_by_hash ON series (key_hash)",
    """CREATE TABLE IF NOT EXISTS chunks (
        series INTEGER NOT NULL,
        chunk_id INTEGER NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        num_rows INTEGER NOT NULL,
        vector_bytes INTEGER NOT NULL,
        vectors BLOB NOT NULL,
        UNIQUE (series, chunk_id))""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        flush_group INTEGER PRIMARY KEY,
        log_offset INTEGER NOT NULL)""",
)
_META_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS datasets (name TEXT PRIMARY KEY, num_shards INTEGER NOT NULL)",
)
_UPSERT_CHUNK = """INSERT INTO chunks (series, chunk_id, start_ms, end_ms, num_rows, vector_bytes,
    vectors) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (series, chunk_id) DO UPDATE SET start_ms = excluded.start_ms,
    end_ms = excluded.end_ms, num_rows = excluded.num_rows,
    vector_bytes = excluded.vector_bytes, vectors = excluded.vectors"""
_MERGE_PART_KEY = """UPDATE series SET start_ms = min(coalesce(start_ms, ?1), ?1),
    end_ms = max(coalesce(end_ms, ?2), ?2) WHERE id = ?3"""
_UPSERT_CHECKPOINT = """INSERT INTO checkpoints VALUES (?, ?)
    ON CONFLICT (flush_group) DO UPDATE SET log_offset = excluded.log_offset"""
# Page cache per connection, in KiB (SQLite's default is 2 MB): a node keeps connections to
# hundreds of shard files and reads chunk blobs once per query (the OS caches the files).
# 256 shard files after three flushes of 430 series each: 140 MB at 2 MB, 53 MB at 256 KiB.
_CACHE_KIB = 256
MAX_IDLE = 64  # idle connections a store keeps open (the rest are closed, oldest first)
# A connection unused this long is closed (when another is given back): each holds ~250 kB
# (schema, WAL index, page cache), 16 MB for the 64 a node of hundreds of idle shards kept
# after recovery read every file once; reopening costs ~0.4 ms, at most once a minute a file.
IDLE_CLOSE_S = 60.0
_READ_BATCH = 500  # part keys per SELECT ... IN (...)
_SCAN_PAGE = 10_000  # part-key records per read transaction of scan_part_keys
_DELETE_SERIES = 2_000  # series per retention transaction
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
CREATE_THREADS = 8  # shard files created at once by initialize
_PAGE_SIZE = 16_384  # vs 4 KiB: 1.34 instead of 1.48 disk bytes per vector byte, faster writes
ZSTD_LEVEL = 3  # as small as 9 and 19 on these blobs (measured), faster
ZSTD_MIN_SAVING = 0.03  # a chunk's vectors are stored compressed when that saves 3 % or more


def key_hash(part_key: bytes) -> int:
    """The 31-bit hash the series table indexes part keys by (4 bytes a row; collisions are
    resolved by comparing the keys themselves)."""
    return int.from_bytes(hashlib.blake2b(part_key, digest_size=4).digest(), "little") >> 1


def encode_vectors(vectors: Sequence[bytes], trials: ZstdTrials | None = None) -> bytes:
    """One blob: ``[codec u8][count varint][length varint each][payload]``, the payload being
    the vectors one after the other, zstd-compressed as one frame when codec is 1 (when that
    saves at least ``ZSTD_MIN_SAVING``), as they are when codec is 0. ``trials``: whether to
    try compressing at all (always without)."""
    payload = b"".join(vectors)
    head = varint_bytes(len(vectors)) + b"".join(varint_bytes(len(v)) for v in vectors)
    if len(payload) >= 64 and (trials is None or trials.want()):
        packed = bytes(cramjam.zstd.compress(payload, level=ZSTD_LEVEL))
        won = len(packed) <= len(payload) * (1 - ZSTD_MIN_SAVING)
        if trials is not None:
            trials.saw(won)
        if won:
            return b"\x01" + head + packed
    return b"\x00" + head + payload


class ZstdTrials:
    """Whether to try zstd on a chunk's vectors: every chunk while recent tries paid, one in
    ``SAMPLE`` while they do not.

    The memstore's vectors are delta-of-delta timestamps and XOR'd values, bit-packed: zstd
    finds nothing left in them on the shapes measured (counters, gauges of a few values or of
    random ones, 60 to 1 920 rows: every frame came out larger than its input), and a try
    costs ~10 us a chunk whatever the level, the largest part of a flush's encoding once its
    commits were joined. A value pattern XOR cannot see (a gauge alternating between two
    unrelated floats) does compress; sampling finds such data and the share of tries that pay
    brings every chunk back to being tried. Shared by a store's writers: the races on the
    score are benign (a try more or less)."""

    SAMPLE = 16
    DECAY = 0.9

    def __init__(self) -> None:
        self.score = 1.0  # moving share of tries that paid: try everything at first
        self._n = 0
        self.tried = 0  # for tests and curiosity
        self.won = 0

    def want(self) -> bool:
        self._n += 1
        return self.score >= 1 / self.SAMPLE or self._n % self.SAMPLE == 0

    def saw(self, won: bool) -> None:
        self.tried += 1
        self.won += won
        self.score = self.DECAY * self.score + (1 - self.DECAY) * won


def decode_vectors(blob: bytes) -> tuple[bytes, ...]:
    """Inverse of :func:`encode_vectors`; BadInputError on a blob that is not one."""
    try:
        codec, pos, lengths = blob[0], 1, []
        n, pos = varint(blob, pos)
        for _ in range(n):
            ln, pos = varint(blob, pos)
            lengths.append(ln)
        total = sum(lengths)
        if codec == 1:
            payload = bytes(cramjam.zstd.decompress(blob[pos:], output_len=total))
        elif codec == 0:
            payload = blob[pos:]
        else:
            raise ValueError(f"codec {codec}")
    except (IndexError, ValueError, cramjam.DecompressionError) as e:
        raise BadInputError(f"corrupt chunk blob ({e})") from e
    if len(payload) != total:
        raise BadInputError("corrupt chunk blob (length)")
    view, at, out = memoryview(payload), 0, []
    for ln in lengths:
        out.append(bytes(view[at : at + ln]))
        at += ln
    return tuple(out)


def decode_vectors_v1(blob: bytes) -> tuple[bytes, ...]:
    """The v1 blob: uint32 count, uint32 length of each vector, then the vectors."""
    (n,) = struct.unpack_from("<I", blob)
    lengths = struct.unpack_from(f"<{n}I", blob, 4)
    view, pos, out = memoryview(blob), 4 + 4 * n, []
    for ln in lengths:
        out.append(bytes(view[pos : pos + ln]))
        pos += ln
    return tuple(out)


def _shard_schema(con: sqlite3.Connection) -> None:
    """Create a shard file's tables, or bring a v1 file to the current layout (inside the
    caller's write transaction): the part keys move into ``series``, and every chunk blob is
    rewritten (compressed where that pays). Refuses a file written by a newer version."""
    (version,) = con.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise BadInputError(
            f"shard file has layout {version}, newer than this filodb ({SCHEMA_VERSION})"
        )
    if version == SCHEMA_VERSION:
        return
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "part_keys" in tables:  # v1
        con.execute("DROP INDEX IF EXISTS chunks_by_end")
        con.execute("ALTER TABLE series RENAME TO series_v1")
        con.execute("ALTER TABLE chunks RENAME TO chunks_v1")
    for stmt in _SHARD_SCHEMA:
        con.execute(stmt)
    if "part_keys" in tables:
        con.create_function("filodb_key_hash", 1, key_hash, deterministic=True)
        con.create_function("filodb_blob_v2", 1, lambda b: encode_vectors(decode_vectors_v1(b)))
        con.execute(
            "INSERT INTO series SELECT s.id, filodb_key_hash(s.part_key), s.part_key, "
            "p.start_ms, p.end_ms FROM series_v1 s LEFT JOIN part_keys p USING (part_key)"
        )
        con.execute(
            "INSERT INTO series (key_hash, part_key, start_ms, end_ms) SELECT "
            "filodb_key_hash(part_key), part_key, start_ms, end_ms FROM part_keys "
            "WHERE part_key NOT IN (SELECT part_key FROM series_v1)"
        )
        con.execute(
            "INSERT INTO chunks (series, chunk_id, start_ms, end_ms, num_rows, vector_bytes, "
            "vectors) SELECT series, chunk_id, start_ms, end_ms, num_rows, vector_bytes, "
            "filodb_blob_v2(vectors) FROM chunks_v1"
        )
        for t in ("chunks_v1", "series_v1", "part_keys"):
            con.execute(f"DROP TABLE {t}")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _meta_schema(con: sqlite3.Connection) -> None:
    for stmt in _META_SCHEMA:
        con.execute(stmt)


class _Pool:
    """Connections per database file, each used by one thread at a time; closes them all.

    At most ``max_idle`` connections are kept idle: past that, the one idle longest is closed
    (an open connection to a shard file costs ~250 kB: schema, WAL index, cache; a node of
    hundreds of shards writes each file once per flush interval and group); and whenever one
    is given back, those idle ``idle_close_s`` or more are closed."""

    def __init__(self, synchronous: str, busy_timeout_ms: int, max_idle: int = MAX_IDLE,
                 idle_close_s: float = IDLE_CLOSE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._sync = synchronous
        self._busy_ms = busy_timeout_ms
        self._max_idle = max(1, int(max_idle))
        self._idle_close_s = float(idle_close_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: dict[Path, list[sqlite3.Connection]] = {}
        # idle connections, oldest first: their file and since when they are idle
        self._idle_order: dict[sqlite3.Connection, tuple[Path, float]] = {}
        self._all: list[sqlite3.Connection] = []
        self._ready: set[Path] = set()
        self._closed = False

    def _connect(
        self, path: Path, schema: Callable[[sqlite3.Connection], None]
    ) -> sqlite3.Connection:
        con = sqlite3.connect(
            path, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False
        )
        con.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        if path not in self._ready:  # once per file and process: WAL (persistent) and tables
            con.execute(f"PRAGMA page_size = {_PAGE_SIZE}")  # only takes on a new, empty file
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"{path}: cannot switch to WAL (got {mode})")
            con.execute("BEGIN IMMEDIATE")
            try:
                schema(con)
            except BaseException:
                con.execute("ROLLBACK")
                con.close()
                raise
            con.execute("COMMIT")
            self._ready.add(path)
        con.execute(f"PRAGMA synchronous = {self._sync}")
        con.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        return con

    @contextmanager
    def connection(
        self, path: Path, schema: Callable[[sqlite3.Connection], None]
    ) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the SQLite store is closed")
            idle = self._idle.setdefault(path, [])
            con = idle.pop() if idle else None
            if con is not None:
                del self._idle_order[con]
        if con is None:
            con = self._connect(path, schema)
            with self._lock:
                self._all.append(con)
        try:
            yield con
        finally:
            if con.in_transaction:  # an exception escaped mid-transaction
                con.execute("ROLLBACK")
            with self._lock:
                spare = [con] if self._closed else self._give_back(con, path)
            for old in spare:
                old.close()

    def close_idle(self) -> None:
        """Close the connections idle for ``idle_close_s`` (also done whenever one is given
        back; this is for a node where nothing is)."""
        with self._lock:
            spare = self._take_spare(self._clock())
        for old in spare:
            old.close()

    def _give_back(self, con: sqlite3.Connection, path: Path) -> list[sqlite3.Connection]:
        """Keep ``con`` idle; take out (to be closed) those past ``max_idle`` or idle for
        ``idle_close_s``, oldest first. Under the lock."""
        now = self._clock()
        self._idle.setdefault(path, []).append(con)
        self._idle_order[con] = (path, now)
        return self._take_spare(now)

    def _take_spare(self, now: float) -> list[sqlite3.Connection]:
        spare: list[sqlite3.Connection] = []
        for old, (_, since) in self._idle_order.items():  # oldest first
            if (len(self._idle_order) - len(spare) <= self._max_idle
                    and now - since < self._idle_close_s):  # fmt: skip
                break
            spare.append(old)
        for old in spare:
            p, _ = self._idle_order.pop(old)
            self._idle[p].remove(old)
            self._all.remove(old)
        return spare

    def close(self) -> None:
        with self._lock:
            self._closed = True
            cons, self._all, self._idle, self._idle_order = self._all, [], {}, {}
        for con in cons:
            con.close()


class SqliteFiles:
    """The files of one store root, shared by its column store and meta store."""

    def __init__(self, root: Path, synchronous: str = "FULL", busy_timeout_ms: int = 30_000):
        if str(synchronous).upper() not in _SYNCHRONOUS:
            raise BadInputError(f"synchronous must be one of {_SYNCHRONOUS}, got {synchronous!r}")
        if not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
            raise BadInputError(f"busy_timeout_ms must be an int >= 0, got {busy_timeout_ms!r}")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._pool = _Pool(str(synchronous).upper(), busy_timeout_ms)
        self._shards: dict[str, int] = {}
        self._lock = threading.Lock()

    def shard_path(self, dataset: str, shard: int) -> Path:
        return self.root / dataset / f"shard-{shard}.db"

    @contextmanager
    def _meta(self) -> Iterator[sqlite3.Connection]:
        with self._pool.connection(self.root / "meta.db", _meta_schema) as con:
            yield con

    def register(self, dataset: str, num_shards: int) -> None:
        """Create the shard files, then record the dataset (idempotent, same shard count)."""
        check_dataset_name(dataset)
        if not isinstance(num_shards, int) or isinstance(num_shards, bool) or num_shards < 1:
            raise BadInputError(f"num_shards must be an int >= 1, got {num_shards!r}")
        (self.root / dataset).mkdir(parents=True, exist_ok=True)

        def create(shard: int) -> None:
            with self._pool.connection(self.shard_path(dataset, shard), _shard_schema):
                pass

        # each new file waits for its syncs: hundreds of shards are created several at a time
        with ThreadPoolExecutor(min(CREATE_THREADS, num_shards)) as pool:
            list(pool.map(create, range(num_shards)))
        with self._meta() as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT num_shards FROM datasets WHERE name = ?", (dataset,))
            have = row.fetchone()
            if have is None:
                con.execute("INSERT INTO datasets VALUES (?, ?)", (dataset, num_shards))
            con.execute("COMMIT")
        if have is not None and have[0] != num_shards:
            raise BadInputError(
                f"dataset {dataset!r} already has {have[0]} shards, not {num_shards}"
            )
        with self._lock:
            self._shards[dataset] = num_shards

    def num_shards(self, dataset: str) -> int:
        check_dataset_name(dataset)
        with self._lock:
            n = self._shards.get(dataset)
        if n is None:
            with self._meta() as con:
                row = con.execute("SELECT num_shards FROM datasets WHERE name = ?", (dataset,))
                found = row.fetchone()
            if found is None:
                raise UnknownDatasetError(f"dataset {dataset!r} is not initialized in {self.root}")
            n = found[0]
            with self._lock:
                self._shards[dataset] = n
        return n

    @contextmanager
    def shard(self, dataset: str, shard: int) -> Iterator[sqlite3.Connection]:
        """A connection to the shard's file, after checking dataset and shard number."""
        n = self.num_shards(dataset)
        if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < n:
            raise BadInputError(f"shard {shard!r} out of range: dataset {dataset!r} has {n} shards")
        with self._pool.connection(self.shard_path(dataset, shard), _shard_schema) as con:
            yield con

    @contextmanager
    def write(self, dataset: str, shard: int) -> Iterator[sqlite3.Connection]:
        """One short write transaction on a shard's file: committed on exit, else rolled back."""
        with self.shard(dataset, shard) as con:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")

    def close(self) -> None:
        self._pool.close()

    def close_idle(self) -> None:
        self._pool.close_idle()


def _chunk_rows(chunks: Sequence[ChunkSet], trials: ZstdTrials | None = None
                ) -> list[tuple[Any, ...]]:  # fmt: skip
    if isinstance(chunks, ChunkSet):
        raise BadInputError("write_chunks takes a sequence of ChunkSet, not one ChunkSet")
    rows = []
    for c in chunks:
        if not isinstance(c, ChunkSet):
            raise BadInputError(f"expected ChunkSet, got {type(c).__name__}")
        rows.append(
            (c.part_key, c.chunk_id, c.start_ms, c.end_ms, c.num_rows, c.nbytes,
             encode_vectors(c.vectors, trials))
        )  # fmt: skip
    return rows


def _upsert_chunks(con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Intern the rows' part keys, then upsert the chunks in key order (inside a transaction)."""
    if not rows:
        return
    ids = _series_ids(con, list(dict.fromkeys(r[0] for r in rows)), create=True)
    keyed = [(ids[r[0]], *r[1:]) for r in rows]
    keyed.sort(key=lambda r: (r[0], r[1]))
    con.executemany(_UPSERT_CHUNK, keyed)


def _series_ids(con: sqlite3.Connection, keys: Sequence[bytes], create: bool = False
                ) -> dict[bytes, int]:  # fmt: skip
    """The series ids of ``keys`` (those known; all of them, new ones added, with ``create``)."""
    ids: dict[bytes, int] = {}
    hashes = {k: key_hash(k) for k in keys}
    for i in range(0, len(keys), _READ_BATCH):
        batch = list(dict.fromkeys(hashes[k] for k in keys[i : i + _READ_BATCH]))
        rows = con.execute(
            f"SELECT part_key, id FROM series WHERE key_hash IN ({','.join('?' * len(batch))})",
            batch,
        ).fetchall()
        ids.update((pk, sid) for pk, sid in rows if pk in hashes)
    if create:
        for k in keys:
            if k not in ids:
                cur = con.execute(
                    "INSERT INTO series (key_hash, part_key) VALUES (?, ?)", (hashes[k], k)
                )
                ids[k] = int(cur.lastrowid or 0)
    return ids


def _merge_part_keys(con: sqlite3.Connection, rows: list[tuple[bytes, int, int]]) -> None:
    if not rows:
        return
    ids = _series_ids(con, list(dict.fromkeys(r[0] for r in rows)), create=True)
    con.executemany(_MERGE_PART_KEY, [(s, e, ids[pk]) for pk, s, e in rows])


def _part_key_rows(records: Sequence[PartKeyRecord]) -> list[tuple[bytes, int, int]]:
    if isinstance(records, PartKeyRecord):
        raise BadInputError("write_part_keys takes a sequence of PartKeyRecord, not one record")
    rows = []
    for r in records:
        if not isinstance(r, PartKeyRecord):
            raise BadInputError(f"expected PartKeyRecord, got {type(r).__name__}")
        rows.append((r.part_key, r.start_ms, r.end_ms))
    return rows


class SqliteColumnStore(ColumnStore):
    """:class:`ColumnStore` on SQLite files (see the module docstring for layout and locking)."""

    def __init__(self, files: SqliteFiles):
        self.files = files
        self.zstd = ZstdTrials()

    def initialize(self, dataset: str, num_shards: int) -> None:
        self.files.register(dataset, num_shards)

    def num_shards(self, dataset: str) -> int:
        return self.files.num_shards(dataset)

    def write_chunks(self, dataset: str, shard: int, chunks: Sequence[ChunkSet]) -> None:
        rows = _chunk_rows(chunks, self.zstd)
        with self.files.write(dataset, shard) as con:
            _upsert_chunks(con, rows)

    def read_chunks(
        self, dataset: str, shard: int, part_keys: Sequence[bytes], start_ms: int, end_ms: int
    ) -> list[ChunkSet]:
        check_range(start_ms, end_ms)
        if isinstance(part_keys, bytes | str):
            raise BadInputError("read_chunks takes a sequence of part keys, not one part key")
        wanted = list(dict.fromkeys(part_keys))
        if not all(isinstance(pk, bytes) and pk for pk in wanted):
            raise BadInputError("part keys must be non-empty bytes")
        found: dict[bytes, list[ChunkSet]] = {}
        with self.files.shard(dataset, shard) as con:
            for i in range(0, len(wanted), _READ_BATCH):
                batch = wanted[i : i + _READ_BATCH]
                ids = _series_ids(con, batch)
                if not ids:
                    continue
                rows = con.execute(
                    "SELECT s.part_key, c.chunk_id, c.start_ms, c.end_ms, c.num_rows, c.vectors "
                    "FROM series s JOIN chunks c ON c.series = s.id "
                    f"WHERE s.id IN ({','.join('?' * len(ids))}) "
                    "AND c.start_ms <= ? AND c.end_ms >= ?",
                    (*ids.values(), end_ms, start_ms),
                )
                for pk, cid, s, e, n, blob in rows:
                    chunk = ChunkSet.from_store(pk, cid, s, e, n, decode_vectors(blob))
                    found.setdefault(pk, []).append(chunk)
        out: list[ChunkSet] = []
        for pk in wanted:
            out.extend(sorted(found.get(pk, ()), key=lambda c: (c.start_ms, c.chunk_id)))
        return out

    def write_part_keys(self, dataset: str, shard: int, records: Sequence[PartKeyRecord]) -> None:
        rows = _part_key_rows(records)
        with self.files.write(dataset, shard) as con:
            _merge_part_keys(con, rows)

    def scan_part_keys(self, dataset: str, shard: int) -> Iterator[PartKeyRecord]:
        # Pages by key, each its own short read, so a slow consumer never pins the WAL.
        with self.files.shard(dataset, shard):
            pass  # check arguments now, not at the first next()
        return self._scan(dataset, shard)

    def _scan(self, dataset: str, shard: int) -> Iterator[PartKeyRecord]:
        after = -1
        while True:
            with self.files.shard(dataset, shard) as con:
                rows = con.execute(
                    "SELECT id, part_key, start_ms, end_ms FROM series WHERE id > ? "
                    "AND start_ms IS NOT NULL ORDER BY id LIMIT ?",
                    (after, _SCAN_PAGE),
                ).fetchall()
            for _, pk, s, e in rows:
                yield PartKeyRecord(pk, s, e)
            if len(rows) < _SCAN_PAGE:
                return
            after = rows[-1][0]

    def delete_before(self, dataset: str, shard: int, cutoff_ms: int) -> int:
        check_range(cutoff_ms, cutoff_ms)
        deleted = 0
        with self.files.shard(dataset, shard) as con:
            (top,) = con.execute("SELECT coalesce(max(id), 0) FROM series").fetchone()
        for lo in range(0, top + 1, _DELETE_SERIES):  # short transactions: the flush writer
            hi = lo + _DELETE_SERIES - 1  # never waits long for the write lock
            with self.files.write(dataset, shard) as con:
                deleted += con.execute(
                    "DELETE FROM chunks WHERE series BETWEEN ? AND ? AND end_ms < ?",
                    (lo, hi, cutoff_ms),
                ).rowcount
                con.execute(
                    "UPDATE series SET start_ms = NULL, end_ms = NULL "
                    "WHERE id BETWEEN ? AND ? AND end_ms < ?",
                    (lo, hi, cutoff_ms),
                )
                con.execute(
                    "DELETE FROM series WHERE id BETWEEN ? AND ? AND start_ms IS NULL AND "
                    "NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.series = series.id)",
                    (lo, hi),
                )
        return deleted

    def delete_chunks(self, dataset: str, shard: int, keys: Sequence[tuple[bytes, int]]) -> None:
        keys = list(keys)
        if not all(isinstance(pk, bytes) and pk and isinstance(c, int) for pk, c in keys):
            raise BadInputError("delete_chunks takes (part key, chunk id) pairs")
        with self.files.write(dataset, shard) as con:
            ids = _series_ids(con, list(dict.fromkeys(pk for pk, _ in keys)))
            rows = [(ids[pk], cid) for pk, cid in keys if pk in ids]
            con.executemany("DELETE FROM chunks WHERE series = ? AND chunk_id = ?", rows)

    def delete_series(self, dataset: str, shard: int, part_keys: Sequence[bytes]) -> None:
        if isinstance(part_keys, bytes | str):
            raise BadInputError("delete_series takes a sequence of part keys, not one part key")
        wanted = list(dict.fromkeys(part_keys))
        if not all(isinstance(pk, bytes) and pk for pk in wanted):
            raise BadInputError("part keys must be non-empty bytes")
        for i in range(0, len(wanted), _READ_BATCH):
            with self.files.write(dataset, shard) as con:
                ids = list(_series_ids(con, wanted[i : i + _READ_BATCH]).values())
                marks = ",".join("?" * len(ids))
                con.execute(f"DELETE FROM chunks WHERE series IN ({marks})", ids)
                con.execute(f"DELETE FROM series WHERE id IN ({marks})", ids)

    def truncate(self, dataset: str) -> None:
        for shard in range(self.files.num_shards(dataset)):
            with self.files.write(dataset, shard) as con:
                con.execute("DELETE FROM chunks")
                con.execute("DELETE FROM series")

    def stats(self, dataset: str, shard: int) -> dict[str, int]:
        with self.files.shard(dataset, shard) as con:
            con.execute("BEGIN")
            chunks, nbytes = con.execute(
                "SELECT count(*), coalesce(sum(vector_bytes), 0) FROM chunks"
            ).fetchone()
            (pks,) = con.execute(
                "SELECT count(*) FROM series WHERE start_ms IS NOT NULL"
            ).fetchone()
            con.execute("COMMIT")
        return {"chunks": chunks, "vector_bytes": nbytes, "part_keys": pks}

    def write_flush(
        self,
        meta: MetaStore,
        dataset: str,
        shard: int,
        group: int,
        chunks: Sequence[ChunkSet],
        part_keys: Sequence[PartKeyRecord],
        offset: int,
    ) -> None:
        """As :meth:`ColumnStore.write_flush`, in one transaction when ``meta`` shares our files."""
        self.write_flushes(meta, dataset, shard, [GroupFlush(group, chunks, part_keys, offset)])

    def write_flushes(self, meta: MetaStore, dataset: str, shard: int,
                      flushes: Sequence[GroupFlush]) -> None:  # fmt: skip
        """As :meth:`ColumnStore.write_flushes`, every group in one transaction when ``meta``
        shares our files (the checkpoints then commit with the chunks they vouch for)."""
        if not (isinstance(meta, SqliteMetaStore) and meta.files is self.files):
            super().write_flushes(meta, dataset, shard, flushes)
            return
        for f in flushes:
            check_checkpoint(f.group, f.offset)
        chunk_rows = [r for f in flushes for r in _chunk_rows(f.chunks, self.zstd)]
        pk_rows = [r for f in flushes for r in _part_key_rows(f.part_keys)]
        with self.files.write(dataset, shard) as con:
            _upsert_chunks(con, chunk_rows)
            _merge_part_keys(con, pk_rows)
            con.executemany(_UPSERT_CHECKPOINT, [(f.group, f.offset) for f in flushes])

    def close(self) -> None:
        self.files.close()

    def close_idle(self) -> None:
        self.files.close_idle()


class SqliteMetaStore(MetaStore):
    """Checkpoints in each shard's file, next to the chunks they vouch for."""

    def __init__(self, files: SqliteFiles):
        self.files = files

    def write_checkpoint(self, dataset: str, shard: int, group: int, offset: int) -> None:
        check_checkpoint(group, offset)
        with self.files.write(dataset, shard) as con:
            con.execute(_UPSERT_CHECKPOINT, (group, offset))

    def read_checkpoints(self, dataset: str, shard: int) -> dict[int, int]:
        with self.files.shard(dataset, shard) as con:
            return dict(con.execute("SELECT flush_group, log_offset FROM checkpoints").fetchall())

    def clear_checkpoints(self, dataset: str, shard: int) -> None:
        with self.files.write(dataset, shard) as con:
            con.execute("DELETE FROM checkpoints")

    def close(self) -> None:
        self.files.close()


def open_sqlite(
    data_dir: str | Path, synchronous: str = "FULL", busy_timeout_ms: int = 30_000
) -> tuple[SqliteColumnStore, SqliteMetaStore]:
    """The column store and meta store on the files under ``<data_dir>/store/``.

    ``synchronous``: SQLite's setting. ``FULL`` (default) fsyncs the WAL at every commit, so a
    write that returned survives a power loss: a checkpoint licenses trimming the log, so it must.
    ``NORMAL`` keeps every committed write through a process crash but only a prefix of them
    through a power loss (faster for small writes; fine when the log is never trimmed).
    ``busy_timeout_ms``: how long a write waits for another process's write lock.
    """
    files = SqliteFiles(Path(data_dir) / "store", synchronous, busy_timeout_ms)
    return SqliteColumnStore(files), SqliteMetaStore(files)
