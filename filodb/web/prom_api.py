"""Prometheus HTTP API (query side), at ``/api/v1/...`` (default dataset) and
``/promql/<dataset>/api/v1/...``. Same parameters, JSON shapes, errors and status codes as
Prometheus; answers missing a shard carry a ``warnings`` entry (``partial_response=false``
turns that into a 503 instead). Range queries go through the results cache
(:mod:`filodb.web.results_cache`) unless ``cache=false``. Over a dataset with downsample levels
both go through the long-time-range planner (:mod:`filodb.web.downsampled`).
"""

from __future__ import annotations

import io
import re
from typing import Any

import orjson
from flask import Blueprint, Response, request

import filodb
from filodb.errors import BadInputError, ParseError
from filodb.model.limits import DatasetLimits
from filodb.model.timeparse import MAX_TIME_MS, MIN_TIME_MS, parse_duration_ms
from filodb.query.distributed import DistributedEngine
from filodb.query.parser import parse
from filodb.query.result import Result
from filodb.tasks.fanout import ClusterSource
from filodb.web import downsampled
from filodb.web.params import arg, match_params, now_ms, prom_routes, time_param
from filodb.web.query_limits import dataset_limits, limit_concurrency
from filodb.web.services import services

bp = Blueprint("prom_api", __name__)
MAX_POINTS = 11_000


_routes = prom_routes(bp, ("GET", "POST"))


