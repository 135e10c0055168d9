"""The column store and meta store protocols: what the memstore persists and reads back.

A :class:`ColumnStore` keeps, per (dataset, shard), the encoded chunks of every series and one
:class:`PartKeyRecord` per series; a :class:`MetaStore` keeps, per (dataset, shard, flush
group), the log offset up to which that group's data is durable (the *checkpoint*).

The shape follows Cassandra's data model so that every backend fits it: rows are keyed by
(dataset, shard, part key) and a part key's chunks are clustered by chunk id. Nothing assumes a
transaction across part keys or across the three kinds of rows, and every write is an
idempotent upsert: after a crash the memstore flushes the same chunk again and replays the log
from the lowest checkpoint of the shard, so recovery is correct without cross-row atomicity.

Conventions of every method:

* times are int64 milliseconds since the epoch, ranges ``[start_ms, end_ms]`` are inclusive;
* a dataset must have been created with :meth:`ColumnStore.initialize`; any other call on an
  unknown dataset raises :class:`~filodb.errors.UnknownDatasetError`;
* a shard outside ``[0, num_shards)``, a malformed dataset name or record, or ``start > end``
  raises :class:`~filodb.errors.BadInputError` before anything is written;
* every method is safe to call from several threads at once, and several processes may share
  one store (shards move between nodes; the old and new owner may briefly overlap).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from filodb.errors import BadInputError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _check_int64(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not INT64_MIN <= value <= INT64_MAX:
        raise BadInputError(f"{name} must be an int64, got {value!r}")


def _check_part_key(part_key: object) -> None:
    if not isinstance(part_key, bytes) or not part_key:
        raise BadInputError(f"part_key must be non-empty bytes, got {part_key!r:.60}")


@dataclass(frozen=True)
class ChunkSet:
    """One encoded chunk of one series: the rows ``[start_ms, end_ms]`` in opaque vectors.

    ``chunk_id`` is unique per part key (the memstore derives it from the start time); a chunk
    written again with the same (part key, chunk id) replaces the stored one. ``vectors`` are the
    encoded columns (timestamps, values, ...), stored and returned byte for byte, in order.
    """

    part_key: bytes
    chunk_id: int
    start_ms: int
    end_ms: int
    num_rows: int
    vectors: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_part_key(self.part_key)
        for name in ("chunk_id", "start_ms", "end_ms", "num_rows"):
            _check_int64(name, getattr(self, name))
        if self.start_ms > self.end_ms:
            raise BadInputError(f"chunk start_ms {self.start_ms} is after end_ms {self.end_ms}")
        if self.num_rows < 1:
            raise BadInputError(f"a chunk holds at least one row, got num_rows={self.num_rows}")
        if not isinstance(self.vectors, tuple) or not all(
            isinstance(v, bytes) for v in self.vectors
        ):
            raise BadInputError("vectors must be a tuple of bytes")

    @property
    def nbytes(self) -> int:
        """Total length of the vectors in bytes."""
        return sum(len(v) for v in self.vectors)

    @classmethod
    def from_store(
        cls, part_key: bytes, chunk_id: int, start_ms: int, end_ms: int, num_rows: int,
        vectors: tuple[bytes, ...],
    ) -> ChunkSet:  # fmt: skip
        """A chunk read back from a backend, or made by the memstore from a chunk it encoded,
        without re-validating what was checked on write (or holds by construction): ~6 us a
        chunk, a flush of a shard writes hundreds."""
        obj = object.__new__(cls)
        obj.__dict__.update(part_key=part_key, chunk_id=chunk_id, start_ms=start_ms,
                            end_ms=end_ms, num_rows=num_rows, vectors=vectors)  # fmt: skip
        return obj


class GroupFlush(NamedTuple):
    """One flush group's part of :meth:`ColumnStore.write_flushes`."""

    group: int
    chunks: Sequence[ChunkSet]
    part_keys: Sequence[PartKeyRecord]
    offset: int


