"""The embedded log's bulk on disk: records a node has applied, moved out of Redis's memory.

Redis Streams hold the log in RAM. A node applies records as they come but flushes their
samples as chunks only on its schedule (or for the log's size), so under a steady write the
log past the shards' checkpoints grew in Redis by ~5 bytes a sample: 1.2 kB a series after a
live hour at 100 k series. Flushing chunks early enough to keep up cost ~50 ms a shard, too
much CPU beside the ingest. Moving the records themselves to a file costs a sequential write.

:class:`LogSpill` is one SQLite file (``<data_dir>/log/spill.db``) shared by the processes of
one ``filodb up`` (the nodes spill, any node reads when it recovers a shard, the web tier
drops a deleted dataset). A spill is one
transaction, fsynced before Redis trims what it moved (see
:meth:`~filodb.ingest.redis_streams.RedisStreamsLog.spill`); a partition's records of one spill
are one row (their offsets are consecutive: ``first_offset`` .. ``last_offset``), so a spill
costs a few rows, not one per record. Rows at or below a shard's
lowest checkpoint are dropped with the stream's trim, so the file holds what the log must
keep and no more: a row is dropped once its last record is, and the file gives the freed
pages back (``auto_vacuum=INCREMENTAL``, the WAL truncated after a drop).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from filodb.ingest.base import Partition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spill (
  dataset TEXT NOT NULL, shard INTEGER NOT NULL,
  first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL,
  lengths BLOB NOT NULL, records BLOB NOT NULL,
  PRIMARY KEY (dataset, shard, first_offset)
) WITHOUT ROWID
"""


def pack(records: Sequence[bytes]) -> tuple[bytes, bytes]:
    """Consecutive records as one row's two blobs: their lengths (u32 LE), their bytes."""
    return np.fromiter(map(len, records), np.uint32, len(records)).tobytes(), b"".join(records)


WAL_KEEP_BYTES = 4 << 20  # the write-ahead log is cut back to this after a checkpoint


class LogSpill:
    """Spilled log records in one SQLite file; safe to share between threads (one lock)."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path)
        self._busy_s = busy_timeout_ms / 1000
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=self._busy_s, check_same_thread=False,
                                  isolation_level=None)  # fmt: skip
            con.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a new file only: before the table
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
            con.execute(_SCHEMA)
            self._con = con
        return self._con

    def write(self, parts: Mapping[Partition, tuple[int, Sequence[bytes]]]) -> int:
        """Store each partition's consecutive records (its first offset, the records) in one
        transaction, fsynced (``synchronous=FULL``) before it returns: Redis may then drop
        them. A row of the same first offset (a spill whose trim did not happen) is replaced.
        Returns the bytes written."""
        rows = []
        for (ds, shard), (first, recs) in parts.items():
            if recs:
                lengths, blob = pack(recs)
                rows.append((ds, shard, int(first), int(first) + len(recs) - 1, lengths, blob))
        if not rows:
            return 0
        with self._lock:
            con = self._open()
            con.execute("PRAGMA synchronous=FULL")
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR REPLACE INTO spill VALUES (?, ?, ?, ?, ?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return sum(len(r[5]) for r in rows)

    def read(self, part: Partition, after: int, upto: int, count: int) -> list[tuple[int, bytes]]:
        """Up to ``count`` records with ``after < offset <= upto``, in offset order."""
        with self._lock:
            if self._con is None and not self.path.exists():
                return []
            cur = self._open().execute(
                "SELECT first_offset, lengths, records FROM spill WHERE dataset = ? AND "
                "shard = ? AND last_offset > ? AND first_offset <= ? ORDER BY first_offset",
                (part[0], part[1], int(after), int(upto)),
            )
            rows = cur.fetchall()
        out: list[tuple[int, bytes]] = []
        for first, lengths, blob in rows:
            ends = np.cumsum(np.frombuffer(lengths, np.uint32), dtype=np.int64)
            view = memoryview(blob)
            start = 0
            for i, end in enumerate(ends.tolist()):
                off = first + i
                if after < off <= upto and (not out or off > out[-1][0]):
                    out.append((off, bytes(view[start:end])))
                    if len(out) == count:
                        return out
                start = end
        return out

    def drop(self, part: Partition, upto: int) -> None:
        """Forget the partition's records at or below ``upto`` (the column store holds them).
        Not fsynced: rows a crash brings back are dropped by the next trim."""
        self._delete("dataset = ? AND shard = ? AND last_offset <= ?", (part[0], part[1], upto))

    def drop_dataset(self, dataset: str) -> None:
        self._delete("dataset = ?", (dataset,))

    def _delete(self, where: str, args: tuple[object, ...]) -> None:
        with self._lock:
            if self._con is None and not self.path.exists():
                return
            con = self._open()
            con.execute("PRAGMA synchronous=NORMAL")
            if con.execute(f"DELETE FROM spill WHERE {where}", args).rowcount > 0:
                # the freed pages go back to the file system, and the WAL is emptied: the data
                # directory keeps what the log must keep, not what it once held
                con.executescript("PRAGMA incremental_vacuum;")  # execute() frees one page
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
