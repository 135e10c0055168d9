"""The embedded log's bulk on disk: records a node has applied, moved out of Redis's memory.

Redis Streams hold the log in RAM. A node applies records as they come but flushes their
samples as chunks only on its schedule (or for the log's size), so under a steady write the
log past the shards' checkpoints grew in Redis by ~5 bytes a sample: 1.2 kB a series after a
live hour at 100 k series. Flushing chunks early enough to keep up cost ~50 ms a shard, too
much CPU beside the ingest. Moving the records themselves to a file costs a sequential write.

:class:`LogSpill` is a directory (``<data_dir>/log-spill``) shared by the processes of one
``filodb up`` (the nodes spill, any node reads when it recovers a shard, the web tier drops a
deleted dataset). Each spill of a partition is one segment file,
``<dataset>/<shard>/<first offset>-<last offset>.seg`` (offsets zero-padded: names sort as
numbers), holding the spill's consecutive records: ``FSP1``, their count and lengths (u32 LE),
then their bytes. A segment is written under a temporary name, fsynced, renamed into place and
its directory fsynced before :meth:`write` returns (then Redis may drop the records; see
:meth:`~filodb.ingest.redis_streams.RedisStreamsLog.spill`), so a reader sees a segment whole
or not at all. A segment at or below a shard's lowest checkpoint is deleted with the stream's
trim: the directory holds what the log must keep and no more.

Why files and not one SQLite file (as before): a spill is written once and read only by a
recovery, which is what files do; SQLite copied each record into overflow pages, wrote them to
its write-ahead log and again into the database at each checkpoint, and vacuumed after each
drop. Measured (``python`` loop: 8 partitions x 64 records of 20 kB a spill, a drop every
fourth): 12.5 ms of CPU a MB spilled through SQLite against ~2 ms as segment files; in the
100 k series live hour the spill was ~a quarter of the worker's CPU.

A directory an older version left holds ``spill.db``: its rows are rewritten as segments
(fsynced) and the file removed, once, by the first process that opens the directory (under an
``flock``, so two processes do not race), before anything is read or written.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from filodb.ingest.base import Partition

MAGIC = b"FSP1"
_HEAD = len(MAGIC) + 4  # magic, u32 count
_DIGITS = 20  # offsets zero-padded: a directory's names sort as their offsets
LEGACY_FILE = "spill.db"  # the SQLite file of the versions before segments


def pack(records: Sequence[bytes]) -> list[bytes]:
    """Consecutive records as one segment's bytes (a list of buffers to write in order)."""
    n = len(records)
    lengths = np.fromiter(map(len, records), np.uint32, n).tobytes()
    return [MAGIC, n.to_bytes(4, "little"), lengths, *records]


def read_segment(path: Path, first: int, last: int, after: int = -1,
                 upto: int | None = None) -> list[tuple[int, bytes]]:  # fmt: skip
    """The records of the segment at ``path`` (offsets ``first`` .. ``last``, as its name
    says) with ``after < offset <= upto``, reading only their bytes (a replay pages through
    a segment 64 records at a time); ``ValueError`` naming the file when it is not the whole
    segment its name says."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_HEAD)
        if len(head) < _HEAD or head[: len(MAGIC)] != MAGIC:
            raise ValueError(f"log spill segment {path}: not a segment")
        n = int.from_bytes(head[len(MAGIC) :], "little")
        if n != last - first + 1:
            raise ValueError(f"log spill segment {path}: {n} records, not {last - first + 1}")
        body = _HEAD + 4 * n
        lengths = np.frombuffer(f.read(4 * n), np.uint32) if size >= body else None
        if lengths is None or len(lengths) != n or body + int(lengths.sum(dtype=np.int64)) != size:
            raise ValueError(f"log spill segment {path}: {size} bytes, not the segment's")
        lo = max(0, after + 1 - first)
        hi = n if upto is None else max(lo, min(n, upto - first + 1))
        if lo >= hi:
            return []
        ends = (body + np.cumsum(lengths, dtype=np.int64)).tolist()
        start = ends[lo - 1] if lo else body
        data = os.pread(f.fileno(), ends[hi - 1] - start, start)
    view = memoryview(data)
    return [(first + i, bytes(view[(ends[i - 1] if i else body) - start : ends[i] - start]))
            for i in range(lo, hi)]  # fmt: skip


def _name(first: int, last: int) -> str:
    return f"{first:0{_DIGITS}d}-{last:0{_DIGITS}d}.seg"


def _span(name: str) -> tuple[int, int] | None:
    """A segment's (first, last) offsets from its name; None for another file."""
    stem, dot, ext = name.partition(".")
    a, dash, b = stem.partition("-")
    if ext != "seg" or not dot or not dash or not (a.isdigit() and b.isdigit()):
        return None
    return int(a), int(b)