@dataclass(frozen=True)
class PartKeyRecord:
    """One series of a shard: its part key and the time of its first and last sample.

    The part key is the canonical encoded label set, schema included; the store treats it as
    opaque bytes. Writing a record again merges: ``start_ms`` becomes the minimum and ``end_ms``
    the maximum of the stored and the written values.
    """

    part_key: bytes
    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        _check_part_key(self.part_key)
        _check_int64("start_ms", self.start_ms)
        _check_int64("end_ms", self.end_ms)
        if self.start_ms > self.end_ms:
            raise BadInputError(f"part key start_ms {self.start_ms} is after end_ms {self.end_ms}")

    @classmethod
    def unchecked(cls, part_key: bytes, start_ms: int, end_ms: int) -> PartKeyRecord:
        """A record made by the memstore (valid by construction) or read back from a backend,
        without the checks (~2 us a record; a shard's first flush writes every series')."""
        obj = object.__new__(cls)
        obj.__dict__.update(part_key=part_key, start_ms=start_ms, end_ms=end_ms)
        return obj


def check_range(start_ms: int, end_ms: int) -> None:
    """BadInputError unless ``start_ms <= end_ms`` are both int64."""
    _check_int64("start_ms", start_ms)
    _check_int64("end_ms", end_ms)
    if start_ms > end_ms:
        raise BadInputError(f"start_ms {start_ms} is after end_ms {end_ms}")


Trim = Callable[[ChunkSet, int, int], ChunkSet | None]
"""``trim(chunk, start_ms, end_ms)``: the chunk without its samples in the range (None: empty)."""


class MetaStore(ABC):
    """Checkpoints: per (dataset, shard, flush group) the log offset that group has flushed.

    Recovery replays a shard's log from the lowest checkpoint of its groups; a group with no
    checkpoint counts as offset 0. A write overwrites (a stale writer can only move a checkpoint
    back, which costs a longer replay, never lost data).
    """

    @abstractmethod
    def write_checkpoint(self, dataset: str, shard: int, group: int, offset: int) -> None:
        """Record that flush group ``group`` holds every record up to ``offset`` durably."""

    @abstractmethod
    def read_checkpoints(self, dataset: str, shard: int) -> dict[int, int]:
        """Every checkpoint of the shard, ``{group: offset}`` (empty when none)."""

    @abstractmethod
    def clear_checkpoints(self, dataset: str, shard: int) -> None:
        """Forget every checkpoint of the shard (the next recovery replays the whole log)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the object is unusable afterwards."""


