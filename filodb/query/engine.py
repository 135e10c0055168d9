"""The PromQL engine: evaluates a tree over a :class:`SeriesSource` at all steps at once.

API: ``Engine(source, lookback_ms=300_000, max_samples=50_000_000, timeout_s=120,
max_series=1_000_000)``;
``instant(expr_or_text, t_ms)`` and ``range(expr_or_text, start_ms, end_ms, step_ms)`` return a
:class:`~filodb.query.result.Result` (``to_prom_json()``, ``warnings``). Errors: ``ParseError``,
``ExecutionError`` (422; also "too many samples" / "too many series"), ``QueryTimeoutError``.

(a) Internal values (:mod:`filodb.query.values`) cover *all* steps of the query. An instant
vector is a :class:`StepVector`: ``labels`` (list of label tuples), ``values`` (float64
[n_series, n_steps]) and ``present`` (bool, same shape; NaN is a legal value). A function
or operator that drops the metric name does not remove it: it marks it dropped
(:func:`~filodb.query.binops.drop_name` renames ``__name__`` to a reserved label placed first),
so a later ``label_replace`` or ``info`` can still see it, and :func:`_finalize` removes the
marked names (and checks the answer's label sets for duplicates) only when the root value
becomes a :class:`Result`. A StepVector is rebuilt from ``StepVector(labels, values, present)``
and ships between
processes as raw numpy bytes plus the label tuples. A scalar is :class:`ScalarSteps`
(``values`` [n_steps]), a string :class:`StringValue`. Range selectors become :class:`Windows`
(index bounds into one :class:`SeriesBlock`) consumed by ``rangefns.py``.

(b) Dispatch is a table from node type to method name (``Engine._EVAL``), looked up on
``self``: ``eval_number``, ``eval_vector_selector``, ``eval_call``, ``eval_aggregate``, ``eval_binary``...
A subclass overrides one of them, e.g. ``def eval_aggregate(self, node, ctx)``, and evaluates a
child with ``self.eval(node.expr, ctx)`` (``ctx`` is an :class:`EvalContext`: the step times
in ms, the query's start/end/step, the deadline and the sample counter; ``ctx.with_times``
gives a context for other steps). The web tier's distributed engine does exactly that to push
aggregations and range functions down to the shards (:mod:`filodb.query.distributed`).

(c) ``Engine.instant``/``range`` turn the root value into a :class:`Result`: present cells of
each StepVector row become ``(labels, times[present], values[present])`` series (empty rows
dropped; matrices sorted by labels). Going back, ``StepVector`` rows are built from series by
placing their points at the step indexes (see ``Engine._from_result``).
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np

from filodb.errors import ExecutionError, QueryTimeoutError
from filodb.model.labels import METRIC_NAME, Labels, label_order
from filodb.model.source import SeriesBlock, SeriesSource, WindowCountingSource
from filodb.query import ast, durations, extended
from filodb.query.aggregations import aggregate
from filodb.query.binops import (
    drop_names,
    final_labels_many,
    scalar_scalar,
    vector_scalar,
    vector_vector,
)
from filodb.query.functions import FUNCTIONS
from filodb.query.functions import KEEPS_NAME as INSTANT_KEEPS_NAME
from filodb.query.parser import parse
from filodb.query.rangefns import BLOCK_FUNCTIONS, RANGE_FUNCTIONS, RANGE_FUNCTIONS_WITH_SCALAR
from filodb.query.rangefns import KEEPS_NAME as RANGE_KEEPS_NAME
from filodb.query.result import Result
from filodb.query.values import (
    ScalarSteps,
    StepVector,
    StringValue,
    Windows,
    drop_stale,
    latest,
    latest_values,
    window_bounds,
)  # fmt: skip

DEFAULT_SUBQUERY_STEP_MS = 60_000
# range functions of a selector that need only how many samples each window holds
_COUNTED = frozenset({"count_over_time", "present_over_time"})
TOO_MANY_SAMPLES = "query processing would load too many samples into memory in query execution"
TOO_MANY_SERIES = (
    "query processing would select too many series (more than {limit}); narrow the selectors"
)


@dataclass
class EvalContext:
    """Step times of one evaluation (ms), the query's start/end (for ``@ start()``), limits."""

    times: np.ndarray
    start: int
    end: int
    step: int
    deadline: float
    samples: list[int] = field(default_factory=lambda: [0, 0])  # [samples read, series read]

    def with_times(self, times: np.ndarray) -> EvalContext:
        return replace(self, times=times)


