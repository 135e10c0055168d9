"""Unsigned LEB128 varints (protobuf's, and the store's blob headers), one byte at a time in
Python: for headers and messages, not for bulk data (the codecs have numba ones)."""

from __future__ import annotations


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after) of the varint at ``pos``; IndexError/ValueError when malformed."""
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def varint_bytes(v: int) -> bytes:
    """The varint of a non-negative int (a negative int64 is passed as ``v & (2**64 - 1)``)."""
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)
