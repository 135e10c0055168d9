"""Request parameters as Prometheus reads them: times, durations, match[] selectors."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

from flask import request

from filodb.errors import BadInputError, ParseError
from filodb.model.labels import Matcher

_DUR_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DUR_MS = (365 * 86400_000, 7 * 86400_000, 86400_000, 3600_000, 60_000, 1000, 1)
MIN_TIME_MS = -9_223_372_036_854_775 // 1000
MAX_TIME_MS = 9_223_372_036_854_775 // 1000


def arg(name: str) -> str | None:
    """A parameter from the query string or a form body (GET and POST alike)."""
    v = request.values.get(name)
    return v if v is not None else None


def args(name: str) -> list[str]:
    return request.values.getlist(name)


def _seconds_ms(raw: str) -> int | None:
    """``raw`` as finite float seconds, in ms; None when it is not such a number."""
    try:
        f = float(raw)
    except ValueError:
        return None
    return int(round(f * 1000)) if math.isfinite(f) else None


def parse_time_ms(raw: str, name: str) -> int:
    """Unix seconds (float) or RFC 3339, as Prometheus accepts; returns int ms."""
    if (ms := _seconds_ms(raw)) is not None:
        return ms
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return int(round(dt.timestamp() * 1000))
    except ValueError:
        raise BadInputError(f'invalid parameter "{name}": cannot parse "{raw}" to a valid timestamp') from None


def time_param(name: str, default_ms: int | None) -> int:
    raw = arg(name)
    if raw is None or raw == "":
        if default_ms is None:
            raise BadInputError(f'invalid parameter "{name}": cannot parse "" to a valid timestamp')
        return default_ms
    return parse_time_ms(raw, name)


def parse_duration_ms(raw: str, name: str) -> int:
    """Float seconds or a Prometheus duration (``1h30m``, ``15s``); returns int ms."""
    if (ms := _seconds_ms(raw)) is not None:
        return ms
    m = _DUR_RE.match(raw)
    if raw and m and any(m.groups()):
        return sum(int(g) * mult for g, mult in zip(m.groups(), _DUR_MS, strict=True) if g)
    raise BadInputError(f'invalid parameter "{name}": cannot parse "{raw}" to a valid duration')


def now_ms() -> int:
    return int(time.time() * 1000)


def match_params(required: bool) -> list[list[Matcher]]:
    """The ``match[]`` selectors as matcher lists; 400 when one does not parse (or when
    ``required`` and there is none)."""
    from filodb.query.parser import selector_matchers

    raw = args("match[]")
    if required and not raw:
        raise BadInputError("no match[] parameter provided")
    out = []
    for text in raw:
        try:
            out.append(selector_matchers(text))
        except ParseError as e:
            raise BadInputError(f'invalid parameter "match[]": {e}') from e
    return out
