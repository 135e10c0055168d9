"""Prometheus text exposition format and OpenMetrics text: parse into batches, write back.

Lines (both formats)::

    # HELP <family> <help text, escapes \\\\ and \\n>
    # TYPE <family> counter|gauge|histogram|gaugehistogram|summary|info|stateset|unknown|untyped
    # UNIT <family> <unit>                       (OpenMetrics)
    # EOF                                        (OpenMetrics: the end; nothing may follow)
    # any other comment
    <name>[{<label>="<value>",...}] <value> [<timestamp>] [# <exemplar>]

Label values take the escapes ``\\\\``, ``\\"`` and ``\\n``; a trailing comma in the label list
is allowed. Values are floats, ``NaN``, ``+Inf``, ``-Inf`` (Go's spellings: ``Inf``, ``inf``
too); digit separators (``1_000``) are refused. Timestamps:

* **Prometheus text**: an integer of **milliseconds** since the epoch;
* **OpenMetrics**: **seconds** since the epoch, with an optional fraction (rounded to ms).

:class:`PromTextParser` is told which (``openmetrics=True/False``); ``filodb import`` decides for
a file (:func:`filodb.tools.importer.detect`): OpenMetrics when its last non-blank line is
``# EOF``, Prometheus text otherwise. A
sample without a timestamp gets ``now_ms`` (the import's start time). OpenMetrics exemplars
(``# {trace_id="..."} value [timestamp]``) are kept as the batch's exemplars (without a
timestamp: the sample's), so ``filodb import`` sends them by remote write.

The parser is fed blocks of whole lines and keeps its state between blocks (the metadata seen,
the line number, ``# EOF``), so a file of any size streams through it. A malformed line is
reported as ``(line number, message)`` and skipped; the lines around it are kept. Series keys
(the text before the value) are cached, so a series seen before costs one dict lookup.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from filodb.model.batch import SampleBatch
from filodb.model.cache import BoundedCache
from filodb.model.exemplars import Exemplars
from filodb.model.labels import Labels
from filodb.model.numfmt import format_values

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset",
          "unknown", "untyped"}  # fmt: skip
_FLOAT_SPECIAL = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf,
                  "+inf": math.inf, "-inf": -math.inf, "inf": math.inf, "nan": math.nan}  # fmt: skip
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_gsum", "_gcount", "_info")


class LineError(ValueError):
    """A malformed line (the message names the problem)."""


@dataclass
class TextChunk:
    """What one block of lines gave: samples, metadata first seen in it, rejected lines."""

    batch: SampleBatch
    metadata: list[dict[str, str]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    lines: int = 0


def parse_float(raw: str) -> float:
    """A sample value as Go's ParseFloat reads it (no ``_`` separators, no hex)."""
    got = _FLOAT_SPECIAL.get(raw)
    if got is not None:
        return got
    if "_" in raw or "x" in raw or "X" in raw or raw.lower().lstrip("+-") in ("infinity", "nan"):
        raise LineError(f"invalid value {raw!r}")
    try:
        return float(raw)
    except ValueError:
        raise LineError(f"invalid value {raw!r}") from None


def _label_value(s: str, i: int) -> tuple[str, int]:
    """The quoted label value starting at ``s[i] == '"'``; returns (value, index after)."""
    out: list[str] = []
    j = i + 1
    n = len(s)
    while j < n:
        c = s[j]
        if c == '"':
            return "".join(out), j + 1
        if c == "\\":
            if j + 1 >= n or s[j + 1] not in _UNESCAPE:
                raise LineError(f"invalid escape in label value at column {j + 1}")
            out.append(_UNESCAPE[s[j + 1]])
            j += 2
            continue
        out.append(c)
        j += 1
    raise LineError("unterminated label value")


def parse_series_key(s: str) -> tuple[Labels, int]:
    """Labels of ``name{...}`` at the start of ``s``; returns (labels, index after the key)."""
    m = _NAME_RE.match(s)
    if not m:
        raise LineError("line does not start with a metric name")
    pairs = [("__name__", m.group())]
    i = m.end()
    if i < len(s) and s[i] == "{":
        i += 1
        while True:
            while i < len(s) and s[i] == " ":
                i += 1
            if i < len(s) and s[i] == "}":
                i += 1
                break
            lm = _LABEL_RE.match(s, i)
            if not lm:
                raise LineError(f"invalid label name at column {i + 1}")
            i = lm.end()
            if s[i : i + 2] != '="':
                raise LineError(f'expected =" after label {lm.group()!r}')
            value, i = _label_value(s, i + 1)
            pairs.append((lm.group(), value))
            while i < len(s) and s[i] == " ":
                i += 1
            if i < len(s) and s[i] == ",":
                i += 1
            elif i < len(s) and s[i] == "}":
                i += 1
                break
            else:
                raise LineError(f"expected , or }} after label {lm.group()!r}")
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):
        raise LineError("duplicate label name")
    return tuple(sorted((k, v) for k, v in pairs if v != "")), i


