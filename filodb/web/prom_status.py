"""The rest of the Prometheus HTTP API that Grafana and Prometheus tooling call, in Prometheus 3's
shapes (``web/api/v1/api.go``), at ``/api/v1/...`` and ``/promql/<dataset>/api/v1/...``:

- ``format_query`` (Prometheus's ``Pretty(0)``, :mod:`filodb.query.prettier`) and
  ``parse_query`` (its AST JSON, :mod:`filodb.query.astjson`), GET and POST;
- ``status/config`` (the effective config as YAML, secrets shown as ``<secret>``),
  ``status/flags``, ``status/runtimeinfo``;
- empty but valid answers where this project has nothing yet, with Prometheus's validation of
  the parameters: ``targets``, ``targets/metadata``, ``alertmanagers`` (this is not a scraper);
- ``query_exemplars``: the exemplars kept by the shards (remote write's, in a bounded ring per
  shard, :mod:`filodb.memstore.exemplars`) of the series the query's selectors match (204
  for a query without one, as Prometheus);
- ``status/tsdb``: the dataset's cardinality in Prometheus's shape (``headStats`` and the
  top-``limit`` lists, default 10), from every shard's index through the ``tsdb_status`` leaf
  op (:mod:`filodb.model.cardinality`); a shard that cannot answer is a ``warnings`` entry;
- ``rules`` and ``alerts``: the state the rule evaluator publishes in Redis
  (:mod:`filodb.rules.state`), with ``type``, ``rule_name[]``, ``rule_group[]``, ``file[]``,
  ``exclude_alerts`` and ``group_limit``/``group_next_token`` as Prometheus 3 takes them;
  ``POST /-/reload`` asks the evaluator to reload its rule files (400 with the reason when a
  file does not parse: the old rules keep running; 404 when no evaluator runs);
- ``/-/healthy`` (the web process is up) and ``/-/ready`` (every shard of every dataset is
  Active, as ``/admin/health``), GET and HEAD.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from flask import Blueprint, Response

from filodb.config import Config
from filodb.errors import BadInputError, ParseError
from filodb.model.cardinality import DEFAULT_LIMIT
from filodb.model.numfmt import format_rfc3339, format_value
from filodb.model.timeparse import MAX_TIME_MS, MIN_TIME_MS
from filodb.query import ast
from filodb.query.astjson import ast_json
from filodb.query.parser import parse, selector_matchers
from filodb.query.prettier import pretty, prom_duration
from filodb.web.params import arg, args, match_params, prom_routes, time_param
from filodb.web.services import services

bp = Blueprint("prom_status", __name__)
STARTED = time.time()
SECRET = "<secret>"
_SECRET_FIELDS = re.compile(r"token|password|secret", re.I)


_routes = prom_routes(bp, ("GET",))


def _success(data: Any) -> Response:
    return Response(orjson.dumps({"status": "success", "data": data}),
                    mimetype="application/json")  # fmt: skip


def _invalid(param: str, msg: str) -> BadInputError:
    return BadInputError(f'invalid parameter "{param}": {msg}')


def _parsed_query() -> ast.Expr:
    try:
        return parse(arg("query") or "")
    except ParseError as e:
        raise _invalid("query", str(e)) from e


# --- format_query, parse_query --------------------------------------------------------------
@_routes("/format_query", ("GET", "POST"))
def format_query(dataset: str | None = None) -> Response:
    return _success(pretty(_parsed_query()))


@_routes("/parse_query", ("GET", "POST"))
def parse_query(dataset: str | None = None) -> Response:
    return _success(ast_json(_parsed_query()))


# --- status ---------------------------------------------------------------------------------
def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    netloc = f"{user}{SECRET}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redacted(cfg: Config) -> dict[str, Any]:
    """The config's settings with secrets replaced by ``<secret>`` (a token, a password in a
    URL), as Prometheus shows its config."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if _SECRET_FIELDS.search(f.name) and v:
            v = SECRET
        elif isinstance(v, str) and "://" in v:
            v = _redact_url(v)
        out[f.name] = v
    return out


