"""AST → PromQL text; the output parses back to an equal tree (tests check the round trip)."""

from __future__ import annotations

import math

from filodb.model.labels import METRIC_NAME, Matcher
from filodb.query import ast, durations


def duration(ms: int) -> str:
    """Milliseconds as a Prometheus duration (``1h30m``, ``90s``, ``250ms``)."""
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    out = []
    for unit, size in (("y", 31_536_000_000), ("w", 604_800_000), ("d", 86_400_000),
                       ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):  # fmt: skip
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return sign + "".join(out)


def _number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return repr(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)


def _string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(name: str) -> str:
    from filodb.model.labels import valid_label_name

    return name if valid_label_name(name) else _string(name)


def _matcher(m: Matcher) -> str:
    return f"{_label(m.name)}{m.op}{_string(m.value)}"


def _dur(ms: int, expr: ast.DurationExpr | None) -> str:
    return f"({durations.to_string(expr)})" if expr is not None else duration(ms)


def _mods(
    offset_ms: int, at: float | str | None, offset_expr: ast.DurationExpr | None = None
) -> str:
    out = ""
    if at is not None:
        out += f" @ {at}()" if isinstance(at, str) else f" @ {at:.3f}"
    if offset_expr is not None:
        out += f" offset {_dur(0, offset_expr)}"
    elif offset_ms:
        out += f" offset {duration(offset_ms)}"
    return out


def _selector(vs: ast.VectorSelector) -> str:
    ms = list(vs.matchers)
    head = ""
    if (
        vs.name is not None
        and ms
        and ms[0].name == METRIC_NAME
        and ms[0].op == "="
        and ms[0].value == vs.name
    ):
        from filodb.model.labels import valid_label_name

        if valid_label_name(vs.name.replace(":", "_")):
            head, ms = vs.name, ms[1:]
    body = "{" + ", ".join(_matcher(m) for m in ms) + "}" if ms or not head else ""
    return head + body


def _ext(vs: ast.VectorSelector) -> str:
    return " anchored" if vs.anchored else " smoothed" if vs.smoothed else ""


def to_string(e: ast.Expr) -> str:
    """PromQL text of a tree."""
    if isinstance(e, ast.NumberLiteral):
        return _number(e.value)
    if isinstance(e, ast.StringLiteral):
        return _string(e.value)
    if isinstance(e, ast.VectorSelector):
        return _selector(e) + _ext(e) + _mods(e.offset_ms, e.at, e.offset_expr)
    if isinstance(e, ast.MatrixSelector):
        v = e.vector
        rng = f"[{_dur(e.range_ms, e.range_expr)}]"
        return _selector(v) + rng + _ext(v) + _mods(v.offset_ms, v.at, v.offset_expr)
    if isinstance(e, ast.SubqueryExpr):
        step = _dur(e.step_ms, e.step_expr) if (e.step_ms or e.step_expr is not None) else ""
        return f"{to_string(e.expr)}[{_dur(e.range_ms, e.range_expr)}:{step}]" + _mods(
            e.offset_ms, e.at, e.offset_expr
        )
    if isinstance(e, ast.Call):
        return f"{e.func}({', '.join(to_string(a) for a in e.args)})"
    if isinstance(e, ast.ParenExpr):
        return f"({to_string(e.expr)})"
    if isinstance(e, ast.UnaryExpr):
        return f"{e.op}{to_string(e.expr)}"
    if isinstance(e, ast.AggregateExpr):
        args = ([to_string(e.param)] if e.param is not None else []) + [to_string(e.expr)]
        grouping = ""
        if e.without or e.grouping or e.by:
            kw = "without" if e.without else "by"
            grouping = f" {kw} ({', '.join(_label(g) for g in e.grouping)})"
        return f"{e.op}{grouping} ({', '.join(args)})"
    if isinstance(e, ast.BinaryExpr):
        mods = " bool" if e.return_bool else ""
        vm = e.matching
        if vm is not None:
            if vm.explicit or vm.labels:
                mods += (
                    f" {'on' if vm.on else 'ignoring'}({', '.join(_label(x) for x in vm.labels)})"
                )
            if vm.card == "many-to-one":
                mods += f" group_left({', '.join(_label(x) for x in vm.include)})"
            elif vm.card == "one-to-many":
                mods += f" group_right({', '.join(_label(x) for x in vm.include)})"
            if vm.fill_left is not None:
                mods += f" fill_left({_number(vm.fill_left)})"
            if vm.fill_right is not None:
                mods += f" fill_right({_number(vm.fill_right)})"
        return f"{_wrap(e.lhs, e.op, False)} {e.op}{mods} {_wrap(e.rhs, e.op, True)}"
    raise TypeError(f"cannot print {e!r}")


_PREC = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
         "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}  # fmt: skip


def _wrap(child: ast.Expr, parent_op: str, right: bool) -> str:
    """Parenthesise an operand only where precedence or associativity needs it."""
    s = to_string(child)
    if not isinstance(child, ast.BinaryExpr):
        return s
    pc, pp = _PREC[child.op], _PREC[parent_op]
    right_assoc = parent_op == "^"
    need = pc < pp or (pc == pp and (right != right_assoc))
    return f"({s})" if need else s