class ColumnStore(ABC):
    """Chunks and part keys of every shard of every dataset.

    Abstract primitives, concrete helpers built on them.
    """

    @abstractmethod
    def initialize(self, dataset: str, num_shards: int) -> None:
        """Create the dataset's storage for shards ``0..num_shards-1``; idempotent.

        Initialising an existing dataset with a different shard count is a BadInputError.
        """

    @abstractmethod
    def num_shards(self, dataset: str) -> int:
        """The shard count the dataset was initialised with (UnknownDatasetError if none)."""

    @abstractmethod
    def write_chunks(self, dataset: str, shard: int, chunks: Sequence[ChunkSet]) -> None:
        """Upsert chunks, keyed by (part key, chunk id). Atomic per call on SQLite.

        Returns once every chunk is durable. Writing a chunk again replaces it.
        """

    @abstractmethod
    def read_chunks(
        self, dataset: str, shard: int, part_keys: Sequence[bytes], start_ms: int, end_ms: int
    ) -> list[ChunkSet]:
        """Chunks of the given part keys that overlap ``[start_ms, end_ms]`` (both inclusive).

        A chunk overlaps when ``chunk.start_ms <= end_ms and chunk.end_ms >= start_ms``. The
        answer is grouped by part key in the order first given (repeats ignored, unknown part keys
        contribute nothing), and within a part key ordered by ``(start_ms, chunk_id)``.
        """

    @abstractmethod
    def write_part_keys(self, dataset: str, shard: int, records: Sequence[PartKeyRecord]) -> None:
        """Upsert part-key records, merging with the stored one: start = min, end = max."""

    @abstractmethod
    def scan_part_keys(self, dataset: str, shard: int) -> Iterator[PartKeyRecord]:
        """Every part-key record of the shard, in no particular order."""

    @abstractmethod
    def delete_before(self, dataset: str, shard: int, cutoff_ms: int) -> int:
        """Retention: drop chunks and part keys whose ``end_ms < cutoff_ms``.

        Returns the number of chunks deleted. Data ending at ``cutoff_ms`` or later stays.
        """

    @abstractmethod
    def delete_chunks(self, dataset: str, shard: int, keys: Sequence[tuple[bytes, int]]) -> None:
        """Delete chunks by ``(part key, chunk id)``; unknown keys are ignored. Part-key
        records stay (see :meth:`delete_series`)."""

    @abstractmethod
    def delete_series(self, dataset: str, shard: int, part_keys: Sequence[bytes]) -> None:
        """Delete every chunk and the part-key record of each series. Unknown part keys are
        ignored; a series written again later is a new one."""

    @abstractmethod
    def truncate(self, dataset: str) -> None:
        """Drop every chunk and part key of every shard; the dataset stays initialised.

        Checkpoints stay too (use :meth:`MetaStore.clear_checkpoints` to replay the log again).
        """

    @abstractmethod
    def stats(self, dataset: str, shard: int) -> dict[str, int]:
        """``{"chunks": n, "vector_bytes": sum of vector lengths, "part_keys": n}``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the object is unusable afterwards."""

    def close_idle(self) -> None:  # noqa: B027 - optional hook
        """Release connections unused a while (the node calls it every tick); the store
        reopens them on use."""

    # --- concrete helpers built on the primitives ----------------------------------------
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
        """Persist one flush of one flush group: chunks, then part keys, then the checkpoint.

        In that order, so a crash in between leaves the checkpoint behind the data and recovery
        replays (and rewrites, idempotently) what followed it. A backend may override it to do
        all three in one transaction when ``meta`` is its own (SQLite does: fewer commits).
        """
        check_checkpoint(group, offset)  # before any write: a bad offset must not leave chunks
        self.write_chunks(dataset, shard, chunks)
        self.write_part_keys(dataset, shard, part_keys)
        meta.write_checkpoint(dataset, shard, group, offset)

    def write_flushes(self, meta: MetaStore, dataset: str, shard: int,
                      flushes: Sequence[GroupFlush]) -> None:  # fmt: skip
        """Persist flushes of several groups of one shard (a flush for the log's size takes
        every group): each as :meth:`write_flush`, in order. A backend may do them all in one
        transaction (SQLite does: one commit, so one fsync, for the shard instead of one a
        group)."""
        for f in flushes:  # before any write: a bad offset must not leave chunks
            check_checkpoint(f.group, f.offset)
        for f in flushes:
            self.write_flush(meta, dataset, shard, f.group, f.chunks, f.part_keys, f.offset)

    def delete_range(
        self, dataset: str, shard: int, part_keys: Sequence[bytes], start_ms: int, end_ms: int,
        trim: Trim,
    ) -> int:  # fmt: skip
        """Delete the samples of ``part_keys`` in ``[start_ms, end_ms]``; returns the chunks
        deleted or rewritten.

        Chunks inside the range are deleted; a chunk that straddles an edge is rewritten with
        what ``trim(chunk, start_ms, end_ms)`` returns (the store treats vectors as opaque, the
        caller decodes): a chunk with the same part key and chunk id, or None when nothing
        is left. Rewrites go first (an upsert replaces the row), deletes second, so a crash in
        between leaves samples that a repeated call deletes, never loses samples outside the
        range. Idempotent. Part-key records stay (use :meth:`delete_series` for whole series).
        """
        check_range(start_ms, end_ms)
        found = self.read_chunks(dataset, shard, part_keys, start_ms, end_ms)
        rewrite: list[ChunkSet] = []
        drop: list[tuple[bytes, int]] = []
        for c in found:
            left = (
                None if start_ms <= c.start_ms and c.end_ms <= end_ms else trim(c, start_ms, end_ms)
            )
            if left is None:
                drop.append((c.part_key, c.chunk_id))
            elif (left.part_key, left.chunk_id) != (c.part_key, c.chunk_id):
                raise BadInputError("trim must keep the chunk's part key and chunk id")
            else:
                rewrite.append(left)
        self.write_chunks(dataset, shard, rewrite)
        self.delete_chunks(dataset, shard, drop)
        return len(found)


def check_checkpoint(group: int, offset: int) -> None:
    """Raise :class:`BadInputError` unless flush group and log offset are int64s >= 0."""
    for name, v in (("group", group), ("offset", offset)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**63:
            raise BadInputError(f"checkpoint {name} must be an int64 >= 0, got {v!r}")


class Stores(NamedTuple):
    """A node's column store and meta store (opened together by :func:`filodb.store.open_store`)."""

    column: ColumnStore
    meta: MetaStore

    def close(self) -> None:
        self.column.close()
        self.meta.close()
