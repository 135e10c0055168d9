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


class LabelCache:
    """Label sets by the raw bytes of their Label fields: a series seen before costs one
    dict lookup, not a parse. Bounded; cleared when full."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self.map: dict[bytes, object] = {}

    def get(self, key: bytes) -> object | None:
        return self.map.get(key)

    def put(self, key: bytes, value: object) -> None:
        if len(self.map) >= self.max_entries:
            self.map.clear()
        self.map[key] = value


def series_layout(raw: bytes, start: int, end: int) -> tuple[bytes, list[tuple[str, str]] | None, int, int] | None:
    """(raw label bytes, labels or None when only the bytes were needed, sample offset, count)
    of one TimeSeries whose samples are a fixed-stride run; None otherwise."""
    pos = start
    while pos < end and raw[pos] == 0x0A:  # Label fields come first
        ln, body = _varint(raw, pos + 1)
        pos = body + ln
    rest = end - pos
    if rest % STRIDE or pos > end:
        return None
    return raw[start:pos], None, pos, rest // STRIDE


def parse_label_fields(raw: bytes) -> list[tuple[str, str]]:
    """Labels from the bytes of consecutive Label fields (ValueError when malformed)."""
    out = []
    pos = 0
    while pos < len(raw):
        if raw[pos] != 0x0A:
            raise ValueError("unexpected field in labels")
        ln, body = _varint(raw, pos + 1)
        name = value = ""
        sub = body
        while sub < body + ln:
            key, sub = _varint(raw, sub)
            sl, sub = _varint(raw, sub)
            text = raw[sub : sub + sl].decode("utf-8")
            sub += sl
            if key == 0x0A:
                name = text
            elif key == 0x12:
                value = text
            else:
                raise ValueError("unexpected field in a label")
        out.append((name, value))
        pos = body + ln
    return out


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
