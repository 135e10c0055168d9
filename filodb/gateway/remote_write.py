"""Prometheus remote write: protobuf + snappy (block format) to and from :class:`SampleBatch`.

Messages (prometheus/prompb; field numbers as Prometheus defines them)::

    WriteRequest   { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2; ... }
    Label          { string name = 1; string value = 2; }
    Sample         { double value = 1; int64 timestamp = 2; }      // ms since the epoch
    MetricMetadata { MetricType type = 1; string metric_family_name = 2; string help = 4;
                     string unit = 5; }

The descriptors are built at run time (no protoc step). Requests in Prometheus's usual shape
decode on the numpy path of :mod:`filodb.gateway.rw_fast` (labels walked per series, samples
decoded as fixed 18-byte records all at once); any other series, and requests with metadata,
go through protobuf's upb parser; label sets are cached by their raw bytes. Measured on this
machine (snappy included), 10 k series per request: 20 samples/series 79 ms (2.5 M samples/s),
1 sample/series 53 ms (~5 us per series of Python walking); upb with ``np.fromiter`` alone took
0.72 s for 10 k x 100 samples (1.4 M samples/s). Tests check both paths decode identically.
"""

from __future__ import annotations

import cramjam
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from filodb.errors import BadInputError, ErrPayloadTooLarge
from filodb.gateway import rw_fast
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels

_TYPES = {0: "unknown", 1: "counter", 2: "gauge", 3: "histogram", 4: "gaugehistogram",
          5: "summary", 6: "info", 7: "stateset"}  # fmt: skip
_TYPE_CODES = {v: k for k, v in _TYPES.items()}


def _build_messages():  # type: ignore[no-untyped-def]
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


def _labels_of(ts_msg, i: int) -> Labels:  # type: ignore[no-untyped-def]
    return _check_labels([(lb.name, lb.value) for lb in ts_msg.labels], i)


def _check_labels(pairs: list[tuple[str, str]], i: int) -> Labels:
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):
        raise BadInputError(f"time series {i} has duplicate label names {sorted(names)}")
    labels = tuple(sorted((k, v) for k, v in pairs if v != ""))
    if not any(k == "__name__" for k, _ in labels):
        raise BadInputError(f"time series {i} has no metric name (__name__ label)")
    return labels


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
    meta = [
        {"metric": m.metric_family_name, "type": _TYPES.get(m.type, "unknown"), "help": m.help, "unit": m.unit}
        for m in req.metadata
    ]
    if not ts_parts:
        batch = SampleBatch(series, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    else:
        batch = SampleBatch(series, np.concatenate(sidx_parts), np.concatenate(ts_parts),
                            np.concatenate(val_parts))  # fmt: skip
    batch.types = {m["metric"]: m["type"] for m in meta if m["metric"]}
    return batch, meta


_LABEL_CACHE = rw_fast.LabelCache()


def _decode_fast(raw: bytes) -> tuple[SampleBatch, list[dict[str, str]]] | None:
    """The numpy path (``rw_fast``) for requests without metadata; None to use protobuf.

    Series whose samples are not in the fixed 18-byte form are decoded by protobuf one by one.
    Label sets are cached by their raw bytes, so a known series costs one dict lookup.
    """
    try:
        spans, meta = rw_fast.split_series(raw)
        if meta:
            return None
        layouts = [rw_fast.series_layout(raw, a, b) for a, b in spans]
    except (ValueError, IndexError):
        return None  # let protobuf produce the error message
    fast = [(i, lay) for i, lay in enumerate(layouts) if lay is not None]
    ts_all, vals_all, ok = rw_fast.decode_runs(
        np.frombuffer(raw, np.uint8),
        np.array([lay[2] for _, lay in fast], np.int64),
        np.array([lay[3] for _, lay in fast], np.int64),
    )
    fast_at = {i: k for k, (i, _) in enumerate(fast)}
    bounds = np.concatenate([[0], np.cumsum([lay[3] for _, lay in fast])]).astype(np.int64)
    index: dict[Labels, int] = {}
    series: list[Labels] = []
    ts_parts, val_parts, js, counts = [], [], [], []
    for i, (a, b) in enumerate(spans):
        k = fast_at.get(i)
        if k is not None and ok[k]:
            lay = layouts[i]
            labels = _cached_labels(lay[0], i)  # type: ignore[index]
            ts, vs = ts_all[bounds[k] : bounds[k + 1]], vals_all[bounds[k] : bounds[k + 1]]
        else:
            labels, ts, vs = _decode_series_protobuf(raw[a:b], i)
        j = index.get(labels)
        if j is None:
            j = index[labels] = len(series)
            series.append(labels)
        if len(ts):
            ts_parts.append(ts)
            val_parts.append(vs)
            js.append(j)
            counts.append(len(ts))
    if not ts_parts:
        return SampleBatch(series, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0)), []
    sidx = np.repeat(np.array(js, np.int32), counts)
    return SampleBatch(series, sidx, np.concatenate(ts_parts), np.concatenate(val_parts)), []


def _cached_labels(raw_labels: bytes, i: int) -> Labels:
    hit = _LABEL_CACHE.get(raw_labels)
    if hit is None:
        try:
            pairs = rw_fast.parse_label_fields(raw_labels)
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            raise BadInputError(f"remote-write body is not a valid WriteRequest protobuf: {e}") from e
        hit = _check_labels(pairs, i)
        _LABEL_CACHE.put(raw_labels, hit)
    return hit  # type: ignore[return-value]


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


def encode_write_request(batch: SampleBatch, metadata: list[dict[str, str]] | None = None) -> bytes:
    """Encode a batch as Prometheus sends it (samples of a series in batch order)."""
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
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
