"""Prometheus remote write: protobuf + snappy (block format) to and from :class:`SampleBatch`.

Messages (prometheus/prompb; field numbers as Prometheus defines them)::

    WriteRequest   { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2; ... }
    Label          { string name = 1; string value = 2; }
    Sample         { double value = 1; int64 timestamp = 2; }      // ms since the epoch
    MetricMetadata { MetricType type = 1; string metric_family_name = 2; string help = 4;
                     string unit = 5; }

The descriptors are built at run time (no protoc step); protobuf's upb parser is the reference
and the fallback. The normal path is a numpy decoder of the wire format (see :func:`_decode_fast`):
one Python pass per *series* for the labels (cached by their raw bytes), samples found with
numpy (fixed-stride regions in one step, irregular ones walked in lock step, one numpy step per
sample index) and decoded all at once. Series with exemplars or histograms, long irregular
series, and odd field orders go to upb; tests check that both give identical results.

Measured (``python -m filodb.gateway.remote_write``; snappy included; 2-core machine under
load, so +-30 %), 10 k series x 100 samples, 4 labels each:

* numpy decoder: 4.8 M samples/s with new label sets, 7.6 M samples/s with cached ones;
  2.3-3.1 M samples/s when 10 % of the values are 0 (proto3 leaves them out, so strides vary);
* upb parse + ``np.fromiter`` per series (the fallback): 1.4 M samples/s, 1.1 M with zeros;
* 10 k series x 1 sample (Prometheus's usual shape): ~75 ms cold, ~21 ms warm, i.e. the
  per-series Python pass (~2 us cached, ~7 us to parse new labels) dominates.

:func:`encode_write_request` is vectorised too (byte-identical to protobuf's serialisation).
"""

from __future__ import annotations

import cramjam
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from filodb.errors import BadInputError, ErrPayloadTooLarge
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels

_TYPES = {0: "unknown", 1: "counter", 2: "gauge", 3: "histogram", 4: "gaugehistogram",
          5: "summary", 6: "info", 7: "stateset"}  # fmt: skip
_TYPE_CODES = {v: k for k, v in _TYPES.items()}


def _build_messages():
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="filodb_prompb_remote.proto", package="filodb.prompb", syntax="proto3"
    )

    def msg(name: str, fields: list[tuple[str, int, int, int, str | None]]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, num, typ, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=typ, label=label)
            if tname:
                f.type_name = tname

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("Label", [("name", 1, F.TYPE_STRING, opt, None), ("value", 2, F.TYPE_STRING, opt, None)])
    msg("Sample", [("value", 1, F.TYPE_DOUBLE, opt, None), ("timestamp", 2, F.TYPE_INT64, opt, None)])
    msg("TimeSeries", [("labels", 1, F.TYPE_MESSAGE, rep, ".filodb.prompb.Label"),
                       ("samples", 2, F.TYPE_MESSAGE, rep, ".filodb.prompb.Sample")])  # fmt: skip
    msg("MetricMetadata", [("type", 1, F.TYPE_INT32, opt, None),
                           ("metric_family_name", 2, F.TYPE_STRING, opt, None),
                           ("help", 4, F.TYPE_STRING, opt, None), ("unit", 5, F.TYPE_STRING, opt, None)])  # fmt: skip
    msg("WriteRequest", [("timeseries", 1, F.TYPE_MESSAGE, rep, ".filodb.prompb.TimeSeries"),
                         ("metadata", 3, F.TYPE_MESSAGE, rep, ".filodb.prompb.MetricMetadata")])  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("filodb.prompb.WriteRequest"))


WriteRequest = _build_messages()
TimeSeries = WriteRequest.DESCRIPTOR.fields_by_name["timeseries"].message_type._concrete_class


def _decompress(body: bytes, max_decompressed: int) -> bytes:
    if not body:
        raise BadInputError("empty remote-write body")
    try:
        n = cramjam.snappy.decompress_raw_len(body)
    except Exception as e:  # cramjam raises its own DecompressionError
        raise BadInputError(f"remote-write body is not snappy block data: {e}") from e
    if n > max_decompressed:
        raise ErrPayloadTooLarge(f"decompressed remote-write body of {n} bytes exceeds {max_decompressed}")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as e:
        raise BadInputError(f"remote-write body is not snappy block data: {e}") from e


