"""Prometheus remote read: decode a ``ReadRequest``, encode both kinds of answer.

Request: a snappy block-compressed ``ReadRequest`` (messages in :mod:`filodb.prom.proto`).
The first accepted response type we implement wins (both are); none listed means SAMPLES.
Hints are ignored. Each query asks for the raw samples with ``start <= t <= end`` (inclusive,
as Prometheus reads them) of the series its matchers select.

SAMPLES answer: ``ReadResponse { repeated QueryResult results = 1; }``, ``QueryResult {
repeated TimeSeries timeseries = 1; }``, snappy-compressed, ``Content-Type:
application/x-protobuf``, ``Content-Encoding: snappy``.

STREAMED_XOR_CHUNKS answer: ``Content-Type: application/x-streamed-protobuf;
proto=prometheus.ChunkedReadResponse``, a sequence of frames::

    uvarint  length of the message
    u32 BE   CRC32-Castagnoli of the message
    bytes    ChunkedReadResponse { repeated ChunkedSeries chunked_series = 1; int64 query_index = 2; }

with XOR chunks (type 1, :mod:`filodb.encoding.xor`) of at most 120 samples, and series packed
into a frame until it passes 1 MiB (Prometheus's default ``max_bytes_in_frame``).

The client side (:func:`encode_read_request`, :func:`decode_samples`, :func:`decode_chunked`)
is here too, for tests, ``filodb`` tools and debugging.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cramjam
import numpy as np
from google.protobuf.message import DecodeError

from filodb.encoding.crc32c import crc32c
from filodb.encoding.xor import decode_chunk, split_chunks
from filodb.errors import BadInputError
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, Matcher
from filodb.model.varint import varint, varint_bytes
from filodb.prom.proto import ChunkedReadResponse, ReadRequest, ReadResponse
from filodb.prom.remote_write import encode_raw

SAMPLES, STREAMED_XOR_CHUNKS = 0, 1
XOR_ENCODING = 1
MAX_BYTES_IN_FRAME = 1 << 20
STREAM_CONTENT_TYPE = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
_OPS = {0: "=", 1: "!=", 2: "=~", 3: "!~"}
_OP_CODES = {v: k for k, v in _OPS.items()}

RawSeries = tuple[Labels, np.ndarray, np.ndarray]
"""One series' raw samples: labels, int64 ms timestamps, float64 values."""


# --- server side ---------------------------------------------------------------------------


def decode_read_request(body: bytes, max_decompressed: int = 64 << 20):  # type: ignore[no-untyped-def]
    """The ReadRequest message of a snappy-compressed body; BadInputError when malformed."""
    if not body:
        raise BadInputError("empty remote-read body")
    try:
        n = cramjam.snappy.decompress_raw_len(body)
        if n > max_decompressed:
            raise BadInputError(
                f"decompressed remote-read body of {n} bytes exceeds {max_decompressed}"
            )
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


def query_matchers(q) -> list[Matcher]:  # type: ignore[no-untyped-def]
    """The matchers of one ``Query`` message; BadInputError for an unknown type or none."""
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


def samples_response(results: list[list[RawSeries]]) -> bytes:
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


def chunked_frames(
    index: int, series: list[RawSeries], max_bytes: int = MAX_BYTES_IN_FRAME
) -> Iterator[bytes]:
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


# --- client side ---------------------------------------------------------------------------

Series = dict[Labels, tuple[np.ndarray, np.ndarray]]


def encode_read_request(queries: Sequence[tuple[int, int, Sequence[Matcher]]],
                        accepted: Sequence[int] = ()) -> bytes:  # fmt: skip
    """Snappy-compressed ReadRequest of ``(start_ms, end_ms, matchers)`` queries."""
    req = ReadRequest()
    for start, end, matchers in queries:
        q = req.queries.add(start_timestamp_ms=start, end_timestamp_ms=end)
        for m in matchers:
            q.matchers.add(type=_OP_CODES[m.op], name=m.name, value=m.value)
    req.accepted_response_types.extend(accepted)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def decode_samples(body: bytes) -> list[Series]:
    """Per query: labels -> (ts, vals) of a SAMPLES answer (snappy ReadResponse)."""
    resp = ReadResponse()
    resp.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    out = []
    for qr in resp.results:
        got: Series = {}
        for ts in qr.timeseries:
            labels = tuple(sorted((lb.name, lb.value) for lb in ts.labels))
            got[labels] = (np.array([s.timestamp for s in ts.samples], np.int64),
                           np.array([s.value for s in ts.samples], np.float64))  # fmt: skip
        out.append(got)
    return out


def decode_chunked(body: bytes) -> tuple[dict[int, Series], int]:
    """Per query index: labels -> (ts, vals) of a STREAMED_XOR_CHUNKS answer, and the number
    of frames. Checks every CRC, chunk encoding, chunk size (<= 120) and min/max times."""
    out: dict[int, Series] = {}
    pos = frames = 0
    while pos < len(body):
        try:
            n, pos = varint(body, pos)
        except (IndexError, ValueError) as e:
            raise BadInputError(f"frame {frames + 1}: bad frame length") from e
        crc = int.from_bytes(body[pos : pos + 4], "big")
        data = body[pos + 4 : pos + 4 + n]
        pos += 4 + n
        if len(data) != n or crc32c(data) != crc:
            raise BadInputError(f"frame {frames + 1}: bad length or CRC")
        frames += 1
        msg = ChunkedReadResponse()
        msg.ParseFromString(data)
        got = out.setdefault(msg.query_index, {})
        for cs in msg.chunked_series:
            labels = tuple(sorted((lb.name, lb.value) for lb in cs.labels))
            parts = []
            for c in cs.chunks:
                if c.type != XOR_ENCODING:
                    raise BadInputError(f"chunk encoding {c.type} is not XOR")
                t, v = decode_chunk(c.data)
                if not 0 < len(t) <= 120 or t[0] != c.min_time_ms or t[-1] != c.max_time_ms:
                    raise BadInputError("chunk size or min/max time wrong")
                parts.append((t, v))
            old = [got[labels]] if labels in got else []
            got[labels] = (
                np.concatenate([p[0] for p in old + parts]),
                np.concatenate([p[1] for p in old + parts]),
            )
    return out, frames
