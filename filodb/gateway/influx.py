"""Influx line protocol → :class:`SampleBatch`.

``measurement[,tag=v...] field=value[,field=value...] [timestamp]``, with Influx's escapes
(``\\,`` ``\\ `` ``\\=`` in names and tags, ``\\"`` in string fields), float, integer (``5i``),
unsigned (``5u``) and boolean fields, comments and blank lines, CRLF endings.

Naming (FiloDB's gateway, and Telegraf's Prometheus convention):

| fields of the line | series written |
|---|---|
| one field called ``value`` | ``<measurement>`` |
| one field called ``counter`` | ``<measurement>`` (type counter) |
| anything else | ``<measurement>_<field>`` for each numeric field |

Tags become labels. String fields are skipped (not numeric; not an error). Names are
sanitised to Prometheus's charset (other characters become ``_``). Booleans are 1/0.
A malformed line is reported with its number and skipped; the good lines around it are kept.
"""

from __future__ import annotations

import re
import time
import zlib

import numpy as np

from filodb.errors import BadInputError, ErrPayloadTooLarge
from filodb.gateway.parsed import ParseResult
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels

_PRECISION_MS = {"ns": 1e-6, "u": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_BAD_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_INT = re.compile(r"^[-+]?\d+$")
_TRUE = {"t", "T", "true", "True", "TRUE"}
_FALSE = {"f", "F", "false", "False", "FALSE"}


def metric_name(name: str) -> str:
    out = _BAD_NAME.sub("_", name)
    return "_" + out if out[:1].isdigit() else out


def label_name(name: str) -> str:
    out = _BAD_LABEL.sub("_", name)
    return "_" + out if out[:1].isdigit() else out


def _split_unescaped(s: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash and not inside double quotes."""
    parts, cur, i, quoted = [], [], 0, False
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i : i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if quoted:
        raise ValueError("unterminated string field")
    parts.append("".join(cur))
    return parts


def _unescape(s: str) -> str:
    return re.sub(r"\\([,= \\\"])", r"\1", s)


def _field_value(raw: str) -> float | None:
    """Numeric value of a field; None for a string field; ValueError when malformed."""
    if not raw:
        raise ValueError("empty field value")
    if raw[0] == '"':
        if len(raw) < 2 or raw[-1] != '"':
            raise ValueError(f"bad string field {raw!r}")
        return None
    if raw in _TRUE:
        return 1.0
    if raw in _FALSE:
        return 0.0
    if raw[-1] in "iu":
        if not _INT.match(raw[:-1]) or (raw[-1] == "u" and raw.startswith("-")):
            raise ValueError(f"bad integer field {raw!r}")
        return float(int(raw[:-1]))
    v = float(raw)  # ValueError for garbage
    return v


def _parse_line(line: str) -> tuple[str, list[tuple[str, str]], list[tuple[str, float]], str | None]:
    sections = _split_unescaped(line, " ")
    sections = [s for s in sections if s != ""]
    if len(sections) < 2:
        raise ValueError("expected measurement, fields and an optional timestamp")
    if len(sections) > 3:
        raise ValueError("too many space-separated sections")
    key = _split_unescaped(sections[0], ",")
    measurement = _unescape(key[0])
    if not measurement:
        raise ValueError("missing measurement")
    tags = []
    for t in key[1:]:
        kv = _split_unescaped(t, "=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise ValueError(f"bad tag {t!r}")
        tags.append((_unescape(kv[0]), _unescape(kv[1])))
    fields = []
    for f in _split_unescaped(sections[1], ","):
        kv = f.split("=", 1) if "\\=" not in f else _split_unescaped(f, "=")
        if len(kv) != 2 or not kv[0]:
            raise ValueError(f"bad field {f!r}")
        v = _field_value(kv[1])
        if v is not None:
            fields.append((_unescape(kv[0]), v))
    ts = sections[2] if len(sections) == 3 else None
    if ts is not None and not _INT.match(ts):
        raise ValueError(f"bad timestamp {ts!r}")
    return measurement, tags, fields, ts


def parse_lines(body: bytes, precision: str = "ns", now_ms: int | None = None) -> ParseResult:
    """Parse a line-protocol body; bad lines go to ``errors``, good ones into ``batch``."""
    if precision not in _PRECISION_MS:
        raise BadInputError(f"invalid precision {precision!r}")
    scale = _PRECISION_MS[precision]
    now = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInputError(f"line protocol body is not UTF-8: {e}") from e
    index: dict[Labels, int] = {}
    series: list[Labels] = []
    sidx: list[int] = []
    tss: list[int] = []
    vals: list[float] = []
    types: dict[str, str] = {}
    errors: list[tuple[int, str]] = []
    lines = text.split("\n")
    for no, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            measurement, tags, fields, ts = _parse_line(line)
        except ValueError as e:
            errors.append((no, f"{e}: {line[:120]!r}"))
            continue
        t_ms = now if ts is None else int(int(ts) * scale) if scale >= 1 else int(ts) // round(1 / scale)
        base = tuple((label_name(k), v) for k, v in tags)
        names = [f for f, _ in fields]
        for fname, v in fields:
            if names == ["value"] or names == ["counter"]:
                name = metric_name(measurement)
                if fname == "counter":
                    types[name] = "counter"
            else:
                name = metric_name(f"{measurement}_{fname}")
            labels = tuple(sorted((("__name__", name), *base)))
            j = index.get(labels)
            if j is None:
                j = index[labels] = len(series)
                series.append(labels)
            sidx.append(j)
            tss.append(t_ms)
            vals.append(v)
    batch = SampleBatch(series, np.array(sidx, np.int32), np.array(tss, np.int64),
                        np.array(vals, np.float64), types)  # fmt: skip
    return ParseResult(batch, errors, len(lines))


def gunzip_if_needed(body: bytes, content_encoding: str | None, limit: int = 64 << 20) -> bytes:
    """Inflate a gzip body (``Content-Encoding: gzip``), refusing more than ``limit`` bytes."""
    if not content_encoding or content_encoding.lower() in ("identity", ""):
        return body
    if content_encoding.lower() != "gzip":
        raise BadInputError(f"unsupported Content-Encoding {content_encoding!r} (use gzip)")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadInputError(f"body is not valid gzip: {e}") from e
    if len(out) > limit or d.unconsumed_tail:
        raise ErrPayloadTooLarge(f"decompressed body exceeds {limit} bytes")
    return out


__all__ = ["ParseResult", "parse_lines", "gunzip_if_needed"]
