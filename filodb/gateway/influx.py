"""Influx line protocol → :class:`SampleBatch`.

``measurement[,tag=v...] field=value[,field=value...] [timestamp]``, with Influx's escapes
(``\\,`` ``\\ `` ``\\=`` in names and tags, ``\\"`` in string fields), float, integer (``5i``),
unsigned (``5u``) and boolean fields, comments and blank lines, CRLF endings.

Naming (FiloDB's gateway, and Telegraf's Prometheus convention):

| fields of the line | series written |
|---|---|
| one field called ``value`` | ``<measurement>`` |
| one field called ``counter`` | ``<measurement>`` (type counter) |
| ``sum``, ``count``, ``+Inf`` and numeric bucket tops | ``<measurement>_sum``, ``<measurement>_count``, ``<measurement>_bucket{le="<top>"}`` (type histogram) |
| anything else | ``<measurement>_<field>`` for each numeric field |

A line is a histogram (FiloDB's ``InfluxHistogramRecord``, Telegraf's ``metric_version = 1``
output of a Prometheus histogram) when its numeric fields are ``sum``, ``count``, a field
named exactly ``+Inf`` and any number of other fields whose names are finite numbers (``0.5``,
``1``, ``2.5e-3``). The ``le`` label keeps the field name as written. Such a line with a tag
named ``le`` is rejected (the bucket's ``le`` would overwrite it). Anything short of that shape
(no ``+Inf``, a non-numeric extra field) falls back to the generic ``<measurement>_<field>``.

Tags become labels. String fields are skipped (not numeric; not an error). Names are
sanitised to Prometheus's charset (other characters become ``_``). Booleans are 1/0.
A malformed line is reported with its number and skipped; the good lines around it are kept.
A tag named ``__name__`` is dropped; two tags with the same (sanitised) name reject the line.
Precisions: ``ns`` (default), ``u``/``us``, ``ms``, ``s``, ``m``, ``h``; a missing timestamp
means ``now_ms``; ns and us are floored to milliseconds.

Speed: a body without backslashes, double quotes, CR or TAB takes a vectorised first pass
(:mod:`filodb.gateway.influx_fast`: numpy finds the structure, numba reads the numbers) for its
lines of the common shape; their series are resolved from the raw key bytes by the doors'
series-key cache (:mod:`filodb.model.identity`, no Python step per line for series seen
before), which also hands the batch its part keys. The other lines take the per-line parser
below and both are merged by line number. On ``bench/ingest.py``'s live bodies (2000 lines,
each a series of its own, the series repeated across bodies): 0.69 us/line (the fast pass
0.42, the key cache 0.19 of it), against 1.07 with a Python dict lookup per line and 4.2 for
the per-line parser alone; parse, shard split and log encoding together 1.06 against 1.7 us
(2-core machine under load). ``python bench/parsers.py --only influx`` measures 100 k
two-field lines over 1 k series.
"""

from __future__ import annotations

import math
import re
import time
import zlib
from collections.abc import Sequence
from typing import cast

import numpy as np

from filodb.errors import BadInputError, ErrPayloadTooLarge
from filodb.gateway import influx_fast, influx_keys
from filodb.gateway.parsed import ParseResult
from filodb.model.batch import SampleBatch
from filodb.model.cache import BoundedCache
from filodb.model.identity import Routed, SeriesKeyCache
from filodb.model.labels import Labels
from filodb.model.labels import sanitize_label_name as label_name
from filodb.model.labels import sanitize_metric_name as metric_name

_TRUE = {"t", "T", "true", "True", "TRUE"}
_FALSE = {"f", "F", "false", "False", "FALSE"}
_KEY_CACHE_MAX = 500_000  # entries per generation of each label-set cache below


def _scan(s: str, start: int, stops: str, quotes: bool) -> int:
    """Index of the first character of ``stops`` at or after ``start`` that is not escaped by a
    backslash (nor inside double quotes when ``quotes``); ``len(s)`` when there is none."""
    i, n, quoted = start, len(s), False
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if quotes and c == '"':
            quoted = not quoted
        elif not quoted and c in stops:
            return i
        i += 1
    if quoted:
        raise ValueError("unterminated string field")
    return n


def _split(s: str, sep: str, quotes: bool = False) -> list[str]:
    out, i = [], 0
    while True:
        j = _scan(s, i, sep, quotes)
        out.append(s[i:j])
        if j >= len(s):
            return out
        i = j + 1


def _unescape(s: str) -> str:
    return _ESCAPE.sub(r"\1", s) if "\\" in s else s


