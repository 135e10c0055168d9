"""Query results and their Prometheus JSON shapes (``/api/v1/query[_range]`` ``data``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from filodb.model.labels import Labels
from filodb.model.numfmt import format_time, format_times, format_value, format_values
from filodb.query.promjson import series_json


@dataclass
class Result:
    """A query answer: ``result_type`` and ``data`` in engine form, plus annotations."""

    result_type: str  # vector | matrix | scalar | string
    series: list[tuple[Labels, np.ndarray, np.ndarray]] = field(default_factory=list)
    scalar: tuple[int, float] | None = None
    string: tuple[int, str] | None = None
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)

    def to_prom_json_bytes(self, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
        """:meth:`to_prom_json` as JSON bytes between ``prefix`` and ``suffix``; vectors and
        matrices without per-sample Python (and written with them in one pass)."""
        if self.result_type in ("vector", "matrix"):
            return series_json(self.result_type, self.series, prefix, suffix)
        return prefix + orjson.dumps(self.to_prom_json()) + suffix

    def to_prom_json(self) -> dict[str, Any]:
        if self.result_type == "scalar":
            assert self.scalar is not None
            t, v = self.scalar
            return {"resultType": "scalar", "result": [format_time(t), format_value(v)]}
        if self.result_type == "string":
            assert self.string is not None
            return {"resultType": "string", "result": [format_time(self.string[0]), self.string[1]]}
        if self.result_type == "vector":
            return {"resultType": "vector", "result": [
                {"metric": dict(lb), "value": [format_time(int(ts[0])), format_value(float(vs[0]))]}
                for lb, ts, vs in self.series
            ]}  # fmt: skip
        return {"resultType": "matrix", "result": [
            {"metric": dict(lb), "values": list(zip(format_times(ts), format_values(vs), strict=True))}
            for lb, ts, vs in self.series
        ]}  # fmt: skip
