"""PromQL text → :mod:`filodb.query.ast` tree (lark LALR grammar in ``promql.lark``).

Errors raise :class:`~filodb.errors.ParseError` with the 0-based character position
(rendered "parse error at char N: ..." with N 1-based) for syntax errors and type errors.
"""

from __future__ import annotations

import dataclasses
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from filodb.errors import ParseError
from filodb.model.labels import METRIC_NAME, Matcher
from filodb.model.timeparse import MAX_DURATION_MS, TIME_LIMIT_MS
from filodb.query import ast
from filodb.query.ast import DurationExpr
from filodb.query.checker import check
from filodb.query.durations import is_constant, seconds, to_ms

_GRAMMAR = Path(__file__).with_name("promql.lark").read_text()
_PARSER = Lark(_GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=False,
               maybe_placeholders=True)  # fmt: skip

_DUR_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
              "w": 604_800_000, "y": 31_536_000_000}  # fmt: skip
_DUR_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_ESC = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)
_SIMPLE_ESC = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
               "\\": "\\", "'": "'", '"': '"'}  # fmt: skip


def parse_duration(text: str) -> int:
    """A Prometheus duration (``1h30m``, ``5m``, ``100ms``) in ms; bare numbers are seconds."""
    if _DUR_PART.fullmatch(text) or re.fullmatch(r"(\d+(ms|[smhdwy]))+", text):
        ms = sum(int(n) * _DUR_UNITS[u] for n, u in _DUR_PART.findall(text))
    else:
        value = float(text.replace("_", ""))
        if not math.isfinite(value):
            raise ValueError(f"invalid duration {text!r}")
        ms = int(round(value * 1000)) if abs(value) < 1e18 else int(value) * 1000
    if abs(ms) > MAX_DURATION_MS:
        raise ValueError(f"duration out of range: {text!r}")
    return ms


def _unquote(tok: str) -> str:
    if tok[0] == "`":
        return tok[1:-1]
    body = tok[1:-1]

    def sub(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] in "xuU":
            code = int(e[1:], 16)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:  # as Go: not a valid rune
                raise ValueError(f"invalid Unicode code point in escape \\{e}")
            return chr(code)
        if e[0] in "01234567" and len(e) == 3:
            return chr(int(e, 8))
        if e in _SIMPLE_ESC:
            return _SIMPLE_ESC[e]
        raise ValueError(f"unknown escape sequence \\{e}")

    return _ESC.sub(sub, body)


def _number(text: str) -> float:
    t = text.lower().replace("_", "")
    if t.startswith("0x"):
        return float(int(t, 16))
    return float(t)


