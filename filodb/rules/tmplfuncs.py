"""The functions of Prometheus's alert templates (``template/template.go``) and Go's builtins.

Numbers print as Prometheus prints them: ``humanize`` with SI prefixes and ``%.4g``,
``humanize1024`` with binary ones, ``humanizeDuration`` as ``1d 2h 3m 4s`` (``%.4g`` below a
minute), ``humanizePercentage`` as ``%.4g%``, ``humanizeTimestamp`` as Go's ``time.Time``
(``1970-01-01 00:00:01.5 +0000 UTC``). ``query`` is given per expansion by the rule evaluator
(it needs the evaluation time); here it refuses. ``printf`` is Go's ``fmt.Sprintf`` for the
verbs people use (``%s %v %d %f %e %g %x %o %q %t %%``, flags, width, precision).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus, urlsplit

import re2

from filodb.model.numfmt import format_value_g
from filodb.model.timeparse import parse_model_duration
from filodb.query.prettier import go_quote
from filodb.rules.govalues import TemplateError, go_str, truthy

_SI_UP = ("k", "M", "G", "T", "P", "E", "Z", "Y")
_SI_DOWN = ("m", "u", "n", "p", "f", "a", "z", "y")
_BIN_UP = ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi")


def g4(v: float) -> str:
    """Go's ``%.4g``."""
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.4g}"


def to_float(v: Any) -> float:
    """Prometheus's ``convertToFloat``: numbers, and strings that parse as one."""
    if isinstance(v, bool):
        raise TemplateError(f"can't convert {v} to float")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.replace("_", "")) if v.strip() == v else float("x")
        except ValueError:
            raise TemplateError(f'strconv.ParseFloat: parsing "{v}": invalid syntax') from None
    raise TemplateError(f"can't convert {type(v).__name__} to float")


def humanize(i: Any) -> str:
    v = to_float(i)
    if v == 0 or not math.isfinite(v):
        return g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in _SI_UP:
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return g4(v) + prefix
    for p in _SI_DOWN:
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return g4(v) + prefix


def humanize1024(i: Any) -> str:
    v = to_float(i)
    if abs(v) <= 1 or not math.isfinite(v):
        return g4(v)
    prefix = ""
    for p in _BIN_UP:
        if abs(v) < 1024:
            break
        prefix, v = p, v / 1024
    return g4(v) + prefix


def humanize_duration(i: Any) -> str:
    v = to_float(i)
    if not math.isfinite(v):
        return g4(v)
    if v == 0:
        return g4(v) + "s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        secs, mins, hours, days = d % 60, d // 60 % 60, d // 3600 % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {mins}m {secs}s"
        if hours:
            return f"{sign}{hours}h {mins}m {secs}s"
        if mins:
            return f"{sign}{mins}m {secs}s"
        return f"{sign}{g4(v)}s"
    prefix = ""
    for p in _SI_DOWN:
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{g4(v)}{prefix}s"


def humanize_percentage(i: Any) -> str:
    return g4(to_float(i) * 100) + "%"


def go_time(v: float) -> str:
    """Go's ``time.Time.String()`` of a Unix time in seconds, in UTC (as Prometheus's
    ``floatToTime``: ``time.Unix(0, int64(v * 1e9))``)."""
    s, ns = divmod(int(v * 1e9), 1_000_000_000)
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=s)
    frac = f".{ns:09d}".rstrip("0") if ns else ""
    return f"{t:%Y-%m-%d %H:%M:%S}{frac} +0000 UTC"


def humanize_timestamp(i: Any) -> str:
    v = to_float(i)
    if not math.isfinite(v):
        return g4(v)
    if abs(v) > 9.2e9 * 1000:  # outside Go's time range
        raise TemplateError(f"'{v}' out of range")
    return go_time(v)


def title(s: str) -> str:
    """Go's ``strings.Title``: upper-case the first letter of each word, leave the rest."""
    return re.sub(r"(?<!\w)(\w)", lambda m: _upper(m.group(1)), s)


def _upper(s: str) -> str:
    """Go's ``strings.ToUpper``: rune by rune (``ß`` stays, Python would write ``SS``)."""
    return "".join(u if len(u := c.upper()) == 1 else c for c in s)


def _lower(s: str) -> str:
    return "".join(lo if len(lo := c.lower()) == 1 else c for c in s)


