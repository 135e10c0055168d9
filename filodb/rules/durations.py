"""Prometheus's model durations, as rule files and promtool's test files spell them
(``1h30m``, ``5m``, ``0``: units from ``y`` down to ``ms``, no bare numbers, no fractions)."""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def parse_model_duration(text: str) -> int:
    """A Prometheus model duration (``5m``, ``1h30m``, ``0``) in ms; ValueError otherwise."""
    if text == "0":
        return 0
    m = _DURATION.match(text)
    if not text or not m:
        raise ValueError(f'not a valid duration string: "{text}"')
    return sum(int(g) * u for g, u in zip(m.groups(), _UNITS_MS, strict=True) if g)


def format_model_duration(ms: int) -> str:
    """Prometheus's spelling of a model duration (``1h30m``, ``0s``)."""
    if ms == 0:
        return "0s"
    out = []
    for unit, u in zip(("y", "w", "d", "h", "m", "s", "ms"), _UNITS_MS, strict=True):
        if ms >= u:
            out.append(f"{ms // u}{unit}")
            ms %= u
    return "".join(out)
