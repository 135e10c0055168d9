"""Prometheus remote write: protobuf + snappy (block format) to and from :class:`SampleBatch`.

The messages are :mod:`filodb.prom.proto`'s ``WriteRequest``, ``TimeSeries``, ``Label``,
``Sample`` and ``MetricMetadata``. protobuf's upb parser is the reference and the fallback.
The normal path decodes the wire format with numba kernels (:func:`_decode_fast`, in two
stages: :func:`_scan_series` and :func:`_assemble`): the top-level fields found, each series'
Label fields resolved straight from the buffer by the series cache (:data:`SERIES`, exact
byte compare; parsed only when new), every Sample record counted, checked and read, no Python
step per series or sample. Series with exemplars or histograms, and odd field orders, go to
upb; tests check that both give identical results. Exemplars (field 3) are kept
(``SampleBatch.exemplars``); one whose label names and values exceed 128 characters is dropped
alone, as Prometheus does. Native histograms (field 4) are still skipped.

Measured (``python bench/parsers.py``; snappy included; 2-core machine under load, so +-30 %),
10 k series, 4 labels each, before (the numpy decoder: a dict lookup per series, samples
gathered by numpy) and after the kernels:

* 10 k x 100 samples: 9.4 -> 15.0 M samples/s with cached series, 3.4 -> 5.0 M with new ones;
  4.1 -> 25 M samples/s when 10 % of the values are 0 (proto3 leaves them out);
* 10 k x 1 sample (Prometheus's usual shape): 1.35 -> 5.9 M samples/s cached; new series
  cost ~12 us each (parse, check, intern, part key and hashes), ~81 k series/s; now built a
  body at a time (:mod:`filodb.prom.label_spans`, :mod:`filodb.model.fastkeys`), ~2-4 us
  each (``python bench/new_series.py``).

:func:`encode_write_request` is vectorised too (byte-identical to protobuf's serialisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cramjam
import numba as nb
import numpy as np
from google.protobuf.message import DecodeError

from filodb.errors import BadInputError, ErrPayloadTooLarge
from filodb.model.batch import SampleBatch
from filodb.model.borrow import borrowed
from filodb.model.cache import BoundedCache
from filodb.model.exemplars import Exemplars
from filodb.model.fastkeys import Made
from filodb.model.identity import Routed, SeriesKeyCache
from filodb.model.labels import Labels, intern_labels
from filodb.model.partkeys import PartKeys
from filodb.model.varint import varint, varint_bytes
from filodb.prom import label_spans
from filodb.prom.proto import TimeSeries, WriteRequest
from filodb.prom.proto import field as pb_field

_TYPES = {0: "unknown", 1: "counter", 2: "gauge", 3: "histogram", 4: "gaugehistogram",
          5: "summary", 6: "info", 7: "stateset"}  # fmt: skip
_TYPE_CODES = {v: k for k, v in _TYPES.items()}


def decode_write_request(body: bytes, max_decompressed: int = 64 << 20) -> SampleBatch:
    """Decode a remote-write body (snappy + protobuf) into a batch; BadInputError if malformed."""
    return decode_write_request_full(body, max_decompressed)[0]


def decode_write_request_full(
    body: bytes, max_decompressed: int = 64 << 20
) -> tuple[SampleBatch, list[dict[str, str]]]:
    """Decode a remote-write body; returns the batch and the metadata entries."""
    raw = _decompress(body, max_decompressed)
    fast = _decode_fast(raw)
    if fast is not None:
        return fast
    batch, meta = _decode_protobuf(raw)
    batch.routed = SERIES.routed_for(batch.series)  # checked for lateness as the fast path's
    return batch, meta


def warm() -> None:
    """Load the decoder's numba kernels now. The first numba call of a process costs ~0.3 s
    (numba's target registries, then the cached machine code), and every request thread waits
    on numba's compiler lock meanwhile: paid at start-up, not by the first writes."""
    batch = SampleBatch([(("__name__", "warm"),)], np.zeros(1, np.int32),
                        np.ones(1, np.int64), np.ones(1))  # fmt: skip
    got = decode_write_request(encode_write_request(batch))
    if isinstance(got.pks, PartKeys):  # and the gather the router runs on its part keys
        got.pks.joined()


def _decode_protobuf(raw: bytes) -> tuple[SampleBatch, list[dict[str, str]]]:
    """The reference decoder: upb parses, ``np.fromiter`` per series."""
    req = WriteRequest()
    try:
        req.ParseFromString(raw)
    except (DecodeError, ValueError) as e:
        raise BadInputError(f"remote-write body is not a valid WriteRequest protobuf: {e}") from e
    index: dict[Labels, int] = {}
    series: list[Labels] = []
    sidx_parts, ts_parts, val_parts = [], [], []
    ex = _ExemplarParts()
    for i, ts_msg in enumerate(req.timeseries):
        labels = _labels_of(ts_msg, i)
        j = index.get(labels)
        if j is None:
            j = index[labels] = len(series)
            series.append(labels)
        ex.add(j, ts_msg)
        samples = ts_msg.samples
        n = len(samples)
        if n == 0:
            continue
        ts_parts.append(np.fromiter((s.timestamp for s in samples), np.int64, n))
        val_parts.append(np.fromiter((s.value for s in samples), np.float64, n))
        sidx_parts.append(np.full(n, j, np.int32))
    meta = _metadata_of(req)
    if not ts_parts:
        batch = SampleBatch(series, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    else:
        batch = SampleBatch(series, np.concatenate(sidx_parts), np.concatenate(ts_parts),
                            np.concatenate(val_parts))  # fmt: skip
    batch.types = {m["metric"]: m["type"] for m in meta if m["metric"]}
    batch.exemplars = ex.build()
    return batch, meta


EXEMPLAR_MAX_LABELS_LENGTH = 128  # runes of an exemplar's label names and values (Prometheus)


class _ExemplarParts:
    """Exemplars gathered from the TimeSeries messages that have some (field 3)."""

    def __init__(self) -> None:
        self.sidx: list[int] = []
        self.ts: list[int] = []
        self.vals: list[float] = []
        self.labels: list[Labels] = []

    def add(self, j: int, ts_msg) -> None:  # type: ignore[no-untyped-def]
        for e in ts_msg.exemplars:  # a handful per request: one per series at most, usually
            pairs = {lb.name: lb.value for lb in e.labels if lb.value}
            if sum(len(k) + len(v) for k, v in pairs.items()) > EXEMPLAR_MAX_LABELS_LENGTH:
                continue  # Prometheus refuses such an exemplar alone (its samples are kept)
            self.sidx.append(j)
            self.ts.append(e.timestamp)
            self.vals.append(e.value)
            self.labels.append(tuple(sorted(pairs.items())))

    def build(self) -> Exemplars | None:
        if not self.ts:
            return None
        return Exemplars(np.array(self.sidx, np.int32), np.array(self.ts, np.int64),
                         np.array(self.vals, np.float64), self.labels)  # fmt: skip


def _labels_of(ts_msg, i: int) -> Labels:  # type: ignore[no-untyped-def]
    return _check_labels([(lb.name, lb.value) for lb in ts_msg.labels], i)


def _series_of_fields(raw: bytes, _b: bytes, _kind: int) -> tuple[Labels, None] | None:
    """The label set of a series' Label fields; None when they are refused (the decoder then
    parses the first refused one again, with its place in the request, to say why)."""
    try:
        return _parse_label_fields(raw, 0), None
    except BadInputError:
        return None


def _fast_series(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, *_: np.ndarray
                 ) -> tuple[Made, None]:  # fmt: skip
    """The new series of a body's Label fields at once (:mod:`filodb.prom.label_spans`); the
    keys it leaves go to :func:`_series_of_fields`."""
    return label_spans.spans(buf, a0, a1), None


# Series by the raw bytes of their Label fields (label set, part key, key, route): a series
# seen before costs no Python step, no parse and no hashing of its labels. Only valid label
# sets are stored.
SERIES = SeriesKeyCache(_series_of_fields, 1_000_000, _fast_series)


def _decompress(body: bytes, max_decompressed: int) -> bytes:
    if not body:
        raise BadInputError("empty remote-write body")
    try:
        n = cramjam.snappy.decompress_raw_len(body)
    except Exception as e:  # cramjam raises its own DecompressionError
        raise BadInputError(f"remote-write body is not snappy block data: {e}") from e
    if n > max_decompressed:
        raise ErrPayloadTooLarge(
            f"decompressed remote-write body of {n} bytes exceeds {max_decompressed}"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as e:
        raise BadInputError(f"remote-write body is not snappy block data: {e}") from e


def _check_labels(pairs: list[tuple[str, str]], i: int) -> Labels:
    d = dict(pairs)
    if len(d) != len(pairs):
        names = sorted(k for k, _ in pairs)
        dup = sorted({k for k in names if names.count(k) > 1})
        raise BadInputError(f"time series {i} has duplicate label names {dup}")
    if not d.get("__name__"):
        raise BadInputError(f"time series {i} has no metric name (empty or missing __name__ label)")
    if "" in d.values():
        pairs = [kv for kv in pairs if kv[1]]
    return intern_labels(sorted(pairs))


def _parse_label_fields(raw: bytes, i: int) -> Labels:
    """Labels from the bytes of consecutive Label fields (``0a <len> 0a <name> 12 <value>``)."""
    pairs = []
    pos, n = 0, len(raw)
    try:
        while pos < n:
            ln = raw[pos + 1]
            end = pos + 2 + ln
            # the usual shape, every length one byte: 0a L 0a nl <name> 12 vl <value>
            if ln < 0x80 and end <= n and raw[pos + 2] == 0x0A and raw[pos + 3] < 0x80:
                b = pos + 4 + raw[pos + 3]
                if b == end:
                    pairs.append((raw[pos + 4 : b].decode(), ""))
                    pos = end
                    continue
                if b < end and raw[b] == 0x12 and b + 2 + raw[b + 1] == end:
                    pairs.append((raw[pos + 4 : b].decode(), raw[b + 2 : end].decode()))
                    pos = end
                    continue
            ln, body = varint(raw, pos + 1)
            end = body + ln
            if end > n:
                raise ValueError("truncated label")
            name = value = ""
            sub = body
            while sub < end:
                key = raw[sub]
                sl, sub = varint(raw, sub + 1)
                if sub + sl > end:
                    raise ValueError("truncated label")
                text = raw[sub : sub + sl].decode("utf-8")
                sub += sl
                if key == 0x0A:
                    name = text
                elif key == 0x12:
                    value = text
                else:
                    raise ValueError(f"unexpected field tag {key:#x} in a Label")
            pairs.append((name, value))
            pos = end
    except UnicodeDecodeError as e:
        raise BadInputError(f"time series {i} has a label that is not valid UTF-8: {e}") from e
    except (ValueError, IndexError) as e:
        raise BadInputError(f"remote-write body is not a valid WriteRequest protobuf: {e}") from e
    return _check_labels(pairs, i)


# --- the numpy decoder ---------------------------------------------------------------------


class _Fallback(Exception):
    """The request has a shape the numpy path does not handle: use protobuf's parser."""


@dataclass
class _Scan:
    """Stage 1's answer: the series in first-seen order, and per TimeSeries that has samples
    where its message starts (``msg``), where its samples region starts and ends, and its
    series index ``j``."""

    series: Sequence[Labels] = field(default_factory=list)
    pks: Sequence[bytes] = field(default_factory=list)
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    routes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    msg: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    j: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    routed: Routed | None = None
    meta_fields: list[bytes] = field(default_factory=list)


def _decode_fast(raw: bytes) -> tuple[SampleBatch, list[dict[str, str]]] | None:
    """The fast decoder; None when the request should go through protobuf's parser instead.

    1. :func:`_scan_series`: the TimeSeries found and their series resolved (numba kernels,
       no Python step per series seen before).
    2. :func:`_assemble`: every Sample record counted, checked and read by numba kernels
       (:func:`_count_samples`, :func:`_read_samples`), the regions left to upb decoded, all
       in request order.
    """
    try:
        scan = _scan_series(raw)
    except (_Fallback, IndexError, ValueError):
        return None
    meta = _decode_metadata(b"".join(scan.meta_fields)) if scan.meta_fields else []
    if not len(scan.start):
        return SampleBatch(scan.series, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0),
                           keys=scan.keys, pks=scan.pks, routes=scan.routes,
                           routed=scan.routed), meta  # fmt: skip
    return _assemble(raw, np.frombuffer(raw, np.uint8), scan, meta)


@nb.njit(cache=True, nogil=True)
def _top_fields(raw: np.ndarray) -> tuple[np.ndarray, int]:  # pragma: no cover - numba
    """The top-level fields of a WriteRequest: per field its key, start, body start, end of
    the leading run of Label fields (key 0a; the body's end for other fields) and end, as
    rows of ``out``; and the number of fields. A negative count: a field this decoder does not
    take (unknown key, length past the end, a varint over 10 bytes): protobuf decides."""
    n = raw.size
    out = np.empty((n // 2 + 1, 5), np.int64)
    k = 0
    pos = 0
    while pos < n:
        key = raw[pos]
        if key != 0x0A and key != 0x1A:
            return out, -1
        ln = 0
        shift = 0
        body = pos + 1
        while True:
            if body >= n or shift > 63:
                return out, -1
            b = raw[body]
            body += 1
            ln |= int(b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        end = body + ln
        if ln < 0 or end > n:
            return out, -1
        q = body
        if key == 0x0A:
            while q < end and raw[q] == 0x0A:
                lq = 0
                shift = 0
                q += 1
                while True:
                    if q >= end or shift > 63:
                        return out, -1
                    b = raw[q]
                    q += 1
                    lq |= int(b & 0x7F) << shift
                    if b < 0x80:
                        break
                    shift += 7
                q += lq
                if lq < 0 or q > end:
                    return out, -1
        else:
            q = end
        out[k, 0] = key
        out[k, 1] = pos
        out[k, 2] = body
        out[k, 3] = q
        out[k, 4] = end
        k += 1
        pos = end
    return out, k


def _scan_series(raw: bytes) -> _Scan:
    """Stage 1: the top-level fields found by a numba kernel (:func:`_top_fields`); the
    Label fields that lead each TimeSeries are resolved by the series cache straight from the
    buffer (:data:`SERIES`: exact byte compare in numba, parsed and checked only on a miss);
    the rest of the message is its samples region ``[start, end)``; metadata fields are
    kept whole. Raises :class:`_Fallback` for a shape protobuf should judge."""
    buf = np.frombuffer(raw, np.uint8)
    fields, k = _top_fields(buf)
    if k < 0:
        raise _Fallback
    fields = fields[:k]
    is_ts = fields[:, 0] == 0x0A
    out = _Scan()
    if not is_ts.all():
        out.meta_fields = [raw[a:b] for a, b in fields[~is_ts][:, [1, 4]].tolist()]
        fields = fields[is_ts]
    a0, a1 = fields[:, 2], fields[:, 3]
    got = SERIES.resolve(buf, a0, a1, a1, a1, np.zeros(len(a0), np.uint8))
    if len(got.sidx) and got.sidx.min() < 0:  # a label set refused: say why, for the first
        i = int(np.flatnonzero(got.sidx < 0)[0])
        _parse_label_fields(raw[a0[i] : a1[i]], i)
        raise AssertionError("a refused label set parsed")  # pragma: no cover
    # a series in several TimeSeries is one series (the cache interns label sets)
    out.series, out.pks, out.keys, out.routes = got.series, got.part_keys, got.keys, got.routes
    out.routed = got.routed
    has = fields[:, 3] < fields[:, 4]  # a series with samples (or anything after its labels)
    if not has.all():
        fields = fields[has]
    out.msg, out.start, out.end = fields[:, 2], fields[:, 3], fields[:, 4]
    out.j = got.sidx[has]
    return out


@nb.njit(cache=True, nogil=True, inline="always")
def _sample_at(
    buf: np.ndarray, p: int, q: int
) -> tuple[bool, np.uint64, np.uint64]:  # pragma: no cover - numba
    """The Sample record body ``buf[p:q]`` laid out as ``[09 <f64>] [10 <varint>]`` (proto3
    leaves out zero fields): (ok, timestamp bits, value bits); not ok for any other layout."""
    bits = np.uint64(0)
    u = np.uint64(0)
    if p < q and buf[p] == 0x09:
        if p + 9 > q:
            return False, u, bits
        for k in range(8):
            bits |= np.uint64(buf[p + 1 + k]) << np.uint64(8 * k)
        p += 9
    if p < q:
        if buf[p] != 0x10:
            return False, u, bits
        p += 1
        shift = 0
        while True:
            if p >= q or shift > 63:
                return False, u, bits
            c = buf[p]
            p += 1
            u |= np.uint64(c & 0x7F) << np.uint64(shift)
            if c < 0x80:
                break
            shift += 7
        if p != q:
            return False, u, bits
    return True, u, bits


@nb.njit(cache=True, nogil=True)
def _count_samples(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip  # pragma: no cover - numba
    """Per samples region the number of Sample records (``12 <len> <body>``, one length
    byte), and whether it holds anything else (exemplars, histograms, odd layouts: ``slow``,
    left to upb)."""
    buf = borrowed(buf)  # handed to the sample reader a sample (model/borrow.py)
    n = len(starts)
    counts = np.zeros(n, np.int64)
    slow = np.zeros(n, np.bool_)
    for k in range(n):
        p, e, c = starts[k], ends[k], 0
        while p < e:
            if buf[p] != 0x12 or p + 1 >= e or buf[p + 1] >= 0x80 or p + 2 + buf[p + 1] > e:
                slow[k] = True
                break
            q = p + 2 + buf[p + 1]
            if not _sample_at(buf, p + 2, q)[0]:
                slow[k] = True
                break
            c += 1
            p = q
        counts[k] = 0 if slow[k] else c
    return counts, slow


@nb.njit(cache=True, nogil=True)
def _read_samples(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, slow: np.ndarray,
                  at: np.ndarray, ts: np.ndarray, bits: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - numba
    """The records of the regions :func:`_count_samples` took, written from ``at[k]`` on."""
    buf = borrowed(buf)
    for k in range(len(starts)):
        if slow[k]:
            continue
        p, e, o = starts[k], ends[k], at[k]
        while p < e:
            q = p + 2 + buf[p + 1]
            _, u, b = _sample_at(buf, p + 2, q)
            ts[o] = u
            bits[o] = b
            o += 1
            p = q


def _assemble(raw: bytes, buf: np.ndarray, scan: _Scan, meta: list[dict[str, str]]
              ) -> tuple[SampleBatch, list[dict[str, str]]] | None:  # fmt: skip
    """Stage 2: the samples of every region, in request order: counted and checked, then read
    by numba kernels; the regions they leave (exemplars, histograms, odd layouts) through upb
    (None when one has labels after its samples: protobuf merges those)."""
    counts, slow = _count_samples(buf, scan.start, scan.end)
    slow_data: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    ex = _ExemplarParts()
    for k in np.flatnonzero(slow).tolist():
        j = int(scan.j[k])
        labels, ts, vs, ts_msg = _decode_series_protobuf(raw[scan.msg[k] : scan.end[k]], k)
        if labels != scan.series[j]:
            return None
        ex.add(j, ts_msg)
        slow_data[k] = (ts, vs)
        counts[k] = len(ts)
    offsets = np.cumsum(counts) - counts
    total = int(counts.sum())
    out_ts = np.empty(total, np.int64)
    out_bits = np.empty(total, np.uint64)
    _read_samples(buf, scan.start, scan.end, slow, offsets, out_ts.view(np.uint64), out_bits)
    out_vals = out_bits.view(np.float64)
    for k, (ts, vs) in slow_data.items():
        out_ts[offsets[k] : offsets[k] + len(ts)] = ts
        out_vals[offsets[k] : offsets[k] + len(ts)] = vs
    sidx = np.repeat(scan.j, counts)
    types = {m["metric"]: m["type"] for m in meta if m["metric"]}
    return SampleBatch(scan.series, sidx, out_ts, out_vals, types, scan.keys, ex.build(),
                       scan.pks, scan.routes, scan.routed), meta  # fmt: skip


def _decode_metadata(fields: bytes) -> list[dict[str, str]]:
    req = WriteRequest()
    try:
        req.ParseFromString(fields)
    except (DecodeError, ValueError) as e:
        raise BadInputError(f"remote-write body has malformed metadata: {e}") from e
    return _metadata_of(req)


def _metadata_of(req: Any) -> list[dict[str, str]]:
    return [
        {
            "metric": m.metric_family_name,
            "type": _TYPES.get(m.type, "unknown"),
            "help": m.help,
            "unit": m.unit,
        }
        for m in req.metadata
    ]


def _decode_series_protobuf(raw: bytes, i: int) -> tuple[Labels, np.ndarray, np.ndarray, Any]:
    ts_msg = TimeSeries()
    try:
        ts_msg.ParseFromString(raw)
    except (DecodeError, ValueError) as e:
        raise BadInputError(f"remote-write body is not a valid WriteRequest protobuf: {e}") from e
    n = len(ts_msg.samples)
    ts = np.fromiter((s.timestamp for s in ts_msg.samples), np.int64, n)
    vs = np.fromiter((s.value for s in ts_msg.samples), np.float64, n)
    return _labels_of(ts_msg, i), ts, vs, ts_msg


# --- encoding ------------------------------------------------------------------------------

_LABEL_BYTES: BoundedCache[Labels, bytes] = BoundedCache(1_000_000)


def _labels_bytes(labels: Labels) -> bytes:
    """The Label fields of a series, cached: a sender encodes the same series again and again."""
    got = _LABEL_BYTES.get(labels)
    if got is None:
        got = _encode_labels(labels)
        _LABEL_BYTES.put(labels, got)
    return got


def _encode_labels(labels: Labels) -> bytes:
    parts = []
    for k, v in labels:
        kb, vb = k.encode(), v.encode()
        parts.append(
            pb_field(
                0x0A, (pb_field(0x0A, kb) if kb else b"") + (pb_field(0x12, vb) if vb else b"")
            )
        )
    return b"".join(parts)


def _varint_widths(u: np.ndarray) -> np.ndarray:
    """Bytes of the varint of each uint64."""
    w = np.ones(len(u), np.int64)
    for k in range(1, 10):
        w += u >= (np.uint64(1) << np.uint64(7 * k))
    return w


def encode_write_request(batch: SampleBatch, metadata: list[dict[str, str]] | None = None) -> bytes:
    """Encode a batch as Prometheus sends it: one TimeSeries per series that has samples (in
    ``batch.series`` order, samples in batch order), Label then Sample fields, zero values and
    zero timestamps omitted (proto3), then the metadata; snappy block compressed.

    Byte-identical to protobuf's own serialisation (tests check it). The one difference from
    Prometheus's Go encoder: a ``-0.0`` value is written (Go's ``!= 0`` test drops its sign).
    """
    if batch.exemplars is not None and len(batch.exemplars):  # rare: the reference encoder
        return bytes(cramjam.snappy.compress_raw(_encode_protobuf(batch, metadata)))
    return bytes(cramjam.snappy.compress_raw(encode_raw(batch, metadata)))


def encode_raw(batch: SampleBatch, metadata: list[dict[str, str]] | None = None) -> bytes:
    """The uncompressed protobuf of a WriteRequest (also the layout of a remote-read
    QueryResult: repeated TimeSeries in field 1)."""
    order = np.argsort(batch.sidx, kind="stable")
    sidx, ts, vals = batch.sidx[order], batch.ts[order], batch.vals[order]
    counts = np.bincount(sidx, minlength=len(batch.series)).astype(np.int64)
    bits = vals.view(np.uint64)
    uts = ts.view(np.uint64)
    has_v = bits != 0
    has_t = uts != 0
    tw = _varint_widths(uts)
    body_len = has_v * 9 + has_t * (1 + tw)
    rec_len = body_len + 2
    # samples bytes per series, then the TimeSeries header (tag, length, labels) in Python
    present = np.flatnonzero(counts)
    per_series = (
        np.add.reduceat(rec_len, np.cumsum(counts)[present] - counts[present])
        if len(ts)
        else np.zeros(0, np.int64)
    )
    heads = []
    for j, slen in zip(present.tolist(), per_series.tolist(), strict=True):
        lb = _labels_bytes(batch.series[j])
        heads.append(b"\x0a" + varint_bytes(len(lb) + slen) + lb)
    head_len = np.array([len(h) for h in heads], np.int64)
    block = head_len + per_series
    block_at = np.cumsum(block) - block
    meta_raw = b""
    if metadata:
        req = WriteRequest()
        for m in metadata:
            req.metadata.add(type=_TYPE_CODES.get(m.get("type", "unknown"), 0), metric_family_name=m["metric"],
                             help=m.get("help", ""), unit=m.get("unit", ""))  # fmt: skip
        meta_raw = req.SerializeToString()
    total = int(block.sum())
    out = np.zeros(total + len(meta_raw), np.uint8)
    if heads:
        hbuf = np.frombuffer(b"".join(heads), np.uint8)
        out[
            np.repeat(block_at, head_len)
            + np.arange(len(hbuf))
            - np.repeat(np.cumsum(head_len) - head_len, head_len)
        ] = hbuf
    # record positions: after each series' header, records back to back
    first = np.repeat(block_at + head_len, counts[present])
    within = np.cumsum(rec_len) - rec_len
    within -= np.repeat(within[np.cumsum(counts[present]) - counts[present]], counts[present])
    r = first + within
    out[r] = 0x12
    out[r + 1] = body_len
    rv = r[has_v]
    out[rv + 2] = 0x09
    out[rv[:, None] + 3 + np.arange(8)] = bits[has_v].astype("<u8").view(np.uint8).reshape(-1, 8)
    q = (r + 2 + has_v * 9)[has_t]
    out[q] = 0x10
    u, w = uts[has_t], tw[has_t]
    for k in range(10):
        sel = w > k
        if not sel.any():
            break
        byte = (u[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        out[q[sel] + 1 + k] = (byte | np.where(w[sel] > k + 1, 0x80, 0).astype(np.uint64)).astype(
            np.uint8
        )
    out[total:] = np.frombuffer(meta_raw, np.uint8)
    return out.tobytes()


def _encode_protobuf(batch: SampleBatch, metadata: list[dict[str, str]] | None = None) -> bytes:
    """Reference encoder through protobuf's runtime (slow; tests compare the fast one to it)."""
    req = WriteRequest()
    order = np.argsort(batch.sidx, kind="stable")
    sidx, ts, vals = batch.sidx[order], batch.ts[order], batch.vals[order]
    bounds = np.searchsorted(sidx, np.arange(len(batch.series) + 1))
    ex = batch.exemplars
    ex_of: dict[int, list[int]] = {}
    for n, j in enumerate([] if ex is None else ex.sidx.tolist()):
        ex_of.setdefault(j, []).append(n)
    for j, labels in enumerate(batch.series):
        a, b = int(bounds[j]), int(bounds[j + 1])
        if a == b and j not in ex_of:
            continue
        t = req.timeseries.add()
        for k, v in labels:
            t.labels.add(name=k, value=v)
        for tv, vv in zip(ts[a:b].tolist(), vals[a:b].tolist(), strict=True):
            t.samples.add(value=vv, timestamp=tv)
        for n in ex_of.get(j, []):
            assert ex is not None
            e = t.exemplars.add(value=float(ex.vals[n]), timestamp=int(ex.ts[n]))
            for k, v in ex.labels[n]:
                e.labels.add(name=k, value=v)
    for m in metadata or []:
        req.metadata.add(type=_TYPE_CODES.get(m.get("type", "unknown"), 0), metric_family_name=m["metric"],
                         help=m.get("help", ""), unit=m.get("unit", ""))  # fmt: skip
    return bytes(req.SerializeToString())
