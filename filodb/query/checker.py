"""Type checking of a parsed PromQL tree (like Prometheus's ``checkAST``)."""

from __future__ import annotations

from filodb.errors import ParseError
from filodb.query import ast
from filodb.query.signatures import FUNCTIONS


def value_type(e: ast.Expr) -> str:
    """The PromQL value type of an expression: scalar, vector, matrix or string."""
    if isinstance(e, ast.NumberLiteral):
        return "scalar"
    if isinstance(e, ast.StringLiteral):
        return "string"
    if isinstance(e, ast.VectorSelector | ast.AggregateExpr):
        return "vector"
    if isinstance(e, ast.MatrixSelector | ast.SubqueryExpr):
        return "matrix"
    if isinstance(e, ast.Call):
        sig = FUNCTIONS.get(e.func)
        return sig.returns if sig else "vector"
    if isinstance(e, ast.ParenExpr | ast.UnaryExpr):
        return value_type(e.expr)
    if isinstance(e, ast.BinaryExpr):
        lt, rt = value_type(e.lhs), value_type(e.rhs)
        return "scalar" if lt == rt == "scalar" else "vector"
    raise TypeError(f"unknown node {e!r}")


_TYPE_NAMES = {
    "scalar": "scalar",
    "vector": "instant vector",
    "matrix": "range vector",
    "string": "string",
}


def _fail(msg: str, text: str) -> None:
    raise ParseError(msg, 0, text)


def check(e: ast.Expr, text: str) -> None:
    """Raise :class:`ParseError` for a well-formed but ill-typed expression."""
    if isinstance(e, ast.VectorSelector):
        if not any(not m.matches_empty() for m in e.matchers):
            _fail("vector selector must contain at least one non-empty matcher", text)
    elif isinstance(e, ast.MatrixSelector):
        check(e.vector, text)
    elif isinstance(e, ast.Call):
        _check_call(e, text)
    elif isinstance(e, ast.AggregateExpr):
        if value_type(e.expr) != "vector":
            _fail(
                f"expected type instant vector in aggregation expression, got {_TYPE_NAMES[value_type(e.expr)]}",
                text,
            )
        if e.param is not None:
            want = "string" if e.op == "count_values" else "scalar"
            if value_type(e.param) != want:
                _fail(
                    f"expected type {_TYPE_NAMES[want]} in aggregation parameter, got {_TYPE_NAMES[value_type(e.param)]}",
                    text,
                )
            check(e.param, text)
        check(e.expr, text)
    elif isinstance(e, ast.BinaryExpr):
        _check_binary(e, text)
    elif isinstance(e, ast.UnaryExpr):
        if value_type(e.expr) not in ("scalar", "vector"):
            _fail(
                "unary expression only allowed on expressions of type scalar or instant vector",
                text,
            )
        check(e.expr, text)
    elif isinstance(e, ast.ParenExpr):
        check(e.expr, text)
    elif isinstance(e, ast.SubqueryExpr):
        if value_type(e.expr) != "vector":
            _fail(
                f"subquery is only allowed on instant vector, got {_TYPE_NAMES[value_type(e.expr)]} instead",
                text,
            )
        check(e.expr, text)


def _check_call(e: ast.Call, text: str) -> None:
    sig = FUNCTIONS.get(e.func)
    if sig is None:
        _fail(f'unknown function with name "{e.func}"', text)
        return
    n, want = len(e.args), len(sig.args)
    lo = want - (sig.optional if sig.optional > 0 else 1 if sig.optional < 0 else 0)
    hi = None if sig.optional < 0 else want
    if n < lo or (hi is not None and n > hi):
        _fail(
            f'expected {want if sig.optional == 0 else f"at least {lo}"} argument(s) in call to "{e.func}", got {n}',
            text,
        )
    for i, a in enumerate(e.args):
        t = sig.args[min(i, want - 1)] if want else "scalar"
        got = value_type(a)
        if got != t:
            _fail(
                f'expected type {_TYPE_NAMES[t]} in call to function "{e.func}", got {_TYPE_NAMES[got]}',
                text,
            )
        if e.func == "info" and i == 1:
            if not isinstance(a, ast.VectorSelector):
                _fail('expected label selectors as the second argument to "info" function', text)
            continue  # a data-label selector may match the empty string
        check(a, text)


def _check_binary(e: ast.BinaryExpr, text: str) -> None:
    lt, rt = value_type(e.lhs), value_type(e.rhs)
    for t in (lt, rt):
        if t not in ("scalar", "vector"):
            _fail("binary expression must contain only scalar and instant vector types", text)
    if e.op in ast.SET_OPS:
        if lt != "vector" or rt != "vector":
            _fail(f'set operator "{e.op}" not allowed in binary scalar expression', text)
    if e.return_bool and e.op not in ast.COMPARISON_OPS:
        _fail("bool modifier can only be used on comparison operators", text)
    if e.op in ast.COMPARISON_OPS and lt == rt == "scalar" and not e.return_bool:
        _fail("comparisons between scalars must use BOOL modifier", text)
    if e.matching is not None and (lt == "scalar" or rt == "scalar"):
        if (
            e.matching.explicit
            or e.matching.card != "one-to-one"
            or e.matching.fill_left is not None
            or e.matching.fill_right is not None
        ):
            _fail("vector matching only allowed between instant vectors", text)
    if e.matching is not None and e.op in ast.SET_OPS and e.matching.card != "one-to-one":
        _fail(f'no grouping allowed for "{e.op}" operation', text)
    if (
        e.matching is not None
        and e.op in ast.SET_OPS
        and (e.matching.fill_left is not None or e.matching.fill_right is not None)
    ):
        _fail(f'fill modifiers are not allowed for "{e.op}" operation', text)
    check(e.lhs, text)
    check(e.rhs, text)
