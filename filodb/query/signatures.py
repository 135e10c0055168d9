"""Function signatures (the parser's table; implementations live in ``functions.py``).

Each entry: argument types, how many trailing arguments are optional (-1: variadic, any
number of the last type), and the return type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signature:
    args: tuple[str, ...]
    optional: int
    returns: str


def _s(args: str, returns: str, optional: int = 0) -> Signature:
    return Signature(tuple(args.split()) if args else (), optional, returns)


_MATH = "abs ceil floor exp ln log2 log10 sqrt sgn acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg rad".split()
_OVER_TIME = "avg min max sum count stddev stdvar last present mad".split()
_TIME_FNS = "day_of_month day_of_week day_of_year days_in_month hour minute month year".split()

FUNCTIONS: dict[str, Signature] = {
    **{f: _s("vector", "vector") for f in _MATH},
    **{f"{f}_over_time": _s("matrix", "vector") for f in _OVER_TIME},
    **{f: _s("vector", "vector", 1) for f in _TIME_FNS},
    "rate": _s("matrix", "vector"), "irate": _s("matrix", "vector"),
    "increase": _s("matrix", "vector"), "delta": _s("matrix", "vector"),
    "idelta": _s("matrix", "vector"), "deriv": _s("matrix", "vector"),
    "resets": _s("matrix", "vector"), "changes": _s("matrix", "vector"),
    "predict_linear": _s("matrix scalar", "vector"),
    "quantile_over_time": _s("scalar matrix", "vector"),
    "absent": _s("vector", "vector"), "absent_over_time": _s("matrix", "vector"),
    "holt_winters": _s("matrix scalar scalar", "vector"),
    "double_exponential_smoothing": _s("matrix scalar scalar", "vector"),
    "histogram_quantile": _s("scalar vector", "vector"),
    "histogram_quantiles": _s("vector string scalar scalar", "vector", -1),
    "histogram_fraction": _s("scalar scalar vector", "vector"),
    "label_replace": _s("vector string string string string", "vector"),
    "label_join": _s("vector string string string", "vector", -1),
    "clamp": _s("vector scalar scalar", "vector"),
    "clamp_min": _s("vector scalar", "vector"), "clamp_max": _s("vector scalar", "vector"),
    "round": _s("vector scalar", "vector", 1),
    "time": _s("", "scalar"), "timestamp": _s("vector", "vector"),
    "vector": _s("scalar", "vector"), "scalar": _s("vector", "scalar"),
    "sort": _s("vector", "vector"), "sort_desc": _s("vector", "vector"),
    "sort_by_label": _s("vector string", "vector", -1),
    "sort_by_label_desc": _s("vector string", "vector", -1),
    "pi": _s("", "scalar"),
    "min_of": _s("scalar scalar", "scalar"), "max_of": _s("scalar scalar", "scalar"),
    "info": _s("vector vector", "vector", 1),
    "step": _s("", "scalar"), "range": _s("", "scalar"), "start": _s("", "scalar"),
    "end": _s("", "scalar"),
    "first_over_time": _s("matrix", "vector"), "ts_of_first_over_time": _s("matrix", "vector"),
    "ts_of_last_over_time": _s("matrix", "vector"), "ts_of_min_over_time": _s("matrix", "vector"),
    "ts_of_max_over_time": _s("matrix", "vector"),
}  # fmt: skip
