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


# Parameters beyond these are refused: about 292 000 years either side of 1970 (year 9999 is
# in), far enough inside int64 ms that the engine's sums of times and durations cannot overflow.
TIME_LIMIT_MS = 9_223_372_036_854_775
MAX_DURATION_MS = 2 * TIME_LIMIT_MS


def _seconds_ms(raw: str) -> int | None:
    """``raw`` as finite float seconds, in ms (a Python int: ``1e308`` is a big one, for the
    callers' range checks); None when it is not such a number."""
    try:
        f = float(raw)
    except ValueError:
        return None
    if not math.isfinite(f):
        return None
    return int(round(f * 1000)) if abs(f) < 1e18 else int(f) * 1000


def parse_time_ms(raw: str, name: str) -> int:
    """Unix seconds (float) or RFC 3339, as Prometheus accepts; returns int ms. ``name`` is the
    parameter named in the BadInputError, also raised for a time beyond ``TIME_LIMIT_MS``."""
    ms = _seconds_ms(raw)
    if ms is None:
        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            ms = int(round(dt.timestamp() * 1000))
        except (ValueError, OverflowError, OSError):
            raise BadInputError(
                f'invalid parameter "{name}": cannot parse "{raw}" to a valid timestamp'
            ) from None
    if abs(ms) > TIME_LIMIT_MS:
        raise BadInputError(f'invalid parameter "{name}": timestamp "{raw}" is out of range')
    return ms


def parse_model_duration(raw: str) -> int:
    """A Prometheus model duration as rule files and promtool's test files spell it (``5m``,
    ``1h30m``, ``0``; no bare numbers, no fractions): int ms, ValueError otherwise."""
    m = _DUR_RE.match(raw)
    if raw == "0":
        return 0
    if not (raw and m and any(m.groups())):
        raise ValueError(f'not a valid duration string: "{raw}"')
    return sum(int(g) * mult for g, mult in zip(m.groups(), _DUR_MS, strict=True) if g)


def parse_duration_ms(raw: str, name: str) -> int:
    """Float seconds or a Prometheus duration (``1h30m``, ``15s``); returns int ms. Longer
    than ``MAX_DURATION_MS`` either way is a BadInputError (it overflows int64 arithmetic)."""
    ms = _seconds_ms(raw)
    if ms is None:
        try:
            ms = parse_model_duration(raw)
        except ValueError:
            raise BadInputError(
                f'invalid parameter "{name}": cannot parse "{raw}" to a valid duration'
            ) from None
    if abs(ms) > MAX_DURATION_MS:
        raise BadInputError(f'invalid parameter "{name}": duration "{raw}" is out of range')
    return ms
