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


def resolve_at(e: ast.Expr, start_ms: int, end_ms: int) -> ast.Expr:
    """``e`` with ``@ start()`` and ``@ end()`` replaced by the query's own times, so a piece
    of steps evaluated on its own still reads at the query's start and end."""

    def fix(n: ast.Expr) -> ast.Expr:
        if isinstance(n, ast.VectorSelector | ast.SubqueryExpr) and n.at in ("start", "end"):
            n = dataclasses.replace(n, at=(start_ms if n.at == "start" else end_ms) / 1000)
        return _map(n, fix)

    return fix(e)


def _reads_query_range(e: ast.Expr) -> bool:
    """Whether ``e`` uses the query's range itself (``start()``, ``end()``, ``range()``):
    pieces of its steps would not answer what the whole does."""
    if isinstance(e, ast.Call) and e.func in ("start", "end", "range"):
        return True
    durations = [getattr(e, f, None) for f in ("offset_expr", "range_expr", "step_expr")]
    if any(isinstance(d, ast.DurationExpr) and _duration_reads_range(d) for d in durations):
        return True
    return any(_reads_query_range(c) for c in _children(e))


def _duration_reads_range(d: ast.DurationExpr) -> bool:
    return d.op == "range" or any(
        isinstance(a, ast.DurationExpr) and _duration_reads_range(a) for a in d.args
    )


def read_span(e: ast.Expr, t_ms: np.ndarray, lookback_ms: int
              ) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """Per evaluation time in ``t_ms``, the oldest and newest sample time ``e`` may read
    (ranges, offsets, lookback, subqueries, ``@``: a selector fixed ``@ t`` reads at ``t``
    whatever the step); None when ``e`` reads no series. ``@ start()``/``@ end()`` must be
    resolved first (:func:`resolve_at`)."""
    if isinstance(e, ast.VectorSelector | ast.MatrixSelector):
        vs = e if isinstance(e, ast.VectorSelector) else e.vector
        back = e.range_ms if isinstance(e, ast.MatrixSelector) else lookback_ms
        ev = t_ms if not isinstance(vs.at, int | float) else np.full_like(t_ms, round(vs.at * 1000))
        newest = ev - vs.offset_ms
        return newest - back, newest
    if isinstance(e, ast.SubqueryExpr):
        ev = t_ms if not isinstance(e.at, int | float) else np.full_like(t_ms, round(e.at * 1000))
        hi = ev - e.offset_ms
        first = read_span(e.expr, hi - e.range_ms, lookback_ms)
        last = read_span(e.expr, hi, lookback_ms)
        if first is None or last is None:
            return None
        return np.minimum(first[0], last[0]), np.maximum(first[1], last[1])
    spans = [x for x in (read_span(c, t_ms, lookback_ms) for c in _children(e)) if x is not None]
    if not spans:
        return None
    return (np.minimum.reduce([a for a, _ in spans]), np.maximum.reduce([b for _, b in spans]))


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


def choose_tiers(oldest: np.ndarray, newest: np.ndarray, tiers: Sequence[Tier]) -> np.ndarray:
    """The index in ``tiers`` (``tiers[0]`` raw, then finest first) of the tier answering each
    step reading ``[oldest, newest]``: the first that keeps the oldest sample and whose data
    reaches the newest; else the longest kept whose data reaches it; else raw."""
    owner = np.full(len(oldest), -1, np.int64)
    for i, tier in enumerate(tiers):
        ok = owner < 0
        if tier.oldest_ms is not None:
            ok &= oldest >= tier.oldest_ms
        if tier.newest_ms is not None:
            ok &= newest <= tier.newest_ms
        owner[ok] = i
    for i in range(len(tiers) - 1, 0, -1):  # older than every retention: the longest kept
        reach = tiers[i].newest_ms
        fallback = (owner < 0) & (True if reach is None else newest <= reach)
        owner[fallback] = i
    owner[owner < 0] = 0
    return owner


def plan_range(e: ast.Expr, start_ms: int, end_ms: int, step_ms: int, tiers: Sequence[Tier],
               lookback_ms: int) -> tuple[list[Piece], list[str]]:  # fmt: skip
    """The pieces answering a range query, oldest first, and the warnings to show."""
    e = resolve_at(e, start_ms, end_ms)
    times = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    span = read_span(e, times, lookback_ms)
    if span is None:  # no series read: raw answers
        return [Piece(tiers[0], e, start_ms, end_ms, step_ms, lookback_ms)], []
    idx = choose_tiers(*span, tiers)
    if _reads_query_range(e):  # not split: the tier of its oldest step answers every step
        idx[:] = idx[0]
    pieces: list[Piece] = []
    warnings: list[str] = []
    if not idx.any():
        return [Piece(tiers[0], e, start_ms, end_ms, step_ms, lookback_ms)], []
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


def plan_instant(e: ast.Expr, t_ms: int, tiers: Sequence[Tier], lookback_ms: int
                 ) -> tuple[Piece, list[str]]:  # fmt: skip
    """The piece answering an instant query at ``t_ms`` (one step of :func:`plan_range`, whose
    newest read is ``t_ms`` less the selectors' offsets: ``x offset 20d`` reads downsampled data
    when raw data is gone there), and the warnings to show. A window that starts before the raw
    retention and ends after every level's data (``sum_over_time(x[30d])`` now) is answered by
    the finest level keeping its start, with a warning that the samples after that level's data
    are not in the answer. The ds piece is evaluated at ``t_ms`` itself: its windows hold the
    periods ending in them."""
    e = resolve_at(e, t_ms, t_ms)
    span = read_span(e, np.array([t_ms], np.int64), lookback_ms)
    if span is None:
        return Piece(tiers[0], e, t_ms, t_ms, 0, lookback_ms), []
    oldest, newest = int(span[0][0]), int(span[1][0])
    tier = _instant_tier(oldest, newest, tiers)
    if tier.resolution_ms == 0:
        return Piece(tier, e, t_ms, t_ms, 0, lookback_ms), []
    r = tier.resolution_ms
    expr, notes = rewrite_for_ds(e, r)
    if tier.newest_ms is not None and newest > tier.newest_ms:
        notes.append(f"{tier.dataset} ({duration(r)}) answered a window older than the raw "
                     f"retention; its data reaches {tier.newest_ms // 1000}: samples after "
                     "that are not in this answer")  # fmt: skip
    return Piece(tier, expr, t_ms, t_ms, 0, max(lookback_ms, r)), list(dict.fromkeys(notes))


def _instant_tier(oldest: int, newest: int, tiers: Sequence[Tier]) -> Tier:
    raw = tiers[0]
    if raw.oldest_ms is None or oldest >= raw.oldest_ms:
        return raw
    for tier in tiers[1:]:  # finest first: a level holding the whole window
        if (tier.oldest_ms is None or oldest >= tier.oldest_ms) and (
            tier.newest_ms is None or newest <= tier.newest_ms
        ):
            return tier
    # a level holding the window's start (else the longest kept) with data in the window
    useful = [x for x in tiers[1:] if x.newest_ms is None or x.newest_ms > oldest]
    keeping = [x for x in useful if x.oldest_ms is None or oldest >= x.oldest_ms]
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