class Engine:
    """Evaluates PromQL over one :class:`SeriesSource`. Not thread-safe; cheap to create."""

    def __init__(self, source: SeriesSource, lookback_ms: int = 300_000,
                 max_samples: int = 50_000_000, timeout_s: float = 120.0,
                 max_series: int = 1_000_000) -> None:  # fmt: skip
        self.source = source
        self.lookback_ms = lookback_ms
        self.max_samples = max_samples
        self.max_series = max_series
        self.timeout_s = timeout_s
        self.warnings: list[str] = []

    # --- public API ----------------------------------------------------------------------
    def instant(self, expr: str | ast.Expr, t_ms: int) -> Result:
        e = parse(expr) if isinstance(expr, str) else expr
        ctx = self.make_ctx(np.array([t_ms], np.int64), t_ms, t_ms, 0)
        inner = _unparen(e)
        if isinstance(inner, ast.MatrixSelector | ast.SubqueryExpr):
            return self._instant_matrix(inner, ctx)
        v = self.eval(e, ctx)
        if isinstance(v, ScalarSteps):
            return Result("scalar", scalar=(t_ms, float(v.values[0])), warnings=self.warnings)
        if isinstance(v, StringValue):
            return Result("string", string=(t_ms, v.value), warnings=self.warnings)
        v = _finalize(v)
        rows = np.flatnonzero(v.present[:, 0])
        rows = _order_rows(inner, v, rows)
        series = [(v.labels[i], np.array([t_ms]), v.values[i, :1]) for i in rows.tolist()]
        return Result("vector", series, warnings=self.warnings)

    def range(self, expr: str | ast.Expr, start_ms: int, end_ms: int, step_ms: int) -> Result:
        e = parse(expr) if isinstance(expr, str) else expr
        if step_ms <= 0:
            raise ExecutionError("zero or negative query resolution step widths are not accepted")
        times = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        ctx = self.make_ctx(times, start_ms, end_ms, step_ms)
        v = self.eval(e, ctx)
        if isinstance(v, StringValue):
            raise ExecutionError(
                'invalid expression type "string" for range query, must be Scalar or instant Vector'
            )
        if isinstance(v, ScalarSteps):
            return Result("matrix", [((), times, v.values)], warnings=self.warnings)
        v = _finalize(v)
        series = []
        full = cast(list[bool], v.present.all(axis=1).tolist())  # a full row: its values, a view
        for i in np.flatnonzero(v.present.any(axis=1)).tolist():
            if full[i]:
                series.append((v.labels[i], times, v.values[i]))
                continue
            p = v.present[i]
            series.append((v.labels[i], times[p], v.values[i][p]))
        # label sets are distinct: one order whatever the rows'
        series = [series[i] for i in label_order([s[0] for s in series])]
        return Result("matrix", series, warnings=self.warnings)

    @staticmethod
    def _from_result(res: Result, times: np.ndarray) -> StepVector:
        """A vector or matrix :class:`Result` as a :class:`StepVector` over ``times`` (ms)."""
        vals = np.full((len(res.series), len(times)), np.nan)
        pres = np.zeros(vals.shape, bool)
        for i, (_, ts, vs) in enumerate(res.series):
            idx = np.searchsorted(times, ts)
            ok = (idx < len(times)) & (times[np.minimum(idx, len(times) - 1)] == ts)
            vals[i, idx[ok]] = vs[ok]
            pres[i, idx[ok]] = True
        return StepVector([lb for lb, _, _ in res.series], vals, pres)

    # --- evaluation ----------------------------------------------------------------------
    def make_ctx(self, times: np.ndarray, start: int, end: int, step: int) -> EvalContext:
        return EvalContext(times, start, end, step, time.monotonic() + self.timeout_s)

    def eval(self, node: ast.Expr, ctx: EvalContext) -> Any:
        """Evaluate ``node`` at ``ctx.times``; the dispatch point subclasses hook into."""
        if time.monotonic() > ctx.deadline:
            raise QueryTimeoutError("query timed out in expression evaluation")
        return getattr(self, self._EVAL[type(node)])(node, ctx)

    def eval_number(self, node: ast.NumberLiteral, ctx: EvalContext) -> ScalarSteps:
        return ScalarSteps(np.full(len(ctx.times), node.value))

    def eval_string(self, node: ast.StringLiteral, ctx: EvalContext) -> StringValue:
        return StringValue(node.value)

    def eval_paren(self, node: ast.ParenExpr, ctx: EvalContext) -> Any:
        return self.eval(node.expr, ctx)

    def eval_unary(self, node: ast.UnaryExpr, ctx: EvalContext) -> Any:
        v = self.eval(node.expr, ctx)
        if node.op == "+":
            return v
        if isinstance(v, ScalarSteps):
            return ScalarSteps(-v.values)
        return check_unique(StepVector(drop_names(v.labels), -v.values, v.present))

    def duration_ms(self, ms: int, expr: ast.DurationExpr | None, ctx: EvalContext) -> int:
        """A duration of the tree, resolving ``step()``/``range()`` against the query."""
        if expr is None:
            return ms
        return durations.to_ms(
            durations.seconds(expr, ctx.step / 1000.0, (ctx.end - ctx.start) / 1000.0)
        )

    def times_at(self, at: float | str | None, offset_ms: int, ctx: EvalContext) -> np.ndarray:
        if at is None:
            t = ctx.times
        elif at == "start":
            t = np.full(len(ctx.times), ctx.start, np.int64)
        elif at == "end":
            t = np.full(len(ctx.times), ctx.end, np.int64)
        else:
            t = np.full(len(ctx.times), int(round(float(at) * 1000)), np.int64)
        return t - offset_ms

    def select(
        self, vs: ast.VectorSelector, lo_ms: int, hi_ms: int, ctx: EvalContext
    ) -> SeriesBlock:
        """Read series for a selector from the source, counting samples against the limit."""
        block = self.source.select(list(vs.matchers), lo_ms, hi_ms)
        self._add_read(int(block.offsets[-1]), len(block.labels), ctx)
        return block

    def _add_read(self, samples: int, series: int, ctx: EvalContext) -> None:
        ctx.samples[0] += samples
        if ctx.samples[0] > self.max_samples:
            raise ExecutionError(TOO_MANY_SAMPLES)
        ctx.samples[1] += series
        if ctx.samples[1] > self.max_series:
            raise ExecutionError(TOO_MANY_SERIES.format(limit=self.max_series))

    def eval_vector_selector(self, vs: ast.VectorSelector, ctx: EvalContext) -> StepVector:
        times = self.times_at(vs.at, self.duration_ms(vs.offset_ms, vs.offset_expr, ctx), ctx)
        if vs.smoothed:
            lb = self.lookback_ms
            block = drop_stale(
                self.select(vs, int(times.min()) - lb + 1, int(times.max()) + lb, ctx)
            )
            vals, ok = extended.smoothed_values(block, times, lb)
            return StepVector(list(block.labels), vals, ok).compact()
        block = self.select(vs, int(times.min()) - self.lookback_ms + 1, int(times.max()), ctx)
        if len(block) == 0:
            return StepVector.empty(len(times))
        vals, ok = latest_values(block, times, self.lookback_ms)
        return StepVector(list(block.labels), vals, ok).compact()

    def select_latest(
        self, vs: ast.VectorSelector, times: np.ndarray, ctx: EvalContext
    ) -> tuple[SeriesBlock, np.ndarray, np.ndarray]:
        """The selector's series, and per step the index of each one's newest sample in the
        lookback window and whether it counts (see :func:`~filodb.query.values.latest`)."""
        block = self.select(vs, int(times.min()) - self.lookback_ms + 1, int(times.max()), ctx)
        idx, ok = latest(block, times, self.lookback_ms)
        return block, idx, ok

    def windows(self, node: ast.MatrixSelector | ast.SubqueryExpr, ctx: EvalContext) -> Windows:
        """The samples of a range selector or subquery for every step's window."""
        node = _unparen(node)  # type: ignore[assignment]
        if isinstance(node, ast.SubqueryExpr):
            return self._subquery_windows(node, ctx)
        block, times, rng = self.range_block(node, ctx)
        lo, hi = window_bounds(block, times, rng)
        return Windows(block, lo, hi, times, rng, ctx.times)

    def range_block(
        self, node: ast.MatrixSelector, ctx: EvalContext
    ) -> tuple[SeriesBlock, np.ndarray, int]:
        """A range selector's samples (stale markers dropped), its windows' ends (after
        offset/@) and its range in ms."""
        times, rng = self._windows_of(node, ctx)
        block = drop_stale(
            self.select(node.vector, int(times.min()) - rng + 1, int(times.max()), ctx)
        )
        return block, times, rng

    def _windows_of(self, node: ast.MatrixSelector, ctx: EvalContext) -> tuple[np.ndarray, int]:
        """A range selector's windows' ends (after offset/@) and its range in ms (> 0)."""
        vs = node.vector
        times = self.times_at(vs.at, self.duration_ms(vs.offset_ms, vs.offset_expr, ctx), ctx)
        rng = self.duration_ms(node.range_ms, node.range_expr, ctx)
        if rng <= 0:
            raise ExecutionError(f"range duration must be positive, got {rng}ms")
        return times, rng

    def _counted(self, f: str, node: ast.MatrixSelector, ctx: EvalContext) -> StepVector | None:
        """``count_over_time``/``present_over_time`` of a range selector from the source's
        counts per window (:class:`~filodb.model.source.WindowCountingSource`: no sample
        is selected), read and limited as :meth:`range_block`'s select; None when the source
        does not count."""
        times, rng = self._windows_of(node, ctx)
        source = cast(WindowCountingSource, self.source)
        got = source.window_counts(list(node.vector.matchers), times, rng)
        if got is None:
            return None
        self._add_read(got.samples, len(got.labels), ctx)
        c = got.counts
        vals = c.astype(np.float64) if f == "count_over_time" else np.ones(c.shape)
        return self._range_result(f, got.labels, vals, c > 0)

    def _subquery_windows(self, node: ast.SubqueryExpr, ctx: EvalContext) -> Windows:
        times = self.times_at(node.at, self.duration_ms(node.offset_ms, node.offset_expr, ctx), ctx)
        rng = self.duration_ms(node.range_ms, node.range_expr, ctx)
        step = self.duration_ms(node.step_ms, node.step_expr, ctx) or (
            ctx.step or DEFAULT_SUBQUERY_STEP_MS
        )
        if rng <= 0 or step <= 0:
            raise ExecutionError("subquery range and step must be positive")
        first = (int(times.min()) - rng) // step * step
        if (int(times.max()) - first) // step + 1 > self.max_samples:  # up[30d:1ms]: 2.6e9 steps
            raise ExecutionError(TOO_MANY_SAMPLES)
        grid = np.arange(first, int(times.max()) + 1, step, dtype=np.int64)
        grid = grid[grid > int(times.min()) - rng]
        if len(grid) == 0:  # range shorter than the step: no inner evaluation falls inside
            lo, hi = window_bounds(SeriesBlock.empty(), times, rng)
            return Windows(SeriesBlock.empty(), lo, hi, times, rng, ctx.times)
        inner = self.eval(node.expr, replace(ctx, times=grid))
        if isinstance(inner, ScalarSteps):
            inner = StepVector([()], inner.values[None, :], np.ones((1, len(grid)), bool))
        ctx.samples[0] += int(inner.present.sum())  # the subquery's points are samples in memory
        if ctx.samples[0] > self.max_samples:
            raise ExecutionError(TOO_MANY_SAMPLES)
        series = [(lb, grid[inner.present[i]], inner.values[i][inner.present[i]])
                  for i, lb in enumerate(inner.labels)]  # fmt: skip
        block = drop_stale(SeriesBlock.from_series(series))
        lo, hi = window_bounds(block, times, rng)
        return Windows(block, lo, hi, times, rng, ctx.times)

    def _instant_matrix(
        self, node: ast.MatrixSelector | ast.SubqueryExpr, ctx: EvalContext
    ) -> Result:
        w = self.windows(node, ctx)
        series = []
        for i, lb in enumerate(w.block.labels):
            a, b = int(w.lo[i, 0]), int(w.hi[i, 0])
            if b > a:
                series.append((lb, w.block.ts[a:b], w.block.vals[a:b]))
        series.sort(key=lambda s: s[0])
        return Result("matrix", series, warnings=self.warnings)

    def eval_matrix(self, node: ast.MatrixSelector, ctx: EvalContext) -> Any:
        raise ExecutionError("a range vector can only be an argument of a function here")

    eval_subquery = eval_matrix

    # --- calls ---------------------------------------------------------------------------
    def eval_call(self, node: ast.Call, ctx: EvalContext) -> Any:
        f = node.func
        ext = _extended_arg(node)
        if ext is not None:
            return self._eval_extended(f, ext, ctx)
        if (
            f in _COUNTED
            and isinstance(_unparen(node.args[0]), ast.MatrixSelector)
            and isinstance(self.source, WindowCountingSource)
        ):
            counted = self._counted(f, _unparen(node.args[0]), ctx)  # type: ignore[arg-type]
            if counted is not None:
                return counted
        if f in BLOCK_FUNCTIONS and isinstance(_unparen(node.args[0]), ast.MatrixSelector):
            block, times, rng = self.range_block(_unparen(node.args[0]), ctx)  # type: ignore[arg-type]
            vals, pres = BLOCK_FUNCTIONS[f](block, times, rng)
            return self._range_result(f, block, vals, pres)
        if f in RANGE_FUNCTIONS:
            w = self.windows(node.args[0], ctx)  # type: ignore[arg-type]
            vals, pres = RANGE_FUNCTIONS[f](w)
            return self._range_result(f, w, vals, pres)
        if f in RANGE_FUNCTIONS_WITH_SCALAR:
            fn, ri = RANGE_FUNCTIONS_WITH_SCALAR[f]
            sc = self.eval(node.args[1 - ri], ctx)
            w = self.windows(node.args[ri], ctx)  # type: ignore[arg-type]
            vals, pres = fn(w, sc.values)
            return self._range_result(f, w, vals, pres)
        if f in ("absent", "absent_over_time"):
            return self._absent(node, ctx)
        if f == "timestamp":
            return self._timestamp(node.args[0], ctx)
        if f in ("holt_winters", "double_exponential_smoothing"):
            return self._holt_winters(node, ctx)
        if f == "info":
            from filodb.query.info import evaluate_info

            return evaluate_info(self, node, ctx)
        if f in _QUERY_SCALARS:
            return ScalarSteps(np.full(len(ctx.times), _QUERY_SCALARS[f](ctx) / 1000.0))
        args = [self.eval(a, ctx) for a in node.args]
        out = FUNCTIONS[f](ctx.times, *args)
        if isinstance(out, StepVector) and f not in INSTANT_KEEPS_NAME:
            return check_unique(out)
        if f in ("label_replace", "label_join"):
            return check_unique(cast(StepVector, out))
        return out

    def _eval_extended(self, f: str, ms: ast.MatrixSelector, ctx: EvalContext) -> StepVector:
        """A range function over an ``anchored`` or ``smoothed`` range selector."""
        vs = ms.vector
        err = extended.check_function(f, vs.anchored)
        if err is not None:
            raise ExecutionError(err)
        times = self.times_at(vs.at, self.duration_ms(vs.offset_ms, vs.offset_expr, ctx), ctx)
        rng, lb = self.duration_ms(ms.range_ms, ms.range_expr, ctx), self.lookback_ms
        hi = int(times.max()) + (lb if vs.smoothed else 0)
        block = drop_stale(self.select(vs, int(times.min()) - rng - lb + 1, hi, ctx))
        if f in ("changes", "resets"):
            lo, hi_idx, ok = extended.anchored_windows(block, times, rng, lb)
            vals, _ = RANGE_FUNCTIONS[f](Windows(block, lo, hi_idx, times, rng, ctx.times))
            return self._range_result(f, block, vals, ok)
        counter, is_rate = f != "delta", f == "rate"
        vals, ok = extended.extended_rate(block, times, rng, lb, vs.smoothed, counter, is_rate)
        return self._range_result(f, block, vals, ok)

    def _range_result(
        self, f: str, w: Windows | SeriesBlock | list[Labels], vals: np.ndarray, pres: np.ndarray
    ) -> StepVector:
        labels = w if isinstance(w, list) else (w.block if isinstance(w, Windows) else w).labels
        if f in RANGE_KEEPS_NAME:  # a block's series are distinct, and so their label sets
            return StepVector(list(labels), vals, pres).compact()
        sv = StepVector(drop_names(labels), vals, pres).compact()
        return sv if _one_name(labels) else check_unique(sv)

    def _absent(self, node: ast.Call, ctx: EvalContext) -> StepVector:
        arg = node.args[0]
        if node.func == "absent":
            v = self.eval(arg, ctx)
            any_present = v.present.any(axis=0) if len(v) else np.zeros(len(ctx.times), bool)
        else:
            w = self.windows(arg, ctx)  # type: ignore[arg-type]
            any_present = (
                (w.count > 0).any(axis=0) if len(w.block) else np.zeros(len(ctx.times), bool)
            )
        labels = _absent_labels(arg)
        return StepVector([labels], np.ones((1, len(ctx.times))), ~any_present[None, :]).compact()

    def _timestamp(self, arg: ast.Expr, ctx: EvalContext) -> StepVector:
        inner = _unparen(arg)
        if isinstance(inner, ast.VectorSelector):
            times = self.times_at(
                inner.at, self.duration_ms(inner.offset_ms, inner.offset_expr, ctx), ctx
            )
            block, idx, ok = self.select_latest(inner, times, ctx)
            if len(block) == 0:
                return StepVector.empty(len(times))
            ts = block.ts[idx] / 1000.0
            return check_unique(StepVector(drop_names(block.labels), ts, ok).compact())
        v = self.eval(arg, ctx)
        vals = np.broadcast_to(ctx.times / 1000.0, v.values.shape).copy()
        return check_unique(StepVector(drop_names(v.labels), vals, v.present))

    def _holt_winters(self, node: ast.Call, ctx: EvalContext) -> StepVector:
        w = self.windows(node.args[0], ctx)  # type: ignore[arg-type]
        sf = self.eval(node.args[1], ctx).values
        tf = self.eval(node.args[2], ctx).values
        n, S = w.lo.shape
        out = np.full((n, S), np.nan)
        ok = np.zeros((n, S), bool)
        for s in range(S):
            if not (0 < sf[s] < 1 and 0 < tf[s] < 1):
                raise ExecutionError(
                    f"invalid smoothing factor. Expected: 0 < sf < 1, got: {sf[s]}"
                )
        for i in range(n):
            for s in range(S):
                v = w.block.vals[w.lo[i, s] : w.hi[i, s]]
                if len(v) >= 2:
                    out[i, s] = _hw(v, sf[s], tf[s])
                    ok[i, s] = True
        return check_unique(StepVector(drop_names(w.block.labels), out, ok).compact())

    # --- aggregation and operators -------------------------------------------------------
    def eval_aggregate(self, node: ast.AggregateExpr, ctx: EvalContext) -> StepVector:
        v = self.eval(node.expr, ctx)
        param = self.eval(node.param, ctx) if node.param is not None else None
        if node.op == "count_values" and isinstance(param, StringValue):
            from filodb.model.labels import valid_label_name

            if not valid_label_name(param.value):
                raise ExecutionError(f"invalid label name {param.value!r}")
        return aggregate(node.op, v, param, node.grouping, node.without)

    def eval_binary(self, node: ast.BinaryExpr, ctx: EvalContext) -> Any:
        lhs = self.eval(node.lhs, ctx)
        rhs = self.eval(node.rhs, ctx)
        if isinstance(lhs, ScalarSteps) and isinstance(rhs, ScalarSteps):
            return scalar_scalar(node.op, lhs, rhs)
        if isinstance(lhs, StepVector) and isinstance(rhs, ScalarSteps):
            return check_unique(vector_scalar(node.op, lhs, rhs, False, node.return_bool))
        if isinstance(lhs, ScalarSteps) and isinstance(rhs, StepVector):
            return check_unique(vector_scalar(node.op, rhs, lhs, True, node.return_bool))
        out = vector_vector(node.op, lhs, rhs, node.matching, node.return_bool)
        return check_unique(out) if node.op == "or" else out

    _EVAL: dict[type, str] = {
        ast.NumberLiteral: "eval_number", ast.StringLiteral: "eval_string",
        ast.ParenExpr: "eval_paren", ast.UnaryExpr: "eval_unary",
        ast.VectorSelector: "eval_vector_selector", ast.MatrixSelector: "eval_matrix",
        ast.SubqueryExpr: "eval_subquery", ast.Call: "eval_call",
        ast.AggregateExpr: "eval_aggregate", ast.BinaryExpr: "eval_binary",
    }  # fmt: skip
    """Node type -> the name of the method that evaluates it (looked up on ``self``, so a
    subclass's override is the one called)."""


