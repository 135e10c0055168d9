"""Prometheus remote read: ``POST /api/v1/read`` (and ``/promql/<dataset>/api/v1/read``).

Request: a snappy block-compressed ``ReadRequest`` (prompb/remote.proto, types.proto)::

    ReadRequest  { repeated Query queries = 1; repeated ResponseType accepted_response_types = 2; }
    Query        { int64 start_timestamp_ms = 1; int64 end_timestamp_ms = 2;
                   repeated LabelMatcher matchers = 3; ReadHints hints = 4; }
    LabelMatcher { Type type = 1; string name = 2; string value = 3; }   // EQ NEQ RE NRE = 0..3
    ResponseType { SAMPLES = 0; STREAMED_XOR_CHUNKS = 1; }

The first accepted type we implement wins (both are); none listed means SAMPLES. Hints are
ignored. Each query returns the raw samples with ``start <= t <= end`` (inclusive, as
Prometheus reads them) of the matching series, through :func:`filodb.web.export.read_raw`
(the matchers become a PromQL selector, so the usual rules apply: at least one matcher must
not match the empty string).

SAMPLES answer: ``ReadResponse { repeated QueryResult results = 1; }``, ``QueryResult {
repeated TimeSeries timeseries = 1; }``, snappy-compressed, ``Content-Type:
application/x-protobuf``, ``Content-Encoding: snappy``.

STREAMED_XOR_CHUNKS answer: ``Content-Type: application/x-streamed-protobuf;
proto=prometheus.ChunkedReadResponse``, a sequence of frames::

    uvarint  length of the message
    u32 BE   CRC32-Castagnoli of the message
    bytes    ChunkedReadResponse { repeated ChunkedSeries chunked_series = 1; int64 query_index = 2; }

    ChunkedSeries { repeated Label labels = 1; repeated Chunk chunks = 2; }
    Chunk         { int64 min_time_ms = 1; int64 max_time_ms = 2; Encoding type = 3; bytes data = 4; }

with XOR chunks (type 1, :mod:`filodb.tools.xor`) of at most 120 samples, and series packed
into a frame until it passes 1 MiB (Prometheus's default ``max_bytes_in_frame``).
"""

from __future__ import annotations

from collections.abc import Iterator

import cramjam
import numpy as np
from flask import Blueprint, Response, request
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from filodb.errors import BadInputError
from filodb.gateway.remote_write import encode_raw, varint_bytes
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, Matcher
from filodb.tools.xor import crc32c, split_chunks
from filodb.web.export import read_raw
from filodb.web.services import services

bp = Blueprint("remote_read", __name__)
SAMPLES, STREAMED_XOR_CHUNKS = 0, 1
XOR_ENCODING = 1
MAX_BYTES_IN_FRAME = 1 << 20
STREAM_CONTENT_TYPE = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
_OPS = {0: "=", 1: "!=", 2: "=~", 3: "!~"}