_IOV_MAX = 512  # buffers a writev takes at once (Linux allows 1024)


def _write_all(fd: int, bufs: Sequence[bytes]) -> None:
    """Write ``bufs`` in order, whole, however many and whatever the kernel takes a call."""
    for i in range(0, len(bufs), _IOV_MAX):
        group = bufs[i : i + _IOV_MAX]
        done = os.writev(fd, group)
        if done < sum(map(len, group)):  # a short write: the rest of the group as one buffer
            rest = memoryview(b"".join(group))[done:]
            while rest:
                rest = rest[os.write(fd, rest) :]


STALE_TMP_S = 600.0  # a segment's temporary file this old was left by a crash mid-write


def _listing(d: Path) -> list[str]:
    """The names in directory ``d`` (none when it does not exist)."""
    try:
        return os.listdir(d)
    except FileNotFoundError:
        return []


def _drop_stale_temporaries(d: Path, names: list[str]) -> None:
    """Remove the temporaries among ``names`` (``d``'s listing) older than ``STALE_TMP_S``."""
    now = time.time()
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        try:
            if now - (d / name).stat().st_mtime > STALE_TMP_S:
                (d / name).unlink()
        except FileNotFoundError:
            pass


SYNCFS_OVER = 8  # a spill of more partitions than this syncs the file system, not each file


