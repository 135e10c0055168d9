"""A dataset's description: its shards, spread and retention, fixed when it is created.

Stored in Redis as JSON (``to_json``/``from_json``) under the dataset's name; everyone else
gets a frozen :class:`Dataset`, never the raw dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from filodb.errors import BadInputError
from filodb.model.limits import DatasetLimits
from filodb.model.resolution import DownsampleLevel, parse_levels
from filodb.model.shardkey import SpreadRule, check_shards, check_spread_overrides

MAX_NAME_LENGTH = 100
_NAME_RE = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_-]{{0,{MAX_NAME_LENGTH - 1}}}")


def check_dataset_name(name: object) -> str:
    """The dataset name if it is valid, else :class:`BadInputError`.

    The one rule for a name that becomes a Redis key, a Kafka topic, a Cassandra value, a
    directory and a URL path segment: 1-100 ASCII letters, digits, ``_`` and ``-``, not
    starting with ``-``. The admin API, the CLI, the shard map, the column stores and the logs
    all check it here, so a name one of them would refuse is refused by all, before anything
    is written.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        shown = (
            f"{name[:40]!r}... ({len(name)} characters)"
            if isinstance(name, str) and len(name) > 60
            else repr(name)
        )
        raise BadInputError(
            f"invalid dataset name {shown}: use 1-{MAX_NAME_LENGTH} ASCII letters, digits, '_' "
            "and '-', not starting with '-'"
        )
    return name


@dataclass(frozen=True)
class SpreadOverride:
    """A spread for the series of one ``(_ws_, _ns_)`` pair ("" when the label is absent)."""

    ws: str
    ns: str
    spread: int


@dataclass(frozen=True)
class Dataset:
    name: str
    shards: int
    spread: int = 1
    spread_overrides: tuple[SpreadOverride, ...] = ()
    retention_s: float | None = None  # None: the nodes' configured retention; 0: forever
    created: float = field(default=0.0, compare=False)
    limits: DatasetLimits = DatasetLimits()  # None values: the config's defaults
    downsample: tuple[DownsampleLevel, ...] = ()  # a raw dataset's levels (filodb.model.resolution)
    resolution_ms: int = 0  # a downsampled dataset's resolution (0: raw data)

    @classmethod
    def create(cls, name: str, shards: int, spread: int = 1, spread_overrides: object = None,
               retention_s: object = None, created: float = 0.0,
               limits: object = None, *, downsample: object = None,
               resolution_ms: int = 0) -> Dataset:  # fmt: skip
        """A validated description (raises :class:`~filodb.errors.BadInputError`)."""
        check_dataset_name(name)
        check_shards(shards, spread)
        ovr = check_spread_overrides(spread_overrides, shards)
        if retention_s is not None and (
            not isinstance(retention_s, int | float)
            or isinstance(retention_s, bool)
            or retention_s < 0
        ):
            raise BadInputError(f"retention must be a non-negative duration, got {retention_s!r}")
        return cls(name, shards, spread, tuple(SpreadOverride(o["_ws_"], o["_ns_"], o["spread"]) for o in ovr),
                   None if retention_s is None else float(retention_s), created,
                   limits if isinstance(limits, DatasetLimits) else DatasetLimits.parse(limits),
                   parse_levels(downsample), resolution_ms)  # fmt: skip

    @property
    def spread_rule(self) -> int | SpreadRule:
        """The spread as the shard-key functions take it: an int, or a rule with overrides."""
        if not self.spread_overrides:
            return self.spread
        return SpreadRule(self.spread, {(o.ws, o.ns): o.spread for o in self.spread_overrides})

    def retention(self, default_s: float) -> float:
        """Seconds of data kept: the dataset's own retention, else ``default_s``."""
        return default_s if self.retention_s is None else self.retention_s

    def to_json(self) -> dict[str, Any]:
        """The stored form (also what the admin API shows, with ``dataset`` added)."""
        out: dict[str, Any] = {
            "shards": self.shards,
            "spread": self.spread,
            "created": self.created,
        }
        if self.spread_overrides:
            out["spread_overrides"] = [{"_ws_": o.ws, "_ns_": o.ns, "spread": o.spread}
                                       for o in self.spread_overrides]  # fmt: skip
        if self.retention_s is not None:
            out["retention_s"] = self.retention_s
        if self.limits.to_json():
            out["limits"] = self.limits.to_json()
        if self.downsample:
            out["downsample"] = [lv.to_json() for lv in self.downsample]
        if self.resolution_ms:
            out["resolution_ms"] = self.resolution_ms
        return out

    @classmethod
    def from_json(cls, name: str, d: Mapping[str, Any]) -> Dataset:
        ovr = tuple(SpreadOverride(o.get("_ws_", ""), o.get("_ns_", ""), int(o["spread"]))
                    for o in d.get("spread_overrides") or ())  # fmt: skip
        ret = d.get("retention_s")
        return cls(name, int(d["shards"]), int(d["spread"]), ovr,
                   None if ret is None else float(ret), float(d.get("created", 0.0)),
                   DatasetLimits.from_json(d.get("limits")),
                   parse_levels(d.get("downsample")), int(d.get("resolution_ms", 0)))  # fmt: skip
