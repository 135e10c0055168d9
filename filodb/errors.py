"""One error hierarchy for the whole project.

Every class carries ``error_type`` (Prometheus's ``errorType`` string) and ``http_status``.
The web tier registers one handler for :class:`FiloError`; the CLI maps the same classes
to exit code 2 (bad input) or 1 (server side / unreachable).
"""

from __future__ import annotations


class FiloError(Exception):
    """Root of every error this project raises on purpose."""

    error_type = "internal"
    http_status = 500


class BadInputError(FiloError, ValueError):
    """The caller sent something malformed (HTTP 400, CLI exit 2)."""

    error_type = "bad_data"
    http_status = 400


class ParseError(BadInputError):
    """A PromQL text that does not parse; carries the 0-based character position and the query."""

    def __init__(self, message: str, position: int | None = None, query: str | None = None):
        self.message = message
        self.position = position
        self.query = query
        if position is None:
            super().__init__(f"parse error: {message}")
        else:
            super().__init__(f"parse error at char {position + 1}: {message}")


class ErrPayloadTooLarge(BadInputError):
    """A request body beyond the configured limit."""

    http_status = 413


class ExecutionError(FiloError):
    """A query that parsed but cannot be evaluated (HTTP 422, like Prometheus)."""

    error_type = "execution"
    http_status = 422


class QueryTimeoutError(FiloError):
    """A query that ran past its deadline (HTTP 503, like Prometheus)."""

    error_type = "timeout"
    http_status = 503


class UnavailableError(FiloError):
    """A needed part of the cluster does not answer (HTTP 503)."""

    error_type = "unavailable"
    http_status = 503


class LogFullError(UnavailableError):
    """The embedded log holds more than its cap not yet flushed (HTTP 503 with ``Retry-After``:
    senders retry); nothing of the write was appended."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SamplesRefusedError(BadInputError):
    """A write of which some samples were refused and the others written (HTTP 400:
    Prometheus does not retry it); the message says how many of each."""


class LimitExceededError(SamplesRefusedError):
    """A write past a series limit of its dataset (HTTP 400: Prometheus does not retry it);
    the samples of known series were written, the message says how many were refused."""


class OutOfOrderError(SamplesRefusedError):
    """A write with samples older than their series' newest the door already wrote (beyond
    ``ooo_window``): those are refused, the others written (HTTP 400, as Prometheus answers
    ``out of order sample``)."""


class RateLimitedError(FiloError):
    """A write past its dataset's ingest rate (HTTP 429 with ``Retry-After``: senders retry)."""

    error_type = "unavailable"
    http_status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotFoundError(FiloError, LookupError):
    """A named thing (dataset, shard, node) that does not exist (HTTP 404)."""

    error_type = "not_found"
    http_status = 404


class UnknownDatasetError(NotFoundError):
    """A dataset name that is not in the cluster."""


class InvalidTransition(FiloError):
    """A shard status change that the lifecycle does not allow; carries the shard's history."""

    def __init__(self, message: str, history: list | None = None):
        self.history = list(history or [])
        super().__init__(f"{message} (history: {self.history})")


class FencedError(FiloError):
    """This node no longer owns the shard (the map or its ownership lease says so)."""

    error_type = "unavailable"
    http_status = 503


class AuthError(FiloError):
    """A request without credentials, or with a token nobody configured (HTTP 401)."""

    error_type = "unauthorized"
    http_status = 401


class ForbiddenError(FiloError):
    """A known token without the scope a route needs on its dataset (HTTP 403)."""

    error_type = "forbidden"
    http_status = 403