@_routes("/status/config")
def status_config(dataset: str | None = None) -> Response:
    # one flat mapping of scalars: JSON scalars are YAML scalars (strings double-quoted)
    text = "".join(
        f"{k}: {orjson.dumps(v).decode()}\n" for k, v in redacted(services().cfg).items()
    )
    return _success({"yaml": text})


@_routes("/status/flags")
def status_flags(dataset: str | None = None) -> Response:
    flags = {k.replace("_", "-"): v for k, v in redacted(services().cfg).items()}
    return _success({k: v if isinstance(v, str) else orjson.dumps(v).decode()
                     for k, v in flags.items()})  # fmt: skip


def _rfc3339(t: float) -> str:
    return format_rfc3339(int(t * 1000))


@_routes("/status/runtimeinfo")
def status_runtimeinfo(dataset: str | None = None) -> Response:
    cfg = services().cfg
    retention = prom_duration(int(cfg.retention * 1000)) if cfg.retention else "0s"
    return _success({
        "startTime": _rfc3339(STARTED), "CWD": os.getcwd(), "hostname": socket.gethostname(),
        "serverTime": _rfc3339(time.time()), "reloadConfigSuccess": True,
        "lastConfigTime": _rfc3339(STARTED), "corruptionCount": 0,
        "goroutineCount": threading.active_count(), "GOMAXPROCS": os.cpu_count() or 1,
        "GOMEMLIMIT": 0, "GOGC": "", "GODEBUG": "", "storageRetention": retention,
    })  # fmt: skip


# --- targets, alertmanagers: this is not a scraper ------------------------------------------
@_routes("/targets")
def targets(dataset: str | None = None) -> Response:
    return _success({"activeTargets": [], "droppedTargets": [], "droppedTargetCounts": {}})


def _number_or_400(name: str) -> int:
    raw = arg(name)
    if raw is None or raw == "":
        return -1
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise BadInputError(f"{name} must be a number")
    return int(raw)


@_routes("/status/tsdb")
def status_tsdb(dataset: str | None = None) -> Response:
    raw = arg("limit")
    limit = DEFAULT_LIMIT
    if raw:
        if not re.fullmatch(r"\+?\d+", raw.strip()) or int(raw) < 1:
            raise BadInputError("limit must be a positive number")
        limit = int(raw)
    svc = services()
    source = svc.source(dataset or svc.cfg.dataset, svc.cfg.query_timeout, False)
    body: dict[str, Any] = {"status": "success", "data": source.cardinality().to_prom(limit)}
    if source.warnings:
        body["warnings"] = source.warnings
    return Response(orjson.dumps(body), mimetype="application/json")


@_routes("/targets/metadata")
def targets_metadata(dataset: str | None = None) -> Response:
    _number_or_400("limit")
    match_target = arg("match_target")
    if match_target:
        try:
            selector_matchers(match_target)
        except ParseError as e:
            raise _invalid("match_target", str(e)) from e
    return _success([])


@_routes("/alertmanagers")
def alertmanagers(dataset: str | None = None) -> Response:
    return _success({"activeAlertmanagers": [], "droppedAlertmanagers": []})


# --- rules, alerts: as the rule evaluator published them -----------------------------------
def _group_token(g: dict[str, Any]) -> str:
    return hashlib.sha1(f"{g['file']};{g['name']}".encode()).hexdigest()


def _bool_arg(name: str) -> bool:
    raw = (arg(name) or "").lower()
    if raw and raw not in ("1", "t", "true", "0", "f", "false"):
        raise _invalid(name, f"error converting {name}: strconv.ParseBool: "
                       f'parsing "{raw}": invalid syntax')  # fmt: skip
    return raw in ("1", "t", "true")


