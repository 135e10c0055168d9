"""One error handler: every error becomes Prometheus's JSON error shape.

``{"status": "error", "errorType": "...", "error": "..."}`` with the class's HTTP status
(400 bad_data, 422 execution, 503 timeout/unavailable, 404 not_found, 413 too large,
401 unauthorized with ``WWW-Authenticate``, 403 forbidden, 429 with ``Retry-After``).
"""

from __future__ import annotations

import logging
import math

import kombu.exceptions
import redis.exceptions
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from filodb.errors import AuthError, FiloError, LogFullError, RateLimitedError

log = logging.getLogger(__name__)
CHALLENGE = 'Bearer realm="filodb"'  # not Basic: a browser would pop up its own dialog
# Redis error codes of a server that is there but cannot take a write now (MISCONF: its AOF
# cannot be written, e.g. a full disk): the client should retry, as after a lost connection.
_CANNOT_WRITE_NOW = ("MISCONF", "OOM ", "LOADING", "READONLY", "BUSY ", "MASTERDOWN", "TRYAGAIN")


def error_response(error_type: str, message: str, status: int):
    resp = jsonify({"status": "error", "errorType": error_type, "error": message})
    resp.status_code = status
    return resp


def error_parts(e: BaseException) -> tuple[str, str, int, dict[str, str]]:
    """What an error answers: (errorType, message, HTTP status, extra headers). The one
    mapping of errors to answers, for the Flask handlers and the lean ingestion path
    (:mod:`filodb.web.ingest_wsgi`); logs what it maps to 5xx."""
    if isinstance(e, FiloError):
        headers = {}
        if isinstance(e, AuthError):
            headers["WWW-Authenticate"] = CHALLENGE
        if isinstance(e, (RateLimitedError, LogFullError)):
            headers["Retry-After"] = str(max(1, math.ceil(e.retry_after_s)))
        return e.error_type, str(e), e.http_status, headers
    if isinstance(e, HTTPException):
        kind = "bad_data" if (e.code or 500) < 500 else "internal"
        if e.code == 404:
            kind = "not_found"
        return kind, e.description or e.name, e.code or 500, {}
    if isinstance(e, _UNAVAILABLE):
        log.warning("backend unavailable: %s", e)
        return "unavailable", f"cluster state or log unavailable, retry: {e}", 503, {}
    if isinstance(e, redis.exceptions.ResponseError) and any(
        tag in str(e) for tag in _CANNOT_WRITE_NOW
    ):  # e.g. its disk is full: retry
        log.warning("backend refuses writes: %s", e)
        return "unavailable", f"log cannot take writes now, retry: {e}", 503, {}
    log.exception("unhandled error", exc_info=e)
    return "internal", f"{type(e).__name__}: {e}", 500, {}


_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                kombu.exceptions.OperationalError)  # fmt: skip


def register_error_handlers(app: Flask) -> None:
    """Every error class below answers through :func:`error_parts` (Flask picks the handler
    of the most specific class)."""

    def _answer(e: Exception):
        kind, message, status, headers = error_parts(e)
        resp = error_response(kind, message, status)
        resp.headers.update(headers)
        return resp

    for cls in (FiloError, HTTPException, *_UNAVAILABLE, redis.exceptions.ResponseError,
                Exception):  # fmt: skip
        app.register_error_handler(cls, _answer)
