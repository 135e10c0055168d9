"""Prometheus's protobuf messages (prompb ``types.proto``, ``remote.proto``) and varints.

The descriptors are built once, at import, from the table below (no protoc step), in one
descriptor pool; field numbers are Prometheus's::

    Label          { string name = 1; string value = 2; }
    Sample         { double value = 1; int64 timestamp = 2; }        // ms since the epoch
    Exemplar       { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }
    TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2;
                     repeated Exemplar exemplars = 3; }
    MetricMetadata { MetricType type = 1; string metric_family_name = 2; string help = 4;
                     string unit = 5; }
    WriteRequest   { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    LabelMatcher   { Type type = 1; string name = 2; string value = 3; }  // EQ NEQ RE NRE = 0..3
    Query          { int64 start_timestamp_ms = 1; int64 end_timestamp_ms = 2;
                     repeated LabelMatcher matchers = 3; }                // hints (4) ignored
    ReadRequest    { repeated Query queries = 1; repeated ResponseType accepted_response_types = 2; }
    QueryResult    { repeated TimeSeries timeseries = 1; }
    ReadResponse   { repeated QueryResult results = 1; }
    Chunk          { int64 min_time_ms = 1; int64 max_time_ms = 2; Encoding type = 3; bytes data = 4; }
    ChunkedSeries  { repeated Label labels = 1; repeated Chunk chunks = 2; }
    ChunkedReadResponse { repeated ChunkedSeries chunked_series = 1; int64 query_index = 2; }

Enums are carried as int32 (same wire type). protobuf's upb parser is the reference decoder;
the hot paths decode and encode the wire format directly with the helpers at the end.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from filodb.model.varint import varint_bytes

_PKG = "filodb.prompb"
_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_STR, _I64, _I32, _F64, _BYTES, _MSG = (_F.TYPE_STRING, _F.TYPE_INT64, _F.TYPE_INT32,
                                        _F.TYPE_DOUBLE, _F.TYPE_BYTES, _F.TYPE_MESSAGE)  # fmt: skip

# message -> [(field, number, type, label, message type or None)]
_SPECS: dict[str, list[tuple[str, int, int, int, str | None]]] = {
    "Label": [("name", 1, _STR, _OPT, None), ("value", 2, _STR, _OPT, None)],
    "Sample": [("value", 1, _F64, _OPT, None), ("timestamp", 2, _I64, _OPT, None)],
    "Exemplar": [("labels", 1, _MSG, _REP, "Label"), ("value", 2, _F64, _OPT, None),
                 ("timestamp", 3, _I64, _OPT, None)],
    "TimeSeries": [("labels", 1, _MSG, _REP, "Label"), ("samples", 2, _MSG, _REP, "Sample"),
                   ("exemplars", 3, _MSG, _REP, "Exemplar")],
    "MetricMetadata": [("type", 1, _I32, _OPT, None), ("metric_family_name", 2, _STR, _OPT, None),
                       ("help", 4, _STR, _OPT, None), ("unit", 5, _STR, _OPT, None)],
    "WriteRequest": [("timeseries", 1, _MSG, _REP, "TimeSeries"),
                     ("metadata", 3, _MSG, _REP, "MetricMetadata")],
    "LabelMatcher": [("type", 1, _I32, _OPT, None), ("name", 2, _STR, _OPT, None),
                     ("value", 3, _STR, _OPT, None)],
    "Query": [("start_timestamp_ms", 1, _I64, _OPT, None), ("end_timestamp_ms", 2, _I64, _OPT, None),
              ("matchers", 3, _MSG, _REP, "LabelMatcher")],
    "ReadRequest": [("queries", 1, _MSG, _REP, "Query"),
                    ("accepted_response_types", 2, _I32, _REP, None)],
    "QueryResult": [("timeseries", 1, _MSG, _REP, "TimeSeries")],
    "ReadResponse": [("results", 1, _MSG, _REP, "QueryResult")],
    "Chunk": [("min_time_ms", 1, _I64, _OPT, None), ("max_time_ms", 2, _I64, _OPT, None),
              ("type", 3, _I32, _OPT, None), ("data", 4, _BYTES, _OPT, None)],
    "ChunkedSeries": [("labels", 1, _MSG, _REP, "Label"), ("chunks", 2, _MSG, _REP, "Chunk")],
    "ChunkedReadResponse": [("chunked_series", 1, _MSG, _REP, "ChunkedSeries"),
                            ("query_index", 2, _I64, _OPT, None)],
}  # fmt: skip


def _build() -> dict[str, type]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="filodb_prompb.proto", package=_PKG, syntax="proto3"
    )
    for name, fields in _SPECS.items():
        m = fdp.message_type.add(name=name)
        for fname, num, typ, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=typ, label=label)
            if tname:
                f.type_name = f".{_PKG}.{tname}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PKG}.{n}"))
        for n in _SPECS
    }


MESSAGES = _build()
TimeSeries = MESSAGES["TimeSeries"]
WriteRequest = MESSAGES["WriteRequest"]
ReadRequest = MESSAGES["ReadRequest"]
ReadResponse = MESSAGES["ReadResponse"]
ChunkedReadResponse = MESSAGES["ChunkedReadResponse"]


# --- the wire format by hand ---------------------------------------------------------------


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` (the key byte), varint length, payload."""
    n = len(payload)
    if n < 0x80:
        return bytes((tag, n)) + payload
    return bytes((tag,)) + varint_bytes(n) + payload
