"""The embedded log's bulk on disk: records a node has applied, moved out of Redis's memory.

Redis Streams hold the log in RAM. A node applies records as they come but flushes their
samples as chunks only on its schedule (or for the log's size), so under a steady write the
log past the shards' checkpoints grew in Redis by ~5 bytes a sample: 1.2 kB a series after a
live hour at 100 k series. Flushing chunks early enough to keep up cost ~50 ms a shard, too
much CPU beside the ingest. Moving the records themselves to a file costs a sequential write.

:class:`LogSpill` is one SQLite file (``<data_dir>/log/spill.db``) shared by the processes of
one ``filodb up`` (the nodes spill, any node reads when it recovers a shard, the web tier
drops a deleted dataset). A row is ``(dataset, shard, offset, record)``; a spill is one
transaction, fsynced before Redis trims what it moved (see
:meth:`~filodb.ingest.redis_streams.RedisStreamsLog.spill`). Rows at or below a shard's
lowest checkpoint are dropped with the stream's trim, so the file holds what the log must
keep and no more (SQLite reuses the freed pages).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from filodb.ingest.base import Partition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spill (
  dataset TEXT NOT NULL, shard INTEGER NOT NULL, log_offset INTEGER NOT NULL, record BLOB NOT NULL,
  PRIMARY KEY (dataset, shard, log_offset)
) WITHOUT ROWID
"""


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
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(_SCHEMA)
            self._con = con
        return self._con

    def write(self, parts: Mapping[Partition, Iterable[tuple[int, bytes]]]) -> int:
        """Store records (offset, bytes) of several partitions in one transaction, fsynced
        (``synchronous=FULL``) before it returns: Redis may then drop them. Rows already there
        (a spill whose trim did not happen) are replaced. Returns the bytes written."""
        rows = [(ds, shard, off, rec) for (ds, shard), recs in parts.items() for off, rec in recs]
        if not rows:
            return 0
        with self._lock:
            con = self._open()
            con.execute("PRAGMA synchronous=FULL")
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR REPLACE INTO spill VALUES (?, ?, ?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return sum(len(r[3]) for r in rows)

    def read(self, part: Partition, after: int, upto: int, count: int) -> list[tuple[int, bytes]]:
        """Up to ``count`` records with ``after < offset <= upto``, in offset order."""
        with self._lock:
            if self._con is None and not self.path.exists():
                return []
            cur = self._open().execute(
                "SELECT log_offset, record FROM spill WHERE dataset = ? AND shard = ? "
                "AND log_offset > ? AND log_offset <= ? ORDER BY log_offset LIMIT ?",
                (part[0], part[1], int(after), int(upto), int(count)),
            )
            return [(int(o), bytes(r)) for o, r in cur.fetchall()]

    def drop(self, part: Partition, upto: int) -> None:
        """Forget the partition's records at or below ``upto`` (the column store holds them).
        Not fsynced: rows a crash brings back are dropped by the next trim."""
        self._delete("dataset = ? AND shard = ? AND log_offset <= ?", (part[0], part[1], upto))

    def drop_dataset(self, dataset: str) -> None:
        self._delete("dataset = ?", (dataset,))

    def _delete(self, where: str, args: tuple) -> None:
        with self._lock:
            if self._con is None and not self.path.exists():
                return
            con = self._open()
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(f"DELETE FROM spill WHERE {where}", args)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
