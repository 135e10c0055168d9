"""Instant-vector and scalar functions, keyed by name (signatures are in ``signatures.py``).

Each implementation takes the evaluated arguments (``StepVector``, ``ScalarSteps`` or
``StringValue``) and the step times (ms), and returns a value. Range functions are in
``rangefns.py``; ``absent``, ``timestamp`` and the ``sort*`` family need the engine's help and
are handled there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import re2

from filodb.errors import BadInputError, ExecutionError
from filodb.model.labels import METRIC_NAME, valid_label_name
from filodb.model.regex import compile_replace
from filodb.query import histograms
from filodb.query.binops import DROPPED_NAME, drop_names, name_value
from filodb.query.values import ScalarSteps, StepVector, StringValue


def _map(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[..., StepVector]:
    def run(times: np.ndarray, sv: StepVector) -> StepVector:
        with np.errstate(all="ignore"):
            return StepVector(drop_names(sv.labels), fn(sv.values), sv.present.copy())

    return run


def _sgn(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), np.nan, np.sign(x))


MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "exp": np.exp, "ln": np.log,
    "log2": np.log2, "log10": np.log10, "sqrt": np.sqrt, "sgn": _sgn,
    "acos": np.arccos, "acosh": np.arccosh, "asin": np.arcsin, "asinh": np.arcsinh,
    "atan": np.arctan, "atanh": np.arctanh, "cos": np.cos, "cosh": np.cosh, "sin": np.sin,
    "sinh": np.sinh, "tan": np.tan, "tanh": np.tanh, "deg": np.degrees, "rad": np.radians,
}  # fmt: skip


def _round(times, sv: StepVector, to: ScalarSteps | None = None) -> StepVector:  # type: ignore[no-untyped-def]
    nearest = to.values[None, :] if to is not None else 1.0
    with np.errstate(all="ignore"):
        inv = 1.0 / nearest
        out = np.floor(sv.values * inv + 0.5) / inv
    return StepVector(drop_names(sv.labels), out, sv.present.copy())


def _clamp(times, sv: StepVector, lo: ScalarSteps, hi: ScalarSteps) -> StepVector:  # type: ignore[no-untyped-def]
    out = np.fmax(np.fmin(sv.values, hi.values[None, :]), lo.values[None, :])
    out = np.where(np.isnan(sv.values), np.nan, out)
    ok = sv.present & (lo.values <= hi.values)[None, :]
    return StepVector(drop_names(sv.labels), out, ok).compact()


def _clamp_min(times, sv, lo):  # type: ignore[no-untyped-def]
    return _clamp(times, sv, lo, ScalarSteps(np.full(len(times), np.inf)))


def _clamp_max(times, sv, hi):  # type: ignore[no-untyped-def]
    return _clamp(times, sv, ScalarSteps(np.full(len(times), -np.inf)), hi)


def _vector(times, sc: ScalarSteps) -> StepVector:  # type: ignore[no-untyped-def]
    return StepVector([()], sc.values[None, :].copy(), np.ones((1, len(times)), bool))


def _scalar(times, sv: StepVector) -> ScalarSteps:  # type: ignore[no-untyped-def]
    if len(sv) == 0:
        return ScalarSteps(np.full(len(times), np.nan))
    one = sv.present.sum(axis=0) == 1
    idx = np.argmax(sv.present, axis=0)
    v = sv.values[idx, np.arange(len(times))]
    return ScalarSteps(np.where(one, v, np.nan))


def _time(times) -> ScalarSteps:  # type: ignore[no-untyped-def]
    return ScalarSteps(times / 1000.0)


def _pi(times) -> ScalarSteps:  # type: ignore[no-untyped-def]
    return ScalarSteps(np.full(len(times), math.pi))


def _datefn(part: str) -> Callable[..., StepVector]:
    def run(times, sv: StepVector | None = None) -> StepVector:  # type: ignore[no-untyped-def]
        if sv is None:
            sv = StepVector([()], (times / 1000.0)[None, :], np.ones((1, len(times)), bool))
        v = sv.values
        ok = sv.present & np.isfinite(v)
        secs = np.where(ok, v, 0).astype(np.int64)
        dt = secs.astype("datetime64[s]")
        days = dt.astype("datetime64[D]")
        months = dt.astype("datetime64[M]")
        years = dt.astype("datetime64[Y]")
        if part == "minute":
            out = (secs // 60) % 60
        elif part == "hour":
            out = (secs // 3600) % 24
        elif part == "day_of_week":
            out = (days.astype(np.int64) + 4) % 7
        elif part == "day_of_month":
            out = (days - months).astype(np.int64) + 1
        elif part == "day_of_year":
            out = (days - years).astype(np.int64) + 1
        elif part == "month":
            out = months.astype(np.int64) % 12 + 1
        elif part == "year":
            out = years.astype(np.int64) + 1970
        else:  # days_in_month
            out = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(
                np.int64
            )
        out = np.where(ok, out.astype(np.float64), np.nan)
        return StepVector(drop_names(sv.labels), out, sv.present.copy())

    return run


_GO_GROUP = re.compile(r"\$(\d+|\{\w+\})")


def _go_template(repl: str) -> str:
    """Go's ``$1``/``${name}`` expansion → Python's ``\\g<...>``."""
    repl = repl.replace("\\", "\\\\")
    return _GO_GROUP.sub(lambda m: "\\g<" + m.group(1).strip("{}") + ">", repl)


def _label_replace(times: np.ndarray, sv: StepVector, dst: StringValue, repl: StringValue,
                   src: StringValue, regex: StringValue) -> StepVector:  # fmt: skip
    try:
        rx = compile_replace(regex.value)
    except BadInputError as e:
        raise ExecutionError(
            f'invalid regular expression in label_replace(): "{regex.value}"'
        ) from e
    if not valid_label_name(dst.value) and dst.value != METRIC_NAME:
        raise ExecutionError(f'invalid destination label name in label_replace(): "{dst.value}"')
    template = _go_template(repl.value)
    out = []
    for lb in sv.labels:
        d = dict(lb)
        m = rx.match(name_value(d) if src.value == METRIC_NAME else d.get(src.value, ""))
        if m:
            try:
                v = m.expand(template)
            except (re.error, re2.error, IndexError):
                v = ""
            d = _with_label(d, dst.value, v)
        out.append(tuple(sorted(d.items())))
    return StepVector(out, sv.values, sv.present)


def _label_join(
    times: np.ndarray, sv: StepVector, dst: StringValue, sep: StringValue, *srcs: StringValue
) -> StepVector:
    if not valid_label_name(dst.value) and dst.value != METRIC_NAME:
        raise ExecutionError(f'invalid destination label name in label_join(): "{dst.value}"')
    out = []
    for lb in sv.labels:
        d = dict(lb)
        parts = (name_value(d) if s.value == METRIC_NAME else d.get(s.value, "") for s in srcs)
        d = _with_label(d, dst.value, sep.value.join(parts))
        out.append(tuple(sorted(d.items())))
    return StepVector(out, sv.values, sv.present)


def _with_label(d: dict[str, str], name: str, value: str) -> dict[str, str]:
    """``d`` with label ``name`` set to ``value``, or removed when ``value`` is empty. Setting
    the metric name keeps it (a dropped one is replaced)."""
    if name == METRIC_NAME:
        d.pop(DROPPED_NAME, None)
    if value:
        d[name] = value
    else:
        d.pop(name, None)
    return d


def _identity(times, sv: StepVector, *rest) -> StepVector:  # type: ignore[no-untyped-def]
    return sv


FUNCTIONS: dict[str, Callable[..., StepVector | ScalarSteps]] = {
    **{name: _map(fn) for name, fn in MATH.items()},
    **{p: _datefn(p) for p in ("minute", "hour", "day_of_week", "day_of_month", "day_of_year",
                               "month", "year", "days_in_month")},  # fmt: skip
    "round": _round, "clamp": _clamp, "clamp_min": _clamp_min, "clamp_max": _clamp_max,
    "vector": _vector, "scalar": _scalar, "time": _time, "pi": _pi,
    "label_replace": _label_replace, "label_join": _label_join,
    "sort": _identity, "sort_desc": _identity, "sort_by_label": _identity,
    "sort_by_label_desc": _identity, "histogram_quantile": histograms.histogram_quantile,
    "histogram_quantiles": histograms.histogram_quantiles,
    "histogram_fraction": histograms.histogram_fraction,
    "min_of": lambda times, a, b: ScalarSteps(np.minimum(a.values, b.values)),
    "max_of": lambda times, a, b: ScalarSteps(np.maximum(a.values, b.values)),
}  # fmt: skip

KEEPS_NAME = frozenset({"label_replace", "label_join", "sort", "sort_desc", "sort_by_label",
                        "sort_by_label_desc", "vector", "scalar"})  # fmt: skip
