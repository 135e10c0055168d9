"""Chunk vector codecs: timestamps (delta-of-delta) and float64 values (decimal mantissas with
delta or delta-of-delta, raw exceptions), bit-exact, numpy to analyse and numba to pack/unpack.

Values: the encoder looks for the smallest decimal scale ``k`` (0..6) at which most values are
``m / 10**k`` exactly (bit for bit) for an integer ``m`` below 2**53: integer counters and
gauges with a few decimals are. Those become integer mantissas, stored as fixed-width zigzag
deltas (or deltas of deltas, whichever packs smaller); the values that are not (a stale-marker
NaN, ±Inf, -0.0, a stray fraction) are kept raw as exceptions at their positions. Noise that
fits no scale is stored raw (8 bytes per value).
"""

from __future__ import annotations

import numpy as np

from filodb.encoding import kernels as K
from filodb.errors import BadInputError

MAX_SCALE = 6
MAX_ROWS = 1 << 24  # a vector claiming more rows is corrupt (checked before allocating)
_EXACT = float(2**53)


def _header(fmt: int, n: int) -> bytes:
    return bytes((fmt,)) + int(n).to_bytes(4, "little")


def _pfor(d: np.ndarray, divisor: int = 1) -> bytes:
    """Patched frame of reference of the zigzagged ``d // divisor`` (see ``pfor_encode``)."""
    return K.pfor_encode(np.ascontiguousarray(d, np.int64), divisor).tobytes()


def encode_timestamps(ts: np.ndarray) -> bytes:
    """ms timestamps (int64, any order of magnitude; sorted ones pack best)."""
    ts = np.ascontiguousarray(ts, np.int64)
    n = len(ts)
    first = int(ts[0]) if n else 0
    with np.errstate(over="ignore"):  # int64 arithmetic wraps; the decoder wraps back the same
        delta = int(np.subtract(ts[1], ts[0])) if n > 1 else 0
        dod = np.diff(ts, 2) if n > 2 else np.zeros(0, np.int64)
    body = _pfor(dod)
    return _header(K.TS_DOD, n) + np.array([first, delta], "<i8").tobytes() + body


def _mantissas(vals: np.ndarray) -> tuple[int, np.ndarray, np.ndarray] | None:
    """The best scale, the mantissas (exceptions filled forward) and the exception mask."""
    k, m, ok, n_ok = K.mantissas(vals, MAX_SCALE)
    if n_ok < len(vals) * 0.75:
        return None
    if n_ok < len(vals):  # exceptions take the previous good mantissa: a zero delta
        idx = np.where(ok, np.arange(len(m)), 0)
        np.maximum.accumulate(idx, out=idx)
        first_ok = int(np.argmax(ok))
        m = np.where(ok, m, m[idx])
        m[:first_ok] = m[first_ok]
    return int(k), m, ~ok


def encode_doubles(vals: np.ndarray) -> bytes:
    """float64 values, bit-exact (NaN payloads, ±Inf, -0.0 included)."""
    vals = np.ascontiguousarray(vals, np.float64)
    n = len(vals)
    got = _mantissas(vals) if n else None
    if got is None:
        return _header(K.F_RAW, n) + vals.astype("<f8").tobytes()
    k, m, exc = got
    d1 = np.diff(m)
    d2 = np.diff(d1) if n > 2 else np.zeros(0, np.int64)
    g1, g2 = K.gcd_of(d1), K.gcd_of(d2)  # e.g. byte gauges that move by whole pages
    p1 = _pfor(d1, g1)
    p2 = _pfor(d2, g2) if n > 2 else b""
    exc_pos = np.flatnonzero(exc).astype("<u4")
    tail = int(len(exc_pos)).to_bytes(4, "little") + exc_pos.tobytes() + vals[exc].view("<u8").tobytes()
    if n > 2 and len(p2) + 8 < len(p1):
        head = bytes((k,)) + np.array([g2, m[0], d1[0]], "<i8").tobytes()
        return _header(K.F_DOD, n) + head + tail + p2
    return _header(K.F_DELTA, n) + bytes((k,)) + np.array([g1, m[0]], "<i8").tobytes() + tail + p1


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
    if sum(int.from_bytes(b[1:5], "little") for b in bufs) > MAX_ROWS * max(1, len(bufs) // 64):
        raise _bad("timestamp" if is_ts else "double")  # claimed counts past any real chunk
    out, offsets, bad = K.decode_many(arr, bounds, is_ts)
    if bad >= 0:
        raise _bad("timestamp" if is_ts else "double")
    return (out.view(np.int64) if is_ts else out.view(np.float64)), offsets


def decode_timestamps_many(bufs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Many timestamp vectors decoded in one call: (concatenated values, offsets [n+1])."""
    return _many(bufs, True)


def decode_doubles_many(bufs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Many double vectors decoded in one call: (concatenated values, offsets [n+1])."""
    return _many(bufs, False)
