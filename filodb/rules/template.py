"""Go's ``text/template`` language, the part Prometheus's alert templates use.

A tokenizer and a recursive-descent parser build a small tree (text, actions with pipelines,
``if``/``else if``/``else``, ``range`` (with ``$i, $v :=`` and ``else``), ``with``, variables
``$x :=``/``=``, fields ``.A.b``, parenthesised pipelines, ``{{-``/``-}}`` trimming, comments).
Execution follows Go's: values print as ``fmt.Print`` prints them (floats as ``%v``: ``1e+06``),
a missing map key is the empty string (Prometheus sets ``missingkey=zero``), emptiness is
falsy. Functions come from a table (:mod:`filodb.rules.tmplfuncs` adds Prometheus's); an unknown
one is an error at parse time, as in Go. Execution is bounded: at most ``MAX_STEPS`` actions and
``MAX_OUTPUT`` characters, so a template cannot run away.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from filodb.rules.govalues import TemplateError, go_str, truthy
from filodb.rules.tmplfuncs import default_funcs

MAX_STEPS = 100_000
MAX_OUTPUT = 1 << 20
CACHE_SIZE = 100_000  # expansions kept per template (cleared when full)

_TOKEN = re.compile(r"""
  (?P<ws>\s+)
| (?P<close>-?}})
| (?P<str>"(?:[^"\\\n]|\\.)*")
| (?P<raw>`[^`]*`)
| (?P<chr>'(?:[^'\\]|\\.)+')
| (?P<num>[-+]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?))
| (?P<var>\$[A-Za-z0-9_]*)
| (?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
| (?P<dot>\.)
| (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
| (?P<punct>:=|=|\||\(|\)|,)
""", re.X)  # fmt: skip
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
             "continue"}  # fmt: skip


@dataclass
class _Tok:
    kind: str
    text: str
    spaced: bool  # whitespace before it


# --- tree --------------------------------------------------------------------------------
@dataclass
class Operand:
    kind: str  # dot | field | var | str | num | bool | nil | func | pipe
    value: Any = None
    fields: tuple[str, ...] = ()


@dataclass
class Command:
    args: list[Operand]


@dataclass
class Pipeline:
    cmds: list[Command]
    decl: list[str] = field(default_factory=list)
    assign: bool = False  # "=" rather than ":="


@dataclass
class Branch:
    kind: str  # if | range | with
    pipe: Pipeline
    body: list[Any]
    other: list[Any] = field(default_factory=list)


def _lex(text: str, name: str) -> list[Any]:
    """Text and actions: ``str`` for text, a list of tokens for each action."""
    out: list[Any] = []
    pos = 0
    trim_next = False
    while True:
        i = text.find("{{", pos)
        chunk = text[pos:] if i < 0 else text[pos:i]
        if trim_next:
            chunk = chunk.lstrip()
        trim_left = i >= 0 and text[i + 2 : i + 4] in ("- ", "-\t", "-\n", "-\r")
        if trim_left:
            chunk = chunk.rstrip()
        if chunk:
            out.append(chunk)
        if i < 0:
            return out
        j = i + 3 if trim_left else i + 2
        # comment
        k = j
        while k < len(text) and text[k] in " \t\n":
            k += 1
        if text.startswith("/*", k):
            end = text.find("*/", k)
            if end < 0:
                raise TemplateError(f"template: {name}: unclosed comment")
            close = text.find("}}", end)
            if close < 0:
                raise TemplateError(f"template: {name}: unclosed action")
            trim_next = text[close - 2 : close] == " -"
            pos = close + 2
            continue
        toks: list[_Tok] = []
        spaced = False
        while True:
            m = _TOKEN.match(text, j)
            if not m:
                if j >= len(text):
                    raise TemplateError(f"template: {name}: unclosed action")
                raise TemplateError(f"template: {name}: unexpected {text[j]!r} in command")
            kind = m.lastgroup or ""
            j = m.end()
            if kind == "ws":
                spaced = True
                continue
            if kind == "close":
                if m.group().startswith("-") and not spaced:
                    raise TemplateError(f"template: {name}: bad character '-' in command")
                trim_next = m.group().startswith("-")
                break
            if kind == "num" and toks and not spaced and m.group()[0] in "+-":
                raise TemplateError(f"template: {name}: bad number syntax: {m.group()!r}")
            toks.append(_Tok(kind, m.group(), spaced))
            spaced = False
        out.append(toks)
        pos = j


class _Parser:
    def __init__(self, items: list[Any], name: str, funcs: dict[str, Callable[..., Any]]) -> None:
        self.items, self.i, self.name, self.funcs = items, 0, name, funcs
        self.vars: list[set[str]] = [{"$"}]

    def err(self, msg: str) -> TemplateError:
        return TemplateError(f"template: {self.name}: {msg}")

    def parse_list(self, stops: tuple[str, ...]) -> tuple[list[Any], list[_Tok] | None]:
        out: list[Any] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if isinstance(item, str):
                out.append(item)
                continue
            if not item:
                raise self.err("missing value for command")
            head = item[0]
            if head.kind == "ident" and head.text in _KEYWORDS:
                kw = head.text
                if kw in stops:
                    return out, item
                if kw in ("if", "range", "with"):
                    out.append(self.branch(kw, item[1:]))
                    continue
                if kw in ("else", "end"):
                    raise self.err(f"unexpected {{{{{kw}}}}}")
                raise self.err(f"{{{{{kw}}}}} is not supported")
            out.append(self.pipeline(item, decl_ok=True))
        if stops:
            raise self.err("unexpected EOF")
        return out, None

    def branch(self, kw: str, toks: list[_Tok]) -> Branch:
        self.vars.append(set())
        pipe = self.pipeline(toks, decl_ok=True, range_decl=kw == "range")
        body, stop = self.parse_list(("else", "end"))
        other: list[Any] = []
        assert stop is not None
        if stop[0].text == "else":
            rest = stop[1:]
            if (
                rest
                and rest[0].kind == "ident"
                and rest[0].text in ("if", "with")
                and kw == rest[0].text
            ):
                other = [self.branch(rest[0].text, rest[1:])]  # else if: ends with the same end
            else:
                if rest:
                    raise self.err("unexpected tokens after else")
                other, stop = self.parse_list(("end",))
                assert stop is not None
                if len(stop) > 1:
                    raise self.err("unexpected tokens after end")
        elif len(stop) > 1:
            raise self.err("unexpected tokens after end")
        self.vars.pop()
        return Branch(kw, pipe, body, other)

    def pipeline(
        self, toks: list[_Tok], decl_ok: bool = False, range_decl: bool = False
    ) -> Pipeline:
        if not toks:
            raise self.err("missing value for command")
        decl: list[str] = []
        assign = False
        if decl_ok and toks[0].kind == "var":
            # $x := ..., $x = ..., $i, $v := ...
            if len(toks) > 1 and toks[1].text in (":=", "="):
                decl, assign, toks = [toks[0].text], toks[1].text == "=", toks[2:]
            elif range_decl and len(toks) > 3 and toks[1].text == "," and toks[2].kind == "var" \
                    and toks[3].text == ":=":  # fmt: skip
                decl, toks = [toks[0].text, toks[2].text], toks[4:]
        pipe = Pipeline(self.commands(toks), decl, assign)
        for v in decl:
            if assign:
                if not any(v in s for s in self.vars):
                    raise self.err(f"undefined variable: {v}")
            else:
                self.vars[-1].add(v)
        return pipe

    def commands(self, toks: list[_Tok]) -> list[Command]:
        cmds: list[Command] = []
        cur: list[Operand] = []
        k = 0
        while k < len(toks):
            t = toks[k]
            if t.text == "|" and t.kind == "punct":
                if not cur:
                    raise self.err("missing command before |")
                cmds.append(Command(cur))
                cur = []
                k += 1
                continue
            op, k = self.operand(toks, k)
            cur.append(op)
        if not cur:
            raise self.err("missing value for command")
        cmds.append(Command(cur))
        for c in cmds[1:]:
            if c.args[0].kind != "func":
                raise self.err("non executable command in pipeline stage")
        return cmds

    def operand(self, toks: list[_Tok], k: int) -> tuple[Operand, int]:
        t = toks[k]
        k += 1
        if t.kind == "punct" and t.text == "(":
            depth, j = 1, k
            while j < len(toks) and depth:
                depth += {"(": 1, ")": -1}.get(toks[j].text if toks[j].kind == "punct" else "", 0)
                j += 1
            if depth:
                raise self.err("unclosed left paren")
            op = Operand("pipe", Pipeline(self.commands(toks[k : j - 1])))
            k = j
        elif t.kind == "dot":
            op = Operand("dot")
        elif t.kind == "field":
            op = Operand("field", None, (t.text[1:],))
        elif t.kind == "var":
            if not any(t.text in s for s in self.vars):
                raise self.err(f'undefined variable "{t.text}"')
            op = Operand("var", t.text)
        elif t.kind in ("str", "raw", "chr"):
            op = Operand("str", _unquote(t.text, self.err))
        elif t.kind == "num":
            op = Operand("num", _number(t.text, self.err))
        elif t.kind == "ident":
            if t.text in ("true", "false"):
                op = Operand("bool", t.text == "true")
            elif t.text == "nil":
                op = Operand("nil")
            elif t.text in self.funcs:
                op = Operand("func", t.text)
            else:
                raise self.err(f'function "{t.text}" not defined')
        else:
            raise self.err(f"unexpected {t.text!r} in operand")
        fields = list(op.fields)
        while k < len(toks) and toks[k].kind == "field" and not toks[k].spaced:
            if op.kind in ("str", "num", "bool", "nil", "func"):
                raise self.err(f"unexpected {toks[k].text} in operand")
            fields.append(toks[k].text[1:])
            k += 1
        op.fields = tuple(fields)
        return op, k


def _unquote(s: str, err: Callable[[str], TemplateError]) -> str:
    if s[0] == "`":
        return s[1:-1]
    try:
        out = bytes(s[1:-1], "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as e:
        raise err(f"bad string {s}") from e
    return out


def _number(s: str, err: Callable[[str], TemplateError]) -> int | float:
    t = s.replace("_", "")
    try:
        if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", t):
            return int(t, 0) if not re.fullmatch(r"[-+]?0\d+", t) else int(t, 8)
        return float(t)
    except ValueError as e:
        raise err(f"bad number syntax: {s!r}") from e


# --- execution ---------------------------------------------------------------------------
class _Exec:
    def __init__(self, funcs: dict[str, Callable[..., Any]], name: str) -> None:
        self.funcs, self.name = funcs, name
        self.steps = 0
        self.out: list[str] = []
        self.size = 0

    def err(self, msg: str) -> TemplateError:
        return TemplateError(f"template: {self.name}: {msg}")

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self.err(f"more than {MAX_STEPS} steps: stopped")

    def emit(self, s: str) -> None:
        self.size += len(s)
        if self.size > MAX_OUTPUT:
            raise self.err(f"output larger than {MAX_OUTPUT} characters: stopped")
        self.out.append(s)

    def run(self, nodes: list[Any], dot: Any, scope: list[dict[str, Any]]) -> None:
        for n in nodes:
            self.tick()
            if isinstance(n, str):
                self.emit(n)
            elif isinstance(n, Pipeline):
                v = self.pipe(n, dot, scope)
                if not n.decl:
                    self.emit(go_str(v))
            else:
                self.branch(n, dot, scope)

    def branch(self, b: Branch, dot: Any, scope: list[dict[str, Any]]) -> None:
        inner = [*scope, {}]
        if b.kind == "range":
            val = self.pipe(b.pipe, dot, inner, declare=False)
            items: list[tuple[Any, Any]]
            if isinstance(val, dict):
                items = [(k, val[k]) for k in sorted(val)]
            elif isinstance(val, list | tuple):
                items = list(enumerate(val))
            elif isinstance(val, int) and not isinstance(val, bool):
                items = [(i, i) for i in range(val)]
            elif val is None:
                items = []
            else:
                raise self.err(f"range can't iterate over {go_str(val)}")
            if not items:
                self.run(b.other, dot, inner)
            for k, v in items:
                self.tick()
                if len(b.pipe.decl) == 2:
                    inner[-1][b.pipe.decl[0]], inner[-1][b.pipe.decl[1]] = k, v
                elif b.pipe.decl:
                    inner[-1][b.pipe.decl[0]] = v
                self.run(b.body, v, inner)
            return
        val = self.pipe(b.pipe, dot, inner)
        if truthy(val):
            self.run(b.body, val if b.kind == "with" else dot, inner)
        else:
            self.run(b.other, dot, inner)

    def pipe(self, p: Pipeline, dot: Any, scope: list[dict[str, Any]], declare: bool = True) -> Any:
        val: Any = _NOTHING
        for c in p.cmds:
            val = self.command(c, dot, scope, val)
        if declare and p.decl:
            if p.assign:
                for s in reversed(scope):
                    if p.decl[0] in s:
                        s[p.decl[0]] = val
                        break
            else:
                scope[-1][p.decl[0]] = val
        return val

    def command(self, c: Command, dot: Any, scope: list[dict[str, Any]], piped: Any) -> Any:
        first = c.args[0]
        if first.kind == "func":
            fn = self.funcs[first.value]
            args = [self.operand(a, dot, scope) for a in c.args[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            try:
                out = fn(*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, ArithmeticError, KeyError, IndexError) as e:
                raise self.err(f"error calling {first.value}: {e}") from e
            if len(str(out)) > MAX_OUTPUT if isinstance(out, str) else False:
                raise self.err(f"{first.value}: result too large")
            return out
        if len(c.args) > 1 or piped is not _NOTHING:
            raise self.err(
                f"can't give argument to non-function {go_str(self.operand(first, dot, scope))}"
            )
        return self.operand(first, dot, scope)

    def operand(self, o: Operand, dot: Any, scope: list[dict[str, Any]]) -> Any:
        if o.kind == "dot" or o.kind == "field":
            v = dot
        elif o.kind == "var":
            v = next((s[o.value] for s in reversed(scope) if o.value in s), None)
        elif o.kind == "pipe":
            v = self.pipe(o.value, dot, scope)
        elif o.kind == "func":
            v = self.funcs[o.value]()
        else:
            v = o.value
        for f in o.fields:
            if isinstance(v, dict):
                v = v.get(f, "")
            elif v is None:
                raise self.err(f"nil pointer evaluating .{f}")
            else:
                raise self.err(f"can't evaluate field {f} in type {type(v).__name__}")
        return v


_NOTHING = object()


class Template:
    """A parsed template; :meth:`execute` expands it with data and variables."""

    def __init__(self, text: str, name: str = "tmpl",
                 funcs: dict[str, Callable[..., Any]] | None = None) -> None:  # fmt: skip
        self.text = text
        self.name = name
        self.funcs = funcs if funcs is not None else default_funcs()
        # Prometheus's prefix defines these four variables; they are known to the parser too
        parser = _Parser(_lex(text, name), name, self.funcs)
        parser.vars[0] |= {"$labels", "$externalLabels", "$externalURL", "$value"}
        self.tree, _ = parser.parse_list(())
        # plain text (most label templates): nothing to execute
        self.static: str | None = (
            "".join(self.tree) if all(isinstance(n, str) for n in self.tree) else None
        )
        # what it reads of the alert's data, when that is all its output depends on: then the
        # expansion is cached by those values (a rule's alerts share most of them, and an alert
        # reads the same ones at every evaluation)
        self.reads = _reads(self.tree)
        self._cache: dict[tuple[Any, ...], str] = {}

    def execute(self, dot: Any, variables: dict[str, Any] | None = None,
                funcs: dict[str, Callable[..., Any]] | None = None) -> str:  # fmt: skip
        """The expansion; ``funcs`` replaces functions by name for this run (``query``)."""
        if self.static is not None:
            return self.static
        key = None
        if self.reads is not None and isinstance(dot, dict):
            scope = {"$": dot, **(variables or {})}
            key = tuple(_key(_get(scope, path)) for path in self.reads)
            hit = self._cache.get(key)
            if hit is not None:
                return hit
        table = {**self.funcs, **(funcs or {})}
        ex = _Exec(table, self.name)
        ex.run(self.tree, dot, [{"$": dot, **(variables or {})}])
        out = "".join(ex.out)
        if key is not None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = out
        return out


# Prometheus's template variables and the fields of the data they name
_VARS = {"$labels": "Labels", "$externalLabels": "ExternalLabels", "$value": "Value",
         "$externalURL": "ExternalURL"}  # fmt: skip
_MAPS = {"Labels", "ExternalLabels"}
_SCALARS = {"Value", "ExternalURL"}


def _get(scope: dict[str, Any], path: tuple[str, ...]) -> Any:
    """``path`` is a variable (``$labels``, ``$`` for the data) and up to two fields."""
    v = scope.get(path[0])
    for f in path[1:]:
        v = v.get(f, "") if isinstance(v, dict) else None
    return v


def _key(v: Any) -> Any:
    """A cache key part: floats by their bits' text (``-0`` and ``NaN`` print apart from
    ``0``; a NaN would never hit)."""
    return v.hex() if isinstance(v, float) else v


def _reads(nodes: list[Any]) -> tuple[tuple[str, ...], ...] | None:
    """The data paths (``("Labels", "job")``, ``("Value",)``) a template's output depends on,
    or ``None`` when it may depend on more (a whole map, the root ``.``, ``query``)."""
    paths: set[tuple[str, ...]] = set()

    def path(var: str, fields: tuple[str, ...]) -> bool:
        if var != "$":  # $labels.x reads variable $labels, $value variable $value
            fields = (_VARS[var], *fields)
        if fields[:1] and fields[0] in _SCALARS:
            paths.add((var, *fields[:1]) if var == "$" else (var,))
            return True
        if len(fields) >= 2 and fields[0] in _MAPS:
            paths.add(("$", *fields[:2]) if var == "$" else (var, fields[1]))
            return True
        return False

    def operand(o: Operand, root: bool) -> bool:
        if o.kind == "var":
            if o.value in _VARS or o.value == "$":
                return path(o.value, o.fields)
            return True  # a declared variable: derived from what the template reads
        if o.kind in ("dot", "field"):
            return path("$", o.fields) if root else True
        if o.kind == "func":
            return o.value != "query"
        if o.kind == "pipe":
            return pipe(o.value, root)
        return True

    def pipe(p: Pipeline, root: bool) -> bool:
        return all(operand(a, root) for c in p.cmds for a in c.args)

    def walk(ns: list[Any], root: bool) -> bool:
        for n in ns:
            if isinstance(n, Pipeline):
                if not pipe(n, root):
                    return False
            elif isinstance(n, Branch):
                inner = root and n.kind == "if"  # with/range bodies see a derived dot
                if not (pipe(n.pipe, root) and walk(n.body, inner) and walk(n.other, root)):
                    return False
        return True

    return tuple(sorted(paths)) if walk(nodes, True) else None
