"""Graphite plaintext protocol → :class:`SampleBatch`.

One sample per line, fields separated by whitespace::

    path value [timestamp]
    path;tag1=v1;tag2=v2 value [timestamp]

* ``timestamp`` is in seconds since the epoch, integer or fractional (kept to the millisecond).
  A missing timestamp, or ``-1`` (carbon's convention), means "now".
* ``value`` is a float as carbon reads it (``1``, ``-2.5``, ``1e3``, ``nan``, ``inf``).
* The metric name (``__name__``) is the path with ``.`` turned into ``_`` and every other
  character outside Prometheus's ``[a-zA-Z0-9_:]`` turned into ``_`` (a leading digit gets a
  ``_`` prefix): ``servers.web-1.cpu`` → ``servers_web_1_cpu``.
* Tags (Graphite 1.1 tagged series) become labels; tag names are sanitised to
  ``[a-zA-Z0-9_]``. A tag repeated in one path keeps its last value (as carbon does). Tags named
  ``name`` (Graphite's own alias of the path) or starting with ``__`` are dropped.
* Every metric name is typed ``gauge`` (``batch.types``, kept as metric metadata), as
  Prometheus's graphite_exporter types them.
* Blank lines and ``#`` comments are skipped. A malformed line is reported in
  :attr:`ParseResult.errors` as ``(line number, message)`` and skipped; the good lines around it
  are kept.

Speed: lines of the common shape (printable ASCII, single spaces) take a numba pass
(:mod:`filodb.gateway.graphite_fast`) that reads values and timestamps, and their paths are
resolved from the raw bytes by a series-key cache (:mod:`filodb.model.identity`, shared
design with the Influx door: no Python step per line for paths seen before), which also hands
the batch its part keys; the other lines take the per-line parser below (``float()``,
underscores refused) and both are merged by line number. Seconds become milliseconds in one
vectorised step. ``python bench/parsers.py --only graphite`` (100 k tagged lines over 1 k
paths, 2-core machine under load): 0.9 M lines/s per line in Python, 6.7 M with the fast pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from filodb.errors import BadInputError
from filodb.gateway import graphite_fast, graphite_keys
from filodb.gateway.parsed import ParseResult
from filodb.model.batch import SampleBatch
from filodb.model.identity import SeriesKeyCache
from filodb.model.labels import Labels
from filodb.model.labels import sanitize_label_name as label_name
from filodb.model.labels import sanitize_metric_name as metric_name

_MAX_MS = 2**63 - 1


def _labels_of(key: str) -> Labels:
    """Label set of ``path`` or ``path;tag=value;...``; ValueError when malformed."""
    path, *tag_parts = key.split(";")
    if not path:
        raise ValueError("empty metric path")
    tags: dict[str, str] = {}
    for part in tag_parts:
        name, eq, value = part.partition("=")
        if not eq or not name or not value:
            raise ValueError(f"bad tag {part!r} (expected name=value)")
        name = label_name(name)
        if name == "name" or name.startswith("__"):
            continue
        tags[name] = value
    tags["__name__"] = metric_name(path)
    return tuple(sorted(tags.items()))


def parse_graphite(body: bytes, now_ms: int | None = None) -> ParseResult:
    """Parse a Graphite plaintext body; bad lines go to ``errors``, good ones into ``batch``."""
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInputError(f"graphite body is not UTF-8: {e}") from e
    n_lines = body.count(b"\n") + 1
    fast = graphite_fast.scan(body)
    buf = np.frombuffer(body, np.uint8)
    kind = np.zeros(len(fast.line), np.uint8)
    got = _SERIES.resolve(buf, fast.key_a, fast.key_b, fast.key_b, fast.key_b, kind)
    refused = got.sidx < 0  # malformed tags: the per-line parser reports them
    slow = np.union1d(fast.slow, fast.line[refused]) if refused.any() else fast.slow
    keep = ~refused
    out = _Slow(got.series)
    if len(slow):
        lines = text.split("\n")  # only for the lines the fast pass left
        for i in slow.tolist():
            out.parse(i + 1, lines[i])
    secs = np.concatenate((fast.secs[keep], np.array(out.secs, np.float64)))
    rows = np.concatenate((fast.line[keep] + 1, np.array(out.line, np.int64)))
    sidx = np.concatenate((got.sidx[keep], np.array(out.sidx, np.int32)))
    vals = np.concatenate((fast.value[keep], np.array(out.vals, np.float64)))
    if out.line:
        order = np.argsort(rows, kind="stable")
        secs, rows, sidx, vals = secs[order], rows[order], sidx[order], vals[order]
    errors = out.errors
    with np.errstate(invalid="ignore", over="ignore"):
        ms = np.round(secs * 1000.0)
        bad = ~np.isfinite(ms) | (np.abs(ms) >= 2.0**63)
    now_rows = secs == -1
    bad &= ~now_rows
    if bad.any():
        # The only way a line is rejected after parsing: a timestamp beyond int64 milliseconds.
        for r in np.flatnonzero(bad).tolist():
            errors.append((int(rows[r]), f"timestamp {float(secs[r])!r} s out of range"))
        errors.sort()
    ts = np.where(now_rows | bad, 0, ms).astype(np.int64)
    ts[now_rows] = now
    if bad.any() or len(out.series) > len(got.series):  # rows dropped, or per-line series
        batch = SampleBatch(out.series, sidx[~bad], ts[~bad], vals[~bad],
                            routed=_SERIES.routed_for(out.series))  # fmt: skip
        batch = batch.take_series(np.bincount(batch.sidx, minlength=len(out.series)) > 0)
        types = {dict(lb)["__name__"] for lb in batch.series}
    else:  # every series from the cache, with its identity
        types = {name for x in got.extras for name in x}
        batch = SampleBatch(got.series, sidx, ts, vals, keys=got.keys, pks=got.part_keys,
                            routes=got.routes, routed=got.routed)  # fmt: skip
    # Graphite has no metric types; Prometheus's graphite_exporter calls every path a gauge
    batch.types = dict.fromkeys(types, "gauge")
    return ParseResult(batch, errors, n_lines, fast.blank + out.blank)


def _fast_labels(key: bytes, _b: bytes, _kind: int) -> tuple[Labels, tuple[str, ...]] | None:
    """The label set of a path, and its metric name (typed gauge); None when malformed."""
    try:
        labels = _labels_of(key.decode())
    except ValueError:
        return None
    return labels, (dict(labels)["__name__"],)


# The fast pass's series by path bytes, across bodies.
_SERIES = SeriesKeyCache(_fast_labels, 500_000, graphite_keys.spans)


class _Slow:
    """The per-line parser: the lines the fast pass left, into columns of their own, adding
    to the series the fast pass found (``series``, first appearance first)."""

    def __init__(self, series: Sequence[Labels]) -> None:
        self.series = series  # a list once a slow line adds to it
        self._by_labels: dict[Labels, int] | None = None  # built when a slow line needs it
        self.by_key: dict[str, int] = {}
        self.sidx: list[int] = []
        self.vals: list[float] = []
        self.secs: list[float] = []
        self.line: list[int] = []
        self.errors: list[tuple[int, str]] = []
        self.blank = 0  # lines with no data

    def parse(self, no: int, line: str) -> None:
        parts = line.split()
        n = len(parts)
        if n == 0 or parts[0][0] == "#":
            self.blank += 1
            return
        if n == 3:
            key, v, t = parts
            try:
                secs = float(t)
            except ValueError:
                secs = None
            if secs is None or "_" in t:
                self.errors.append((no, f"bad timestamp {t!r}: {line[:120]!r}"))
                return
        elif n == 2:
            key, v = parts
            secs = -1.0
        else:
            self.errors.append(
                (no, f"expected 'path value [timestamp]', got {n} fields: {line[:120]!r}")
            )
            return
        try:
            fv = float(v)
        except ValueError:
            fv = None
        if fv is None or "_" in v:
            self.errors.append((no, f"bad value {v!r}: {line[:120]!r}"))
            return
        j = self.by_key.get(key)
        if j is None:
            try:
                labels = _labels_of(key)
            except ValueError as e:
                self.errors.append((no, f"{e}: {line[:120]!r}"))
                return
            if self._by_labels is None:
                self.series = list(self.series)
                self._by_labels = {lb: i for i, lb in enumerate(self.series)}
            j = self._by_labels.get(labels)
            if j is None:
                j = self._by_labels[labels] = len(self.series)
                self.series.append(labels)  # type: ignore[attr-defined]  # a list by now
            self.by_key[key] = j
        self.sidx.append(j)
        self.vals.append(fv)
        self.secs.append(secs)
        self.line.append(no)


def warm() -> None:
    """Load the fast pass's numba kernels now (see :func:`filodb.gateway.influx.warm`)."""
    parse_graphite(b"filodb_warm;host=a 1 1\nfilodb_warm;host=b 2\n", 0)