_ESCAPE = re.compile(r"\\([,= \\\"])")


def _split_line(line: str) -> tuple[str, str, str | None]:
    """(series key, field set, timestamp or None) of a line with escapes or quotes."""
    k = _scan(line, 0, " ", False)
    f = _scan(line, k + 1, " ", True)
    rest = line[f + 1 :].strip()
    return line[:k], line[k + 1 : f], rest or None


def _parse_key(key: str) -> tuple[str, list[tuple[str, str]]]:
    """(measurement, tags) of a series key; ValueError when malformed."""
    parts = _split(key, ",") if "\\" in key else key.split(",")
    measurement = _unescape(parts[0])
    if not measurement:
        raise ValueError("missing measurement")
    tags = []
    for t in parts[1:]:
        kv = _split(t, "=") if "\\" in t else t.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise ValueError(f"bad tag {t!r}")
        tags.append((_unescape(kv[0]), _unescape(kv[1])))
    return measurement, tags


def _field_value(raw: str) -> float | None:
    """Numeric value of a field; None for a string field; ValueError when malformed."""
    if not raw:
        raise ValueError("empty field value")
    c = raw[-1]
    if c in _FLOAT_END:
        if "_" in raw or raw[0] not in _FLOAT_START:
            raise ValueError(f"bad float field {raw!r}")
        return float(raw)
    if c == "i" or c == "u":
        body = raw[:-1]
        if (
            not body
            or "_" in body
            or body[0] not in "+-0123456789"
            or (c == "u" and body[0] == "-")
        ):
            raise ValueError(f"bad integer field {raw!r}")
        return float(int(body))
    if raw in _TRUE:
        return 1.0
    if raw in _FALSE:
        return 0.0
    if raw[0] == '"' and len(raw) >= 2 and c == '"':
        return None
    raise ValueError(f"bad field value {raw!r}")


_FLOAT_END = frozenset("0123456789.")
_FLOAT_START = frozenset("+-.0123456789")
_DIV = {"ns": 1_000_000, "u": 1000, "us": 1000, "n": 1_000_000, "µ": 1000}
_MUL = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def parse_lines(body: bytes, precision: str = "ns", now_ms: int | None = None) -> ParseResult:
    """Parse a line-protocol body; bad lines go to ``errors``, good ones into ``batch``."""
    if precision not in _DIV and precision not in _MUL:
        raise BadInputError(f"invalid precision {precision!r} (use ns, u/us, ms, s, m or h)")
    div = _DIV.get(precision, 1)
    mul = _MUL.get(precision, 1)
    limit = (2**63 - 1) // mul
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    text = _text(body)
    out = _Out()
    fast = influx_fast.scan(body, div, mul, limit) if influx_fast.eligible(body) else None
    if fast is None:
        lines = (text or body.decode("ascii")).split("\n")
        for no, line in enumerate(lines, 1):
            _parse_line(no, line, out, div, mul, limit, now)
        return out.result(len(lines))
    n_lines = fast.lines
    out.blank = fast.blank
    # the fast pass's fields; a line whose series key is refused goes to the per-line parser
    buf = np.frombuffer(body, np.uint8)
    got = _SERIES.resolve(buf, fast.key_a, fast.key_b, fast.name_a, fast.name_b, fast.kind)
    for typed in got.extras:
        out.types.update(typed)
    out.series = got.series  # label sets picked only if asked for (a list once lines add)
    pks: Sequence[bytes] | None = got.part_keys
    routes: np.ndarray | None = got.routes
    keys: np.ndarray | None = got.keys
    sidx_a = got.sidx
    routed = got.routed
    refused = np.unique(fast.line[sidx_a < 0])
    keep = ~np.isin(fast.line, refused) if len(refused) else slice(None)
    slow = np.union1d(fast.slow, refused) if len(refused) else fast.slow
    if len(slow):
        out.series = list(out.series)
        out.index.update({lb: i for i, lb in enumerate(out.series)})
        lines = (text or body.decode("ascii")).split("\n")  # only for the lines the fast pass left
        for i in slow.tolist():
            _parse_line(i + 1, lines[i], out, div, mul, limit, now)
        if len(out.series) > len(got.series):
            pks = routes = keys = (
                None  # new series of the per-line parser: to_bytes encodes them all
            )
    ts = np.where(fast.has_ts, fast.ts, now)[keep]
    vals = fast.value[keep]
    if not out.sidx:
        return out.result(n_lines, sidx_a[keep], ts, vals, pks, routes, keys, routed)
    order = np.argsort(
        np.concatenate((fast.line[keep], np.array(out.line, np.int64) - 1)), kind="stable"
    )
    return out.result(
        n_lines,
        np.concatenate((sidx_a[keep], np.array(out.sidx, np.int32)))[order],
        np.concatenate((ts, np.array(out.tss, np.int64)))[order],
        np.concatenate((vals, np.array(out.vals, np.float64)))[order],
        pks,
        routes,
        keys,
        routed,
    )


