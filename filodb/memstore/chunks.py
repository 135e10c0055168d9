"""Encoded chunks of one series, and decoding many of them at once.

A chunk is a closed run of a series' samples: its timestamps and values encoded by
:mod:`filodb.encoding` (delta-of-delta timestamps, bit-exact doubles), with the metadata the
column store keys it by. Its id is its start time: chunks of a series never overlap (samples
are strictly increasing), and a chunk rebuilt from the same samples after a crash gets the same
id, so writing it again replaces the stored one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from filodb.encoding import (
    decode_doubles_many,
    decode_timestamps_many,
    encode_doubles,
    encode_timestamps,
)


@dataclass
class Chunk:
    """One encoded chunk; ``flushed`` once the column store holds it."""

    chunk_id: int
    start: int
    end: int
    count: int
    ts: bytes
    vals: bytes
    flushed: bool = False

    @property
    def nbytes(self) -> int:
        return len(self.ts) + len(self.vals)

    @property
    def vectors(self) -> tuple[bytes, bytes]:
        return (self.ts, self.vals)


def encode_chunk(ts: np.ndarray, vals: np.ndarray) -> Chunk:
    """Close samples (at least one, strictly increasing timestamps) into a chunk."""
    start, end = int(ts[0]), int(ts[-1])
    return Chunk(start, start, end, len(ts), encode_timestamps(ts), encode_doubles(vals))


def chunk_from_vectors(
    chunk_id: int, start: int, end: int, count: int, vectors: Sequence[bytes]
) -> Chunk:
    """A chunk read back from the column store."""
    return Chunk(chunk_id, start, end, count, vectors[0], vectors[1], flushed=True)


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
