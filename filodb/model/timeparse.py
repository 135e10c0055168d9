"""Times and durations as Prometheus reads them in parameters and flags: unix seconds (a
float) or RFC 3339 for times, float seconds or ``1h30m``-style units for durations; int ms out.
The web tier's parameters and the command-line tools both parse with these."""

from __future__ import annotations

import math
import re
from datetime import datetime

from filodb.errors import BadInputError

_DUR_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DUR_MS = (365 * 86400_000, 7 * 86400_000, 86400_000, 3600_000, 60_000, 1000, 1)
MIN_TIME_MS = -9_223_372_036_854_775 // 1000
MAX_TIME_MS = 9_223_372_036_854_775 // 1000


def _seconds_ms(raw: str) -> int | None:
    """``raw`` as finite float seconds, in ms; None when it is not such a number."""
    try:
        f = float(raw)
    except ValueError:
        return None
    return int(round(f * 1000)) if math.isfinite(f) else None


def parse_time_ms(raw: str, name: str) -> int:
    """Unix seconds (float) or RFC 3339, as Prometheus accepts; returns int ms. ``name`` is the
    parameter named in the BadInputError."""
    if (ms := _seconds_ms(raw)) is not None:
        return ms
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return int(round(dt.timestamp() * 1000))
    except ValueError:
        raise BadInputError(
            f'invalid parameter "{name}": cannot parse "{raw}" to a valid timestamp'
        ) from None


def parse_duration_ms(raw: str, name: str) -> int:
    """Float seconds or a Prometheus duration (``1h30m``, ``15s``); returns int ms."""
    if (ms := _seconds_ms(raw)) is not None:
        return ms
    m = _DUR_RE.match(raw)
    if raw and m and any(m.groups()):
        return sum(int(g) * mult for g, mult in zip(m.groups(), _DUR_MS, strict=True) if g)
    raise BadInputError(f'invalid parameter "{name}": cannot parse "{raw}" to a valid duration')
