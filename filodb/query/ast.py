"""The PromQL syntax tree: frozen dataclasses, plain data, no evaluation state.

Times and durations are int milliseconds. ``Expr`` is the union of node types; each node's
PromQL value type comes from :func:`filodb.query.checker.value_type`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from filodb.model.labels import Matcher

MatchCard: TypeAlias = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]


@dataclass(frozen=True)
class DurationExpr:
    """A duration that depends on the query (uses ``step()`` or ``range()``); seconds.

    ``op`` is ``lit`` (``args[0]`` seconds), ``step``, ``range``, ``neg``, ``min_of``,
    ``max_of`` or a binary operator (``+ - * / % ^``) over ``args``.
    """

    op: str
    args: tuple[DurationExpr | float, ...] = ()


@dataclass(frozen=True)
class NumberLiteral:
    value: float


@dataclass(frozen=True)
class StringLiteral:
    value: str


@dataclass(frozen=True)
class VectorSelector:
    """``name{matchers} offset d @ t [anchored|smoothed]``; ``matchers`` include the ``__name__`` one when named."""

    name: str | None
    matchers: tuple[Matcher, ...]
    offset_ms: int = 0
    at: float | str | None = None  # seconds, "start", "end" or None
    offset_expr: DurationExpr | None = None  # when the offset depends on step()/range()
    anchored: bool = False  # ``anchored``: windows start at the last sample before the range
    smoothed: bool = False  # ``smoothed``: values interpolated at the window (or step) edges


@dataclass(frozen=True)
class MatrixSelector:
    vector: VectorSelector
    range_ms: int
    range_expr: DurationExpr | None = None


@dataclass(frozen=True)
class SubqueryExpr:
    expr: Expr
    range_ms: int
    step_ms: int  # 0: the default (global evaluation interval)
    offset_ms: int = 0
    at: float | str | None = None
    range_expr: DurationExpr | None = None
    step_expr: DurationExpr | None = None
    offset_expr: DurationExpr | None = None


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class AggregateExpr:
    op: str
    expr: Expr
    param: Expr | None = None
    grouping: tuple[str, ...] = ()
    without: bool = False
    by: bool = False  # "by ()" given explicitly (printing only)


@dataclass(frozen=True)
class VectorMatching:
    """How two vectors match: ``on``/``ignoring`` labels and the cardinality."""

    card: MatchCard = "one-to-one"
    labels: tuple[str, ...] = ()
    on: bool = False
    include: tuple[str, ...] = ()
    explicit: bool = False  # on()/ignoring() was written (printing only)
    fill_left: float | None = None  # value for a missing left-hand side (fill / fill_left)
    fill_right: float | None = None  # value for a missing right-hand side (fill / fill_right)


@dataclass(frozen=True)
class BinaryExpr:
    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None


@dataclass(frozen=True)
class UnaryExpr:
    op: str
    expr: Expr


@dataclass(frozen=True)
class ParenExpr:
    expr: Expr


Expr: TypeAlias = (
    NumberLiteral | StringLiteral | VectorSelector | MatrixSelector | SubqueryExpr | Call
    | AggregateExpr | BinaryExpr | UnaryExpr | ParenExpr
)  # fmt: skip

COMPARISON_OPS = frozenset({"==", "!=", "<", "<=", ">", ">="})
SET_OPS = frozenset({"and", "or", "unless"})
AGGREGATORS_WITH_PARAM = frozenset(
    {"topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio"}
)
