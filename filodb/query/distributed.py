"""Distributed planning: push query work down to the shards, reduce their answers above them.

A subtree is *shard-local* when its answer for a series depends on that series alone:
selectors, range functions over selectors or local subqueries, per-series math and label
functions, and arithmetic with literal scalars. Every series lives in exactly one shard, so a
local subtree evaluated on each shard and concatenated equals the subtree evaluated on all data.

:class:`DistributedEngine` (web tier) evaluates:

- an aggregation over a local subtree by sending the *map step* to every shard and reducing
  the partial answers: ``min``/``max``/``group``/``topk``/``bottomk`` are re-applied
  with the same grouping, ``count`` becomes a ``sum`` of counts; ``sum`` ships Kahan partial
  sums with their compensations (so values that cancel across shards add up as Prometheus's
  single Kahan sum does), ``avg`` those plus scaled ones (a sum that overflows while the mean
  does not) and ``count`` in the same answer, ``stddev``/``stdvar`` the partial sums, ``count`` and ``sum`` of
  squares. An aggregation whose parameter reads series (``topk(scalar(k), x)``) is not pushed
  down: a shard may not hold the parameter's series;
- any other local subtree (e.g. a bare ``rate(x[5m])``) by concatenating the shards' answers;
- everything else as the plain :class:`~filodb.query.engine.Engine` does, whose selectors
  fetch raw series through the source.

The engine runs over a :class:`ShardedSource`: a :class:`SeriesSource` over many shards that
can also evaluate a pushed-down subtree on some of them (the web tier's
:class:`~filodb.tasks.fanout.ClusterSource` over Celery, or :class:`LocalShards` over
in-process shards). :func:`eval_local` is the shard side: the same engine on one shard's
source, answering a :class:`StepVector` and the samples and series it read. This module knows
no transport: the wire format and the fan-out live in :mod:`filodb.tasks`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from filodb.errors import ExecutionError, QueryTimeoutError
from filodb.model.labels import METRIC_NAME, Labels, Matcher
from filodb.model.shardkey import SpreadRule, query_shards
from filodb.model.source import SeriesBlock, SeriesSource
from filodb.query import ast
from filodb.query.aggregations import SCALE, aggregate, group_keys, sum_partials
from filodb.query.engine import TOO_MANY_SAMPLES, TOO_MANY_SERIES, Engine, EvalContext, check_unique
from filodb.query.functions import FUNCTIONS
from filodb.query.parser import parse
from filodb.query.printer import to_string
from filodb.query.rangefns import RANGE_FUNCTIONS, RANGE_FUNCTIONS_WITH_SCALAR
from filodb.query.values import StepVector

_ACROSS_SERIES = {  # functions whose answer for a series depends on other series (or none)
    "vector", "scalar", "time", "pi", "step", "range", "start", "end", "info", "sort", "sort_desc",
    "sort_by_label", "sort_by_label_desc",
    "histogram_quantile", "histogram_quantiles", "histogram_fraction",  # buckets are series
}  # fmt: skip
_LOCAL_FUNCS = (set(RANGE_FUNCTIONS) | set(RANGE_FUNCTIONS_WITH_SCALAR) | set(FUNCTIONS)) - _ACROSS_SERIES | {
    "timestamp"}  # fmt: skip
_PUSHABLE_AGGS = {"sum", "min", "max", "count", "group", "avg", "stddev", "stdvar", "topk", "bottomk",
                  "count_values"}  # fmt: skip


def is_local(e: ast.Expr) -> bool:
    """Whether ``e`` yields an instant vector computable shard by shard."""
    if isinstance(e, ast.VectorSelector):
        return True
    if isinstance(e, ast.ParenExpr | ast.UnaryExpr):
        return is_local(e.expr)
    if isinstance(e, ast.Call):
        if e.func not in _LOCAL_FUNCS:
            return False
        vec_args = [a for a in e.args if not isinstance(a, ast.NumberLiteral | ast.StringLiteral)]
        return len(vec_args) == 1 and _local_arg(vec_args[0])
    if isinstance(e, ast.BinaryExpr):
        if e.op in ast.SET_OPS:
            return False
        sides = [e.lhs, e.rhs]
        lits = [s for s in sides if isinstance(_unparen(s), ast.NumberLiteral)]
        return len(lits) == 1 and is_local(next(s for s in sides if s is not lits[0]))
    return False


def _local_arg(a: ast.Expr) -> bool:
    if isinstance(a, ast.MatrixSelector):
        return True
    if isinstance(a, ast.SubqueryExpr):
        return is_local(a.expr)
    return is_local(a)


def _unparen(e: ast.Expr) -> ast.Expr:
    while isinstance(e, ast.ParenExpr):
        e = e.expr
    return e


def selectors(e: Any) -> list[ast.VectorSelector]:
    """Every vector selector in a tree."""
    if isinstance(e, ast.VectorSelector):
        return [e]
    out = []
    for name in ("expr", "vector", "lhs", "rhs", "param"):
        child = getattr(e, name, None)
        if child is not None:
            out.extend(selectors(child))
    for a in getattr(e, "args", ()) or ():
        out.extend(selectors(a))
    return out


# --- the source the distributed engine reads ----------------------------------------------
class ShardedSource(SeriesSource, Protocol):
    """A :class:`SeriesSource` over the shards of one dataset that can also evaluate a
    pushed-down subtree on some of them."""

    num_shards: int
    spread: int | SpreadRule

    def eval_shards(
        self, shards: Sequence[int], params: dict[str, Any]
    ) -> list[tuple[StepVector, Sequence[int]]]:
        """:func:`eval_local` with ``params`` on each of ``shards`` that can answer: its
        :class:`StepVector` and ``(samples, series)`` read, in shard order."""
        ...


# --- shard side -------------------------------------------------------------------------
def eval_local(source: SeriesSource, p: dict[str, Any]) -> tuple[StepVector, list[int]]:
    """Evaluate a pushed-down PromQL subtree (``p`` as :meth:`DistributedEngine.leaf_params`
    builds it) on one shard's source; the answer and the ``[samples, series]`` it read.

    With ``p["partial"]`` (``"sum"`` or ``"avg"``) the subtree is a ``sum`` and the answer is
    its map step, :func:`~filodb.query.aggregations.sum_partials` (``"avg"``: with the scaled
    blocks and the count)."""
    timeout = float(p["timeout"])
    if "deadline_unix" in p:  # what is left of the query's time once the task runs (not queued)
        timeout = min(timeout, float(p["deadline_unix"]) - time.time())
        if timeout <= 0:
            raise QueryTimeoutError("query timed out before a shard could evaluate it")
    eng = Engine(source, lookback_ms=int(p["lookback"]), max_samples=int(p["max_samples"]),
                 timeout_s=timeout, max_series=int(p.get("max_series", 1_000_000)))  # fmt: skip
    step = int(p["step"])
    if step > 0:
        times = np.arange(int(p["start"]), int(p["end"]) + 1, step, dtype=np.int64)
    else:  # an instant query: one time (no 1 ms grid from start to end first)
        times = np.array([int(p["start"])], np.int64)
    ctx = eng.make_ctx(times, int(p["qstart"]), int(p["qend"]), int(p["step"]))
    tree = parse(p["query"])
    partial = p.get("partial")
    project = p.get("project")
    if project is not None:  # only the group keys travel: see DistributedEngine._projected
        v = eng.eval(tree, ctx)
        if not isinstance(v, StepVector):
            raise ExecutionError(f"pushed-down expression {p['query']!r} is not an instant vector")
        grouping, without = [str(g) for g in project[0]], bool(project[1])
        return StepVector(group_keys(v.labels, grouping, without), v.values, v.present), ctx.samples
    if partial:
        if not (isinstance(tree, ast.AggregateExpr) and tree.op == "sum"):
            raise ExecutionError(f"partial answers are for sums, not {p['query']!r}")
        v = sum_partials(eng.eval(tree.expr, ctx), tree.grouping, tree.without, partial == "avg")
    else:
        v = eng.eval(tree, ctx)
    if not isinstance(v, StepVector):
        raise ExecutionError(f"pushed-down expression {p['query']!r} is not an instant vector")
    return v, ctx.samples


class LocalShards:
    """A :class:`ShardedSource` over shards in this process (one :class:`SeriesSource` each):
    the distributed engine without a transport, for tests and the conformance runner."""

    def __init__(self, shards: Sequence[SeriesSource], spread: int | SpreadRule = 0) -> None:
        self.shards = list(shards)
        self.num_shards = len(self.shards)
        self.spread = spread

    def eval_shards(
        self, shards: Sequence[int], params: dict[str, Any]
    ) -> list[tuple[StepVector, Sequence[int]]]:
        return [eval_local(self.shards[s], params) for s in sorted(shards)]

    def _each(self, matchers: Sequence[Matcher]) -> list[SeriesSource]:
        return [self.shards[s] for s in query_shards(list(matchers), self.num_shards, self.spread)]

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> SeriesBlock:
        return SeriesBlock.concat(
            [s.select(matchers, start_ms, end_ms) for s in self._each(matchers)]
        )

    def series(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Labels]:
        return sorted(
            {lb for s in self._each(matchers) for lb in s.series(matchers, start_ms, end_ms)}
        )

    def label_names(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[str]:
        return sorted(
            {n for s in self._each(matchers) for n in s.label_names(matchers, start_ms, end_ms)}
        )

    def label_values(
        self, name: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> list[str]:
        return sorted(
            {
                v
                for s in self._each(matchers)
                for v in s.label_values(name, matchers, start_ms, end_ms)
            }
        )


# --- above the shards ---------------------------------------------------------------------
class DistributedEngine(Engine):
    """The engine above the shards: pushes local work to them, reduces their answers."""

    source: ShardedSource

    def leaf_params(self, e: ast.Expr, ctx: EvalContext) -> dict[str, Any]:
        """What a shard needs to evaluate ``e`` at ``ctx``'s steps (see :func:`eval_local`):
        the time left of the query travels as a wall-clock deadline, so a shard stops its work
        when the query has timed out here, however long the task waited in its queue."""
        left = max(0.0, ctx.deadline - time.monotonic())
        return {
            "query": to_string(e), "lookback": self.lookback_ms, "timeout": left,
            "deadline_unix": time.time() + left, "qstart": ctx.start, "qend": ctx.end,
            "start": int(ctx.times[0]), "end": int(ctx.times[-1]), "step": ctx.step,
            # the limits are the query's: a shard may use what is left, the sum is checked here
            "max_samples": self.max_samples - ctx.samples[0],
            "max_series": self.max_series - ctx.samples[1],
        }  # fmt: skip

    def _answers(
        self, e: ast.Expr, ctx: EvalContext, partial: str | None = None,
        project: list[Any] | None = None,
    ) -> list[StepVector]:  # fmt: skip
        """Each shard's answer to ``e`` (see :func:`eval_local` for ``partial`` and
        ``project``)."""
        sels = selectors(e)
        matchers: list[Matcher] = list(sels[0].matchers) if len(sels) == 1 else []
        src = self.source
        shards = query_shards(matchers, src.num_shards, src.spread)
        params = self.leaf_params(e, ctx)
        if partial:
            params["partial"] = partial
        if project is not None:
            params["project"] = project
        parts = []
        for v, read in src.eval_shards(shards, params):
            self._count_read(read, ctx)
            parts.append(v)
        return parts

    def _leaf(self, e: ast.Expr, ctx: EvalContext) -> StepVector:
        return _concat(self._answers(e, ctx), len(ctx.times))

    def _count_read(self, read: Sequence[int], ctx: EvalContext) -> None:
        ctx.samples[0] += int(read[0])
        ctx.samples[1] += int(read[1])
        if ctx.samples[0] > self.max_samples:
            raise ExecutionError(TOO_MANY_SAMPLES)
        if ctx.samples[1] > self.max_series:
            raise ExecutionError(TOO_MANY_SERIES.format(limit=self.max_series))

    def eval(self, node: ast.Expr, ctx: EvalContext) -> Any:
        if len(ctx.times) > 1 and not _regular(ctx.times, ctx.step):
            return super().eval(node, ctx)  # irregular steps (inside a subquery): evaluate here
        if (
            isinstance(node, ast.AggregateExpr)
            and node.op in _PUSHABLE_AGGS
            and is_local(node.expr)
            and not (node.param is not None and selectors(node.param))
        ):  # a shard lacks the
            # param's series (``topk(scalar(foo), x)``): such a param is evaluated here
            return self._pushed_aggregate(node, ctx)
        if (
            isinstance(node, ast.AggregateExpr)
            and node.op in _PROJECTED_AGGS
            and _distinct_series(node.expr)
            and not (node.param is not None and selectors(node.param))
        ):
            return self._projected(node, ctx)
        if is_local(node):
            return check_unique(self._leaf(node, ctx))
        return super().eval(node, ctx)

    def _projected(self, node: ast.AggregateExpr, ctx: EvalContext) -> StepVector:
        """An aggregation that needs every series' value (``quantile``) but of its labels only
        the group: the shards answer their rows labelled by group key (``project``), so a
        dashboard's ``quantile(0.5, x)`` does not ship and rebuild every series' label set.
        Only for expressions whose series stay distinct across shards (see
        :func:`_distinct_series`): there the duplicate check of the whole vector has nothing
        to find."""
        g, wo = node.grouping, node.without
        v = _concat(self._answers(node.expr, ctx, project=[list(g), wo]), len(ctx.times))
        param = self.eval(node.param, ctx) if node.param is not None else None
        return aggregate(node.op, v, param, g, wo)

    def _pushed_aggregate(self, node: ast.AggregateExpr, ctx: EvalContext) -> StepVector:
        param = self.eval(node.param, ctx) if node.param is not None else None
        g, wo = node.grouping, node.without

        def part(op: str, expr: ast.Expr) -> StepVector:
            return self._leaf(ast.AggregateExpr(op, expr, node.param, g, wo, node.by), ctx)

        if node.op in ("min", "max", "group", "topk", "bottomk"):
            return aggregate(node.op, part(node.op, node.expr), param, g, wo)
        if node.op == "count":
            return aggregate("sum", part("count", node.expr), None, g, wo)
        if node.op == "count_values":  # shards count per value; equal label sets add up
            return aggregate("sum", part("count_values", node.expr), None, [], True)
        total, scaled, c = self._sum(node, ctx)
        if node.op == "sum":
            return total
        if node.op != "avg":
            c = aggregate("sum", part("count", node.expr), None, g, wo)
        total, c = _align(total, c)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mean = total.values / c.values
            if node.op == "avg":  # where the sum overflows the mean may not: use the scaled one
                _, scaled = _align(total, scaled)
                alt = scaled.values / c.values / SCALE
                return StepVector(
                    total.labels,
                    np.where(np.isinf(mean) & np.isfinite(alt), alt, mean),
                    total.present,
                )
            sq_expr = ast.BinaryExpr("^", ast.ParenExpr(node.expr), ast.NumberLiteral(2.0))
            q = aggregate("sum", part("sum", sq_expr), None, g, wo)
            _, q = _align(total, q)
            var = np.maximum(q.values / c.values - mean * mean, 0.0)
        return StepVector(total.labels, var if node.op == "stdvar" else np.sqrt(var), total.present)

    def _sum(
        self, node: ast.AggregateExpr, ctx: EvalContext
    ) -> tuple[StepVector, StepVector, StepVector]:
        """``sum`` of ``node``'s expression and grouping as Prometheus computes it over all series
        (Kahan), from the shards' partial sums; for ``avg``, also the sum of the values times
        :data:`~filodb.query.aggregations.SCALE` and the count of series, from the same
        answers (else empty)."""
        g, wo, n = node.grouping, node.without, len(ctx.times)
        blocks = 5 if node.op == "avg" else 2
        sum_node = ast.AggregateExpr("sum", node.expr, None, g, wo, node.by)
        answers = [
            _blocks(v, blocks)
            for v in self._answers(sum_node, ctx, "avg" if blocks == 5 else "sum")
        ]
        total = aggregate("sum", _concat([b for a in answers for b in a[:2]], n), None, g, wo)
        scaled = aggregate("sum", _concat([b for a in answers for b in a[2:4]], n), None, g, wo)
        count = aggregate("sum", _concat([b for a in answers for b in a[4:]], n), None, g, wo)
        return total, scaled, count


_PROJECTED_AGGS = {"quantile"}  # need every value, and of the labels only the group


def _distinct_series(e: ast.Expr) -> bool:
    """Whether ``e``'s answer has one row per series of one metric (a selector with
    ``__name__="..."``, bare or under a range function): rows of different shards then never
    share a label set, even once the name is dropped."""
    e = _unparen(e)
    if isinstance(e, ast.Call):
        if e.func not in RANGE_FUNCTIONS or len(e.args) != 1:
            return False
        arg = _unparen(e.args[0])
        if not isinstance(arg, ast.MatrixSelector):
            return False
        e = arg.vector
    if not isinstance(e, ast.VectorSelector) or e.anchored or e.smoothed:
        return False
    return any(m.name == METRIC_NAME and m.op == "=" for m in e.matchers)


def _regular(times: np.ndarray, step: int) -> bool:
    """Whether ``times`` are the query's steps: ``step`` apart. Compared without building the
    grid (a subquery of an instant query has step 0: a 1 ms grid over its range was 20 GB)."""
    return step > 0 and bool((np.diff(times) == step).all())


def _blocks(v: StepVector, k: int) -> list[StepVector]:
    """``v``'s rows as ``k`` equal blocks."""
    n = len(v) // k
    return [v.take(list(range(i * n, (i + 1) * n))) for i in range(k)]


def _concat(parts: list[StepVector], n_steps: int) -> StepVector:
    parts = [p for p in parts if len(p)]
    if not parts:
        return StepVector.empty(n_steps)
    return StepVector([lb for p in parts for lb in p.labels],
                      np.concatenate([p.values for p in parts]),
                      np.concatenate([p.present for p in parts]))  # fmt: skip


def _align(a: StepVector, b: StepVector) -> tuple[StepVector, StepVector]:
    """``b`` reordered to ``a``'s label order (same groups on both sides)."""
    idx = {lb: i for i, lb in enumerate(b.labels)}
    rows = [idx[lb] for lb in a.labels]
    return a, b.take(rows)


__all__ = ["DistributedEngine", "LocalShards", "ShardedSource", "eval_local", "is_local"]
