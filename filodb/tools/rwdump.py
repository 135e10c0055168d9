"""Remote-write dump files: a sequence of remote-write request bodies, each framed as::

    +---------------------------+--------------------------------------------+
    | length: u32 big-endian    | body: snappy block-compressed WriteRequest |
    +---------------------------+--------------------------------------------+

repeated to the end of the file, nothing else (no file header). A body is exactly what a
Prometheus remote-write client POSTs, so ``filodb import`` sends it as it is. Written by
``filodb gen --out FILE`` and ``filodb export --format remote-write``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import cramjam

from filodb.errors import BadInputError

MAX_FRAME = 64 << 20  # a frame claiming more is not a dump (or is corrupt)


def write_frame(out: BinaryIO, body: bytes) -> int:
    """Append one framed body; returns the bytes written."""
    out.write(struct.pack(">I", len(body)))
    out.write(body)
    return 4 + len(body)


def read_frames(f: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """``(frame number from 1, body)`` for each frame; BadInputError on a truncated or
    oversized frame (after yielding the good ones before it)."""
    n = 0
    while True:
        head = f.read(4)
        if not head:
            return
        n += 1
        if len(head) < 4:
            raise BadInputError(f"frame {n}: truncated length prefix")
        (size,) = struct.unpack(">I", head)
        if size > MAX_FRAME:
            raise BadInputError(
                f"frame {n}: length {size} exceeds {MAX_FRAME} (not a remote-write dump?)"
            )
        body = f.read(size)
        if len(body) < size:
            raise BadInputError(f"frame {n}: truncated body ({len(body)} of {size} bytes)")
        yield n, body


def looks_like_dump(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a dump: a plausible length (text files start
    with printable bytes, i.e. a length of 512 MiB or more) followed by a snappy preamble."""
    if len(head) < 5:
        return False
    (size,) = struct.unpack(">I", head[:4])
    if not 0 < size <= MAX_FRAME:
        return False
    try:
        cramjam.snappy.decompress_raw_len(head[4 : 4 + min(size, 16)])
    except Exception:  # cramjam's own error type
        return False
    return True
