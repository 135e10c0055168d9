"""Chunk vector codecs: timestamps (on a grid, or deltas of deltas) and float64 values
(decimal mantissas with delta or delta-of-delta and raw exceptions, XOR, raw), bit-exact,
chosen per chunk, numba to analyse, pack and unpack. Formats: ``docs/encoding.md``.

Values: the encoder looks for the smallest decimal scale ``k`` (0..6) at which most values are
``m / 10**k`` exactly (bit for bit) for an integer ``m`` below 2**53: integer counters and
gauges with a few decimals are. Those become integer mantissas whose differences go into a
range block; the values that are not (a stale-marker NaN, ±Inf, -0.0, a stray fraction) are
kept raw as exceptions at their positions. Values that fit no scale are XORed with their
predecessor (Gorilla) when that is smaller than raw.
"""

from __future__ import annotations

import numpy as np

from filodb.encoding import kernels as K
from filodb.errors import BadInputError

MAX_SCALE = 6
MAX_ROWS = 1 << 24  # a vector claiming more rows is corrupt (checked before allocating)
_EXACT = float(2**53)


def encode_timestamps(ts: np.ndarray) -> bytes:
    """ms timestamps (int64, any values; sorted ones with a steady interval pack best)."""
    return K.encode_ts(np.ascontiguousarray(ts, np.int64)).tobytes()


def encode_doubles(vals: np.ndarray) -> bytes:
    """float64 values, bit-exact (NaN payloads, ±Inf, -0.0 included)."""
    return K.encode_values(np.ascontiguousarray(vals, np.float64), MAX_SCALE).tobytes()


def encode_many(
    ts: np.ndarray, vals: np.ndarray, offsets: np.ndarray
) -> tuple[list[bytes], list[bytes]]:
    """Many chunks' vectors in one numba call: group ``i`` is ``ts[offsets[i]:offsets[i+1]]``
    and the values beside it; (timestamp vectors, value vectors), one per group."""
    tbuf, tb, vbuf, vb = K.encode_many(
        np.ascontiguousarray(ts, np.int64), np.ascontiguousarray(vals, np.float64),
        np.ascontiguousarray(offsets, np.int64), MAX_SCALE,
    )  # fmt: skip
    tbytes, vbytes = tbuf.tobytes(), vbuf.tobytes()
    t, v = tb.tolist(), vb.tolist()
    return [tbytes[a:b] for a, b in zip(t[:-1], t[1:], strict=True)], [
        vbytes[a:b] for a, b in zip(v[:-1], v[1:], strict=True)
    ]


def _bad(what: str) -> BadInputError:
    return BadInputError(f"corrupt {what} vector")


def decode_timestamps(buf: bytes) -> np.ndarray:
    arr = np.frombuffer(buf, np.uint8)
    n = K.count_of(arr, 0, len(arr))
    if n < 0 or n > MAX_ROWS:
        raise _bad("timestamp")
    out = np.empty(n, np.int64)
    if K.decode_ts_into(arr, 0, len(arr), out, 0) != n:
        raise _bad("timestamp")
    return out


def decode_doubles(buf: bytes) -> np.ndarray:
    arr = np.frombuffer(buf, np.uint8)
    n = K.count_of(arr, 0, len(arr))
    if n < 0 or n > MAX_ROWS:
        raise _bad("double")
    out = np.empty(n, np.uint64)
    if K.decode_doubles_into(arr, 0, len(arr), out, 0) != n:
        raise _bad("double")
    return out.view(np.float64)


def _many(bufs: list[bytes], is_ts: bool) -> tuple[np.ndarray, np.ndarray]:
    if not bufs:
        return np.zeros(0, np.int64 if is_ts else np.float64), np.zeros(1, np.int64)
    lens = np.fromiter(map(len, bufs), np.int64, len(bufs))
    bounds = np.zeros(len(bufs) + 1, np.int64)
    np.cumsum(lens, out=bounds[1:])
    arr = np.frombuffer(b"".join(bufs), np.uint8)
    # claimed counts past any real chunk are refused before allocating
    out, offsets, bad = K.decode_many(arr, bounds, is_ts, MAX_ROWS * max(1, len(bufs) // 64))
    if bad >= 0:
        raise _bad("timestamp" if is_ts else "double")
    return (out.view(np.int64) if is_ts else out.view(np.float64)), offsets


def decode_timestamps_many(bufs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Many timestamp vectors decoded in one call: (concatenated values, offsets [n+1])."""
    return _many(bufs, True)


def decode_doubles_many(bufs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Many double vectors decoded in one call: (concatenated values, offsets [n+1])."""
    return _many(bufs, False)
