"""Grammar: round trips through the printer, and error positions."""

from __future__ import annotations

import pytest

from filodb.errors import ParseError
from filodb.query import ast
from filodb.query.parser import parse
from filodb.query.printer import to_string

ROUND_TRIP = [
    "up", 'up{job="api", instance=~"h.*"}', '{__name__=~"a|b"}', "rate(x[5m])",
    "sum by (job) (rate(http_requests_total[5m]))", "sum without (a, b) (x)",
    "topk(3, x)", 'count_values("v", x)', "quantile(0.9, x)", "x offset 5m", "x offset -1m",
    "x @ 100", "x @ start()", "x[5m] @ end() offset 1m", "rate(x[1h:5m])", "max_over_time(x[1h:])",
    "a + on(x) group_left(y) b", "a / ignoring(i) b", "a > bool 2", "a and b", "a or b unless c",
    "-x", "2 ^ 3 ^ 2", "(a + b) * c", "a - (b - c)", "histogram_quantile(0.99, sum by (le) (rate(h[5m])))",
    'label_replace(x, "dst", "$1", "src", "(.*)")', "time()", "vector(1)", "1e+21", "0.5",
    "NaN", "Inf", "x * -1", "sum(x) by (job)", "absent(nope{job=\"x\"})", "a atan2 b",
    'x{"utf8.label"="v"}', "predict_linear(x[1h], 3600)",
    "x[step()]", "x[step() + 1ms]", "rate(x[5m:step() * 2])", "x offset step()",
    "x[min_of(step() + 1, 1h)]", "x offset -(range() / 2)",
    "a + fill(0) b", "a / on(s) group_left fill_right(1) b", "a > bool fill_left(5) fill_right(-Inf) b",
    "increase(x[1m] anchored)", "rate(x[5m] smoothed offset 1m)", "x smoothed", "x smoothed @ 100 + 0",
    "anchored", "sum by (smoothed) (x)", "min_of(1, 2)", 'histogram_quantiles(h, "q", 0.5, 0.9)',
    "histogram_fraction(0, 0.2, h_bucket)",
]  # fmt: skip


@pytest.mark.parametrize("q,ms", [("x[2m*15]", 1_800_000), ("x[1h/2]", 1_800_000), ("x[60*30]", 1_800_000),
                                  ("x[(9m30s+30s)*3]", 1_800_000), ("x[1h30m % 1h]", 1_800_000)])  # fmt: skip
def test_constant_duration_expressions_fold(q: str, ms: int) -> None:
    e = parse(q)
    assert isinstance(e, ast.MatrixSelector) and e.range_ms == ms and e.range_expr is None


@pytest.mark.parametrize("q", ROUND_TRIP)
def test_print_parses_back_to_equal_tree(q: str) -> None:
    tree = parse(q)
    assert parse(to_string(tree)) == tree


@pytest.mark.parametrize("q,pos,msg", [
    ("sum(rate(x[5m])", 15, "unexpected end of input"),
    ("foo{", 4, "unexpected end of input"),
    ("x +", 3, "unexpected end of input"),
    ("1 +* 2", 3, "unexpected"),
    ("up{job=~\"(\"}", None, "invalid regular expression"),
    ("rate(x)", None, "expected type range vector"),
    ("1 > 2", None, "BOOL"),
    ("nofunc(x)", None, "unknown function"),
    ("sum(x[5m])", None, "expected type instant vector"),
    ("{}", None, "at least one non-empty matcher"),
    ("x offset 1m offset 2m", None, "offset"),
    ("", 0, "no expression"),
    ("x[1m] anchored smoothed", None, "cannot be used together"),
    ("x[1m:] anchored", None, "not supported for subqueries"),
    ("sum(x) smoothed", None, "not implemented"),
])  # fmt: skip
def test_errors_name_position_and_problem(q: str, pos: int | None, msg: str) -> None:
    with pytest.raises(Exception) as ei:
        parse(q)
    e = ei.value
    assert isinstance(e, ParseError) or msg in str(e)
    assert msg.lower() in str(e).lower()
    if pos is not None:
        assert isinstance(e, ParseError) and e.position == pos
        assert f"at char {pos + 1}" in str(e)