def _go_repl(repl: str) -> Callable[[Any], str]:
    """Go's ``Regexp.Expand`` template (``$1``, ``${1}``, ``$name``, ``$$``) as a callable."""
    parts = re.split(r"(\$\$|\$\{\w+\}|\$\w+)", repl)

    def expand(m: Any) -> str:
        out = []
        for p in parts:
            if p == "$$":
                out.append("$")
            elif p.startswith("$") and len(p) > 1:
                name = p[2:-1] if p.startswith("${") else p[1:]
                try:
                    g = m.group(int(name)) if name.isdigit() else m.group(name)
                except (IndexError, KeyError, re2.error):
                    g = None
                out.append(g or "")
            else:
                out.append(p)
        return "".join(out)

    return expand


def _compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern)
    except re2.error as e:
        raise TemplateError(f"error parsing regexp {pattern!r}: {e}") from None


def re_replace_all(pattern: str, repl: str, text: str) -> str:
    return str(_compile(pattern).sub(_go_repl(repl), text))


def match(pattern: str, s: str) -> bool:
    return _compile(pattern).search(s) is not None


# --- query results: a list of {"Labels": {...}, "Value": float} -----------------------------
def first(v: list[dict[str, Any]]) -> dict[str, Any]:
    if not v:
        raise TemplateError("first() called on vector with no elements")
    return v[0]


def label(name: str, s: dict[str, Any]) -> str:
    return str(s["Labels"].get(name, ""))


def value(s: dict[str, Any]) -> float:
    return float(s["Value"])


def sort_by_label(name: str, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(v, key=lambda s: s["Labels"].get(name, ""))


def _no_query(q: str) -> list[dict[str, Any]]:
    raise TemplateError("query is not available here")


# --- Go's builtins -----------------------------------------------------------------------
def _cmp_key(a: Any, b: Any) -> tuple[Any, Any]:
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        if isinstance(a, bool) and isinstance(b, bool):
            return a, b
    elif isinstance(a, num) and isinstance(b, num):
        return a, b
    elif isinstance(a, str) and isinstance(b, str):
        return a, b
    raise TemplateError("incompatible types for comparison")


def eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise TemplateError("missing argument for comparison")
    return any(x == y for x, y in (_cmp_key(a, b) for b in bs))


def _order(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def f(a: Any, b: Any) -> bool:
        x, y = _cmp_key(a, b)
        if isinstance(x, bool):
            raise TemplateError("invalid type for comparison")
        return op(x, y)

    return f


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*)?)?([a-zA-Z%])")
_GO_TYPE = {bool: "bool", int: "int", float: "float64", str: "string"}


def _bad(verb: str, v: Any) -> str:
    return f"%!{verb}({_GO_TYPE.get(type(v), type(v).__name__)}={go_str(v)})"


def _pad(s: str, flags: str, width: int | None) -> str:
    if width is None or len(s) >= width:
        return s
    if "-" in flags:
        return s.ljust(width)
    if "0" in flags and s and (s[0].isdigit() or s[0] in "+-"):
        sign = s[0] if s[0] in "+-" else ""
        return sign + s[len(sign) :].rjust(width - len(sign), "0")
    return s.rjust(width)


def _one(flags: str, width: int | None, prec: int | None, verb: str, v: Any) -> str:
    pyflags = "".join(c for c in flags if c in "+ #")
    pyprec = "" if prec is None else f".{prec}"
    num = isinstance(v, int | float) and not isinstance(v, bool)
    if verb in "vs":
        if verb == "s" and num:
            return _bad(verb, v)
        if verb == "v" and isinstance(v, float) and prec is not None:
            s = ("%" + pyflags + pyprec + "g") % v
        else:
            s = go_str(v)
            if verb == "s" and prec is not None:
                s = s[:prec]
        return _pad(s, flags, width)
    if verb == "t":
        return _pad(go_str(v), flags, width) if isinstance(v, bool) else _bad(verb, v)
    if verb == "q":
        return _pad(go_quote(v), flags, width) if isinstance(v, str) else _bad(verb, v)
    if verb in "dxXob":
        if isinstance(v, str) and verb in "xX":
            s = v.encode().hex()
            return _pad(s.upper() if verb == "X" else s, flags, width)
        if not isinstance(v, int) or isinstance(v, bool):
            return _bad(verb, v)
        s = format(
            v,
            ("+" if "+" in flags else "")
            + {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb],
        )
        return _pad(s, flags, width)
    if verb in "feEgGF":
        if not num:
            return _bad(verb, v)
        f = float(v)
        if not math.isfinite(f):
            s = ("+" if "+" in flags and f > 0 else "") + g4(f).lstrip(
                "+" if f > 0 and "+" not in flags else ""
            )
            return _pad(s, flags.replace("0", ""), width)
        if verb in "gG" and prec is None:
            s = format_value_g(f) if f != 0 else "0"
            s = "+" + s if "+" in flags and f >= 0 else s
            return _pad(s.upper() if verb == "G" else s, flags, width)
        pyverb = "f" if verb == "F" else verb
        return _pad(("%" + pyflags + pyprec + pyverb) % f, flags, width)
    if verb == "c":
        return chr(v) if isinstance(v, int) else _bad(verb, v)
    return f"%!{verb}({_GO_TYPE.get(type(v), type(v).__name__)}={go_str(v)})"


