"""A parsed tree as Prometheus 3's ``/api/v1/parse_query`` answers it (``translateAST`` in
``web/api/v1/translate_ast.go``): nested objects with a ``type`` of ``vectorSelector``,
``matrixSelector``, ``subquery``, ``call``, ``aggregation``, ``binaryExpr``, ``unaryExpr``,
``parenExpr``, ``numberLiteral``, ``stringLiteral`` (and ``durationExpr`` for ranges, steps
and offsets that depend on ``step()``/``range()``).

As in Prometheus: the metric-name matcher comes last among a selector's matchers, durations and
offsets are milliseconds, ``timestamp`` is the ``@`` time in milliseconds (``startOrEnd`` is
``"start"``/``"end"`` for ``@ start()``/``@ end()``), numbers are strings, ``matching`` is
null unless both sides are vectors (set operators are ``many-to-many``).
"""

from __future__ import annotations

from typing import Any

from filodb.model.labels import METRIC_NAME
from filodb.model.numfmt import format_value
from filodb.query import ast
from filodb.query.checker import value_type
from filodb.query.signatures import FUNCTIONS

_DUR_OPS = {"neg": "-", "lit": "", "min_of": "min_of", "max_of": "max_of"}


def _duration(d: ast.DurationExpr | float | None) -> Any:
    if d is None:
        return None
    if not isinstance(d, ast.DurationExpr):
        return {"type": "numberLiteral", "val": format_value(float(d)), "duration": False}
    if d.op == "lit":
        return _duration(float(d.args[0]))  # type: ignore[arg-type]
    args = [_duration(a) for a in d.args]
    lhs, rhs = (None, args[0]) if len(args) == 1 else (args + [None, None])[:2]
    return {"type": "durationExpr", "op": _DUR_OPS.get(d.op, d.op), "lhs": lhs, "rhs": rhs,
            "wrapped": False}  # fmt: skip


def _matchers(vs: ast.VectorSelector) -> list[dict[str, str]]:
    ms = list(vs.matchers)
    if vs.name and ms and ms[0].name == METRIC_NAME and ms[0].op == "=" and ms[0].value == vs.name:
        ms = ms[1:] + ms[:1]  # Prometheus appends the name matcher after the braces' ones
    return [{"name": m.name, "value": m.value, "type": m.op} for m in ms]


def _at(at: float | str | None) -> tuple[int | None, str | None]:
    if at is None:
        return None, None
    if isinstance(at, str):
        return None, at
    return int(round(at * 1000)), None


def _selector_fields(vs: ast.VectorSelector) -> dict[str, Any]:
    ts, start_or_end = _at(vs.at)
    return {"name": vs.name or "", "offset": vs.offset_ms, "offsetExpr": _duration(vs.offset_expr),
            "matchers": _matchers(vs), "timestamp": ts, "startOrEnd": start_or_end,
            "anchored": vs.anchored, "smoothed": vs.smoothed}  # fmt: skip


def _matching(e: ast.BinaryExpr) -> Any:
    if value_type(e.lhs) != "vector" or value_type(e.rhs) != "vector":
        return None
    vm = e.matching or ast.VectorMatching()
    card = "many-to-many" if e.op in ast.SET_OPS and vm.card == "one-to-one" else vm.card
    return {"card": card, "labels": list(vm.labels), "on": vm.on, "include": list(vm.include),
            "fillValues": {"lhs": vm.fill_left, "rhs": vm.fill_right}}  # fmt: skip


def ast_json(e: ast.Expr) -> Any:
    """The JSON-ready object of one node (recursively)."""
    if isinstance(e, ast.NumberLiteral):
        return {"type": "numberLiteral", "val": format_value(e.value)}
    if isinstance(e, ast.StringLiteral):
        return {"type": "stringLiteral", "val": e.value}
    if isinstance(e, ast.VectorSelector):
        return {"type": "vectorSelector", **_selector_fields(e)}
    if isinstance(e, ast.MatrixSelector):
        f = _selector_fields(e.vector)
        return {"type": "matrixSelector", "name": f["name"], "range": e.range_ms,
                "rangeExpr": _duration(e.range_expr), **{k: v for k, v in f.items() if k != "name"}}  # fmt: skip
    if isinstance(e, ast.SubqueryExpr):
        ts, start_or_end = _at(e.at)
        return {"type": "subquery", "expr": ast_json(e.expr), "range": e.range_ms,
                "rangeExpr": _duration(e.range_expr), "offset": e.offset_ms,
                "offsetExpr": _duration(e.offset_expr), "step": e.step_ms,
                "stepExpr": _duration(e.step_expr), "timestamp": ts, "startOrEnd": start_or_end}  # fmt: skip
    if isinstance(e, ast.Call):
        sig = FUNCTIONS.get(e.func)
        func = {"name": e.func, "argTypes": list(sig.args) if sig else [],
                "variadic": sig.optional if sig else 0, "returnType": sig.returns if sig else "vector"}  # fmt: skip
        return {"type": "call", "func": func, "args": [ast_json(a) for a in e.args]}
    if isinstance(e, ast.ParenExpr):
        return {"type": "parenExpr", "expr": ast_json(e.expr)}
    if isinstance(e, ast.UnaryExpr):
        return {"type": "unaryExpr", "op": e.op, "expr": ast_json(e.expr)}
    if isinstance(e, ast.AggregateExpr):
        return {"type": "aggregation", "op": e.op, "expr": ast_json(e.expr),
                "param": ast_json(e.param) if e.param is not None else None,
                "grouping": list(e.grouping), "without": e.without}  # fmt: skip
    if isinstance(e, ast.BinaryExpr):
        return {"type": "binaryExpr", "op": e.op, "lhs": ast_json(e.lhs), "rhs": ast_json(e.rhs),
                "matching": _matching(e), "bool": e.return_bool}  # fmt: skip
    raise TypeError(f"cannot translate {e!r}")
