"""The long-time-range planner: raw data where raw still exists, downsampled data before.

A range query over a dataset with downsample levels is split by step time into pieces, each
answered by one *tier*: the raw dataset for the steps whose whole window (range, offset and
lookback) is within the raw retention, else the finest downsampled dataset whose retention
covers the window and whose data reaches the step. Pieces are disjoint sets of steps, so the
stitched answer (:func:`stitch`) has no gap and counts no sample twice: every step's value comes
from one tier. On a downsampled tier the query is rewritten (:func:`rewrite_for_ds`) to read the
right column of each series (``__ds_col__``, see ``docs/downsampling.md``), and its steps are
at least the tier's resolution (a ``warnings`` entry says so when the query asked finer).
An instant query is one step (:func:`plan_instant`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from filodb.model.labels import Labels, Matcher
from filodb.query import ast
from filodb.query.printer import duration
from filodb.query.result import Result

COL_LABEL = "__ds_col__"
# range function -> (column regex, function to apply instead); counters keep "last" only
_COLUMNS: dict[str, tuple[str, str]] = {
    "min_over_time": ("min|last", "min_over_time"),
    "max_over_time": ("max|last", "max_over_time"),
    "sum_over_time": ("sum", "sum_over_time"),
    "count_over_time": ("count", "sum_over_time"),
}
_DEFAULT_COLUMN = "avg|last"  # plain selectors, rate/increase/resets (counters), the rest
_TWO_SAMPLES = {"rate", "increase", "irate", "delta", "idelta", "deriv", "predict_linear", "resets",
                "changes"}  # fmt: skip


@dataclass(frozen=True)
class Tier:
    """A dataset answering steps: ``resolution_ms`` 0 for raw data; it holds data from
    ``oldest_ms`` (None: forever) to ``newest_ms`` (None: now)."""

    dataset: str
    resolution_ms: int
    oldest_ms: int | None
    newest_ms: int | None = None


@dataclass(frozen=True)
class Piece:
    tier: Tier
    expr: ast.Expr
    start_ms: int
    end_ms: int
    step_ms: int
    lookback_ms: int


def window_ms(e: ast.Expr, lookback_ms: int) -> int:
    """How far before a step the query reads (ranges, offsets, lookback, subqueries)."""
    if isinstance(e, ast.VectorSelector):
        return lookback_ms + max(0, e.offset_ms)
    if isinstance(e, ast.MatrixSelector):
        return e.range_ms + max(0, e.vector.offset_ms)
    if isinstance(e, ast.SubqueryExpr):
        return e.range_ms + max(0, e.offset_ms) + window_ms(e.expr, lookback_ms)
    return max((window_ms(c, lookback_ms) for c in _children(e)), default=0)


def _is_node(x: object) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(
        x, ast.DurationExpr | Matcher | ast.VectorMatching
    )


def _children(e: ast.Expr) -> list[ast.Expr]:
    out: list[ast.Expr] = []
    for f in dataclasses.fields(e):  # type: ignore[arg-type,unused-ignore]
        v = getattr(e, f.name)
        out += [x for x in (v if isinstance(v, tuple) else (v,)) if _is_node(x)]
    return out


def _map(e: ast.Expr, fn: Callable[[ast.Expr], ast.Expr]) -> ast.Expr:
    """``e`` with ``fn`` applied to each child node."""
    changes: dict[str, object] = {}
    for f in dataclasses.fields(e):  # type: ignore[arg-type,unused-ignore]
        v = getattr(e, f.name)
        if isinstance(v, tuple) and any(_is_node(x) for x in v):
            changes[f.name] = tuple(fn(x) if _is_node(x) else x for x in v)
        elif _is_node(v):
            changes[f.name] = fn(v)
    return dataclasses.replace(e, **changes) if changes else e  # type: ignore[arg-type,type-var,unused-ignore]


def _unparen(e: ast.Expr) -> ast.Expr:
    while isinstance(e, ast.ParenExpr):
        e = e.expr
    return e


def _column(vs: ast.VectorSelector, regex: str) -> ast.VectorSelector:
    ms = tuple(m for m in vs.matchers if m.name != COL_LABEL) + (Matcher(COL_LABEL, "=~", regex),)
    return dataclasses.replace(vs, matchers=ms)


def _drop_col(e: ast.Expr) -> ast.Expr:
    s = ast.StringLiteral
    return ast.Call("label_replace", (e, s(COL_LABEL), s(""), s(COL_LABEL), s(".*")))


def rewrite_for_ds(e: ast.Expr, resolution_ms: int) -> tuple[ast.Expr, list[str]]:
    """``e`` over a downsampled dataset: each selector reads its function's column, ranges
    shorter than the resolution (two resolutions for rate-like functions) are widened; the
    warnings say which were."""
    notes: list[str] = []

    def rw(node: ast.Expr) -> ast.Expr:
        if isinstance(node, ast.VectorSelector):
            return _drop_col(_column(node, _DEFAULT_COLUMN))
        if isinstance(node, ast.Call):
            idx = [
                i for i, a in enumerate(node.args) if isinstance(_unparen(a), ast.MatrixSelector)
            ]
            if idx:
                return _range_call(node, idx[0])
        if isinstance(node, ast.MatrixSelector):
            return dataclasses.replace(node, vector=_column(node.vector, _DEFAULT_COLUMN))
        return _map(node, rw)

    def _range_call(call: ast.Call, i: int) -> ast.Expr:
        ms = _unparen(call.args[i])
        assert isinstance(ms, ast.MatrixSelector)
        need = 2 * resolution_ms if call.func in _TWO_SAMPLES else resolution_ms
        if ms.range_ms < need:
            notes.append(f"{call.func}(...[{duration(ms.range_ms)}]) read as [{duration(need)}] at "
                         f"the {duration(resolution_ms)} resolution")  # fmt: skip
            ms = dataclasses.replace(ms, range_ms=need, range_expr=None)

        def call_on(col: str, func: str) -> ast.Expr:
            m = dataclasses.replace(ms, vector=_column(ms.vector, col))
            return ast.Call(func, (*call.args[:i], m, *call.args[i + 1 :]))

        if call.func == "avg_over_time":
            div = ast.BinaryExpr("/", call_on("sum", "sum_over_time"), call_on("count", "sum_over_time"),
                                 matching=ast.VectorMatching(labels=(COL_LABEL,)))  # fmt: skip
            return _drop_col(div)
        col, func = _COLUMNS.get(call.func, (_DEFAULT_COLUMN, call.func))
        return _drop_col(call_on(col, func))

    return rw(e), notes


def choose_tier(t_ms: int, window: int, tiers: Sequence[Tier]) -> Tier:
    """The tier answering the step at ``t_ms`` (``tiers[0]`` raw, then finest first)."""
    for tier in tiers:
        if (tier.oldest_ms is None or t_ms - window >= tier.oldest_ms) and (
            tier.newest_ms is None or t_ms <= tier.newest_ms
        ):
            return tier
    ds = [t for t in tiers[1:] if t.newest_ms is None or t_ms <= t.newest_ms]
    return ds[-1] if ds else tiers[0]  # older than every retention: the longest kept


def plan_range(e: ast.Expr, start_ms: int, end_ms: int, step_ms: int, tiers: Sequence[Tier],
               lookback_ms: int) -> tuple[list[Piece], list[str]]:  # fmt: skip
    """The pieces answering a range query, oldest first, and the warnings to show."""
    window = window_ms(e, lookback_ms)
    times = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    owner = [choose_tier(int(t), window, tiers) for t in times[[0, -1]]]
    pieces: list[Piece] = []
    warnings: list[str] = []
    if owner[0] is owner[-1] and owner[0] is tiers[0]:
        return [Piece(tiers[0], e, start_ms, end_ms, step_ms, lookback_ms)], []
    idx = np.array([tiers.index(choose_tier(int(t), window, tiers)) for t in times])  # tiers: few
    bounds = np.flatnonzero(np.diff(idx)) + 1
    for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), len(times)], strict=True):
        tier = tiers[int(idx[a])]
        lo, hi = int(times[a]), int(times[b - 1])
        if tier.resolution_ms == 0:
            pieces.append(Piece(tier, e, lo, hi, step_ms, lookback_ms))
            continue
        r = tier.resolution_ms
        expr, notes = rewrite_for_ds(e, r)
        warnings += notes
        step = step_ms
        if step_ms < r:
            step = r
            lo = -(-lo // r) * r
            warnings.append(f"steps from {lo // 1000} to {hi // 1000} are answered at the "
                            f"{duration(r)} resolution of {tier.dataset}, coarser than the "
                            f"{duration(step_ms)} step asked")  # fmt: skip
        if lo <= hi:
            pieces.append(Piece(tier, expr, lo, hi, step, max(lookback_ms, r)))
    return pieces, list(dict.fromkeys(warnings))


def newest_read_ms(e: ast.Expr) -> int | None:
    """How far before the evaluation time the newest sample the query reads is: the smallest
    offset of its selectors (subquery offsets added); None when it has no selector."""
    if isinstance(e, ast.VectorSelector):
        return max(0, e.offset_ms)
    if isinstance(e, ast.MatrixSelector):
        return max(0, e.vector.offset_ms)
    inner = [x for x in (newest_read_ms(c) for c in _children(e)) if x is not None]
    if isinstance(e, ast.SubqueryExpr):
        return max(0, e.offset_ms) + min(inner, default=0)
    return min(inner, default=None)


def plan_instant(e: ast.Expr, t_ms: int, tiers: Sequence[Tier], lookback_ms: int
                 ) -> tuple[Piece, list[str]]:  # fmt: skip
    """The piece answering an instant query at ``t_ms`` (one step of :func:`plan_range`, whose
    newest read is ``t_ms`` less the selectors' offsets: ``x offset 20d`` reads downsampled data
    when raw data is gone there), and the warnings to show. A window that starts before the raw
    retention and ends after every level's data (``sum_over_time(x[30d])`` now) is answered by
    the finest level keeping its start, with a warning that the samples after that level's data
    are not in the answer. The ds piece is evaluated at ``t_ms`` itself: its windows hold the
    periods ending in them."""
    window = window_ms(e, lookback_ms)
    newest = t_ms - (newest_read_ms(e) or 0)
    tier = _instant_tier(t_ms, window, newest, tiers)
    if tier.resolution_ms == 0:
        return Piece(tier, e, t_ms, t_ms, 0, lookback_ms), []
    r = tier.resolution_ms
    expr, notes = rewrite_for_ds(e, r)
    if tier.newest_ms is not None and newest > tier.newest_ms:
        notes.append(f"{tier.dataset} ({duration(r)}) answered a window older than the raw "
                     f"retention; its data reaches {tier.newest_ms // 1000}: samples after "
                     "that are not in this answer")  # fmt: skip
    return Piece(tier, expr, t_ms, t_ms, 0, max(lookback_ms, r)), list(dict.fromkeys(notes))


def _instant_tier(t_ms: int, window: int, newest: int, tiers: Sequence[Tier]) -> Tier:
    raw = tiers[0]
    if raw.oldest_ms is None or t_ms - window >= raw.oldest_ms:
        return raw
    for tier in tiers[1:]:  # finest first: a level holding the whole window
        if (tier.oldest_ms is None or t_ms - window >= tier.oldest_ms) and (
            tier.newest_ms is None or newest <= tier.newest_ms
        ):
            return tier
    # a level holding the window's start (else the longest kept) with data in the window
    useful = [x for x in tiers[1:] if x.newest_ms is None or x.newest_ms > t_ms - window]
    keeping = [x for x in useful if x.oldest_ms is None or t_ms - window >= x.oldest_ms]
    return (keeping or useful[-1:] or [raw])[0]


def stitch(results: Sequence[Result]) -> Result:
    """One matrix from the pieces' answers (disjoint step times, oldest piece first)."""
    if len(results) == 1:
        return results[0]
    by: dict[Labels, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for r in results:
        for lb, ts, vs in r.series:
            got = by.setdefault(lb, ([], []))
            got[0].append(ts)
            got[1].append(vs)
    series = [(lb, np.concatenate(ts), np.concatenate(vs)) for lb, (ts, vs) in sorted(by.items())]
    out = Result("matrix", series)
    for r in results:
        out.warnings += [w for w in r.warnings if w not in out.warnings]
        out.infos += [i for i in r.infos if i not in out.infos]
    return out


def describe(pieces: Sequence[Piece]) -> str:
    """Which resolution answered which steps, for ``infos`` and ``X-Filodb-Resolution``."""
    return "; ".join(
        f"{p.tier.dataset} ({duration(p.tier.resolution_ms) if p.tier.resolution_ms else 'raw'}) "
        f"{p.start_ms // 1000}..{p.end_ms // 1000}"
        for p in pieces
    )