def printf(fmt: str, *args: Any) -> str:
    out: list[str] = []
    pos = 0
    k = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        w: int | None = None
        p: int | None = None
        if width == "*":
            w, k = (int(args[k]) if k < len(args) else None), k + 1
        elif width:
            w = int(width)
        if prec == "*":
            p, k = (int(args[k]) if k < len(args) else None), k + 1
        elif prec is not None:
            p = int(prec)
        elif "." in m.group(0):
            p = 0
        if k >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_one(flags, w, p, verb, args[k]))
        k += 1
    out.append(fmt[pos:])
    if k < len(args):
        extra = ", ".join(
            f"{_GO_TYPE.get(type(a), type(a).__name__)}={go_str(a)}" for a in args[k:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def go_print(*args: Any) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(a))
    return "".join(out)


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, "")
        elif isinstance(v, list | tuple | str):
            v = v[int(k)]
        else:
            raise TemplateError(f"can't index item of type {type(v).__name__}")
    return v


def _and(*args: Any) -> Any:
    for a in args:
        if not truthy(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if truthy(a):
            return a
    return args[-1]


def strip_port(hostport: str) -> str:
    if hostport.startswith("["):
        end = hostport.find("]")
        return hostport[1:end] if end > 0 else hostport
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def strip_domain(hostport: str) -> str:
    host, sep, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    if re.fullmatch(r"[\d.]+", host):
        return hostport
    return host.split(".", 1)[0] + (sep + port)


def parse_duration(s: str) -> float:
    try:
        return parse_model_duration(s) / 1000
    except ValueError as e:
        raise TemplateError(str(e)) from None


def default_funcs(external_url: str = "") -> dict[str, Callable[..., Any]]:
    prefix = urlsplit(external_url).path if external_url else ""
    return {
        # Go's builtins
        "and": _and, "or": _or, "not": lambda a: not truthy(a), "len": len, "index": _index,
        "print": go_print, "printf": printf, "println": lambda *a: " ".join(map(go_str, a)) + "\n",
        "eq": eq, "ne": lambda a, b: not eq(a, b),
        "lt": _order(lambda a, b: a < b), "le": _order(lambda a, b: a <= b),
        "gt": _order(lambda a, b: a > b), "ge": _order(lambda a, b: a >= b),
        "html": lambda s: html.escape(go_str(s)), "urlquery": lambda s: quote_plus(go_str(s)),
        "js": lambda s: json.dumps(go_str(s))[1:-1],
        # Prometheus's
        "query": _no_query, "first": first, "label": label, "value": value,
        "strvalue": lambda s: str(s["Labels"].get("__value__", "")),
        "sortByLabel": sort_by_label, "args": lambda *a: {f"arg{i}": x for i, x in enumerate(a)},
        "reReplaceAll": re_replace_all, "match": match, "safeHtml": lambda s: s,
        "title": title, "toUpper": _upper, "toLower": _lower,
        "humanize": humanize, "humanize1024": humanize1024, "humanizeDuration": humanize_duration,
        "humanizePercentage": humanize_percentage, "humanizeTimestamp": humanize_timestamp,
        "toTime": lambda v: go_time(to_float(v)), "parseDuration": parse_duration,
        "stripPort": strip_port, "stripDomain": strip_domain,
        "pathPrefix": lambda: prefix, "externalURL": lambda: external_url,
        "graphLink": lambda e: f"{prefix}/graph?g0.expr={quote_plus(e)}&g0.tab=0",
        "tableLink": lambda e: f"{prefix}/graph?g0.expr={quote_plus(e)}&g0.tab=1",
    }  # fmt: skip