@v_args(inline=True)
class _ToAst(Transformer):  # type: ignore[type-arg]
    def number(self, tok: Token) -> ast.NumberLiteral:
        return ast.NumberLiteral(_number(str(tok)))

    def duration_number(self, tok: Token) -> ast.NumberLiteral:
        return ast.NumberLiteral(parse_duration(str(tok)) / 1000.0)

    def string(self, tok: Token) -> str:
        return _unquote(str(tok))

    def string_lit(self, s: str) -> ast.StringLiteral:
        return ast.StringLiteral(s)

    def paren(self, e: ast.Expr) -> ast.ParenExpr:
        return ast.ParenExpr(e)

    # --- duration expressions (seconds) ----------------------------------------------------
    def dur_lit(self, tok: Token) -> DurationExpr:
        return DurationExpr("lit", (parse_duration(str(tok)) / 1000.0,))

    def dur_num(self, tok: Token) -> DurationExpr:
        return DurationExpr("lit", (_number(str(tok)),))

    def dur_fn(self, tok: Token) -> DurationExpr:
        return DurationExpr(str(tok).lower())

    def dur_minmax(self, tok: Token, a: DurationExpr, b: DurationExpr) -> DurationExpr:
        return _fold(DurationExpr(str(tok).lower(), (a, b)))

    def dur_bin(self, a: DurationExpr, op: Token, b: DurationExpr) -> DurationExpr:
        return _fold(DurationExpr(str(op).lower(), (a, b)))

    def dur_neg(self, op: Token, a: DurationExpr) -> DurationExpr:
        return _fold(DurationExpr("neg", (a,))) if str(op) == "-" else a

    def offset_value(self, sign: Token | None, d: DurationExpr) -> DurationExpr:
        return _fold(DurationExpr("neg", (d,))) if sign is not None and str(sign) == "-" else d

    def at_number(self, sign: Token | None, tok: Token) -> float:
        v = parse_duration(str(tok)) / 1000.0 if tok.type == "DURATION" else _number(str(tok))
        return -v if sign is not None and str(sign) == "-" else v

    def at_fn(self, tok: Token) -> str:
        return str(tok)

    # --- selectors -----------------------------------------------------------------------
    def metric_ident(self, tok: Token) -> str:
        return str(tok)

    def kw_ident(self, tok: Token) -> str:
        return str(tok)

    def label_name(self, x: Token | str) -> str:
        return str(x)

    def matcher(self, name: str, op: Token, value: str) -> Matcher:
        return Matcher(name, str(op), value)

    def name_matcher(self, value: str) -> Matcher:
        return Matcher(METRIC_NAME, "=", value)

    def label_matchers(self, *items: Matcher | None) -> list[Matcher]:
        return [m for m in items if m is not None]

    def selector(
        self, name: str | list[Matcher] | None, matchers: list[Matcher] | None = None
    ) -> ast.VectorSelector:
        if isinstance(name, list):
            name, matchers = None, name
        ms = list(matchers or [])
        if name is not None:
            if any(m.name == METRIC_NAME for m in ms):
                raise ValueError(f"metric name must not be set twice: {name!r}")
            ms.insert(0, Matcher(METRIC_NAME, "=", name))
        elif (named := [m for m in ms if m.name == METRIC_NAME and m.op == "="]) and len(
            named
        ) == 1:
            name = named[0].value
        return ast.VectorSelector(name, tuple(ms))

    # --- postfix -------------------------------------------------------------------------
    def matrix(self, e: ast.Expr, d: DurationExpr) -> ast.MatrixSelector:
        if not isinstance(e, ast.VectorSelector):
            raise ValueError("ranges only allowed for vector selectors")
        if e.offset_ms or e.at is not None or e.offset_expr is not None:
            raise ValueError("no offset or @ modifiers allowed before range")
        ms, dyn = _resolve(d)
        if dyn is None and ms <= 0:
            raise ValueError("range duration must be positive")
        return ast.MatrixSelector(e, ms, dyn)

    def subquery(
        self, e: ast.Expr, rng: DurationExpr, step: DurationExpr | None
    ) -> ast.SubqueryExpr:
        rms, rdyn = _resolve(rng)
        sms, sdyn = _resolve(step) if step is not None else (0, None)
        if rdyn is None and rms <= 0:
            raise ValueError("subquery range must be positive")
        if sdyn is None and sms < 0:
            raise ValueError("subquery step must be positive")
        return ast.SubqueryExpr(e, rms, sms, range_expr=rdyn, step_expr=sdyn)

    def offset(self, e: ast.Expr, _kw: Token, d: DurationExpr) -> ast.Expr:
        ms, dyn = _resolve(d)
        return _set_mod(e, offset_ms=ms, offset_expr=dyn)

    def at(self, e: ast.Expr, value: float | str) -> ast.Expr:
        return _set_mod(e, at=value)

    def extended(self, e: ast.Expr, kw: Token) -> ast.Expr:
        return _set_extended(e, str(kw).lower())

    # --- calls and operators -------------------------------------------------------------
    def call(self, name: Token, *args: ast.Expr | None) -> ast.Call:
        return ast.Call(str(name), tuple(a for a in args if a is not None))

    def agg_args(self, *args: ast.Expr | None) -> list[ast.Expr]:
        return [a for a in args if a is not None]

    def label_list(self, *names: str | None) -> tuple[str, ...]:
        return tuple(n for n in names if n is not None)

    def grouping(self, kw: Token, labels: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
        return str(kw).lower() == "without", labels

    def aggregation(self, op: Token, *rest):  # type: ignore[no-untyped-def]
        if isinstance(rest[0], tuple):  # grouping first
            grouping, args = rest[0], rest[1]
        else:
            args, grouping = rest[0], rest[1]
        opname = str(op).lower()
        without, labels = grouping if grouping else (False, ())
        need = 2 if opname in ast.AGGREGATORS_WITH_PARAM else 1
        if len(args) != need:
            raise ValueError(
                f"wrong number of arguments for aggregate expression provided, expected {need}, got {len(args)}"
            )
        param, expr = (args[0], args[1]) if need == 2 else (None, args[0])
        return ast.AggregateExpr(
            opname, expr, param, labels, without, bool(grouping) and not without
        )

    def matching(self, kw: Token, labels: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
        return str(kw).lower() == "on", labels

    def grouping_mod(
        self, kw: Token, labels: tuple[str, ...] | None
    ) -> tuple[ast.MatchCard, tuple[str, ...]]:
        card: ast.MatchCard = "many-to-one" if str(kw).lower() == "group_left" else "one-to-many"
        return card, labels or ()

    def fill_mod(self, kw: Token, sign: Token | None, num: Token) -> tuple[str, float]:
        v = _number(str(num))
        return str(kw).lower(), -v if sign is not None and str(sign) == "-" else v

    def binmods(self, bool_tok: Token | None, matching, grouping=None, *fills):  # type: ignore[no-untyped-def]
        fl = fr = None
        for kind, v in fills:
            if kind in ("fill", "fill_left"):
                fl = v
            if kind in ("fill", "fill_right"):
                fr = v
        return bool_tok is not None, matching, grouping, (fl, fr)

    def binary(self, lhs: ast.Expr, op: Token, mods, rhs: ast.Expr) -> ast.BinaryExpr:  # type: ignore[no-untyped-def]
        return_bool, matching, grouping, (fl, fr) = mods
        opname = str(op).lower()
        vm = None
        if matching is not None or grouping is not None or fl is not None or fr is not None:
            on, labels = matching if matching is not None else (False, ())
            card: ast.MatchCard
            card, include = grouping if grouping is not None else ("one-to-one", ())
            vm = ast.VectorMatching(card, labels, on, include, matching is not None, fl, fr)
        return ast.BinaryExpr(opname, lhs, rhs, return_bool, vm)

    def unary(self, op: Token, e: ast.Expr) -> ast.Expr:
        if isinstance(e, ast.NumberLiteral) and not isinstance(e, ast.ParenExpr):
            return ast.NumberLiteral(-e.value if str(op) == "-" else e.value)
        return ast.UnaryExpr(str(op), e)


def _fold(d: DurationExpr) -> DurationExpr:
    return DurationExpr("lit", (seconds(d),)) if is_constant(d) else d


def _resolve(d: DurationExpr) -> tuple[int, DurationExpr | None]:
    """(ms, None) for a constant duration; (0, expr) when it needs step()/range()."""
    return (to_ms(seconds(d)), None) if is_constant(d) else (0, d)


def _set_mod(e: ast.Expr, offset_ms: int | None = None, at: float | str | None = None,
             offset_expr: DurationExpr | None = None) -> ast.Expr:  # fmt: skip
    from dataclasses import replace

    if isinstance(e, ast.MatrixSelector):
        return replace(e, vector=_set_mod(e.vector, offset_ms, at, offset_expr))  # type: ignore[arg-type]
    if not isinstance(e, ast.VectorSelector | ast.SubqueryExpr):
        raise ValueError("offset and @ modifiers must follow a selector, range or subquery")
    if offset_ms is not None:
        if e.offset_ms or e.offset_expr is not None:
            raise ValueError("offset may not be set multiple times")
        return replace(e, offset_ms=offset_ms, offset_expr=offset_expr)
    if e.at is not None:
        raise ValueError("@ <timestamp> may not be set multiple times")
    if isinstance(at, float) and not (math.isfinite(at) and abs(at) * 1000 <= TIME_LIMIT_MS):
        raise ValueError("timestamp out of bounds for @ modifier")
    return replace(e, at=at)


def _set_extended(e: ast.Expr, kind: str) -> ast.Expr:
    """Mark a selector ``anchored`` or ``smoothed`` (Prometheus's extended range selectors)."""
    from dataclasses import replace

    if isinstance(e, ast.MatrixSelector):
        return replace(e, vector=cast(ast.VectorSelector, _set_extended(e.vector, kind)))
    if isinstance(e, ast.SubqueryExpr):
        raise ValueError(f"{kind} modifier is not supported for subqueries")
    if not isinstance(e, ast.VectorSelector):
        raise ValueError(f"{kind} modifier not implemented")
    if e.anchored or e.smoothed:
        raise ValueError("anchored and smoothed modifiers cannot be used together")
    flag: dict[str, Any] = {kind: True}
    return replace(e, **flag)


_TRANSFORMER = _ToAst()


MAX_DEPTH = 128
"""Deepest nesting of an expression (brackets, operators, function calls) that parses; deeper
is a parse error (400), never a 500 from Python's recursion limit."""


def _bracket_depth(text: str) -> tuple[int, int]:
    """The deepest bracket nesting outside string literals, and where it is reached."""
    depth = best = at = 0
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote != "`":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
            if depth > best:
                best, at = depth, i
        elif ch in ")]}":
            depth -= 1
        i += 1
    return best, at


def expr_depth(e: object) -> int:
    """Nesting depth of an expression tree, computed without recursion."""
    best = 0
    todo: list[tuple[object, int]] = [(e, 1)]
    while todo:
        node, d = todo.pop()
        best = max(best, d)
        for f in dataclasses.fields(node):  # type: ignore[arg-type]
            v = getattr(node, f.name)
            for c in v if isinstance(v, list | tuple) else (v,):
                if dataclasses.is_dataclass(c) and not isinstance(c, type):
                    todo.append((c, d + 1))
    return best


def _too_deep(text: str, pos: int) -> ParseError:
    return ParseError(f"expression nested too deeply (at most {MAX_DEPTH} levels)", pos, text)


@lru_cache(maxsize=512)
def parse(text: str) -> ast.Expr:
    """Parse and type-check a PromQL expression."""
    if not text.strip():
        raise ParseError("no expression found in input", 0, text)
    depth, at = _bracket_depth(text)
    if depth > MAX_DEPTH:
        raise _too_deep(text, at)
    try:
        tree = _PARSER.parse(text)
        expr = _TRANSFORMER.transform(tree)
    except RecursionError:
        raise _too_deep(text, 0) from None
    except UnexpectedEOF as e:
        raise ParseError("unexpected end of input", len(text), text) from e
    except UnexpectedToken as e:
        what = "end of input" if e.token.type == "$END" else repr(str(e.token))
        pos = len(text) if e.token.type == "$END" else e.token.start_pos or 0
        raise ParseError(f"unexpected {what}", pos, text) from e
    except UnexpectedCharacters as e:
        pos = e.pos_in_stream or 0
        raise ParseError(f"unexpected character {text[pos]!r}", pos, text) from e
    except UnexpectedInput as e:
        raise ParseError(str(e).splitlines()[0], getattr(e, "pos_in_stream", 0) or 0, text) from e
    except VisitError as e:
        inner = e.orig_exc
        if isinstance(inner, RecursionError):
            raise _too_deep(text, 0) from None
        raise ParseError(str(inner), _guess_pos(text, e), text) from inner
    if expr_depth(expr) > MAX_DEPTH:
        raise _too_deep(text, 0)
    check(expr, text)
    return cast(ast.Expr, expr)


def _guess_pos(text: str, e: VisitError) -> int:
    tree: Any = e.obj  # a Tree, or a Token without scan_values
    try:
        for tok in tree.scan_values(lambda v: isinstance(v, Token)):
            return tok.start_pos or 0
    except AttributeError:
        pass
    return 0


def selector_matchers(text: str) -> list[Matcher]:
    """Matchers of a series selector such as ``up{job="x"}`` (``match[]`` parameters)."""
    expr = parse(text)
    if not isinstance(expr, ast.VectorSelector):
        raise ParseError("expected a series selector", 0, text)
    return list(expr.matchers)


__all__ = ["parse", "selector_matchers", "parse_duration"]
