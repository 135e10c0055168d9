"""A series' kind for downsampling: counter or gauge.

Its remote-write metadata type when known (``counter``, ``histogram`` and ``summary`` keep
counters: their ``_bucket``, ``_count`` and ``_sum`` series count up), else its name (``_total``,
``_count``, ``_sum``, ``_bucket`` are counters), else gauge.
"""

from __future__ import annotations

from collections.abc import Mapping

from filodb.model.labels import Labels

COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
_FAMILY_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def metric_name(labels: Labels) -> str:
    for k, v in labels:
        if k == "__name__":
            return v
    return ""


def is_counter(name: str, types: Mapping[str, str] | None = None) -> bool:
    """Whether the series named ``name`` is downsampled as a counter; ``types`` maps metric
    family names to their remote-write metadata type."""
    t = None
    if types:
        t = types.get(name)
        for suf in _FAMILY_SUFFIXES:
            if t is None and name.endswith(suf):
                t = types.get(name[: -len(suf)])
    kind = (t or "").lower()
    if kind == "counter":
        return True
    if kind in ("histogram", "summary"):  # quantile series of a summary are gauges
        return name.endswith(("_bucket", "_count", "_sum"))
    if kind in ("", "unknown"):
        return name.endswith(COUNTER_SUFFIXES)
    return False  # gauge, gaugehistogram, info, stateset