def family_of(name: str, known: dict[str, dict[str, str]]) -> str:
    """The metric family a sample name belongs to: itself, or itself without a suffix such as
    ``_bucket`` when the shorter name has metadata."""
    if name in known:
        return name
    for suf in _SUFFIXES:
        if name.endswith(suf) and name[: -len(suf)] in known:
            return name[: -len(suf)]
    return name


class PromTextParser:
    """Stateful parser of a text exposition stream (see the module docstring)."""

    def __init__(self, openmetrics: bool, now_ms: int) -> None:
        self.openmetrics = openmetrics
        self.now_ms = now_ms
        self.lineno = 0
        self.eof = False
        self.metadata: dict[str, dict[str, str]] = {}
        self._keys: BoundedCache[str, Labels] = BoundedCache(1_000_000)
        self._index: dict[Labels, int] = {}
        self._series: list[Labels] = []
        self._exemplar: str | None = None  # the text after " # " of the last sample line

    def feed(self, text: str) -> TextChunk:
        """Parse a block of whole lines (the last may lack its newline)."""
        self._index, self._series = {}, []
        sidx: list[int] = []
        ts: list[int] = []
        vals: list[float] = []
        ex: list[tuple[int, int, float, Labels]] = []  # exemplars: (series, ms, value, labels)
        errors: list[tuple[int, str]] = []
        fresh: dict[str, dict[str, str]] = {}
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for line in lines:
            self.lineno += 1
            line = line.rstrip("\r")
            if self.eof:
                if line.strip():
                    errors.append((self.lineno, "content after # EOF"))
                continue
            if not line.strip():
                continue
            try:
                if line[0] == "#":
                    self._comment(line, fresh)
                    continue
                j, t, v = self._sample(line)
                if self._exemplar is not None:
                    ex.append((j, *self._parse_exemplar(self._exemplar, t)))
            except LineError as e:
                errors.append((self.lineno, str(e)))
                continue
            sidx.append(j)
            ts.append(t)
            vals.append(v)
        batch = SampleBatch(self._series, np.array(sidx, np.int32), np.array(ts, np.int64),
                            np.array(vals, np.float64))  # fmt: skip
        batch.types = {k: m["type"] for k, m in fresh.items()}
        if ex:
            batch.exemplars = Exemplars(np.array([e[0] for e in ex], np.int32),
                                        np.array([e[1] for e in ex], np.int64),
                                        np.array([e[2] for e in ex], np.float64),
                                        [e[3] for e in ex])  # fmt: skip
        meta = [{"metric": k, **m} for k, m in fresh.items()]
        return TextChunk(batch, meta, errors, len(lines))

    def _comment(self, line: str, fresh: dict[str, dict[str, str]]) -> None:
        parts = line.split(None, 3)
        if len(parts) == 2 and parts[1] == "EOF" and line.strip() == "# EOF":
            self.eof = True
            return
        if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE", "UNIT"):
            return  # a plain comment
        kind, name = parts[1], parts[2]
        if not _NAME_RE.fullmatch(name):
            raise LineError(f"invalid metric name {name!r} in # {kind}")
        rest = parts[3] if len(parts) > 3 else ""
        entry = self.metadata.setdefault(name, {"type": "unknown", "help": "", "unit": ""})
        if kind == "TYPE":
            if rest not in _TYPES:
                raise LineError(f"unknown metric type {rest!r}")
            entry["type"] = "unknown" if rest == "untyped" else rest
        elif kind == "HELP":
            entry["help"] = re.sub(
                r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), rest
            )
        else:
            entry["unit"] = rest
        fresh[name] = entry

    def _sample(self, line: str) -> tuple[int, int, float]:
        brace = line.find("{")
        space = line.find(" ")
        if brace < 0 or (0 <= space < brace):
            if space < 0:
                raise LineError("expected a value after the metric name")
            key, end = line[:space], space
            labels = self._keys.get(key)
            if labels is None:
                labels, k_end = parse_series_key(key)
                if k_end != len(key):
                    raise LineError(f"unexpected character {key[k_end]!r} in metric name")
                self._remember(key, labels)
        else:
            close = line.find("}", brace)
            key = line[: close + 1] if close > 0 else line
            labels = self._keys.get(key)  # only whole keys are cached: a cut one misses
            if labels is None:
                labels, end = parse_series_key(line)
                key = line[:end]
                self._remember(key, labels)
            else:
                end = close + 1
        return self._index_of(labels), *self._value_ts(line[end:])

    def _parse_exemplar(self, text: str, sample_ms: int) -> tuple[int, float, Labels]:
        """``{labels} value [timestamp]`` after a sample's `` # ``: (ms, value, labels); no
        timestamp means the sample's, as Prometheus's scrape takes it."""
        if not text.startswith("{"):
            raise LineError("an exemplar starts with its label set: # {...} value")
        labels, end = parse_series_key("x" + text)
        fields = text[end - 1 :].split()
        if not 1 <= len(fields) <= 2:
            raise LineError("an exemplar is {labels} value [timestamp]")
        value = parse_float(fields[0])
        ms = self._timestamp(fields[1]) if len(fields) == 2 else sample_ms
        return ms, value, tuple(kv for kv in labels if kv[0] != "__name__")

    def _remember(self, key: str, labels: Labels) -> None:
        self._keys.put(key, labels)

    def _index_of(self, labels: Labels) -> int:
        j = self._index.get(labels)
        if j is None:
            j = self._index[labels] = len(self._series)
            self._series.append(labels)
        return j

    def _value_ts(self, rest: str) -> tuple[int, float]:
        if rest and rest[0] not in " \t":
            raise LineError(f"expected a space after the series, got {rest[0]!r}")
        hash_at = rest.find(" # ")
        self._exemplar = None
        if hash_at >= 0:
            if not self.openmetrics:
                raise LineError("exemplars are only valid in OpenMetrics")
            self._exemplar = rest[hash_at + 3 :]
            rest = rest[:hash_at]
        fields = rest.split()
        if not fields:
            raise LineError("missing value")
        if len(fields) > 2:
            raise LineError(f"unexpected text after the timestamp: {' '.join(fields[2:])!r}")
        value = parse_float(fields[0])
        if len(fields) == 1:
            return self.now_ms, value
        return self._timestamp(fields[1]), value

    def _timestamp(self, raw: str) -> int:
        if self.openmetrics:
            try:
                secs = parse_float(raw)
            except LineError:
                raise LineError(f"invalid timestamp {raw!r}") from None
            if not math.isfinite(secs):
                raise LineError(f"invalid timestamp {raw!r}")
            return int(round(secs * 1000))
        if not re.fullmatch(r"-?\d+", raw):
            raise LineError(
                f"invalid timestamp {raw!r} (Prometheus text wants integer milliseconds)"
            )
        return int(raw)


