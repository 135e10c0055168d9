"""A deletion as a log record: the series selector and time range of one
``delete_series`` call, appended to every shard's log partition.

The record sits among the sample batches in log order, so a worker that replays the log (after
a restart or a move) deletes exactly the samples written before it, again, and never those
written after. Its bytes start with :data:`MAGIC`, which no sample batch starts with (a batch
starts with its header length, far below 2**31), followed by a msgpack map; never pickle.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from filodb.errors import BadInputError
from filodb.model.labels import Matcher

MAGIC = b"\xfftmb"
VERSION = 1


@dataclass(frozen=True)
class Tombstone:
    """Delete the samples of series matching ``matchers`` in ``[start_ms, end_ms]``."""

    matchers: tuple[Matcher, ...]
    start_ms: int
    end_ms: int

    def to_bytes(self) -> bytes:
        body = {"v": VERSION, "s": self.start_ms, "e": self.end_ms,
                "m": [[m.name, m.op, m.value] for m in self.matchers]}  # fmt: skip
        return MAGIC + bytes(msgpack.packb(body))

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Tombstone:
        """Inverse of :meth:`to_bytes`; :class:`BadInputError` on anything else."""
        mv = memoryview(data)
        if bytes(mv[: len(MAGIC)]) != MAGIC:
            raise BadInputError("not a tombstone record")
        try:
            body = msgpack.unpackb(mv[len(MAGIC) :], raw=False)
            if body["v"] != VERSION:
                raise BadInputError(f"unknown tombstone version {body['v']!r}")
            matchers = tuple(Matcher(str(n), str(op), str(v)) for n, op, v in body["m"])
            start, end = int(body["s"]), int(body["e"])
        except (ValueError, KeyError, TypeError, msgpack.ExtraData, msgpack.FormatError) as e:
            raise BadInputError(f"malformed tombstone record: {e}") from e
        if start > end:
            raise BadInputError("malformed tombstone record: start after end")
        return cls(matchers, start, end)


def is_tombstone(data: bytes | memoryview) -> bool:
    """Whether a log record is a tombstone (else it is a sample batch)."""
    return bytes(memoryview(data)[: len(MAGIC)]) == MAGIC
