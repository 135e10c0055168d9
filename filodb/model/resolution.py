"""Downsampling levels of a dataset: resolutions with their own retention.

A level is written ``1m:30d`` (resolution, retention); a dataset's levels ``1m:30d,5m:183d``
(or as JSON ``[{"resolution": "1m", "retention": "30d"}, ...]``). The data of a level lives in
the dataset ``<raw>_ds_<minutes>``. Rules (checked before anything is written): a resolution
is a whole number of minutes; levels are strictly increasing and each resolution divides the
next; no level keeps data for less time than the raw dataset (0 = forever).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from filodb.errors import BadInputError
from filodb.model.timeparse import parse_duration_ms

MINUTE_MS = 60_000
DS_INFIX = "_ds_"


@dataclass(frozen=True)
class DownsampleLevel:
    resolution_ms: int
    retention_s: float  # 0: forever

    @property
    def minutes(self) -> int:
        return self.resolution_ms // MINUTE_MS

    def to_json(self) -> dict[str, Any]:
        return {"resolution": f"{self.minutes}m", "retention_s": self.retention_s}


def ds_dataset_name(raw: str, resolution_ms: int) -> str:
    """``<raw>_ds_<minutes>``: the dataset holding ``raw`` downsampled to ``resolution_ms``."""
    return f"{raw}{DS_INFIX}{resolution_ms // MINUTE_MS}"


def _resolution(raw: object) -> int:
    if not isinstance(raw, str):
        raise BadInputError(f"unknown resolution {raw!r}: give minutes or hours such as 1m, 5m, 1h")
    try:
        ms = parse_duration_ms(raw.strip(), "resolution")
    except BadInputError as e:
        raise BadInputError(
            f"unknown resolution {raw!r}: give minutes or hours such as 1m, 1h"
        ) from e
    if ms <= 0 or ms % MINUTE_MS:
        raise BadInputError(f"unknown resolution {raw!r}: it must be a whole number of minutes")
    return ms


def _retention(raw: object) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 0:
        return float(raw)
    if isinstance(raw, str):
        return parse_duration_ms(raw.strip(), "downsample retention") / 1000.0
    raise BadInputError(f"downsample retention must be a duration such as 30d, got {raw!r}")


def parse_levels(raw: object) -> tuple[DownsampleLevel, ...]:
    """Levels from ``"1m:30d,5m:183d"`` or a JSON list of ``{"resolution", "retention"}``
    objects (``retention_s`` in seconds is read back too); BadInputError on anything else."""
    if raw is None or raw == "":
        return ()
    items: list[tuple[object, object]] = []
    if isinstance(raw, str):
        for part in raw.split(","):
            res, colon, ret = part.partition(":")
            if not colon:
                raise BadInputError(
                    f"bad downsample level {part!r}: use RESOLUTION:RETENTION, e.g. 5m:183d"
                )
            items.append((res, ret))
    elif isinstance(raw, list | tuple):
        for d in raw:
            if not isinstance(d, dict) or "resolution" not in d:
                raise BadInputError(
                    f'bad downsample level {d!r}: use {{"resolution": "5m", "retention": "183d"}}'
                )
            items.append((d["resolution"], d.get("retention", d.get("retention_s"))))
    else:
        raise BadInputError(f"downsample must be a list of levels or '1m:30d,5m:183d', got {raw!r}")
    return tuple(DownsampleLevel(_resolution(r), _retention(t)) for r, t in items)


def check_levels(levels: tuple[DownsampleLevel, ...], raw_retention_s: float | None) -> None:
    """BadInputError unless each resolution divides the next (strictly increasing) and no level
    keeps less than the raw data (``raw_retention_s``; 0 or None: not checked against)."""
    for a, b in zip(levels, levels[1:], strict=False):
        if b.resolution_ms <= a.resolution_ms or b.resolution_ms % a.resolution_ms:
            raise BadInputError(
                f"downsample resolution {a.minutes}m does not divide the next, {b.minutes}m "
                "(give them finest first, each a divisor of the next)"
            )
    for lv in levels:
        if raw_retention_s and lv.retention_s and lv.retention_s < raw_retention_s:
            raise BadInputError(
                f"downsample level {lv.minutes}m keeps {lv.retention_s:g} s, less than the raw "
                f"data's retention ({raw_retention_s:g} s)"
            )
        if raw_retention_s == 0 and lv.retention_s:
            raise BadInputError(
                f"downsample level {lv.minutes}m keeps {lv.retention_s:g} s but the raw data is kept "
                "forever"
            )
