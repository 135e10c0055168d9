"""The lean path of the ingestion routes: a WSGI dispatcher in front of the Flask app.

A remote-write or Influx body is the web tier's busiest request (hundreds a second under a
live load) and its cheapest to answer: decode, write, 204. Flask's request machinery (request
context, URL adapter, before/after hooks, response object) cost about a tenth of the web
process's time per body, so :class:`LeanIngest` answers ``POST`` on the ingestion routes
itself and hands every other request to Flask untouched.

It keeps what those routes do under Flask, through the same code: who may call them is
:data:`filodb.web.auth.RULES`'s rule of the route's endpoint, decided by
:func:`filodb.web.auth.check`; the query string is parsed as werkzeug parses it
(:func:`query_args`), the body read whole in one call when its length is known
(:func:`filodb.web.ingest.read_body`: 413 past ``max_body_bytes``) and by werkzeug's request
otherwise (chunked bodies), with no request object built on the common path; the work is
:mod:`filodb.web.ingest`'s; errors answer
:func:`filodb.web.errors.error_parts`'s JSON shape, status and headers; every answer is
counted in ``filodb_http_requests{route,method,code}`` under the Flask rule's name. A path
that is not exactly one of :data:`ROUTES` (a trailing slash, ``//``, another method) goes
to Flask, which answers it as before. :func:`wrap` checks at start that Flask routes each of
these paths to the same endpoint, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from filodb.config import Config
from filodb.errors import BadInputError
from filodb.gateway.joiner import Steps, run_steps
from filodb.ingest.base import Log, Sent
from filodb.web import auth, ingest
from filodb.web.errors import error_parts
from filodb.web.metrics import EXTENSION as METRICS
from filodb.web.metrics import WebMetrics

StartResponse = Callable[..., Any]

# Flask rule -> its endpoint, for the routes answered here
ROUTES = {
    "/api/v1/write": "ingest.remote_write",
    "/promql/<dataset>/api/v1/write": "ingest.remote_write",
    "/influx/<dataset>/write": "ingest.influx_write",
    "/write": "ingest.influx_v1_write",
    "/api/v2/write": "ingest.influx_v2_write",
}
_NO_CONTENT = (
    "204 " + HTTP_STATUS_CODES[204].upper(),
    [("Content-Type", "text/html; charset=utf-8")],
)  # as Flask answers it


def match(path: str) -> tuple[str, str | None] | None:
    """The Flask rule ``path`` matches among :data:`ROUTES` and its ``<dataset>``, or None."""
    if path in ROUTES:
        return path, None
    parts = path.split("/")
    if (
        len(parts) == 6
        and parts[1] == "promql"
        and parts[2]
        and parts[3:] == ["api", "v1", "write"]
    ):
        return "/promql/<dataset>/api/v1/write", parts[2]
    if len(parts) == 4 and parts[1] == "influx" and parts[2] and parts[3] == "write":
        return "/influx/<dataset>/write", parts[2]
    return None


def loop_route(method: str, path: str) -> bool:
    """Whether a request is one of the lean routes (the web server's ingestion loop serves
    the connections that send them: :mod:`filodb.web.ingest_loop`)."""
    return method == "POST" and match(path) is not None


class LeanIngest:
    """WSGI app: the ingestion routes answered here, everything else by ``flask_wsgi``."""

    def __init__(self, app: Flask, flask_wsgi: Callable[..., Any], cfg: Config) -> None:
        self.flask_wsgi = flask_wsgi
        self.cfg = cfg
        self.doors = app.extensions[ingest.EXTENSION]
        self.auth: auth.AuthState = app.extensions[auth.EXTENSION]
        self.metrics: WebMetrics | None = app.extensions.get(METRICS)
        services = app.extensions.get("filodb")
        self.log: Log | None = getattr(services, "ingest_log", None)

    def send_appends(self) -> Sent | None:
        """The log's appends the steps began, sent in one call without waiting for its reply
        (:meth:`~filodb.ingest.base.Log.send_appends`; the web server's ingestion loop)."""
        return self.log.send_appends() if self.log is not None else None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        hit = _lean(environ)
        if hit is None:
            return self.flask_wsgi(environ, start_response)
        status, headers, body = run_steps(self._steps(environ, *hit))
        start_response(status, headers)
        return [body] if body else []

    def steps(self, environ: dict[str, Any]) -> Steps[tuple[str, list[tuple[str, str]], bytes]]:
        """The answer to ``environ`` (status, headers, body), as :meth:`__call__` gives it,
        yielding where a lean route waits for the log's append (the web server's ingestion
        loop runs several requests' steps at once: their appends are one)."""
        hit = _lean(environ)
        if hit is None:  # not a lean route: Flask's answer, whole
            got: list[Any] = []
            parts: list[bytes] = []

            def start(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
                got[:] = [status, headers]
                return parts.append  # WSGI's legacy write()

            result = self.flask_wsgi(environ, start)
            try:
                parts.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            return got[0], got[1], b"".join(parts)
        return (yield from self._steps(environ, *hit))

    def _steps(self, environ: dict[str, Any], rule: str, dataset: str | None
               ) -> Steps[tuple[str, list[tuple[str, str]], bytes]]:  # fmt: skip
        try:
            yield from self._serve(environ, ROUTES[rule], dataset)
            status, headers, body = *_NO_CONTENT, b""
        except Exception as e:  # noqa: BLE001 - every error answers its JSON shape, as in Flask
            kind, message, code, extra = error_parts(e)
            body = json.dumps({"status": "error", "errorType": kind, "error": message},
                              separators=(",", ":")).encode() + b"\n"  # fmt: skip
            status = f"{code} {HTTP_STATUS_CODES.get(code, 'UNKNOWN').upper()}"
            headers = [("Content-Type", "application/json"),
                       ("Content-Length", str(len(body))), *extra.items()]  # fmt: skip
        if self.metrics is not None:
            self.metrics.answered(rule, "POST", int(status[:3]), None, None)
        return status, list(headers), body

    def _serve(self, env: dict[str, Any], endpoint: str, dataset: str | None) -> Steps[None]:
        """Check the caller, read the body, write it (raises what Flask's view would)."""
        rule = auth.RULES[endpoint]
        args = query_args(env)
        if dataset is None and rule.dataset_arg:
            dataset = args.get(rule.dataset_arg) or None
        auth.check(self.auth, rule, lambda: env.get("HTTP_AUTHORIZATION"), lambda: dataset)
        limit = self.cfg.max_body_bytes
        body = ingest.read_body(env, limit)
        dataset = dataset or self.cfg.dataset
        if endpoint == "ingest.remote_write":
            yield from ingest.write_remote_steps(self.doors["remote_write"], body, dataset, limit)
            return
        precision = ingest.influx_precision(args.get("precision"))
        yield from ingest.write_influx_steps(self.doors["influx_http"], body,
                                             env.get("HTTP_CONTENT_ENCODING"), precision, dataset,
                                             limit)  # fmt: skip


def _lean(environ: dict[str, Any]) -> tuple[str, str | None] | None:
    """The lean rule and ``<dataset>`` of a request, or None (Flask answers it)."""
    if environ.get("REQUEST_METHOD") != "POST":
        return None
    try:  # as werkzeug decodes it: WSGI's latin-1 string holds the path's UTF-8 bytes
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    except UnicodeError:
        return None
    return match(path)


def query_args(env: dict[str, Any]) -> dict[str, str]:
    """The query string's parameters, the first value of each, as werkzeug's ``request.args``
    parses them (UTF-8; invalid bytes stay percent-encoded; blank values kept), without
    building a request (its object, headers view and multi-dict cost ~50 us a body)."""
    qs = env.get("QUERY_STRING", "")
    if not qs:
        return {}
    try:
        text = qs.encode("latin-1").decode()
    except UnicodeError:
        raise BadInputError("the query string is not UTF-8") from None
    out: dict[str, str] = {}
    for k, v in parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"):
        out.setdefault(k, v)
    return out


def wrap(app: Flask, cfg: Config) -> None:
    """Put :class:`LeanIngest` in front of ``app``'s WSGI app (after every blueprint and
    extension is set up); raises when Flask would route one of :data:`ROUTES` elsewhere."""
    have = {(r.rule, r.endpoint) for r in app.url_map.iter_rules() if "POST" in (r.methods or ())}
    missing = sorted(set(ROUTES.items()) - have)
    if missing:
        raise RuntimeError(f"lean ingestion routes Flask does not serve: {missing}")
    app.wsgi_app = LeanIngest(app, app.wsgi_app, cfg)  # type: ignore[method-assign]
