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

from filodb.errors import AuthError, FiloError, RateLimitedError

log = logging.getLogger(__name__)
CHALLENGE = 'Bearer realm="filodb"'  # not Basic: a browser would pop up its own dialog
# Redis error codes of a server that is there but cannot take a write now (MISCONF: its AOF
# cannot be written, e.g. a full disk): the client should retry, as after a lost connection.
_CANNOT_WRITE_NOW = ("MISCONF", "OOM ", "LOADING", "READONLY", "BUSY ", "MASTERDOWN", "TRYAGAIN")


def error_response(error_type: str, message: str, status: int):
    resp = jsonify({"status": "error", "errorType": error_type, "error": message})
    resp.status_code = status
    return resp


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(FiloError)
    def _filo(e: FiloError):
        resp = error_response(e.error_type, str(e), e.http_status)
        if isinstance(e, AuthError):
            resp.headers["WWW-Authenticate"] = CHALLENGE
        if isinstance(e, RateLimitedError):
            resp.headers["Retry-After"] = str(max(1, math.ceil(e.retry_after_s)))
        return resp

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        kind = "bad_data" if (e.code or 500) < 500 else "internal"
        if e.code == 404:
            kind = "not_found"
        return error_response(kind, e.description or e.name, e.code or 500)

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    @app.errorhandler(kombu.exceptions.OperationalError)
    def _unavailable(e: Exception):
        log.warning("backend unavailable: %s", e)
        return error_response("unavailable", f"cluster state or log unavailable, retry: {e}", 503)

    @app.errorhandler(redis.exceptions.ResponseError)
    def _refused(e: Exception):
        if any(tag in str(e) for tag in _CANNOT_WRITE_NOW):  # e.g. its disk is full: retry
            log.warning("backend refuses writes: %s", e)
            return error_response("unavailable", f"log cannot take writes now, retry: {e}", 503)
        return _other(e)

    @app.errorhandler(Exception)
    def _other(e: Exception):
        log.exception("unhandled error")
        return error_response("internal", f"{type(e).__name__}: {e}", 500)
