"""Query results and their Prometheus JSON shapes (``/api/v1/query[_range]`` ``data``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from filodb.model.labels import Labels


def format_value(v: float) -> str:
    """A float as Prometheus prints it (Go ``FormatFloat(v, 'f', -1, 64)``)."""
    if v != v:
        return "NaN"
    if v == np.inf:
        return "+Inf"
    if v == -np.inf:
        return "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v)) if v != 0 or np.copysign(1, v) > 0 else "-0"
    r = repr(float(v))
    if "e" in r:
        return np.format_float_positional(v, unique=True, trim="-")
    return r


def format_time(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


@dataclass
class Result:
    """A query answer: ``result_type`` and ``data`` in engine form, plus annotations."""

    result_type: str  # vector | matrix | scalar | string
    series: list[tuple[Labels, np.ndarray, np.ndarray]] = field(default_factory=list)
    scalar: tuple[int, float] | None = None
    string: tuple[int, str] | None = None
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)

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
            {"metric": dict(lb), "values": [[format_time(t), format_value(v)]
                                            for t, v in zip(ts.tolist(), vs.tolist(), strict=True)]}
            for lb, ts, vs in self.series
        ]}  # fmt: skip