def _labels_of(ts_msg, i: int) -> Labels:
    return _check_labels([(lb.name, lb.value) for lb in ts_msg.labels], i)


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
    return tuple(sorted(pairs))


def decode_write_request_full(
    body: bytes, max_decompressed: int = 64 << 20
) -> tuple[SampleBatch, list[dict[str, str]]]:
    """Decode a remote-write body; returns the batch and the metadata entries."""
    raw = _decompress(body, max_decompressed)
    fast = _decode_fast(raw)
    if fast is not None:
        return fast
    req = WriteRequest()
    try:
        req.ParseFromString(raw)
    except (DecodeError, ValueError) as e:
        raise BadInputError(f"remote-write body is not a valid WriteRequest protobuf: {e}") from e
    index: dict[Labels, int] = {}
    series: list[Labels] = []
    sidx_parts, ts_parts, val_parts = [], [], []
    for i, ts_msg in enumerate(req.timeseries):
        labels = _labels_of(ts_msg, i)
        j = index.get(labels)
        if j is None:
            j = index[labels] = len(series)
            series.append(labels)
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
    return batch, meta


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


class _LabelCache:
    """Label sets by the raw bytes of their Label fields: a series seen before costs one dict
    lookup, not a parse. Bounded; cleared when full. Only valid label sets are stored."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self.map: dict[bytes, Labels] = {}

    def put(self, key: bytes, value: Labels) -> None:
        if len(self.map) >= self.max_entries:
            self.map.clear()
        self.map[key] = value


_LABEL_CACHE = _LabelCache()


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


class _Fallback(Exception):
    """The request has a shape the numpy path does not handle: use protobuf's parser."""


_STEP_MIN_ACTIVE = 24  # below this many unfinished series, the lock-step walk hands over to upb


