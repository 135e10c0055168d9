"""Chunk codecs: timestamps (grid residuals or deltas of deltas) and float64 values (decimal
mantissas, deltas, raw exceptions; XOR; raw), bit-exact, with batch decoders for many chunks at
once. Formats: ``docs/encoding.md``."""

from filodb.encoding.codecs import (
    decode_doubles,
    decode_doubles_many,
    decode_timestamps,
    decode_timestamps_many,
    encode_doubles,
    encode_many,
    encode_timestamps,
)

__all__ = [
    "decode_doubles",
    "decode_doubles_many",
    "decode_timestamps",
    "decode_timestamps_many",
    "encode_doubles",
    "encode_many",
    "encode_timestamps",
]
