"""Arrays between processes: a msgpack header plus raw little-endian frames, never pickle.

A message is ``u32 header length | msgpack header | frame 0 | frame 1 | ...``. The header
lists each frame's dtype (from an allowlist) and element count, so a reader never runs code
from the wire and rejects any dtype it does not know.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

import msgpack
import numpy as np

from filodb.errors import BadInputError
from filodb.model.labels import Labels, Matcher
from filodb.model.source import SeriesBlock
from filodb.query.values import StepVector

_DTYPES = {"<i8", "<i4", "<f8", "|b1", "<u8"}


def pack(header: dict[str, Any], arrays: list[np.ndarray]) -> bytes:
    """One message: ``header`` (msgpack-able) and arrays as raw frames."""
    frames: list[Any] = []  # numpy byte views (buffers)
    specs = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        code = dt.str
        if code not in _DTYPES:
            raise TypeError(f"dtype {code} not allowed on the wire")
        specs.append([code, int(a.size), list(a.shape)])
        frames.append(a.astype(dt, copy=False).reshape(-1).view(np.uint8))  # joined uncopied
    h = msgpack.packb({"h": header, "a": specs})
    return b"".join([len(h).to_bytes(4, "little"), h, *frames])


def unpack(data: bytes | memoryview) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Inverse of :func:`pack`; raises :class:`BadInputError` on anything malformed."""
    mv = memoryview(data)
    try:
        hlen = int.from_bytes(mv[:4], "little")
        meta = msgpack.unpackb(mv[4 : 4 + hlen], raw=False)
        pos = 4 + hlen
        arrays = []
        for code, size, shape in meta["a"]:
            if code not in _DTYPES:
                raise BadInputError(f"dtype {code} not allowed on the wire")
            dt = np.dtype(code)
            arrays.append(np.frombuffer(mv, dt, size, pos).reshape(shape))
            pos += dt.itemsize * size
        return meta["h"], arrays
    except (ValueError, KeyError, TypeError, msgpack.ExtraData, msgpack.FormatError) as e:
        raise BadInputError(f"malformed message: {e}") from e


def flat_labels(labels: list[Labels]) -> list[list[str]]:
    return list(map(list, map(chain.from_iterable, labels)))


def unflat_labels(flat: list[list[str]]) -> list[Labels]:
    """Label sets from their flat lists (pairs by one ``zip`` over one iterator: C-level)."""
    return [tuple(zip(it, it, strict=False)) for it in map(iter, flat)]


def pack_block(block: SeriesBlock, extra: dict[str, Any] | None = None) -> bytes:
    header = {"kind": "block", "labels": flat_labels(block.labels), **(extra or {})}
    return pack(header, [block.offsets, block.ts, block.vals])


def unpack_block(header: dict[str, Any], arrays: list[np.ndarray]) -> SeriesBlock:
    offsets, ts, vals = arrays
    return SeriesBlock(unflat_labels(header["labels"]), offsets, ts, vals)


def matchers_to_wire(ms: Sequence[Matcher]) -> list[list[str]]:
    return [[m.name, m.op, m.value] for m in ms]


def matchers_from_wire(raw: list[list[str]]) -> list[Matcher]:
    return [Matcher(n, op, v) for n, op, v in raw]


def pack_steps(header: dict[str, Any], v: StepVector) -> bytes:
    """A :class:`StepVector` as one message (labels in the header, values and presence as frames)."""
    return pack({**header, "labels": flat_labels(v.labels)}, [v.values, v.present])


def unpack_steps(header: dict[str, Any], arrays: list[np.ndarray]) -> StepVector:
    vals, pres = arrays
    return StepVector(unflat_labels(header["labels"]), np.array(vals), np.array(pres))
