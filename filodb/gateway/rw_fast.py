"""A numpy decoder for the common shape of Prometheus remote-write requests.

Prometheus encodes each ``Sample`` of a ``TimeSeries`` as ``0x12 <len> [0x09 <f64>] [0x10
<varint ts>]``. With millisecond timestamps of today (6 varint bytes) and a non-zero value every
sample is the same 18 bytes: ``12 10 09 <8 bytes> 10 <6 bytes>``. This decoder walks the
request once per *series* in Python (labels need it anyway), checks that the series' samples
form such a fixed-stride run, and decodes all runs of the request at once with numpy. A series
that does not fit (a zero value omitted by proto3, other timestamp widths, exemplars...) is
decoded by protobuf's parser instead, so every request decodes exactly as before.
"""

from __future__ import annotations

import numpy as np

STRIDE = 18
_HEAD = np.frombuffer(b"\x12\x10\x09", np.uint8)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
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


def split_series(raw: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Byte spans (start, end) of the TimeSeries (field 1) and MetricMetadata (field 3)."""
    series, meta = [], []
    pos, n = 0, len(raw)
    while pos < n:
        key, pos = _varint(raw, pos)
        wire = key & 7
        if wire == 2:
            ln, pos = _varint(raw, pos)
            end = pos + ln
            if end > n:
                raise ValueError("truncated message")
            (series if key >> 3 == 1 else meta if key >> 3 == 3 else []).append((pos, end))
            pos = end
        elif wire == 0:
            _, pos = _varint(raw, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return series, meta


def series_layout(raw: bytes, start: int, end: int) -> tuple[list[tuple[str, str]], int, int] | None:
    """Labels and the fixed-stride sample run (offset, count) of one TimeSeries, or None."""
    labels = []
    pos = start
    while pos < end and raw[pos] == 0x0A:  # Label
        ln, pos = _varint(raw, pos + 1)
        lend = pos + ln
        name = value = ""
        while pos < lend:
            key, pos = _varint(raw, pos)
            sl, pos = _varint(raw, pos)
            text = raw[pos : pos + sl].decode("utf-8")
            pos += sl
            if key == 0x0A:
                name = text
            elif key == 0x12:
                value = text
            else:
                return None
        labels.append((name, value))
    rest = end - pos
    if rest % STRIDE:
        return None
    return labels, pos, rest // STRIDE


def decode_runs(buf: np.ndarray, offsets: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode fixed-stride sample runs; returns (ts, vals, ok-per-run)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.ones(len(counts), bool)
    rec = np.concatenate([buf[o : o + STRIDE * c] for o, c in zip(offsets.tolist(), counts.tolist(), strict=True)])
    rec = rec.reshape(total, STRIDE)  # one row per sample, copied once
    good = (rec[:, :3] == _HEAD).all(axis=1) & (rec[:, 11] == 0x10)
    good &= (rec[:, 12:17] >= 0x80).all(axis=1) & (rec[:, 17] < 0x80)
    vals = np.ascontiguousarray(rec[:, 3:11]).view("<f8").ravel()
    groups = (rec[:, 12:18] & 0x7F).astype(np.int64)
    ts = groups @ (np.int64(1) << (7 * np.arange(6, dtype=np.int64)))
    ok = np.ones(len(counts), bool)
    if not good.all():
        run_of = np.repeat(np.arange(len(counts)), counts)
        ok[run_of[~good]] = False
    return ts, vals, ok
