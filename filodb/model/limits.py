"""A dataset's limits: what one tenant may write and ask, fixed when the dataset is created.

Keys (a missing or ``None`` key takes the config's default; ``0`` means no limit):

- ``max_series``: series of the dataset across the cluster (new series past it are refused);
- ``max_series_per_metric``: series of one metric name (``__name__``);
- ``ingest_samples_per_s``: samples written per second (a token bucket of one second);
- ``max_query_concurrency``: queries running at once (more wait up to their timeout);
- ``max_samples``, ``max_series_per_query``, ``query_timeout`` (seconds): one query's limits,
  the config's ``max_samples``, ``max_series`` and ``query_timeout`` by default.

Stored with the dataset (``Dataset.limits``, JSON ``"limits": {...}`` with only the keys set);
the admin API takes the same object and the CLI ``--limit KEY=VALUE``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from filodb.errors import BadInputError
from filodb.model.timeparse import parse_duration_ms

# key -> the Config field holding its default
DEFAULTS_FROM = {
    "max_series": "dataset_max_series",
    "max_series_per_metric": "dataset_max_series_per_metric",
    "ingest_samples_per_s": "ingest_samples_per_s",
    "max_query_concurrency": "max_query_concurrency",
    "max_samples": "max_samples",
    "max_series_per_query": "max_series",
    "query_timeout": "query_timeout",
}
_FLOATS = frozenset({"ingest_samples_per_s", "query_timeout"})
MAX_QUERY_TIMEOUT_S = 7 * 86400.0  # a waiting query's timer must fit the platform's timeouts


@dataclass(frozen=True)
class DatasetLimits:
    """Limits of one dataset; ``None`` is "the config's default" (see the module docstring)."""

    max_series: int | None = None
    max_series_per_metric: int | None = None
    ingest_samples_per_s: float | None = None
    max_query_concurrency: int | None = None
    max_samples: int | None = None
    max_series_per_query: int | None = None
    query_timeout: float | None = None

    @classmethod
    def parse(cls, raw: object) -> DatasetLimits:
        """Limits from a JSON object (values numbers; ``query_timeout`` also a duration such
        as ``30s``, and every value also its text, as ``--limit KEY=VALUE`` gives it)."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise BadInputError(f"limits must be an object of {', '.join(DEFAULTS_FROM)}")
        out: dict[str, Any] = {}
        for k, v in raw.items():
            if k not in DEFAULTS_FROM:
                raise BadInputError(f"unknown limit {k!r} (known: {', '.join(DEFAULTS_FROM)})")
            out[k] = None if v is None else _value(k, v)
        return cls(**out)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> DatasetLimits:
        """The stored form (unknown keys of a newer version are left out)."""
        if not raw:
            return cls()
        vals: dict[str, Any] = {k: (float(v) if k in _FLOATS else int(v)) for k, v in raw.items()
                                if k in DEFAULTS_FROM and v is not None}  # fmt: skip
        return cls(**vals)

    def to_json(self) -> dict[str, int | float]:
        """The keys that are set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def resolved(self, cfg: object) -> DatasetLimits:
        """Every key set: this dataset's value, else the config's default (``cfg`` is a
        :class:`~filodb.config.Config`)."""
        vals = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # no deep copy
        return DatasetLimits(**{k: v if v is not None else getattr(cfg, DEFAULTS_FROM[k])
                                for k, v in vals.items()})  # fmt: skip


def _value(key: str, v: object) -> int | float:
    if isinstance(v, bool):
        raise BadInputError(f"limit {key} must be a number, got {v!r}")
    if key == "query_timeout" and isinstance(v, str):
        out: float = parse_duration_ms(v, key) / 1000.0
    else:
        try:
            out = float(v) if key in _FLOATS else _int(v)  # type: ignore[arg-type]
        except (TypeError, ValueError) as e:
            raise BadInputError(f"limit {key} must be a number, got {v!r}") from e
    if not 0 <= out < 2**63 or out != out:
        raise BadInputError(f"limit {key} must be a non-negative number, got {v!r}")
    if key == "query_timeout" and out > MAX_QUERY_TIMEOUT_S:
        raise BadInputError(f"limit query_timeout must be at most 7d, got {v!r}")
    return out


def _int(v: object) -> int:
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(v)
    if isinstance(v, str):
        return int(v.strip())
    return int(v)  # type: ignore[call-overload, no-any-return]
