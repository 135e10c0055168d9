"""A remote-read client: build ReadRequests, decode both answer types (tests and debugging).

See :mod:`filodb.web.remote_read` for the messages and the frame layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import cramjam
import numpy as np

from filodb.encoding.crc32c import crc32c
from filodb.encoding.xor import decode_chunk
from filodb.errors import BadInputError
from filodb.gateway.remote_write import varint
from filodb.model.labels import Labels, Matcher
from filodb.web.remote_read import MESSAGES, SAMPLES, STREAMED_XOR_CHUNKS, XOR_ENCODING

__all__ = ["SAMPLES", "STREAMED_XOR_CHUNKS", "encode_read_request", "decode_samples", "decode_chunked"]

_TYPES = {"=": 0, "!=": 1, "=~": 2, "!~": 3}
Series = dict[Labels, tuple[np.ndarray, np.ndarray]]


def encode_read_request(queries: Sequence[tuple[int, int, Sequence[Matcher]]],
                        accepted: Sequence[int] = ()) -> bytes:  # fmt: skip
    """Snappy-compressed ReadRequest of ``(start_ms, end_ms, matchers)`` queries."""
    req = MESSAGES["ReadRequest"]()
    for start, end, matchers in queries:
        q = req.queries.add(start_timestamp_ms=start, end_timestamp_ms=end)
        for m in matchers:
            q.matchers.add(type=_TYPES[m.op], name=m.name, value=m.value)
    req.accepted_response_types.extend(accepted)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def decode_samples(body: bytes) -> list[Series]:
    """Per query: labels -> (ts, vals) of a SAMPLES answer (snappy ReadResponse)."""
    resp = MESSAGES["ReadResponse"]()
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
    msg_cls = MESSAGES["ChunkedReadResponse"]
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
        msg = msg_cls()
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
            got[labels] = (np.concatenate([p[0] for p in old + parts]), np.concatenate([p[1] for p in old + parts]))
    return out, frames
