"""PromQL text as Prometheus writes it: its ``String()`` (:func:`prom_string`) and its
``Pretty(0)`` (:func:`pretty`, what ``/api/v1/format_query`` answers).

:mod:`filodb.query.printer` writes text that parses back to an equal tree (the planner ships it
to the shards); this module follows Prometheus 3's ``promql/parser/printer.go`` and
``prettier.go`` instead: matchers sorted and joined by ``,``, ``sum by (job) (x)``,
``on (a) group_left (b)``, numbers as Go's ``FormatFloat(v, 'f', -1, 64)``, strings as Go's
``strconv.Quote``, durations with years and weeks only when exact (``90d``, not ``12w6d``).
``pretty`` splits a node over lines, two spaces per level, when its one-line text is longer than
100 bytes.

Known differences: the parser folds constant duration expressions (``x[5m+1m]`` prints as
``x[6m]``) and keeps no trace of a metric name written inside the braces
(``{__name__="x"}`` prints as ``x``).
"""

from __future__ import annotations

from filodb.model.labels import METRIC_NAME, Matcher, valid_label_name
from filodb.model.numfmt import format_value, format_value_g
from filodb.query import ast, durations

MAX_LINE = 100
_INDENT = "  "


def prom_duration(ms: int) -> str:
    """Go ``model.Duration.String()``: ``1h30m``, ``90d``, ``2w``, ``1y``, ``250ms``, ``0s``."""
    if ms == 0:
        return "0s"
    out = []
    for unit, size, exact in (("y", 31_536_000_000, True), ("w", 604_800_000, True),
                              ("d", 86_400_000, False), ("h", 3_600_000, False),
                              ("m", 60_000, False), ("s", 1000, False), ("ms", 1, False)):  # fmt: skip
        if exact and ms % size:
            continue
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)


_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
        "\v": "\\v", "\\": "\\\\", '"': '\\"'}  # fmt: skip