def _decode_fast(raw: bytes) -> tuple[SampleBatch, list[dict[str, str]]] | None:
    """The numpy decoder; None when the request should go through protobuf's parser instead.

    1. One Python pass over the TimeSeries (not the samples): the Label fields that lead each
       series are looked up in the label cache by their raw bytes; the rest of the series is its
       samples region ``[start, end)``.
    2. Sample positions: a region whose first record ``12 <L> ...`` repeats every ``L + 2``
       bytes to its end is expanded with one arange; the others are walked in lock step, one
       numpy step per sample *index* across all of them. A region that holds anything but
       Sample fields (exemplars, histograms), and the last few long ones, go to upb one series
       at a time.
    3. All records are decoded at once: value (``09`` + 8 bytes, absent means 0) and timestamp
       (``10`` + varint of any width, absent means 0), grouped by varint width.
    """
    n = len(raw)
    cache = _LABEL_CACHE.map
    index: dict[Labels, int] = {}
    series: list[Labels] = []
    sp_ts: list[int] = []  # start of each TimeSeries message (for the upb fallback)
    sp_start: list[int] = []  # start of its samples region
    sp_end: list[int] = []
    sp_j: list[int] = []
    meta_fields: list[bytes] = []
    pos = 0
    i = 0
    try:
        while pos < n:
            key = raw[pos]
            ln = raw[pos + 1]
            body = pos + 2
            if ln >= 0x80:
                ln, body = varint(raw, pos + 1)
            end = body + ln
            if end > n:
                raise _Fallback
            if key == 0x0A:
                q = body
                while q < end and raw[q] == 0x0A:
                    lq = raw[q + 1]
                    if lq < 0x80:
                        q += 2 + lq
                    else:
                        lq, q = varint(raw, q + 1)
                        q += lq
                if q > end:
                    raise _Fallback
                lkey = raw[body:q]
                labels = cache.get(lkey)
                if labels is None:
                    labels = _parse_label_fields(lkey, i)
                    _LABEL_CACHE.put(lkey, labels)
                j = index.get(labels)
                if j is None:
                    j = index[labels] = len(series)
                    series.append(labels)
                if q < end:
                    sp_ts.append(body)
                    sp_start.append(q)
                    sp_end.append(end)
                    sp_j.append(j)
                i += 1
            elif key == 0x1A:
                meta_fields.append(raw[pos:end])
            else:
                raise _Fallback  # unknown top-level field or wire type: protobuf decides
            pos = end
    except (_Fallback, IndexError, ValueError):
        return None
    meta = _decode_metadata(b"".join(meta_fields)) if meta_fields else []
    if not sp_start:
        return SampleBatch(series, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0)), meta
    pad = np.zeros(16, np.uint8)
    buf = np.concatenate([np.frombuffer(raw, np.uint8), pad])
    starts = np.array(sp_start, np.int64)
    ends = np.array(sp_end, np.int64)
    nsp = len(starts)
    slow = np.zeros(nsp, bool)

    # --- 2a. fixed-stride regions: copied out slice by slice, one 2-D block per stride ------
    first_len = buf[starts + 1].astype(np.int64)
    stride = first_len + 2
    size = ends - starts
    uniform = (buf[starts] == 0x12) & (first_len < 0x80) & (size % stride == 0)
    counts = np.zeros(nsp, np.int64)
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # span, within, ts, vals
    for st in np.unique(stride[uniform]).tolist():
        ks = np.flatnonzero(uniform & (stride == st))
        rec = np.concatenate([buf[s0:e0] for s0, e0 in zip(starts[ks].tolist(), ends[ks].tolist(), strict=True)])
        rec = rec.reshape(-1, st)
        cnt = size[ks] // st
        span = np.repeat(ks, cnt)
        within = np.arange(len(rec), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        bad = (rec[:, 0] != 0x12) | (rec[:, 1] != st - 2)
        if bad.any():  # not one stride after all: walk those regions instead
            redo = np.unique(span[bad])
            uniform[redo] = False
            keep = uniform[span]
            rec, span, within = rec[keep], span[keep], within[keep]
        dec = _decode_block(rec)
        if dec is None:
            return None
        blocks.append((span, within, *dec))
        counts[ks] = cnt
        counts[~uniform] = 0

    # --- 2b. lock-step walk of the other regions ------------------------------------------
    w_span_parts: list[np.ndarray] = []
    w_within_parts: list[np.ndarray] = []
    w_pos_parts: list[np.ndarray] = []
    active = np.flatnonzero(~uniform)
    cur = starts.copy()
    step = 0
    while active.size:
        if active.size < _STEP_MIN_ACTIVE and step >= 4:
            slow[active] = True
            break
        c = cur[active]
        ln = buf[c + 1].astype(np.int64)  # type: ignore[assignment]  # an int above
        nxt = c + 2 + ln
        ok = (buf[c] == 0x12) & (ln < 0x80) & (nxt <= ends[active])
        if not ok.all():
            slow[active[~ok]] = True
            active, c, nxt = active[ok], c[ok], nxt[ok]
        w_span_parts.append(active)
        w_within_parts.append(np.full(active.size, step, np.int64))
        w_pos_parts.append(c)
        counts[active] += 1
        cur[active] = nxt
        active = active[nxt < ends[active]]
        step += 1
    if w_pos_parts:
        rec_span = np.concatenate(w_span_parts)
        rec_within = np.concatenate(w_within_parts)
        rec_pos = np.concatenate(w_pos_parts)
        keep = ~slow[rec_span]
        rec_span, rec_within, rec_pos = rec_span[keep], rec_within[keep], rec_pos[keep]
        dec = _decode_records(buf, rec_pos)
        if dec is None:
            return None
        blocks.append((rec_span, rec_within, *dec))
    counts[slow] = 0

    # --- the slow regions through upb, then everything in request order -------------------
    slow_data: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in np.flatnonzero(slow).tolist():
        labels, ts, vs = _decode_series_protobuf(raw[sp_ts[k] : sp_end[k]], k)
        if labels != series[sp_j[k]]:
            return None  # labels after the samples: let protobuf merge them
        slow_data[k] = (ts, vs)
        counts[k] = len(ts)
    offsets = np.cumsum(counts) - counts
    total = int(counts.sum())
    out_ts = np.empty(total, np.int64)
    out_vals = np.empty(total, np.float64)
    for span, within, ts_b, vals_b in blocks:
        where = offsets[span] + within
        out_ts[where] = ts_b
        out_vals[where] = vals_b
    for k, (ts, vs) in slow_data.items():
        out_ts[offsets[k] : offsets[k] + len(ts)] = ts
        out_vals[offsets[k] : offsets[k] + len(ts)] = vs
    sidx = np.repeat(np.array(sp_j, np.int32), counts)
    batch = SampleBatch(series, sidx, out_ts, out_vals, {m["metric"]: m["type"] for m in meta if m["metric"]})
    return batch, meta


def _decode_records(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(timestamps, values) of the Sample records starting at ``pos`` (``12 <L> <body>``),
    gathered into one 2-D block per record length; None when one is not laid out as
    ``[09 <f64>] [10 <varint>]``."""
    ts = np.zeros(len(pos), np.int64)
    vals = np.zeros(len(pos), np.float64)
    ln = buf[pos + 1]
    for L in np.unique(ln).tolist():
        sel = np.flatnonzero(ln == L)
        dec = _decode_block(buf[pos[sel][:, None] + np.arange(L + 2)])
        if dec is None:
            return None
        ts[sel], vals[sel] = dec
    return ts, vals


def _decode_block(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(timestamps, values) of equal-length Sample records, one per row of ``rec``
    (``12 <L> [09 <f64>] [10 <varint>]``, proto3 leaving out zero fields); None when a
    record has another layout (protobuf's parser then decides)."""
    n, width = rec.shape
    L = width - 2
    ts = np.zeros(n, np.int64)
    vals = np.zeros(n, np.float64)
    if L == 0 or n == 0:
        return ts, vals
    tag = rec[:, 2]
    for t in np.unique(tag).tolist():
        rows = slice(None) if (tag == t).all() else np.flatnonzero(tag == t)
        r = rec[rows]
        if t == 0x09 and L >= 9:
            vals[rows] = np.ascontiguousarray(r[:, 3:11]).view("<f8").ravel()
            if L == 9:
                continue
            if L < 11 or (r[:, 11] != 0x10).any():
                return None
            at, w = 12, L - 10
        elif t == 0x10 and 2 <= L <= 11:
            at, w = 3, L - 1
        else:
            return None
        if w > 10:
            return None
        g = r[:, at : at + w]
        if (g[:, : w - 1] < 0x80).any() or (g[:, w - 1] >= 0x80).any():
            return None
        acc = (g[:, 0] & 0x7F).astype(np.uint64)
        for k in range(1, w):
            acc |= (g[:, k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        ts[rows] = acc.view(np.int64)
    return ts, vals


def _decode_metadata(fields: bytes) -> list[dict[str, str]]:
    req = WriteRequest()
    try:
        req.ParseFromString(fields)
    except (DecodeError, ValueError) as e:
        raise BadInputError(f"remote-write body has malformed metadata: {e}") from e
    return _metadata_of(req)


def _metadata_of(req) -> list[dict[str, str]]:
    return [
        {"metric": m.metric_family_name, "type": _TYPES.get(m.type, "unknown"), "help": m.help, "unit": m.unit}
        for m in req.metadata
    ]


def _decode_series_protobuf(raw: bytes, i: int) -> tuple[Labels, np.ndarray, np.ndarray]:
    ts_msg = TimeSeries()
    try:
        ts_msg.ParseFromString(raw)
    except (DecodeError, ValueError) as e:
        raise BadInputError(f"remote-write body is not a valid WriteRequest protobuf: {e}") from e
    n = len(ts_msg.samples)
    ts = np.fromiter((s.timestamp for s in ts_msg.samples), np.int64, n)
    vs = np.fromiter((s.value for s in ts_msg.samples), np.float64, n)
    return _labels_of(ts_msg, i), ts, vs


def decode_write_request(body: bytes, max_decompressed: int = 64 << 20) -> SampleBatch:
    """Decode a remote-write body (snappy + protobuf) into a batch; BadInputError if malformed."""
    return decode_write_request_full(body, max_decompressed)[0]


# --- encoding ------------------------------------------------------------------------------


def varint_bytes(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 0x80:
        return bytes((tag, n)) + payload
    return bytes((tag,)) + varint_bytes(n) + payload


_LABEL_BYTES: dict[Labels, bytes] = {}
_LABEL_BYTES_MAX = 1_000_000


def _labels_bytes(labels: Labels) -> bytes:
    """The Label fields of a series, cached: a sender encodes the same series again and again."""
    got = _LABEL_BYTES.get(labels)
    if got is None:
        if len(_LABEL_BYTES) >= _LABEL_BYTES_MAX:
            _LABEL_BYTES.clear()
        got = _LABEL_BYTES[labels] = _encode_labels(labels)
    return got


def _encode_labels(labels: Labels) -> bytes:
    parts = []
    for k, v in labels:
        kb, vb = k.encode(), v.encode()
        parts.append(_field(0x0A, (_field(0x0A, kb) if kb else b"") + (_field(0x12, vb) if vb else b"")))
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
    return bytes(cramjam.snappy.compress_raw(_encode_raw(batch, metadata)))


def encode_raw(batch: SampleBatch, metadata: list[dict[str, str]] | None = None) -> bytes:
    """The uncompressed protobuf of a WriteRequest (also the layout of a remote-read
    QueryResult: repeated TimeSeries in field 1)."""
    return _encode_raw(batch, metadata)


def _encode_raw(batch: SampleBatch, metadata: list[dict[str, str]] | None = None) -> bytes:
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
    per_series = np.add.reduceat(rec_len, np.cumsum(counts)[present] - counts[present]) if len(ts) else np.zeros(0, np.int64)
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
        out[np.repeat(block_at, head_len) + np.arange(len(hbuf)) - np.repeat(np.cumsum(head_len) - head_len, head_len)] = hbuf
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
        out[q[sel] + 1 + k] = (byte | np.where(w[sel] > k + 1, 0x80, 0).astype(np.uint64)).astype(np.uint8)
    out[total:] = np.frombuffer(meta_raw, np.uint8)
    return out.tobytes()


def _encode_protobuf(batch: SampleBatch, metadata: list[dict[str, str]] | None = None) -> bytes:
    """Reference encoder through protobuf's runtime (slow; tests compare the fast one to it)."""
    req = WriteRequest()
    order = np.argsort(batch.sidx, kind="stable")
    sidx, ts, vals = batch.sidx[order], batch.ts[order], batch.vals[order]
    bounds = np.searchsorted(sidx, np.arange(len(batch.series) + 1))
    for j, labels in enumerate(batch.series):
        a, b = int(bounds[j]), int(bounds[j + 1])
        if a == b:
            continue
        t = req.timeseries.add()
        for k, v in labels:
            t.labels.add(name=k, value=v)
        for tv, vv in zip(ts[a:b].tolist(), vals[a:b].tolist(), strict=True):
            t.samples.add(value=vv, timestamp=tv)
    for m in metadata or []:
        req.metadata.add(type=_TYPE_CODES.get(m.get("type", "unknown"), 0), metric_family_name=m["metric"],
                         help=m.get("help", ""), unit=m.get("unit", ""))  # fmt: skip
    return req.SerializeToString()


def _bench() -> None:  # pragma: no cover - manual measurement
    import time

    from filodb.model.labels import make_labels

    rng = np.random.default_rng(0)
    for n_series, n_samples, zeros in ((10_000, 100, 0.0), (10_000, 100, 0.1), (10_000, 1, 0.0)):
        series = [make_labels({"__name__": f"metric_{i % 100}", "instance": f"host-{i}:9100",
                               "job": "node", "env": "prod"}) for i in range(n_series)]  # fmt: skip
        vals = rng.random(n_series * n_samples) * 100
        vals[rng.random(len(vals)) < zeros] = 0.0
        ts = np.tile(1_700_000_000_000 + 15_000 * np.arange(n_samples), n_series)
        batch = SampleBatch(series, np.repeat(np.arange(n_series), n_samples), ts, vals)
        body = encode_write_request(batch)
        for label in ("cold", "warm"):
            best = 1e9
            for _ in range(3):
                if label == "cold":
                    _LABEL_CACHE.map.clear()
                t0 = time.perf_counter()
                decode_write_request(body)
                best = min(best, time.perf_counter() - t0)
            print(f"{n_series} x {n_samples} ({zeros:.0%} zeros) {label}: {best * 1e3:.0f} ms, "
                  f"{n_series * n_samples / best / 1e6:.2f} M samples/s")  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    _bench()