def test_precedence_and_associativity() -> None:
    e = parse("1 + 2 * 3 ^ 2 ^ 2")
    assert isinstance(e, ast.BinaryExpr) and e.op == "+"
    assert isinstance(e.rhs, ast.BinaryExpr) and e.rhs.op == "*"
    pw = e.rhs.rhs
    assert isinstance(pw, ast.BinaryExpr) and pw.op == "^" and isinstance(pw.rhs, ast.BinaryExpr)
    u = parse("-2 ^ 2")
    assert isinstance(u, ast.UnaryExpr)  # unary minus binds looser than ^
    assert parse("a or b and c").op == "or"
    assert parse("a - b - c").lhs.op == "-"  # left associative


def test_literals() -> None:
    assert parse("0x1f").value == 31
    assert parse("1_000").value == 1000
    assert parse("`raw\\n`").value == "raw\\n"
    assert parse('"tab\\there"').value == "tab\there"
    assert parse("x[1h30m]").range_ms == 5_400_000
    assert parse("x # comment").name == "x"


def test_value_formatting_matches_go() -> None:
    import numpy as np

    from filodb.model.numfmt import format_value, format_values

    cases = {1.0: "1", 0.1: "0.1", -0.0: "-0", 1e21: "1000000000000000000000", 1e-7: "0.0000001",
             float("inf"): "+Inf", float("-inf"): "-Inf", float("nan"): "NaN", 2.5e15: "2500000000000000",
             1.2345678901234567e30: "1234567890123456700000000000000", 5e-05: "0.00005"}  # fmt: skip
    for v, want in cases.items():
        assert format_value(np.float64(v)) == want
    arr = np.concatenate([np.array(list(cases)), np.random.default_rng(0).normal(0, 1e3, 500)])
    assert format_values(arr) == [format_value(x) for x in arr.tolist()]


@pytest.mark.parametrize("q", [
    "(" * 2000 + "1" + ")" * 2000, "-" * 2000 + "1", "sum(" * 2000 + "x" + ")" * 2000,
    " + ".join(["x"] * 5000), "(-" * 1000 + "x" + ")" * 1000, "x" + "[5m:1m]" * 300,
])  # fmt: skip
def test_deep_nesting_is_a_parse_error_not_a_crash(q: str) -> None:
    with pytest.raises(ParseError, match="nested too deeply"):
        parse(q)


def test_nesting_up_to_the_documented_depth_evaluates() -> None:
    from filodb.query.engine import Engine
    from filodb.query.memsource import MemorySource
    from filodb.query.parser import MAX_DEPTH

    for q in ("(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1), "-" * (MAX_DEPTH - 1) + "1",
              "sum(" * (MAX_DEPTH // 2) + "vector(1)" + ")" * (MAX_DEPTH // 2)):  # fmt: skip
        res = Engine(MemorySource()).instant(q, 0)
        assert res.to_prom_json()["result"]
    # brackets inside strings do not count
    assert parse('label_replace(vector(1), "a", "' + "(" * 500 + '", "b", "")') is not None


@pytest.mark.parametrize("q,msg", [('"\\ud83d"', "invalid Unicode code point"),
                                   ('"\\U0011ffff"', "invalid Unicode code point"),
                                   ("up[1e308]", "duration out of range"),
                                   ("up offset 1e308", "duration out of range"),
                                   ("up[5m:1e308]", "duration out of range"),
                                   ("up[999999999999999999999y]", "duration out of range"),
                                   ("up @ 1e308", "timestamp out of bounds")])  # fmt: skip
def test_unencodable_strings_and_overflowing_times_are_parse_errors(q: str, msg: str) -> None:
    """Found by bench/fuzz_http.py: a lone surrogate escape made a string no JSON encoder
    takes (500 at the answer); huge durations overflowed int64 (500 in the engine)."""
    with pytest.raises(ParseError, match=msg):
        parse(q)


def test_valid_escapes_and_long_durations_still_parse() -> None:
    assert parse('"\\u00e9\\U0001F642"') == ast.StringLiteral("é🙂")
    assert parse("up[10000y]").range_ms == 10_000 * 31_536_000_000  # type: ignore[attr-defined]