_QUERY_SCALARS = {
    "step": lambda c: c.step, "range": lambda c: c.end - c.start,
    "start": lambda c: c.start, "end": lambda c: c.end,
}  # fmt: skip
"""Scalars of the query itself, in ms (step(), range(), start(), end())."""


def _finalize(sv: StepVector) -> StepVector:
    """The answer's label sets (dropped names removed at last) and the duplicate check that
    Prometheus makes then. Label sets that start with the metric name are final already (a
    selector's answer: 100 k of them thrashed the memo of :func:`final_labels_many`); their
    first pairs are few, so that is checked on those."""
    if all(f and f[0][0] == METRIC_NAME for f in set(map(_FIRST, sv.labels))):
        return sv
    labels = final_labels_many(sv.labels)
    if labels == sv.labels:
        return sv
    return check_unique(StepVector(labels, sv.values, sv.present))


def _one_name(labels: list[Labels]) -> bool:
    """Whether every label set starts with the same metric name (a selector of one metric):
    distinct label sets stay distinct once that name is dropped, no check needed (hashing
    every label set again was 5 % of a leaf's ``rate`` over 1 250 series)."""
    firsts = set(map(_FIRST, labels))  # each one's first pair (none for an empty set)
    if len(firsts) != 1:
        return False
    first = next(iter(firsts))
    return bool(first) and first[0][0] == METRIC_NAME


