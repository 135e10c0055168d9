"""``info(v, {selector})``: enrich series with data labels of info metrics (experimental).

Info series (default ``target_info``; others by ``__name__`` matchers, only negative ones
meaning the other ``*_info`` metrics) join the base series on
the identifying labels ``instance`` and ``job``. At each step the newest matching sample of
each info metric name wins; the data labels of those (all but ``__name__``/``instance``/``job``,
or only those named by the selector's data matchers) are added where the base series lacks
them, and two info metrics giving one label different values is a "conflicting label" error.
Base series that are info series themselves pass unchanged. Without a match, a series passes
unchanged unless a data matcher rejects the empty string, in which case it is dropped at that
step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from filodb.errors import ExecutionError
from filodb.model.labels import METRIC_NAME, Labels, Matcher, labels_match
from filodb.query import ast
from filodb.query.values import StepVector

IDENTIFYING = ("instance", "job")


def evaluate_info(engine: Any, node: ast.Call, ctx: Any) -> StepVector:
    base = engine.eval(node.args[0], ctx)
    sel = node.args[1] if len(node.args) > 1 else None
    matchers = list(sel.matchers) if isinstance(sel, ast.VectorSelector) else []
    name_ms = _info_names([m for m in matchers if m.name == METRIC_NAME])
    data_ms = [m for m in matchers if m.name != METRIC_NAME]
    times = _reference_times(engine, node.args[0], ctx)
    info_lb, info_ok, info_ts = _info_series(engine, name_ms + data_ms, times, ctx)
    keep_empty = all(m.matches_empty() for m in data_ms)
    wanted = {m.name for m in data_ms} or None
    S = len(ctx.times)
    rows: dict[Labels, tuple[np.ndarray, np.ndarray]] = {}

    def put(lb: Labels, i: int, s: int) -> None:
        vals, pres = rows.setdefault(lb, (np.zeros(S), np.zeros(S, bool)))
        if pres[s]:
            raise ExecutionError("vector cannot contain metrics with the same labelset")
        vals[s] = base.values[i, s]
        pres[s] = True

    by_id: dict[tuple[str, str], list[int]] = {}
    for j, lb in enumerate(info_lb):
        d = dict(lb)
        by_id.setdefault(tuple(d.get(k, "") for k in IDENTIFYING), []).append(j)
    for i, lb in enumerate(base.labels):
        d = dict(lb)
        is_info = METRIC_NAME in d and labels_match(lb, name_ms)
        cands = by_id.get(tuple(d.get(k, "") for k in IDENTIFYING), [])
        for s in np.flatnonzero(base.present[i]).tolist():
            if is_info:
                put(lb, i, s)
                continue
            live = [j for j in cands if info_ok[j, s]]
            if not live:
                if keep_empty:
                    put(lb, i, s)
                continue
            extra: dict[str, str] = {}
            for j in _newest_per_name(live, info_lb, info_ts[:, s]):
                for k, v in info_lb[j]:
                    if k in (METRIC_NAME, *IDENTIFYING) or (wanted is not None and k not in wanted):
                        continue
                    if extra.get(k, v) != v:
                        raise ExecutionError(f"conflicting label: {k}")
                    if k not in d:
                        extra[k] = v
            put(tuple(sorted({**d, **extra}.items())), i, s)
    labels = list(rows)
    if not labels:
        return StepVector.empty(S)
    return StepVector(
        labels, np.array([rows[k][0] for k in labels]), np.array([rows[k][1] for k in labels])
    )


def _info_names(name_ms: list[Matcher]) -> list[Matcher]:
    """The ``__name__`` matchers info series are selected (and base series passed through)
    by, as Prometheus takes them: none, ``target_info``; only negative ones, those and
    ``=~".+_info"`` (``{__name__!="target_info"}`` means the other info metrics, not every
    other metric); with a positive one, as given."""
    if not name_ms:
        return [Matcher(METRIC_NAME, "=", "target_info")]
    if all(m.op in ("!=", "!~") for m in name_ms):
        return [Matcher(METRIC_NAME, "=~", ".+_info"), *name_ms]
    return name_ms


def _newest_per_name(live: list[int], info_lb: list[Labels], ts: np.ndarray) -> list[int]:
    """Of the live info series, the newest sample's series of each info metric name."""
    best: dict[str, int] = {}
    for j in live:
        name = dict(info_lb[j]).get(METRIC_NAME, "")
        if name not in best or ts[j] > ts[best[name]]:
            best[name] = j
    return [best[n] for n in sorted(best)]


def _reference_times(engine: Any, e: ast.Expr, ctx: Any) -> np.ndarray:
    """The data times (ms) the base samples are read at: step times shifted by the ``@`` and
    ``offset`` of the selector, or of the range/subquery a range function reads."""
    while isinstance(e, ast.ParenExpr):
        e = e.expr
    if isinstance(e, ast.MatrixSelector):
        e = e.vector
    if isinstance(e, ast.VectorSelector):
        at: np.ndarray = engine.times_at(
            e.at, engine.duration_ms(e.offset_ms, e.offset_expr, ctx), ctx
        )
        return at
    if isinstance(e, ast.SubqueryExpr):
        t = engine.times_at(e.at, engine.duration_ms(e.offset_ms, e.offset_expr, ctx), ctx)
        return _reference_times(engine, e.expr, ctx.with_times(t))
    if isinstance(e, ast.Call):
        ranged = [a for a in e.args if isinstance(a, ast.MatrixSelector | ast.SubqueryExpr)]
        if ranged:
            return _reference_times(engine, ranged[0], ctx)
    times: np.ndarray = ctx.times
    return times


def _info_series(engine: Any, matchers: list[Matcher], times: np.ndarray, ctx: Any):  # type: ignore[no-untyped-def]
    block, idx, ok = engine.select_latest(ast.VectorSelector(None, tuple(matchers)), times, ctx)
    if len(block) == 0:
        z = np.zeros((0, len(times)))
        return [], z.astype(bool), z
    return list(block.labels), ok, block.ts[idx]
