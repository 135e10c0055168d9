"""Numbers and times as Prometheus prints them (Go's ``FormatFloat(v, 'f', -1, 64)``; seconds
with a fraction only when there is one): in query answers, exposition text and generated data.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

import numpy as np

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
    if (ms % 1000 == 0).all():
        return cast(list[float | int], (ms // 1000).tolist())
    return cast(list[float | int], (ms / 1000).tolist())


def format_time(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def format_value_g(v: float) -> str:
    """A float as Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` (``%v``) prints it: the shortest
    digits, in exponent form (``1e+06``, ``1.5e-05``) when the exponent is below -4 or at
    least 6. Prometheus's text exposition and its PromQL printer (``fill (…)``) spell it so."""
    v = float(v)
    if not math.isfinite(v) or v == 0:
        return format_value(v)
    sign, digits, exp = Decimal(repr(v)).normalize().as_tuple()
    dp = len(digits) + int(exp)  # position of the decimal point in the digit string
    e10 = dp - 1
    if -4 <= e10 < 6:
        return format_value(v)
    ds = "".join(map(str, digits))
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{'-' if sign else ''}{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"


def format_values_g(vals: np.ndarray) -> list[str]:
    """:func:`format_value_g` over an array: :func:`format_values` for all, the exponent form
    only where Go's ``'g'`` differs (magnitudes from 1e6 up or below 1e-4)."""
    vals = np.asarray(vals, np.float64)
    out = format_values(vals)
    a = np.abs(vals)
    for i in np.flatnonzero(np.isfinite(vals) & ((a >= 1e6) | ((a < 1e-4) & (a > 0)))).tolist():
        out[i] = format_value_g(float(vals[i]))
    return out


def format_rfc3339(ms: int) -> str:
    """A time in ms as Go's ``RFC3339Nano`` in UTC (how Prometheus's JSON writes times:
    ``2024-01-01T00:00:00.5Z``, no fraction when there is none)."""
    sec, frac = divmod(int(ms), 1000)
    t = datetime.fromtimestamp(sec, UTC)
    return f"{t:%Y-%m-%dT%H:%M:%S}" + (f".{frac:03d}".rstrip("0") if frac else "") + "Z"