def _success(data: Any, warnings: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    return Response(orjson.dumps(body), mimetype="application/json")


def _success_result(res: Result, warnings: list[str], infos: list[str] | None = None) -> Response:
    """A query answer; its data is written by :meth:`Result.to_prom_json_bytes`."""
    tail = b""
    if warnings:
        tail += b',"warnings":' + orjson.dumps(warnings)
    if infos:
        tail += b',"infos":' + orjson.dumps(infos)
    body = res.to_prom_json_bytes(b'{"status":"success","data":', tail + b"}")
    return json_body(body)


SPOOLED_BYTES = 1 << 20  # past this an answer goes out through the server's file wrapper


def json_body(body: bytes) -> Response:
    """``body`` as the answer. A large one goes out through the server's ``wsgi.file_wrapper``
    over the bytes themselves, which the server sends from them (``web/wsgi_server.py``; under
    waitress, the server before it, this avoided a copy into its output buffer, which spooled
    past 1 MB to a temporary file and read it back: a 60 MB answer's largest cost)."""
    wrapper = request.environ.get("wsgi.file_wrapper")
    if len(body) <= SPOOLED_BYTES or wrapper is None:
        return Response(body, mimetype="application/json")
    resp = Response(wrapper(io.BytesIO(body)), mimetype="application/json",
                    direct_passthrough=True)  # fmt: skip
    resp.content_length = len(body)
    return resp


def _dataset(dataset: str | None) -> str:
    return dataset or services().cfg.dataset


def _timeout_s(lim: DatasetLimits | None = None) -> float:
    """The query's timeout: ``?timeout=`` up to the dataset's ``query_timeout``."""
    raw = arg("timeout")
    cfg_timeout = (lim and lim.query_timeout) or services().cfg.query_timeout
    if raw:
        return min(parse_duration_ms(raw, "timeout") / 1000, cfg_timeout)
    return cfg_timeout


def _strict() -> bool:
    return not _flag("partial_response", True)


def _query_text() -> str:
    q = arg("query")
    if q is None or not q.strip():
        raise BadInputError('invalid parameter "query": parse error: no expression found in input')
    return q


def _engine(dataset: str | None, lookback_ms: int = 0) -> tuple[DistributedEngine, ClusterSource]:
    cfg = services().cfg
    lim = dataset_limits(_dataset(dataset))
    timeout = _timeout_s(lim)
    source = services().source(_dataset(dataset), timeout, _strict())
    eng = DistributedEngine(source, lookback_ms=lookback_ms or cfg.lookback_ms,
                 max_samples=int(lim.max_samples or 2**62), timeout_s=timeout,
                 max_series=int(lim.max_series_per_query or 2**62))  # fmt: skip
    return eng, source


def _with_param(e: ParseError) -> BadInputError:
    return BadInputError(f'invalid parameter "query": {e}')


@_routes("/query")
@limit_concurrency(_timeout_s)
def query(dataset: str | None = None) -> Response:
    q = _query_text()
    t = time_param("time", now_ms())
    try:
        expr = parse(q)
        long_range = downsampled.query_instant(_dataset(dataset), expr, t, now_ms(), _engine)
        if long_range is None:
            eng, source = _engine(dataset)
            res = eng.instant(expr, t)
    except ParseError as e:
        raise _with_param(e) from e
    if long_range is not None:  # the dataset has downsample levels
        return _answered_by(*long_range)
    return _success_result(res, [*source.warnings, *res.warnings])


def _answered_by(res: Result, tiers: str) -> Response:
    """An answer of :mod:`filodb.web.downsampled`, saying which resolutions answered."""
    resp = _success_result(res, res.warnings, res.infos)
    resp.headers["X-Filodb-Resolution"] = tiers
    return resp


@_routes("/query_range")
@limit_concurrency(_timeout_s)
def query_range(dataset: str | None = None) -> Response:
    q = _query_text()
    start = time_param("start", None)
    end = time_param("end", None)
    raw_step = arg("step")
    if not raw_step:
        raise BadInputError('invalid parameter "step": cannot parse "" to a valid duration')
    step = parse_duration_ms(raw_step, "step")
    if end < start:
        raise BadInputError("end timestamp must not be before start time")
    if step <= 0:
        raise BadInputError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    if (end - start) // step > MAX_POINTS:
        raise BadInputError(
            "exceeded maximum resolution of 11,000 points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )
    svc = services()
    cache = svc.results_cache if _flag("cache", True) else None
    try:
        expr = parse(q)
        long_range = downsampled.query_range(
            _dataset(dataset), expr, start, end, step, now_ms(), _engine, cache
        )
    except ParseError as e:
        raise _with_param(e) from e
    if long_range is not None:  # the dataset has downsample levels
        return _answered_by(*long_range)
    svc.router.dataset(_dataset(dataset))  # an unknown dataset is an error, cached or not
    _timeout_s()  # and so is a bad timeout=

    def compute(lo: int, hi: int) -> tuple[Result, bool]:
        eng, source = _engine(dataset)
        res = eng.range(expr, lo, hi, step)
        res.warnings = [*source.warnings, *res.warnings]
        return res, not res.warnings

    if not _flag("cache", True):
        res = compute(start, end)[0]
    else:
        res = svc.results_cache.range(_dataset(dataset), expr, start, end, step,
                                      svc.cfg.lookback_ms, compute)  # fmt: skip
    return _success_result(res, res.warnings)


def _flag(name: str, default: bool) -> bool:
    raw = arg(name)
    if not raw:
        return default
    return raw.lower() not in ("false", "0", "no")


def _range() -> tuple[int, int]:
    return time_param("start", MIN_TIME_MS), time_param("end", MAX_TIME_MS)


def _limit() -> int:
    """``limit=`` of /series, /labels, /label/<n>/values: a non-negative integer, 0 (or absent)
    for none; anything else is a 400 worded as Prometheus words it."""
    raw = arg("limit") or ""
    if not raw:
        return 0
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise BadInputError(
            f'invalid parameter "limit": strconv.Atoi: parsing {orjson.dumps(raw).decode()}: invalid syntax'
        )
    if not -(2**63) <= int(raw) < 2**63:  # Go's int: Atoi refuses the rest
        raise BadInputError(
            f'invalid parameter "limit": strconv.Atoi: parsing {orjson.dumps(raw).decode()}: value out of range'
        )
    if int(raw) < 0:
        raise BadInputError('invalid parameter "limit": limit must be non-negative')
    return int(raw)


def _truncated(source: ClusterSource, items: list, limit: int) -> tuple[list, list[str]]:
    """At most ``limit`` items (0: all; the shards cut their answers already), and
    Prometheus's warning when some were dropped."""
    warnings = list(source.warnings)
    if source.truncated or 0 < limit < len(items):
        return items[:limit], [*warnings, "results truncated due to limit"]
    return items, warnings


@_routes("/series")
def series(dataset: str | None = None) -> Response:
    sets = match_params(required=True)
    limit = _limit()
    start, end = _range()
    source = services().source(_dataset(dataset), _timeout_s(dataset_limits(_dataset(dataset))),
                               _strict())  # fmt: skip
    found = set()
    for matchers in sets:
        found.update(source.series(matchers, start, end, limit))
    out, warnings = _truncated(source, sorted(found), limit)
    return _success([dict(lb) for lb in out], warnings)


@_routes("/labels")
def labels(dataset: str | None = None) -> Response:
    limit = _limit()
    sets = match_params(required=False) or [[]]
    start, end = _range()
    source = services().source(_dataset(dataset), _timeout_s(dataset_limits(_dataset(dataset))),
                               _strict())  # fmt: skip
    names = set()
    for matchers in sets:
        names.update(source.label_names(matchers, start, end, limit))
    return _success(*_truncated(source, sorted(names), limit))


@_routes("/label/<name>/values")
def label_values(name: str, dataset: str | None = None) -> Response:
    limit = _limit()
    sets = match_params(required=False) or [[]]
    start, end = _range()
    source = services().source(_dataset(dataset), _timeout_s(dataset_limits(_dataset(dataset))),
                               _strict())  # fmt: skip
    vals = set()
    for matchers in sets:
        vals.update(source.label_values(name, matchers, start, end, limit))
    return _success(*_truncated(source, sorted(vals), limit))


@_routes("/status/buildinfo", methods=("GET",))
def buildinfo(dataset: str | None = None) -> Response:
    return _success({
        "version": filodb.__version__, "revision": "", "branch": "main",
        "buildUser": "filodb-py", "buildDate": "", "goVersion": "python",
    })  # fmt: skip