def _build_messages() -> dict[str, type]:
    """Message classes from a descriptor built at run time (no protoc step), as in
    :mod:`filodb.gateway.remote_write`; field numbers as Prometheus's prompb defines them."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="filodb_prompb_read.proto", package="filodb.prompb_read",
                                             syntax="proto3")  # fmt: skip
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    pkg = ".filodb.prompb_read."
    specs: dict[str, list[tuple[str, int, int, int, str | None]]] = {
        "Label": [("name", 1, F.TYPE_STRING, opt, None), ("value", 2, F.TYPE_STRING, opt, None)],
        "Sample": [("value", 1, F.TYPE_DOUBLE, opt, None), ("timestamp", 2, F.TYPE_INT64, opt, None)],
        "TimeSeries": [("labels", 1, F.TYPE_MESSAGE, rep, pkg + "Label"),
                       ("samples", 2, F.TYPE_MESSAGE, rep, pkg + "Sample")],
        "LabelMatcher": [("type", 1, F.TYPE_INT32, opt, None), ("name", 2, F.TYPE_STRING, opt, None),
                         ("value", 3, F.TYPE_STRING, opt, None)],
        "Query": [("start_timestamp_ms", 1, F.TYPE_INT64, opt, None), ("end_timestamp_ms", 2, F.TYPE_INT64, opt, None),
                  ("matchers", 3, F.TYPE_MESSAGE, rep, pkg + "LabelMatcher")],
        "ReadRequest": [("queries", 1, F.TYPE_MESSAGE, rep, pkg + "Query"),
                        ("accepted_response_types", 2, F.TYPE_INT32, rep, None)],
        "QueryResult": [("timeseries", 1, F.TYPE_MESSAGE, rep, pkg + "TimeSeries")],
        "ReadResponse": [("results", 1, F.TYPE_MESSAGE, rep, pkg + "QueryResult")],
        "Chunk": [("min_time_ms", 1, F.TYPE_INT64, opt, None), ("max_time_ms", 2, F.TYPE_INT64, opt, None),
                  ("type", 3, F.TYPE_INT32, opt, None), ("data", 4, F.TYPE_BYTES, opt, None)],
        "ChunkedSeries": [("labels", 1, F.TYPE_MESSAGE, rep, pkg + "Label"),
                          ("chunks", 2, F.TYPE_MESSAGE, rep, pkg + "Chunk")],
        "ChunkedReadResponse": [("chunked_series", 1, F.TYPE_MESSAGE, rep, pkg + "ChunkedSeries"),
                                ("query_index", 2, F.TYPE_INT64, opt, None)],
    }  # fmt: skip
    for name, fields in specs.items():
        m = fdp.message_type.add(name=name)
        for fname, num, typ, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=typ, label=label)
            if tname:
                f.type_name = tname
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"filodb.prompb_read.{n}"))
            for n in specs}  # fmt: skip


MESSAGES = _build_messages()
ReadRequest = MESSAGES["ReadRequest"]
ReadResponse = MESSAGES["ReadResponse"]
ChunkedReadResponse = MESSAGES["ChunkedReadResponse"]


def decode_read_request(body: bytes, max_decompressed: int = 64 << 20):
    """The ReadRequest message of a snappy-compressed body; BadInputError when malformed."""
    if not body:
        raise BadInputError("empty remote-read body")
    try:
        n = cramjam.snappy.decompress_raw_len(body)
        if n > max_decompressed:
            raise BadInputError(f"decompressed remote-read body of {n} bytes exceeds {max_decompressed}")
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except BadInputError:
        raise
    except Exception as e:  # cramjam's DecompressionError
        raise BadInputError(f"remote-read body is not snappy block data: {e}") from e
    req = ReadRequest()
    try:
        req.ParseFromString(raw)
    except (DecodeError, ValueError) as e:
        raise BadInputError(f"remote-read body is not a valid ReadRequest protobuf: {e}") from e
    return req


def query_matchers(q) -> list[Matcher]:
    out = []
    for m in q.matchers:
        if m.type not in _OPS:
            raise BadInputError(f"unknown label matcher type {m.type}")
        out.append(Matcher(m.name, _OPS[m.type], m.value))
    if not out:
        raise BadInputError("a remote-read query needs at least one matcher")
    return out


def response_type(accepted: list[int]) -> int:
    """The first accepted type we implement; SAMPLES when none are listed."""
    if not accepted:
        return SAMPLES
    for t in accepted:
        if t in (SAMPLES, STREAMED_XOR_CHUNKS):
            return t
    raise BadInputError(f"none of the accepted response types {list(accepted)} is implemented")


def samples_response(results: list[list[tuple[Labels, np.ndarray, np.ndarray]]]) -> bytes:
    """Snappy-compressed ReadResponse; each QueryResult is encoded by the vectorised
    remote-write encoder (a QueryResult has a WriteRequest's field 1 layout)."""
    parts = []
    for series in results:
        lens = [len(t) for _, t, _ in series]
        batch = SampleBatch([lb for lb, _, _ in series], np.repeat(np.arange(len(series)), lens),
                            np.concatenate([t for _, t, _ in series] or [np.zeros(0, np.int64)]),
                            np.concatenate([v for _, _, v in series] or [np.zeros(0)]))  # fmt: skip
        qr = encode_raw(batch)
        parts.append(b"\x0a" + varint_bytes(len(qr)) + qr)
    return bytes(cramjam.snappy.compress_raw(b"".join(parts)))


def frame(msg: bytes) -> bytes:
    """uvarint length, big-endian CRC32C, message."""
    return varint_bytes(len(msg)) + crc32c(msg).to_bytes(4, "big") + msg


def chunked_frames(index: int, series: list[tuple[Labels, np.ndarray, np.ndarray]],
                   max_bytes: int = MAX_BYTES_IN_FRAME) -> Iterator[bytes]:  # fmt: skip
    """Frames of one query's series as XOR chunks."""
    msg = ChunkedReadResponse(query_index=index)
    size = 0
    for labels, ts, vals in series:
        cs = msg.chunked_series.add()
        for k, v in labels:
            cs.labels.add(name=k, value=v)
        for lo, hi, data in split_chunks(ts, vals):
            cs.chunks.add(min_time_ms=lo, max_time_ms=hi, type=XOR_ENCODING, data=data)
            size += len(data) + 24
        if size >= max_bytes:
            yield frame(msg.SerializeToString())
            msg = ChunkedReadResponse(query_index=index)
            size = 0
    if len(msg.chunked_series):
        yield frame(msg.SerializeToString())


@bp.post("/api/v1/read")
@bp.post("/promql/<dataset>/api/v1/read")
def remote_read(dataset: str | None = None) -> Response:
    req = decode_read_request(request.get_data(cache=False), services().cfg.max_body_bytes)
    kind = response_type(list(req.accepted_response_types))
    ds = dataset or services().cfg.dataset
    results = [read_raw(ds, query_matchers(q), q.start_timestamp_ms, q.end_timestamp_ms)[0]
               for q in req.queries]  # fmt: skip
    if kind == SAMPLES:
        resp = Response(samples_response(results), content_type="application/x-protobuf")
        resp.headers["Content-Encoding"] = "snappy"
        return resp
    body = b"".join(f for i, series in enumerate(results) for f in chunked_frames(i, series))
    return Response(body, content_type=STREAM_CONTENT_TYPE)
