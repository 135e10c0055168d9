"""Classic-histogram functions: ``histogram_quantile``, ``histogram_quantiles``, ``histogram_fraction``.

A classic histogram is the set of series that differ only in their ``le`` label (cumulative
bucket counts). Series are grouped by their labels without ``le`` (the metric name included,
so two histograms that differ only in name stay apart and then collide, as in Prometheus);
each group is computed for all steps at once over a [buckets, steps] count matrix. Steps at
which only some buckets are present fall back to one column at a time (noted exception).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal

import numpy as np

from filodb.errors import ExecutionError
from filodb.model.labels import METRIC_NAME, Labels
from filodb.query.binops import DROPPED_NAME
from filodb.query.values import ScalarSteps, StepVector, StringValue

GroupFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(sorted unique bounds [B], cumulative counts [B, S'], step indexes [S']) -> values [S']."""


def _groups(sv: StepVector) -> dict[Labels, list[tuple[float, int]]]:
    """Bucket rows by histogram: labels without ``le`` -> [(upper bound, row)]."""
    groups: dict[Labels, list[tuple[float, int]]] = {}
    for i, lb in enumerate(sv.labels):
        d = dict(lb)
        le = d.pop("le", None)
        try:
            bound = float(le) if le is not None else None
        except ValueError:
            bound = None
        if bound is None or math.isnan(bound):
            continue
        groups.setdefault(tuple(sorted(d.items())), []).append((bound, i))
    return groups


def _coalesce(bounds: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge buckets with equal bounds (``bounds`` sorted), summing their counts."""
    ub, start = np.unique(bounds, return_index=True)
    if len(ub) == len(bounds):
        return bounds, counts
    return ub, np.add.reduceat(counts, start, axis=0)


def _each_group(sv: StepVector, n_steps: int, fn: GroupFn) -> StepVector:
    labels, vals, pres = [], [], []
    for glb, buckets in _groups(sv).items():
        buckets.sort(key=lambda b: b[0])
        bounds = np.array([b for b, _ in buckets])
        rows = np.array([i for _, i in buckets])
        p = sv.present[rows]
        full = p.all(axis=0)
        out = np.full(n_steps, np.nan)
        cols = np.flatnonzero(full)
        if len(cols):
            out[cols] = fn(*_coalesce(bounds, sv.values[rows][:, cols]), cols)
        for s in np.flatnonzero(p.any(axis=0) & ~full).tolist():  # partial bucket sets
            sel = p[:, s]
            out[s] = fn(*_coalesce(bounds[sel], sv.values[rows[sel], s : s + 1]), np.array([s]))[0]
        labels.append(tuple((k, v) for k, v in glb if k not in (METRIC_NAME, DROPPED_NAME)))
        vals.append(out)
        pres.append(p.any(axis=0))
    if not labels:
        return StepVector.empty(n_steps)
    return StepVector(labels, np.array(vals), np.array(pres))


def bucket_quantile(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Prometheus ``BucketQuantile`` for every column of ``counts`` ([B, S']) at quantiles ``q`` [S']."""
    S = counts.shape[1]
    out = np.full(S, np.nan)
    if len(bounds) >= 2 and bounds[-1] == np.inf:
        c = np.maximum.accumulate(counts, axis=0)
        total = c[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            rank = q * total
            b = (c[:-1] < rank[None, :]).sum(axis=0)
            cols = np.arange(S)
            prev = np.where(b > 0, c[np.maximum(b - 1, 0), cols], 0.0)
            start = np.where(b > 0, bounds[np.maximum(b - 1, 0)], 0.0)
            end = bounds[np.minimum(b, len(bounds) - 1)]
            est = start + (end - start) * ((rank - prev) / (c[b, cols] - prev))
        est = np.where(b == len(bounds) - 1, bounds[-2], est)
        est = np.where((b == 0) & (bounds[0] <= 0), bounds[0], est)
        out = np.where(total == 0, np.nan, est)
    out = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, out))
    return np.where(np.isnan(q), np.nan, out)


def bucket_fraction(
    lower: np.ndarray, upper: np.ndarray, bounds: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Prometheus ``BucketFraction``: the share of observations in ``[lower, upper]`` per column."""
    S = counts.shape[1]
    if len(bounds) == 0 or bounds[-1] != np.inf:
        return np.full(S, np.nan)
    total = counts[-1]
    rank = np.zeros(S)
    lo_rank, hi_rank = np.zeros(S), np.zeros(S)
    lo_set, hi_set = np.zeros(S, bool), np.zeros(S, bool)
    for i, ub in enumerate(bounds.tolist()):
        lb = bounds[i - 1] if i > 0 else (0.0 if bounds[0] > 0 else -np.inf)
        c = counts[i]
        for v, r, done in ((lower, lo_rank, lo_set), (upper, hi_rank, hi_set)):
            at_edge = ~done & (lb >= v)
            r[at_edge] = rank[at_edge]
            done |= at_edge
            inside = ~done & (lb < v) & (ub > v)
            with np.errstate(invalid="ignore", divide="ignore"):
                est = c if lb == -np.inf else rank + (c - rank) * (v - lb) / (ub - lb)
            r[inside] = np.broadcast_to(est, (S,))[inside]
            done |= inside
        rank = c
    lo_rank = np.where(~lo_set | (lo_rank > total), total, lo_rank)
    hi_rank = np.where(~hi_set | (hi_rank > total), total, hi_rank)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (hi_rank - lo_rank) / total
    out = np.where(lower >= upper, 0.0, out)
    return np.where((total == 0) | np.isnan(lower) | np.isnan(upper), np.nan, out)


def histogram_quantile(times: np.ndarray, q: ScalarSteps, sv: StepVector) -> StepVector:
    return _each_group(sv, len(times), lambda b, c, cols: bucket_quantile(q.values[cols], b, c))


def histogram_fraction(
    times: np.ndarray, lower: ScalarSteps, upper: ScalarSteps, sv: StepVector
) -> StepVector:
    def fn(b: np.ndarray, c: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return bucket_fraction(lower.values[cols], upper.values[cols], b, c)

    return _each_group(sv, len(times), fn)


def histogram_quantiles(
    times: np.ndarray, sv: StepVector, label: StringValue, *qs: ScalarSteps
) -> StepVector:
    """One output series per histogram and quantile, labelled ``label="<q>"`` (needs constant q)."""
    parts = []
    for q in qs:
        text = format_openmetrics_float(float(q.values[0]))
        one = histogram_quantile(times, q, sv)
        one.labels = [_with_label(lb, label.value, text) for lb in one.labels]
        parts.append(one)
    if not parts or not any(len(p) for p in parts):
        return StepVector.empty(len(times))
    labels = [lb for p in parts for lb in p.labels]
    if len(set(labels)) != len(labels):
        raise ExecutionError("vector cannot contain metrics with the same labelset")
    return StepVector(
        labels,
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.present for p in parts]),
    )


def _with_label(lb: Labels, name: str, value: str) -> Labels:
    return tuple(sorted([(k, v) for k, v in lb if k != name] + [(name, value)]))


def format_openmetrics_float(f: float) -> str:
    """Go ``labels.FormatOpenMetricsFloat``: shortest ``'g'`` form, ``.0`` added to integers."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0.0" if math.copysign(1, f) < 0 else "0.0"
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    e10 = len(digits) + int(exp) - 1
    if -4 <= e10 < 6:  # Go's 'g' switches to exponent form outside this range
        return repr(float(f))
    ds = "".join(map(str, digits))
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{'-' if sign else ''}{mant}e{e10:+03d}"
