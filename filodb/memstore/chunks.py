"""Encoded chunks of one series, and decoding many of them at once.

A chunk is a closed run of a series' samples: its timestamps and values encoded by
:mod:`filodb.encoding` (delta-of-delta timestamps, bit-exact doubles), with the metadata the
column store keys it by. Its id is its start time: in-order chunks of a series never overlap
(samples are strictly increasing), and a chunk rebuilt from the same samples after a crash gets
the same id, so writing it again replaces the stored one. An out-of-order chunk (one holding a
sample not newer than what its series closed before) may start where a stored chunk starts: its
id has bit 62 set (:func:`ooo_id`), so it is never a timestamp and the chunk is stored beside
the chunks it overlaps instead of over them; the id grows with the log offset it was closed at
(write order: of two samples with one timestamp the later chunk's wins), and its low bits are
a hash of the vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from filodb.encoding import (
    decode_doubles_many,
    decode_timestamps_many,
    encode_doubles,
    encode_timestamps,
)
from filodb.model.source import is_stale


@dataclass(slots=True)
class Chunk:
    """One encoded chunk; ``flushed`` once the column store holds it. Slotted: a series
    keeps a dozen of them in memory a day (at 15 s), so no ``__dict__`` each."""

    chunk_id: int
    start: int
    end: int
    count: int
    ts: bytes
    vals: bytes
    flushed: bool = False
    ooo: bool = False  # holds samples older than chunks closed before it
    stale: int = -1  # how many of its values are stale markers (-1: not known, e.g. paged)

    @property
    def nbytes(self) -> int:
        return len(self.ts) + len(self.vals)

    @property
    def vectors(self) -> tuple[bytes, bytes]:
        return (self.ts, self.vals)


def encode_chunk(ts: np.ndarray, vals: np.ndarray) -> Chunk:
    """Close samples (at least one, strictly increasing timestamps) into a chunk."""
    start, end = int(ts[0]), int(ts[-1])
    return Chunk(start, start, end, len(ts), encode_timestamps(ts), encode_doubles(vals),
                 stale=int(is_stale(vals).sum()))  # fmt: skip


OOO_ID_BIT = 1 << 62


def ooo_id(tick: int, ts: bytes, vals: bytes) -> int:
    """The id of an out-of-order chunk closed at ``tick`` (the log offset; < 2**42): bit 62
    set (ms timestamps stay far below 2**62, so it is never an in-order chunk's start), then
    the tick, then 20 bits of a hash of its vectors. Ids grow with the tick; the shard raises
    an id above its series' last one, so they follow the write order within a tick too."""
    h = hashlib.blake2b(ts, digest_size=4, key=b"filodb-ooo")
    h.update(vals)
    low = int.from_bytes(h.digest(), "little") & 0xFFFFF
    return OOO_ID_BIT | ((tick & ((1 << 42) - 1)) << 20) | low


def write_order(c: Chunk) -> int:
    """Sort key putting a series' chunks in the order their samples were written, where it
    matters: an in-order chunk shares no timestamp with any chunk closed before it, so in-order
    chunks come first (0) and out-of-order ones after, by id."""
    return c.chunk_id if c.ooo else 0


def write_order_of_ids(chunk_ids: np.ndarray) -> np.ndarray:
    """:func:`write_order` of stored chunks, from their ids (one numpy call)."""
    return np.where(chunk_ids >= OOO_ID_BIT, chunk_ids, 0)


def chunk_from_vectors(
    chunk_id: int, start: int, end: int, count: int, vectors: Sequence[bytes]
) -> Chunk:
    """A chunk read back from the column store."""
    return Chunk(chunk_id, start, end, count, vectors[0], vectors[1], flushed=True,
                 ooo=chunk_id >= OOO_ID_BIT)  # fmt: skip


def decode_chunks(chunks: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timestamps and values of many chunks, concatenated; ``offsets`` has one more entry."""
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(1, np.int64)
    ts, offsets = decode_timestamps_many([c.ts for c in chunks])
    vals, _ = decode_doubles_many([c.vals for c in chunks])
    return ts, vals, offsets


def trim_chunk(c: Chunk, start_ms: int, end_ms: int) -> Chunk | None:
    """The chunk without its samples in ``[start_ms, end_ms]`` (None when none are left); it
    keeps its chunk id and ``flushed`` flag, so writing it again replaces the stored one."""
    if c.end < start_ms or c.start > end_ms:
        return c
    ts, vals, _ = decode_chunks([c])
    keep = (ts < start_ms) | (ts > end_ms)
    if not keep.any():
        return None
    ts, vals = ts[keep], vals[keep]
    out = encode_chunk(ts, vals)
    out.chunk_id, out.flushed = c.chunk_id, c.flushed
    return out