# --- writing ------------------------------------------------------------------------------
def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_text(labels: Labels) -> str:
    """``name{a="x",b="y"}`` with label values escaped."""
    name = ""
    rest = []
    for k, v in labels:
        if k == "__name__":
            name = v
        else:
            rest.append(f'{k}="{_escape(v)}"')
    return f"{name}{{{','.join(rest)}}}" if rest else name


def seconds_text(ms: np.ndarray) -> list[str]:
    """Millisecond timestamps as OpenMetrics seconds with a 3-digit fraction (exact)."""
    ms = np.asarray(ms, np.int64)
    a = np.abs(ms)
    sign = np.where(ms < 0, "-", "")
    return list(map("{}{}.{:03d}".format, sign.tolist(), (a // 1000).tolist(), (a % 1000).tolist()))


def samples_text(labels: Labels, ts: np.ndarray, vals: np.ndarray) -> str:
    """The OpenMetrics lines of one series (value, timestamp in seconds)."""
    prefix = series_text(labels) + " "
    n = len(ts)
    return "".join(map("{}{} {}\n".format, [prefix] * n, format_values(vals), seconds_text(ts)))


def metadata_text(family: str, meta: dict[str, str]) -> str:
    """``# TYPE``/``# HELP``/``# UNIT`` lines of a family (OpenMetrics spelling)."""
    out = [f"# TYPE {family} {meta.get('type') or 'unknown'}\n"]
    if meta.get("help"):
        h = meta["help"].replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {family} {h}\n")
    if meta.get("unit"):
        out.append(f"# UNIT {family} {meta['unit']}\n")
    return "".join(out)