def _load_syncfs() -> Any:
    """libc's ``syncfs`` where it reports write-back errors (Linux 5.8 and later), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
        if (major, minor) < (5, 8):
            return None
        name = ctypes.util.find_library("c")
        fn = ctypes.CDLL(name, use_errno=True).syncfs if name else None
    except (OSError, AttributeError, ValueError):
        return None
    return fn


_SYNCFS = _load_syncfs()


def _sync_file_system(path: Path) -> None:
    """Every dirty page and name of ``path``'s file system on disk (``syncfs``)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LogSpill:
    """Spilled log records as segment files under one directory; safe to share between
    threads and processes."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._lock = threading.Lock()
        self._ready = False  # the directory exists and an older version's file is converted

    def _open(self) -> None:
        with self._lock:
            if not self._ready:
                if not self.dir.is_dir():
                    self.dir.mkdir(parents=True, exist_ok=True)
                    _fsync_dir(self.dir.parent)
                if (self.dir / LEGACY_FILE).exists():
                    self._convert_legacy()
                self._ready = True

    def _part_dir(self, part: Partition) -> Path:
        return self.dir / part[0] / str(int(part[1]))

    def _segments(self, part: Partition, names: list[str] | None = None
                  ) -> list[tuple[int, int, Path]]:  # fmt: skip
        """The partition's segments as (first, last, path), by first offset (then last), from
        ``names`` (its directory's listing) or a fresh listing."""
        d = self._part_dir(part)
        out = []
        for name in _listing(d) if names is None else names:
            span = _span(name)
            if span is not None:
                out.append((span[0], span[1], d / name))
        out.sort()
        return out

    def write(self, parts: Mapping[Partition, tuple[int, Sequence[bytes]]]) -> int:
        """Store each partition's consecutive records (its first offset, the records) as a
        segment, durable before it returns (:meth:`_write`): Redis may then drop them.
        Returns the bytes of records written."""
        self._open()
        return self._write(parts)

    def _write(self, parts: Mapping[Partition, tuple[int, Sequence[bytes]]]) -> int:
        """Each segment under a temporary name, their bytes made durable, renamed into
        place, their names made durable: per file and directory (``fdatasync``, ``fsync``),
        or, for a spill of more than ``SYNCFS_OVER`` partitions, with one ``syncfs`` of the
        spill's file system after each step (~0.45 ms a partition per file against ~0.16)."""
        moved = 0
        new_dirs: list[Path] = []
        done: list[tuple[Path, Path]] = []
        many = len(parts) > SYNCFS_OVER and _SYNCFS is not None
        try:
            for part, (first, recs) in parts.items():
                if not recs:
                    continue
                first, last = int(first), int(first) + len(recs) - 1
                d = self._part_dir(part)
                if not d.is_dir():
                    d.mkdir(parents=True, exist_ok=True)
                    new_dirs += [d.parent, d.parent.parent]  # the new names themselves
                final = d / _name(first, last)
                tmp = d / f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    _write_all(fd, pack(recs))
                    if not many:
                        os.fdatasync(fd)
                finally:
                    os.close(fd)
                done.append((tmp, final))
                moved += sum(map(len, recs))
            if many:
                _sync_file_system(self.dir)
            for tmp, final in done:
                os.replace(tmp, final)
            renamed, done = done, []
        finally:
            for tmp, _ in done:  # a write failed: no temporary stays behind
                tmp.unlink(missing_ok=True)
        # A spill cut short before Redis's trim is written again from the same first offset,
        # maybe to another last offset: both segments stay until a trim passes their last
        # (reads serve each offset once), so no directory is listed here.
        if many:
            _sync_file_system(self.dir)
        else:
            for d in dict.fromkeys([*new_dirs, *(final.parent for _, final in renamed)]):
                _fsync_dir(d)
        return moved

    def read(self, part: Partition, after: int, upto: int, count: int) -> list[tuple[int, bytes]]:
        """Up to ``count`` records with ``after < offset <= upto``, in offset order (each
        offset once). A segment deleted meanwhile (a trim: the column store holds its records)
        is skipped."""
        self._open()
        out: list[tuple[int, bytes]] = []
        for first, last, path in self._segments(part):
            if last <= after or first > upto:
                continue
            since = out[-1][0] if out else after  # the records still wanted come after it
            try:
                got = read_segment(path, first, last, since, min(upto, since + count - len(out)))
            except FileNotFoundError:
                continue
            for off, rec in got:
                if not out or off > out[-1][0]:
                    out.append((off, rec))
                    if len(out) == count:
                        return out
        return out

    def drop(self, part: Partition, upto: int) -> None:
        """Forget the partition's records at or below ``upto`` (the column store holds them):
        its segments that end there or before. Not fsynced: a segment a crash brings back is
        dropped by the next trim."""
        self._open()
        d = self._part_dir(part)
        names = _listing(d)
        for _, last, path in self._segments(part, names):
            if last <= upto:
                path.unlink(missing_ok=True)
        _drop_stale_temporaries(d, names)

    def drop_dataset(self, dataset: str) -> None:
        self._open()
        shutil.rmtree(self.dir / dataset, ignore_errors=True)

    def close(self) -> None:
        pass  # no descriptor stays open between calls

    # -- an older version's file --------------------------------------------------------
    def _convert_legacy(self) -> None:
        """Rewrite the rows of ``spill.db`` as segments, then remove it (and its WAL), under
        an exclusive ``flock`` of the directory's lock file: whoever comes second finds it
        gone. Each row is one partition's consecutive records, as a segment is."""
        legacy = self.dir / LEGACY_FILE
        with open(self.dir / ".convert.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not legacy.exists():
                return
            for part, first, recs in _legacy_rows(legacy):
                self._write({part: (first, recs)})
            for suffix in ("", "-wal", "-shm"):
                Path(f"{legacy}{suffix}").unlink(missing_ok=True)
            _fsync_dir(self.dir)


def _legacy_rows(path: Path) -> Iterator[tuple[Partition, int, list[bytes]]]:
    """The rows of an older version's ``spill.db``: (partition, first offset, records)."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        cur = con.execute("SELECT dataset, shard, first_offset, lengths, records FROM spill "
                          "ORDER BY dataset, shard, first_offset")  # fmt: skip
        for ds, shard, first, lengths, blob in cur:
            ends = np.cumsum(np.frombuffer(lengths, np.uint32), dtype=np.int64).tolist()
            view, start, recs = memoryview(blob), 0, []
            for end in ends:
                recs.append(bytes(view[start:end]))
                start = end
            yield (ds, int(shard)), int(first), recs
    except sqlite3.OperationalError:  # no table: nothing was ever spilled into it
        return
    finally:
        con.close()
