"""Whether a range query may be split into pieces of steps (the web tier's results cache), and
how far past a step's time its value may read.

PromQL evaluates every step on its own: a step's value depends on the data, the step's time,
the step width (``step()`` in durations, a subquery's default step) and the lookback, never on
the other steps, and subquery steps are aligned to absolute multiples of their step. So a range
query's answer over ``[start, end]`` is the union of its answers over pieces, except where an
expression reads the query's range itself: ``@ start()``, ``@ end()``, ``range()`` in a
duration and the functions ``start()``, ``end()`` and ``range()`` (the query's start, end and
their difference as a value). Those are not split. ``smoothed`` selectors interpolate with the sample after a
step, so they are not split either (their reach has no bound).

A step's value reads samples up to its own time, later by a negative offset (``offset -5m``
reads 5 m ahead), or at a fixed ``@ t``: :class:`Reach` says how far, so the cache knows when
a step is final. ``time()``, ``timestamp()`` and the date functions are functions of the
step's time and the data: safe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from filodb.query import ast

RANGE_FUNCTIONS = frozenset({"start", "end", "range"})  # values of the query's range


@dataclass(frozen=True)
class Reach:
    """``ahead_ms``: how far after a step's time its value may read (sum of the negative
    offsets on any path, an upper bound); ``at_ms``: the latest ``@ t`` fixed time, if any."""

    ahead_ms: int = 0
    at_ms: int | None = None


def reach(e: ast.Expr) -> Reach | None:
    """The :class:`Reach` of ``e``, or None when ``e`` reads the query's range (not splittable)."""
    ahead = 0
    at: int | None = None
    stack: list[object] = [e]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.DurationExpr):
            if n.op == "range":
                return None
        elif isinstance(n, ast.Call):
            if n.func in RANGE_FUNCTIONS:
                return None
        elif isinstance(n, ast.VectorSelector | ast.SubqueryExpr):
            if n.at in ("start", "end") or (isinstance(n, ast.VectorSelector) and n.smoothed):
                return None
            if n.offset_expr is not None:  # depends on step(): not worth a bound
                return None
            ahead += max(0, -n.offset_ms)
            if isinstance(n.at, int | float):
                at = max(at if at is not None else int(n.at * 1000), int(n.at * 1000))
        if dataclasses.is_dataclass(n):
            for f in dataclasses.fields(n):
                v = getattr(n, f.name)
                if isinstance(v, tuple):
                    stack.extend(x for x in v if dataclasses.is_dataclass(x))
                elif dataclasses.is_dataclass(v):
                    stack.append(v)
    return Reach(ahead, at)