_FIRST = operator.itemgetter(slice(0, 1))


def check_unique(sv: StepVector) -> StepVector:
    """Merge rows with equal labels; error when two of them have a value at the same step."""
    if len(set(sv.labels)) == len(sv.labels):
        return sv
    index: dict[Labels, int] = {}
    rows: list[int] = []
    vals = sv.values.copy()
    pres = sv.present.copy()
    for i, lb in enumerate(sv.labels):
        j = index.get(lb)
        if j is None:
            index[lb] = i
            rows.append(i)
            continue
        if (pres[j] & pres[i]).any():
            raise ExecutionError("vector cannot contain metrics with the same labelset")
        vals[j] = np.where(pres[i], vals[i], vals[j])
        pres[j] |= pres[i]
    return StepVector([sv.labels[i] for i in rows], vals[rows], pres[rows])


def _extended_arg(node: ast.Call) -> ast.MatrixSelector | None:
    """The anchored/smoothed range selector argument of a call, if it has one."""
    for a in node.args:
        a = _unparen(a)
        if isinstance(a, ast.MatrixSelector) and (a.vector.anchored or a.vector.smoothed):
            return a
    return None


def _unparen(e: ast.Expr) -> ast.Expr:
    while isinstance(e, ast.ParenExpr):
        e = e.expr
    return e