@_routes("/rules")
def rules(dataset: str | None = None) -> Response:
    match_params(required=False)
    typ = (arg("type") or "").lower()
    if typ not in ("", "alert", "record"):
        raise _invalid("type", f'not supported value "{typ}"')
    exclude_alerts = _bool_arg("exclude_alerts")
    group_limit, token = arg("group_limit") or "", arg("group_next_token") or ""
    if token and not group_limit:
        raise _invalid("group_next_token",
                       "group_limit needs to be present in order to paginate over the groups")  # fmt: skip
    limit = 0
    if group_limit:
        if not re.fullmatch(r"[+-]?\d+", group_limit):
            raise _invalid("group_limit", "group_limit needs to be a valid number: "
                           f'strconv.ParseInt: parsing "{group_limit}": invalid syntax')  # fmt: skip
        limit = int(group_limit)
        if limit <= 0:
            raise _invalid("group_limit", "group_limit needs to be greater than 0")
    names, groups_wanted, files = (set(args(k)) for k in ("rule_name[]", "rule_group[]", "file[]"))
    kind = {"alert": "alerting", "record": "recording"}.get(typ)
    out = []
    for g in services().rule_state().groups():
        if (groups_wanted and g["name"] not in groups_wanted) or (files and g["file"] not in files):
            continue
        rs = [r for r in g["rules"] if (not kind or r["type"] == kind)
              and (not names or r["name"] in names)]  # fmt: skip
        if exclude_alerts:
            rs = [{k: v for k, v in r.items() if k != "alerts"} for r in rs]
        if rs or not (kind or names):
            out.append({**g, "rules": rs})
    if token:
        at = next((i for i, g in enumerate(out) if _group_token(g) == token), None)
        if at is None:
            raise _invalid("group_next_token",
                           f"invalid group_next_token '{token}'. were rule groups changed?")  # fmt: skip
        out = out[at:]
    data: dict[str, Any] = {"groups": out}
    if limit:
        data = {"groups": out[:limit]}
        if len(out) > limit:
            data["groupNextToken"] = _group_token(out[limit])
    return _success(data)


@_routes("/alerts")
def alerts(dataset: str | None = None) -> Response:
    return _success({"alerts": services().rule_state().alerts()})


@bp.route("/-/reload", methods=["POST", "PUT"])
def reload() -> Response:
    services().rule_state().request_reload()
    return _text("")


# --- exemplars ------------------------------------------------------------------------------
@_routes("/query_exemplars", ("GET", "POST"))
def query_exemplars(dataset: str | None = None) -> Response:
    """Exemplars of the series the query's selectors match, in ``[start, end]``, from the
    shards' exemplar rings (the ``exemplars`` leaf op). A query without a selector answers
    204 with no body, as Prometheus does (its handler returns no data)."""
    start = time_param("start", MIN_TIME_MS)
    end = time_param("end", MAX_TIME_MS)
    if end < start:
        raise BadInputError("end timestamp must not be before start timestamp")
    try:
        expr = parse(arg("query") or "")
    except ParseError as e:
        raise BadInputError(str(e)) from e
    sels = _selectors(expr)
    if not sels:
        return Response(status=204)
    svc = services()
    source = svc.source(dataset or svc.cfg.dataset, svc.cfg.query_timeout, False)
    found: dict[tuple, list] = {}
    for matchers in dict.fromkeys(sels):  # each matcher set once; a series once
        for lb, exs in source.exemplars(list(matchers), start, end):
            found[lb] = exs
    data = [{"seriesLabels": dict(lb),
             "exemplars": [{"labels": dict(el), "value": format_value(v), "timestamp": t / 1000}
                           for el, v, t in found[lb]]}
            for lb in sorted(found)]  # fmt: skip
    body: dict[str, Any] = {"status": "success", "data": data}
    if source.warnings:
        body["warnings"] = source.warnings
    return Response(orjson.dumps(body), mimetype="application/json")


def _selectors(e: object) -> list[tuple]:
    """The matchers of every vector selector of a tree."""
    if isinstance(e, ast.VectorSelector):
        return [tuple(e.matchers)]
    if dataclasses.is_dataclass(e):
        return [m for f in dataclasses.fields(e) for m in _selectors(getattr(e, f.name))]
    if isinstance(e, tuple | list):
        return [m for x in e for m in _selectors(x)]
    return []


# --- probes ---------------------------------------------------------------------------------
def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@bp.route("/-/healthy", methods=["GET", "HEAD"])
def healthy() -> Response:
    return _text("FiloDB Server is Healthy.\n")


@bp.route("/-/ready", methods=["GET", "HEAD"])
def ready() -> Response:
    from filodb.web.admin import cluster_health

    ok, _ = cluster_health()
    return _text("FiloDB Server is Ready.\n") if ok else _text("Service Unavailable\n", 503)