def _text(body: bytes) -> str | None:
    """The body as text when it is not ASCII (None when it is: the fast pass reads bytes and
    decodes the few lines it leaves); 400 when it is not UTF-8."""
    if body.isascii():
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInputError(f"line protocol body is not UTF-8: {e}") from e


def _fast_labels(key: bytes, name: bytes, kind: int) -> tuple[Labels, tuple | None] | None:
    """The label set (and the metric types it implies) of a fast-pass field; None when the
    series key is refused (the per-line parser reports the line)."""
    single = kind != influx_fast.FIELD
    try:
        labels, typed = _labels_of(key.decode(), name.decode(), single, False)
    except ValueError:
        return None
    return labels, typed or None


_Hit = tuple[Labels, tuple[tuple[str, str], ...]]  # a label set and the metric types it implies

# The fast pass's series by (series key, field name, kind) bytes, across bodies.
_SERIES = SeriesKeyCache(_fast_labels, _KEY_CACHE_MAX, influx_keys.spans)


class _Out:
    """What a parse gathers: label sets, samples by column, metric types and errors."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], int] = {}  # (series key, field marker) -> series index
        self.index: dict[Labels, int] = {}
        self.series: Sequence[Labels] = []  # a list where lines add to it
        self.sidx: list[int] = []
        self.tss: list[int] = []
        self.vals: list[float] = []
        self.line: list[int] = []  # line number of each sample (1-based)
        self.types: dict[str, str] = {}
        self.errors: list[tuple[int, str]] = []
        self.blank = 0  # lines with no data (blank, comments)

    def result(self, n_lines: int, sidx: np.ndarray | None = None, ts: np.ndarray | None = None,
               vals: np.ndarray | None = None, part_keys: Sequence[bytes] | None = None,
               routes: np.ndarray | None = None, keys: np.ndarray | None = None,
               routed: Routed | None = None) -> ParseResult:  # fmt: skip
        if routed is None or len(routed.ids) < len(self.series):  # series of the per-line
            routed = _SERIES.routed_for(self.series)  # parser: checked for lateness as well
        if sidx is None:
            sidx = np.array(self.sidx, np.int32)
            ts = np.array(self.tss, np.int64)
            vals = np.array(self.vals, np.float64)
        assert ts is not None and vals is not None  # given with sidx
        return ParseResult(
            SampleBatch(
                self.series,
                sidx,
                ts,
                vals,
                self.types,
                keys,
                pks=part_keys,
                routes=routes,
                routed=routed,
            ),
            self.errors,
            n_lines,
            self.blank,
        )


def _parse_line(no: int, line: str, out: _Out, div: int, mul: int, limit: int, now: int) -> None:
    """One line by the per-line parser: its samples into ``out``, or its error."""
    line = line.strip()
    if not line or line[0] == "#":
        out.blank += 1
        return
    try:
        if "\\" in line or '"' in line:
            key, fset, ts = _split_line(line)
            fparts = _split(fset, ",", True)
            fields: list[tuple[str, float]] = []
            for f in fparts:
                eq = _scan(f, 0, "=", False)
                name = _unescape(f[:eq])
                if eq >= len(f) or not name:
                    raise ValueError(f"bad field {f!r}")
                v = _field_value(f[eq + 1 :])
                if v is not None:
                    fields.append((name, v))
        else:
            parts = line.split(" ")
            if len(parts) == 3:
                key, fset, ts = parts
            elif len(parts) == 2:
                (key, fset), ts = parts, None
            else:
                parts = [p for p in parts if p]
                if not 2 <= len(parts) <= 3:
                    raise ValueError("expected measurement, fields and an optional timestamp")
                key, fset, ts = parts[0], parts[1], (parts[2] if len(parts) == 3 else None)
            fields = []
            for f in fset.split(","):
                name, sep, raw = f.partition("=")
                if not sep or not name:
                    raise ValueError(f"bad field {f!r}")
                fields.append((name, cast(float, _field_value(raw))))  # no quotes: not a string
        if not fset:
            raise ValueError("missing field set")
        if ts is None:
            t_ms = now
        else:
            if "_" in ts or ts[0] not in "+-0123456789":
                raise ValueError(f"bad timestamp {ts!r}")
            t = int(ts)
            if not -limit <= t <= limit:
                raise ValueError(f"timestamp {ts} out of range")
            t_ms = t // div * mul if div > 1 else t * mul
        single = len(fields) == 1 and fields[0][0] in ("value", "counter")
        hist = len(fields) >= 3 and "+Inf=" in fset and _is_histogram(fields)
        for fname, v in fields:
            ck = (key, _SINGLE + fname if single else (_HIST + fname if hist else fname))
            j = out.cache.get(ck)
            if j is None:
                assert isinstance(out.series, list)  # made one before any line is parsed
                j = out.cache[ck] = _series_index(key, fname, single, hist, out.index, out.series,
                                                  out.types)  # fmt: skip
            out.sidx.append(j)
            out.tss.append(t_ms)
            out.vals.append(v)
            out.line.append(no)
    except ValueError as e:
        out.errors.append((no, f"{e}: {line[:120]!r}"))


_HIST = "\0h"  # cache-key prefix of a histogram line's fields (buckets map differently)
_SINGLE = "\0s"  # cache-key prefix of a line's only field named value or counter
_HIST_FIXED = ("sum", "count", "+Inf")


def _is_histogram(fields: list[tuple[str, float]]) -> bool:
    """True when the numeric fields are sum, count, +Inf and finite numeric bucket tops."""
    names = [f for f, _ in fields]
    if len(set(names)) != len(names) or not all(n in names for n in _HIST_FIXED):
        return False
    for n in names:
        if n in _HIST_FIXED:
            continue
        try:
            top = float(n)
        except ValueError:
            return False
        if "_" in n or not math.isfinite(top):
            return False
    return True


def _series_index(key: str, fname: str, single: bool, hist: bool, index: dict[Labels, int],
                  series: list[Labels], types: dict[str, str]) -> int:  # fmt: skip
    """Series index of one field of a series key, adding the label set on first sight."""
    ck = (key, fname, single, hist)
    hit = _KEY_CACHE.get(ck)
    if hit is None:
        hit = _labels_of(key, fname, single, hist)
        _KEY_CACHE.put(ck, hit)
    labels, typed = hit
    for name, kind in typed:
        types[name] = kind
    j = index.get(labels)
    if j is None:
        j = index[labels] = len(series)
        series.append(labels)
    return j


# Label sets (and metric types) by series key and field, across bodies: a sender writes the
# same series again and again, and parsing their tags was most of the work (2.5x faster on
# bodies whose series were seen before). Bounded (two generations); errors are not cached.
_KEY_CACHE: BoundedCache[tuple[str, str, bool, bool], _Hit] = BoundedCache(_KEY_CACHE_MAX)


def _labels_of(key: str, fname: str, single: bool,
               hist: bool) -> tuple[Labels, tuple[tuple[str, str], ...]]:  # fmt: skip
    """The label set of one field of a series key, and the metric types the line implies."""
    measurement, tags = _parse_key(key)
    le = None
    typed: tuple[tuple[str, str], ...] = ()
    if single:
        name = metric_name(measurement)
        if fname == "counter":
            typed = ((name, "counter"),)
    elif hist:
        if fname in ("sum", "count"):
            name = metric_name(f"{measurement}_{fname}")
        else:
            name, le = metric_name(f"{measurement}_bucket"), fname
    else:
        name = metric_name(f"{measurement}_{fname}")
    labels_d = {label_name(k): v for k, v in tags}
    if len(labels_d) != len(tags):
        raise ValueError("duplicate tag names")
    labels_d.pop("__name__", None)
    if hist and "le" in labels_d:
        raise ValueError("a histogram line (sum, count, +Inf fields) may not have an 'le' tag")
    if hist:
        typed = ((metric_name(measurement), "histogram"),)
    if le is not None:
        labels_d["le"] = le
    labels_d["__name__"] = name
    return tuple(sorted(labels_d.items())), typed


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


def warm() -> None:
    """Load the fast pass's numba kernels now (scan, series-key cache, number parsing): a
    process's first numba call costs ~0.3 s, and request threads wait on numba's compiler
    lock meanwhile; paid at start-up rather than by the first writes."""
    parse_lines(b"filodb_warm,host=a value=1 1\nfilodb_warm,host=b value=2i 2\n", "ms", 0)


__all__ = ["ParseResult", "parse_lines", "gunzip_if_needed", "warm"]
