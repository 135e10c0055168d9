"""The ingestion log: one append-only partition per (dataset, shard).

Offsets are dense integers per partition: the first record has offset 1, and offset 0 means
"before the first record" (Kafka-like, so lag is a record count on every backend). A record is
acknowledged once :meth:`Log.append` returns: it is then durable as far as the backend is
(Redis with ``appendonly yes``; Kafka with ``acks=all``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from filodb.model.dataset import check_dataset_name

Partition = tuple[str, int]
"""A log partition: (dataset, shard)."""


class Sent(Protocol):
    """Appends sent in one call whose reply is still to come (:meth:`Log.send_appends`)."""

    jobs: int  # appends (callers' append_begin) in the call
    done: bool  # finished: its reply read (perhaps by a wait of the sending thread's own)

    def fileno(self) -> int:
        """A descriptor that turns readable when the reply comes."""
        ...

    def finish(self) -> None:
        """Read the reply and complete the appends (their waits return, or raise its error);
        once (then nothing), on the thread that sent it."""
        ...


POLL_S = 0.05  # the generic read_many's poll step when it must wait over several datasets


class Log(ABC):
    """Abstract primitives: append, read, end offset. Safe to share between threads."""

    spills = False  # holds records in memory and can move applied ones to disk (spill)

    @abstractmethod
    def append_many(
        self, dataset: str, records: Mapping[int, Sequence[bytes]]
    ) -> dict[int, list[int]]:
        """Append records to several shards' partitions; returns the offsets given per shard.

        Records of one shard keep their order. Returns only after every record is stored.
        """

    def append_begin(
        self, dataset: str, records: Mapping[int, Sequence[bytes]]
    ) -> Callable[[], dict[int, list[int]]]:
        """Begin :meth:`append_many`: the records' place in each partition is fixed, after
        every append begun before (by any thread), when this returns; the function returned
        waits until they are stored and answers their offsets (or raises the append's error).
        A door writing under a lock of its own (to keep its bodies in order) begins under it
        and waits after it, so the next body's records are made while these travel. By
        default the whole append happens here."""
        out = self.append_many(dataset, records)
        return lambda: out

    def send_appends(self) -> Sent | None:
        """Send every append begun and not yet sent in one call, without waiting for the
        reply: a caller with other work meanwhile (the web server's ingestion loop) finishes
        it when its descriptor is readable. None when the log cannot (the appends' waits
        then make the call, as by default), none waits, or a call is in flight."""
        return None

    @abstractmethod
    def read(
        self, dataset: str, positions: Mapping[int, int], count: int, block_ms: int
    ) -> dict[int, list[tuple[int, bytes]]]:
        """Records with offset > ``positions[shard]``, at most ``count`` per shard.

        Waits up to ``block_ms`` when nothing is there yet (0: do not wait). Shards with no new
        records are left out of the answer.
        """

    @abstractmethod
    def end_offset(self, dataset: str, shard: int) -> int:
        """Offset of the newest record of the partition (0 when empty)."""

    @abstractmethod
    def delete_dataset(self, dataset: str, num_shards: int) -> None:
        """Drop every partition of a dataset."""

    @abstractmethod
    def trim(self, dataset: str, shard: int, upto: int) -> None:
        """Allow records with offset <= ``upto`` to be dropped (the column store holds them).

        Offsets of later records and the end offset do not change; reading from a position
        below ``upto`` may then skip the dropped records.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release connections."""

    def writers_waiting(self) -> bool:
        """Whether a writer waited for room in the log lately (a log with a cap on what it
        holds: :mod:`filodb.ingest.log_room`); the nodes then flush early to let it trim.
        Logs without a cap (Kafka keeps what it is told to on disk) never wait."""
        return False

    @property
    def spilled(self) -> Mapping[Partition, int]:
        """How far each partition's records were spilled (a log that :attr:`spills`)."""
        return {}

    def spill(self, upto: Mapping[Partition, int]) -> int:
        """Move records up to ``upto[partition]`` out of memory, to disk (a log that
        :attr:`spills`: :meth:`~filodb.ingest.redis_streams.RedisStreamsLog.spill`); reads
        still return them. Returns the bytes moved."""
        raise NotImplementedError(f"{type(self).__name__} keeps no records in memory")

    def ensure_dataset(self, dataset: str, num_shards: int) -> None:
        """Make sure the partitions of shards ``0..num_shards-1`` exist (idempotent); a
        dataset name that :func:`~filodb.model.dataset.check_dataset_name` refuses is a
        :class:`~filodb.errors.BadInputError`.

        Backends whose partitions spring into being on the first append (Redis) need nothing
        more; Kafka creates the topic or adds partitions. Appends create missing partitions too.
        """
        check_dataset_name(dataset)

    # --- concrete helpers built on the primitives ----------------------------------------
    def append(self, dataset: str, shard: int, records: Sequence[bytes]) -> list[int]:
        """Append records to one shard's partition; returns their offsets."""
        return self.append_many(dataset, {shard: records}).get(shard, [])

    def end_offsets(self, dataset: str, shards: Sequence[int]) -> dict[int, int]:
        return {s: self.end_offset(dataset, s) for s in shards}

    def read_many(
        self, positions: Mapping[Partition, int], count: int, block_ms: int
    ) -> dict[Partition, list[tuple[int, bytes]]]:
        """:meth:`read` over partitions of many datasets at once: records with offset >
        ``positions[(dataset, shard)]``, at most ``count`` per partition.

        Waits up to ``block_ms`` when no partition has new records (0: do not wait); partitions
        with nothing new are left out. This generic version reads dataset by dataset and, over
        several datasets, polls; backends override it with one request (a node's reader calls
        it for every shard the node follows).
        """
        by_ds: dict[str, dict[int, int]] = {}
        for (ds, shard), pos in positions.items():
            by_ds.setdefault(ds, {})[shard] = pos
        if len(by_ds) == 1:
            ((ds, pos_ds),) = by_ds.items()
            return {(ds, s): recs for s, recs in self.read(ds, pos_ds, count, block_ms).items()}
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        while True:
            out = {
                (ds, s): recs
                for ds, pos_ds in by_ds.items()
                for s, recs in self.read(ds, pos_ds, count, 0).items()
            }
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            time.sleep(min(POLL_S, left))