def go_quote(s: str) -> str:
    """Go ``strconv.Quote``: double quotes, C escapes, ``\\x``/``\\u``/``\\U`` for the rest."""
    out = []
    for ch in s:
        if ch in _ESC:
            out.append(_ESC[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _label(name: str) -> str:
    return name if valid_label_name(name) else go_quote(name)


def _labels(names: tuple[str, ...]) -> str:
    return ", ".join(_label(n) for n in names)


def _matcher(m: Matcher) -> str:
    return f"{_label(m.name)}{m.op}{go_quote(m.value)}"


def _dur(ms: int, expr: ast.DurationExpr | None) -> str:
    return durations.to_string(expr) if expr is not None else prom_duration(ms)


def _at(at: float | str | None) -> str:
    if at is None:
        return ""
    return f" @ {at}()" if isinstance(at, str) else f" @ {at:.3f}"


def _offset(ms: int, expr: ast.DurationExpr | None) -> str:
    if expr is not None:
        return f" offset {durations.to_string(expr)}"
    if ms > 0:
        return f" offset {prom_duration(ms)}"
    if ms < 0:
        return f" offset -{prom_duration(-ms)}"
    return ""


def _ext(vs: ast.VectorSelector) -> str:
    return " anchored" if vs.anchored else " smoothed" if vs.smoothed else ""


def _selector(vs: ast.VectorSelector) -> str:
    name = vs.name or ""
    ms = sorted(
        _matcher(m)
        for m in vs.matchers
        if not (m.name == METRIC_NAME and m.op == "=" and m.value == name and name)
    )
    return name + ("{" + ",".join(ms) + "}" if ms else "")


def _agg_head(e: ast.AggregateExpr) -> str:
    if e.without:
        return f"{e.op} without ({_labels(e.grouping)}) "
    if e.grouping:
        return f"{e.op} by ({_labels(e.grouping)}) "
    return e.op


def _matching(e: ast.BinaryExpr) -> str:
    vm = e.matching
    if vm is None:
        return ""
    out = ""
    grouped = vm.card in ("many-to-one", "one-to-many")
    if vm.labels or vm.on or grouped:
        out = f" {'on' if vm.on else 'ignoring'} ({_labels(vm.labels)})"
    if grouped:
        side = "left" if vm.card == "many-to-one" else "right"
        out += f" group_{side} ({_labels(vm.include)})"
    fl, fr = vm.fill_left, vm.fill_right
    if fl is not None and fr is not None and fl == fr:
        out += f" fill ({format_value_g(fl)})"
    else:
        if fl is not None:
            out += f" fill_left ({format_value_g(fl)})"
        if fr is not None:
            out += f" fill_right ({format_value_g(fr)})"
    return out


def _binop_head(e: ast.BinaryExpr) -> str:
    return e.op + (" bool" if e.return_bool else "") + _matching(e)


def _subquery_suffix(e: ast.SubqueryExpr) -> str:
    step = ""
    if e.step_ms:
        step = prom_duration(e.step_ms)
    elif e.step_expr is not None:
        step = durations.to_string(e.step_expr)
    rng = _dur(e.range_ms, e.range_expr)
    return f"[{rng}:{step}]{_at(e.at)}{_offset(e.offset_ms, e.offset_expr)}"


def prom_string(e: ast.Expr) -> str:
    """Prometheus's ``String()`` of a node: one line."""
    if isinstance(e, ast.NumberLiteral):
        return format_value(e.value)
    if isinstance(e, ast.StringLiteral):
        return go_quote(e.value)
    if isinstance(e, ast.VectorSelector):
        return _selector(e) + _at(e.at) + _ext(e) + _offset(e.offset_ms, e.offset_expr)
    if isinstance(e, ast.MatrixSelector):
        v = e.vector
        rng = _dur(e.range_ms, e.range_expr)
        return f"{_selector(v)}[{rng}]{_ext(v)}{_at(v.at)}{_offset(v.offset_ms, v.offset_expr)}"
    if isinstance(e, ast.SubqueryExpr):
        return prom_string(e.expr) + _subquery_suffix(e)
    if isinstance(e, ast.Call):
        return f"{e.func}({', '.join(prom_string(a) for a in e.args)})"
    if isinstance(e, ast.ParenExpr):
        return f"({prom_string(e.expr)})"
    if isinstance(e, ast.UnaryExpr):
        return e.op + prom_string(e.expr)
    if isinstance(e, ast.AggregateExpr):
        param = prom_string(e.param) + ", " if e.param is not None else ""
        return f"{_agg_head(e)}({param}{prom_string(e.expr)})"
    if isinstance(e, ast.BinaryExpr):
        return f"{prom_string(e.lhs)} {_binop_head(e)} {prom_string(e.rhs)}"
    raise TypeError(f"cannot print {e!r}")


def _needs_split(e: ast.Expr) -> bool:
    return len(prom_string(e).encode()) > MAX_LINE


def _pretty(e: ast.Expr, level: int) -> str:
    ind = _INDENT * level
    if isinstance(e, ast.AggregateExpr):
        if not _needs_split(e):
            return ind + prom_string(e)
        param = _pretty(e.param, level + 1) + ",\n" if e.param is not None else ""
        return f"{ind}{_agg_head(e)}(\n{param}{_pretty(e.expr, level + 1)}\n{ind})"
    if isinstance(e, ast.BinaryExpr):
        if not _needs_split(e):
            return ind + prom_string(e)
        lhs, rhs = _pretty(e.lhs, level + 1), _pretty(e.rhs, level + 1)
        return f"{lhs}\n{ind}{_binop_head(e)}\n{rhs}"
    if isinstance(e, ast.Call):
        if not _needs_split(e):
            return ind + prom_string(e)
        args = ",\n".join(_pretty(a, level + 1) for a in e.args)
        return f"{ind}{e.func}(\n{args}\n{ind})"
    if isinstance(e, ast.ParenExpr):
        if not _needs_split(e):
            return ind + prom_string(e)
        return f"{ind}(\n{_pretty(e.expr, level + 1)}\n{ind})"
    if isinstance(e, ast.SubqueryExpr):
        if not _needs_split(e):
            return prom_string(e)  # as Prometheus: no indent here (its parent gave none)
        return _pretty(e.expr, level) + _subquery_suffix(e)
    if isinstance(e, ast.UnaryExpr):
        return f"{ind}{e.op}{_pretty(e.expr, level).strip()}"
    return ind + prom_string(e)


def pretty(e: ast.Expr) -> str:
    """Prometheus's ``Pretty(0)``: what ``/api/v1/format_query`` answers."""
    return _pretty(e, 0)
