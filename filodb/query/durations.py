"""Duration expressions: fold constants at parse time, resolve ``step()``/``range()`` later."""

from __future__ import annotations

import math
from collections.abc import Callable

from filodb.model.timeparse import MAX_DURATION_MS
from filodb.query.ast import DurationExpr

_BIN: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b else math.inf, "%": lambda a, b: math.fmod(a, b) if b else math.nan,
    "^": lambda a, b: a**b,
}  # fmt: skip


def seconds(d: DurationExpr | float, step_s: float = 0.0, range_s: float = 0.0) -> float:
    """Value of a duration expression in seconds."""
    if not isinstance(d, DurationExpr):
        return float(d)
    if d.op == "lit":
        return float(d.args[0])  # type: ignore[arg-type]
    if d.op == "step":
        return step_s
    if d.op == "range":
        return range_s
    vals = [seconds(a, step_s, range_s) for a in d.args]
    if d.op == "neg":
        return -vals[0]
    if d.op == "min_of":
        return min(vals)
    if d.op == "max_of":
        return max(vals)
    return _BIN[d.op](*vals)


def is_constant(d: DurationExpr | float) -> bool:
    if not isinstance(d, DurationExpr):
        return True
    if d.op in ("step", "range"):
        return False
    return all(is_constant(a) for a in d.args if isinstance(a, DurationExpr))


def to_ms(s: float) -> int:
    """Seconds as int ms; ValueError when not finite or longer than ``MAX_DURATION_MS``
    (``up[1e308]``, ``offset 99999999999999999d``: int64 arithmetic would overflow)."""
    if not math.isfinite(s):
        raise ValueError(f"duration expression is not finite: {s}")
    if abs(s) * 1000 > MAX_DURATION_MS:
        raise ValueError(f"duration out of range: {s:g}s")
    return int(round(s * 1000))


def to_string(d: DurationExpr | float) -> str:
    if not isinstance(d, DurationExpr):
        return repr(float(d))
    if d.op == "lit":
        return repr(float(d.args[0]))  # type: ignore[arg-type]
    if d.op in ("step", "range"):
        return f"{d.op}()"
    if d.op == "neg":
        return f"-({to_string(d.args[0])})"
    if d.op in ("min_of", "max_of"):
        return f"{d.op}({to_string(d.args[0])}, {to_string(d.args[1])})"
    return f"({to_string(d.args[0])} {d.op} {to_string(d.args[1])})"
