"""Raw samples out: ``GET/POST /api/v1/export`` (and ``/promql/<dataset>/api/v1/export``).

Parameters: ``match[]`` (one or more series selectors, required), ``start`` and ``end`` (unix
seconds or RFC 3339; default: the last hour up to now), ``window`` (a duration, default 1h).
The answer streams JSON lines, one per series and window, like VictoriaMetrics'
``/api/v1/export``::

    {"metric":{"__name__":"up","job":"node"},"values":[1,0.5,"NaN"],"timestamps":[1700000000000,...]}

Timestamps are int ms; values are JSON numbers, except ``"NaN"``, ``"+Inf"`` and ``"-Inf"``.
The samples are the raw ones with ``start <= t <= end`` (both inclusive, not step-aligned);
Prometheus stale markers are left out, as in a range selector. A series matched by several
``match[]`` selectors comes once. An error after the answer has started (a window failing)
ends the stream with a line ``{"error": "..."}``.

Raw samples are read as a range selector ``{matchers}[<end - start + 1>ms]`` at ``end`` reads
them, straight from the same source the Prometheus API uses (every shard; its timeout and
partial-response warnings apply as there): the selector needs a matcher that does not match
the empty string, stale markers are dropped, series left empty are left out, and the query
limits (``max_samples``, ``max_series``) count what the source returned. A range selector has
no lookback, so none applies. :func:`read_raw` is that reader; remote read uses it too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import orjson
from flask import Blueprint, Response, stream_with_context

from filodb.errors import BadInputError, ExecutionError
from filodb.model.labels import Labels, Matcher
from filodb.model.timeparse import parse_duration_ms
from filodb.query.engine import TOO_MANY_SAMPLES, TOO_MANY_SERIES
from filodb.query.values import drop_stale
from filodb.web.params import arg, match_params, now_ms, time_param
from filodb.web.query_limits import dataset_limits
from filodb.web.services import services

log = logging.getLogger(__name__)
bp = Blueprint("export", __name__)
DEFAULT_WINDOW_MS = 3_600_000
MAX_WINDOWS = 1000  # 41 days at the default window; start=0 would be 490 000 fan-outs
_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def selector_text(matchers: Sequence[Matcher]) -> str:
    """A PromQL series selector for ``matchers`` (values escaped)."""
    return "{" + ",".join(str(m) for m in matchers) + "}"


def read_raw(dataset: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int
             ) -> tuple[list[tuple[Labels, np.ndarray, np.ndarray]], list[str]]:  # fmt: skip
    """Raw samples ``start_ms <= t <= end_ms`` of the series matching ``matchers``, sorted by
    labels, without stale markers; plus the source's warnings (shards that did not answer)."""
    if end_ms < start_ms:
        raise BadInputError("end timestamp must not be before start time")
    if all(m.matches_empty() for m in matchers):
        raise BadInputError(f"invalid selector {selector_text(matchers)}: "
                            "vector selector must contain at least one non-empty matcher")  # fmt: skip
    lim = dataset_limits(dataset)  # the dataset's per-query limits, else the config's
    max_samples, max_series = lim.max_samples or 2**62, lim.max_series_per_query or 2**62
    source = services().source(dataset, lim.query_timeout or services().cfg.query_timeout)
    block = source.select(list(matchers), start_ms, end_ms)
    if int(block.offsets[-1]) > max_samples:
        raise ExecutionError(TOO_MANY_SAMPLES)
    if len(block) > max_series:
        raise ExecutionError(TOO_MANY_SERIES.format(limit=max_series))
    block = drop_stale(block)
    series = [block.series(i) for i in range(len(block)) if block.offsets[i + 1] > block.offsets[i]]
    series.sort(key=lambda s: s[0])
    return series, list(getattr(source, "warnings", []))


def _json_values(vals: np.ndarray) -> bytes:
    if np.isfinite(vals).all():
        return orjson.dumps(vals, option=orjson.OPT_SERIALIZE_NUMPY)
    out: list[float | str] = vals.tolist()
    for i in np.flatnonzero(~np.isfinite(vals)).tolist():
        out[i] = _SPECIAL[repr(out[i])]
    return orjson.dumps(out)


def export_line(labels: Labels, ts: np.ndarray, vals: np.ndarray) -> bytes:
    """One JSON line (with its newline) of a series' samples."""
    return (b'{"metric":' + orjson.dumps(dict(labels)) + b',"values":' + _json_values(vals)
            + b',"timestamps":' + orjson.dumps(ts, option=orjson.OPT_SERIALIZE_NUMPY) + b"}\n")  # fmt: skip


def _window(dataset: str, sets: list[list[Matcher]], a: int, b: int) -> list[bytes]:
    seen: set[Labels] = set()
    lines = []
    for ms in sets:
        series, _ = read_raw(dataset, ms, a, b)
        for labels, ts, vals in series:
            if labels not in seen:
                seen.add(labels)
                lines.append(export_line(labels, ts, vals))
    return lines


@bp.route("/api/v1/export", methods=["GET", "POST"])
@bp.route("/promql/<dataset>/api/v1/export", methods=["GET", "POST"])
def export(dataset: str | None = None) -> Response:
    ds = dataset or services().cfg.dataset
    sets = match_params(required=True)
    end = time_param("end", now_ms())
    start = time_param("start", end - 3_600_000)
    raw_w = arg("window")
    window = parse_duration_ms(raw_w, "window") if raw_w else DEFAULT_WINDOW_MS
    if end < start:
        raise BadInputError("end timestamp must not be before start time")
    if window <= 0:
        raise BadInputError('invalid parameter "window": must be positive')
    if (end - start) // window + 1 > MAX_WINDOWS:  # each window is a fan-out, even when empty
        raise BadInputError(f"the range asks for {(end - start) // window + 1} windows, more than "
                            f"{MAX_WINDOWS}: narrow start/end or make the window (?window=) longer")  # fmt: skip
    bounds = [(a, min(end, a + window - 1)) for a in range(start, end + 1, window)]
    first = _window(ds, sets, *bounds[0])  # errors here still get a proper status code

    def stream() -> Iterator[bytes]:
        yield from first
        for a, b in bounds[1:]:
            try:
                lines = _window(ds, sets, a, b)
            except Exception as e:  # the status line is gone: say it in the stream
                log.warning("export window %d-%d failed: %s", a, b, e)
                yield orjson.dumps({"error": f"{type(e).__name__}: {e}"}) + b"\n"
                return
            yield from lines

    return Response(stream_with_context(stream()), mimetype="application/x-ndjson")
