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
go through protobuf's upb parser. Measured on this machine, 10 k series x 100 samples:
0.33 s per request (3.0 M samples/s, snappy included) against 0.72 s (1.4 M samples/s) with
upb and ``np.fromiter`` alone; tests check both paths decode identically.
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


def _decode_fast(raw: bytes) -> tuple[SampleBatch, list[dict[str, str]]] | None:
    """The numpy path (``rw_fast``) for requests without metadata; None to use protobuf.

    Series whose samples are not in the fixed 18-byte form are decoded by protobuf one by one.
    """
    try:
        spans, meta = rw_fast.split_series(raw)
    except (ValueError, IndexError):
        return None  # let protobuf produce the error message
    if meta:
        return None
    try:
        layouts = [rw_fast.series_layout(raw, a, b) for a, b in spans]
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    fast_idx = [i for i, lay in enumerate(layouts) if lay is not None]
    buf = np.frombuffer(raw, np.uint8)
    offs = np.array([layouts[i][1] for i in fast_idx], np.int64)
    cnts = np.array([layouts[i][2] for i in fast_idx], np.int64)
    ts_all, vals_all, ok = rw_fast.decode_runs(buf, offs, cnts)
    bounds = np.concatenate([[0], np.cumsum(cnts)])
    index: dict[Labels, int] = {}
    series: list[Labels] = []
    sidx_parts, ts_parts, val_parts = [], [], []
    pos_of = {i: k for k, i in enumerate(fast_idx)}
    for i, (a, b) in enumerate(spans):
        k = pos_of.get(i)
        if k is not None and ok[k]:
            pairs = layouts[i][0]  # type: ignore[index]
            ts = ts_all[bounds[k] : bounds[k + 1]]
            vs = vals_all[bounds[k] : bounds[k + 1]]
        else:
            ts_msg = TimeSeries()
            try:
                ts_msg.ParseFromString(raw[a:b])
            except (DecodeError, ValueError) as e:
                raise BadInputError(f"remote-write body is not a valid WriteRequest protobuf: {e}") from e
            pairs = [(lb.name, lb.value) for lb in ts_msg.labels]
            n = len(ts_msg.samples)
            ts = np.fromiter((s.timestamp for s in ts_msg.samples), np.int64, n)
            vs = np.fromiter((s.value for s in ts_msg.samples), np.float64, n)
        labels = _check_labels(pairs, i)
        j = index.get(labels)
        if j is None:
            j = index[labels] = len(series)
            series.append(labels)
        if len(ts):
            ts_parts.append(ts)
            val_parts.append(vs)
            sidx_parts.append(np.full(len(ts), j, np.int32))
    if not ts_parts:
        return SampleBatch(series, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0)), []
    return SampleBatch(series, np.concatenate(sidx_parts), np.concatenate(ts_parts),
                       np.concatenate(val_parts)), []  # fmt: skip


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