def _absent_labels(arg: ast.Expr) -> Labels:
    inner = _unparen(arg)
    vs = inner.vector if isinstance(inner, ast.MatrixSelector) else inner
    if not isinstance(vs, ast.VectorSelector):
        return ()
    from collections import Counter

    seen = Counter(m.name for m in vs.matchers)
    eq = {m.name: m.value for m in vs.matchers if m.op == "=" and m.name != METRIC_NAME}
    return tuple(sorted((k, v) for k, v in eq.items() if seen[k] == 1))


def _order_rows(expr: ast.Expr, v: StepVector, rows: np.ndarray) -> np.ndarray:
    """Row order of an instant result: by value for sort()/sort_desc(), by labels for sort_by_label."""
    if isinstance(expr, ast.AggregateExpr) and expr.op in ("topk", "bottomk") and len(rows):
        col = v.values[rows, 0]
        key = np.where(np.isnan(col), -np.inf if expr.op == "topk" else np.inf, col)
        return rows[np.argsort(-key if expr.op == "topk" else key, kind="stable")]
    if not isinstance(expr, ast.Call) or len(rows) == 0:
        return rows
    col = v.values[rows, 0]
    if expr.func == "sort":
        return rows[np.lexsort((np.isnan(col) * 0, col, np.isnan(col)))]
    if expr.func == "sort_desc":
        return rows[np.lexsort((-np.where(np.isnan(col), -np.inf, col), np.isnan(col)))]
    if expr.func in ("sort_by_label", "sort_by_label_desc"):
        names = [a.value for a in expr.args[1:] if isinstance(a, ast.StringLiteral)]
        keyed = sorted(rows.tolist(), key=lambda i: ([_natural(dict(v.labels[i]).get(n, "")) for n in names],
                                                     [_natural(x) for kv in v.labels[i] for x in kv]),
                       reverse=expr.func.endswith("_desc"))  # fmt: skip
        return np.array(keyed, np.int64)
    return rows


def _natural(s: str) -> list[tuple[int, int | str]]:
    """Natural sort key: digit runs compare as numbers ("2" < "10")."""
    import re

    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|\D+", s)]


def _hw(v: np.ndarray, sf: float, tf: float) -> float:
    s0, s1 = 0.0, float(v[0])
    b = float(v[1] - v[0])
    for i in range(1, len(v)):
        x = sf * float(v[i])
        b = tf * (s1 - s0) + (1 - tf) * b if i > 1 else b
        s0, s1 = s1, x + (1 - sf) * (s1 + b)
    return s1
