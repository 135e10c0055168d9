"""Query results and their Prometheus JSON shapes (``/api/v1/query[_range]`` ``data``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from filodb.model.labels import Labels

_EXACT_INT = 1e16  # below it, repr of a whole float has no exponent: print it as an integer


def format_value(v: float) -> str:
    """A float as Prometheus prints it (Go ``FormatFloat(v, 'f', -1, 64)``)."""
    v = float(v)
    if v != v:
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if v.is_integer() and -_EXACT_INT < v < _EXACT_INT:
        return "-0" if v == 0 and math.copysign(1.0, v) < 0 else str(int(v))
    r = repr(v)
    return np.format_float_positional(v, unique=True, trim="-") if "e" in r else r


def format_values(vals: np.ndarray) -> list[str]:
    """:func:`format_value` over an array: C-level ``repr`` for all, then fix-ups only where
    Go prints differently (whole numbers without ``.0``, exponents spelled out, Inf/NaN)."""
    vals = np.asarray(vals, np.float64)
    whole = np.isfinite(vals) & (np.trunc(vals) == vals) & (np.abs(vals) < _EXACT_INT)
    if whole.all() and not np.signbit(vals).any():
        return list(map(str, vals.astype(np.int64).tolist()))
    out = list(map(repr, vals.tolist()))
    a = np.abs(vals)
    special = ~np.isfinite(vals) | (~whole & ((a >= 1e16) | ((a < 1e-4) & (vals != 0))))
    special |= whole & (np.signbit(vals) & (vals == 0))
    plain = np.flatnonzero(whole & ~special)
    for i, txt in zip(plain.tolist(), map(str, vals[plain].astype(np.int64).tolist()), strict=True):
        out[i] = txt
    for i in np.flatnonzero(special).tolist():
        out[i] = format_value(float(vals[i]))
    return out


def format_times(ms: np.ndarray) -> list[float | int]:
    ms = np.asarray(ms, np.int64)
    out: list[float | int] = (ms // 1000 if (ms % 1000 == 0).all() else ms / 1000).tolist()
    return out


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

    def to_prom_json_bytes(self) -> bytes:
        """:meth:`to_prom_json` as JSON bytes; vectors and matrices without per-sample Python."""
        if self.result_type in ("vector", "matrix"):
            from filodb.query.promjson import series_json

            return series_json(self.result_type, self.series)
        return orjson.dumps(self.to_prom_json())

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
