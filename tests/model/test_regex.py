"""Label-matcher and label_replace regexes are RE2, anchored as Prometheus anchors them."""

from __future__ import annotations

import pytest

from filodb.errors import BadInputError
from filodb.model.labels import Matcher
from filodb.model.regex import compile_matcher, compile_replace


def test_patterns_that_backtrack_exponentially_elsewhere_answer_at_once() -> None:
    # With a backtracking engine each of these takes longer than the age of the universe.
    for pat in ("(a+)+", "(a|a)*", "(a*)*b", "(.*a){20}"):
        assert not Matcher("x", "=~", pat).matches("a" * 5000 + "!")
    assert Matcher("x", "=~", "(a+)+").matches("a" * 5000)


def test_fully_anchored_and_dot_matches_newline() -> None:
    m = Matcher("x", "=~", "foo")
    assert m.matches("foo") and not m.matches("foobar") and not m.matches("afoo")
    assert Matcher("x", "=~", "a.b").matches("a\nb")
    assert Matcher("x", "=~", "foo|bar").matches("bar")
    assert Matcher("x", "!~", "foo|bar").matches("baz") and not Matcher("x", "!~", "foo").matches(
        "foo"
    )
    assert Matcher("x", "=~", "").matches("") and not Matcher("x", "=~", "").matches("a")


def test_re2_syntax_and_semantics_not_pythons() -> None:
    assert Matcher("x", "=~", r"\pL+").matches("héllo")  # Unicode classes
    assert Matcher("x", "=~", "[[:alpha:]]+").matches("abc")  # POSIX classes
    assert Matcher("x", "=~", "a(?i)b").matches("aB") and not Matcher("x", "=~", "a(?i)b").matches(
        "AB"
    )
    assert not Matcher("x", "=~", r"\d").matches("\u0663")  # \d is ASCII, as in Go
    assert Matcher("x", "=~", r"\Qa.b\E").matches("a.b") and not Matcher(
        "x", "=~", r"\Qa.b\E"
    ).matches("axb")


@pytest.mark.parametrize("pat", ["(?=a)", r"(a)\1", "(?<!a)b", "a{1001}", "(", "[z-a]", "a**"])
def test_patterns_re2_refuses_are_bad_input_naming_them(pat: str) -> None:
    with pytest.raises(BadInputError, match="invalid regular expression") as e:
        Matcher("x", "=~", pat)
    assert repr(pat) in str(e.value)


def test_answers_are_remembered_and_bounded_across_patterns(monkeypatch) -> None:
    from filodb.model import regex
    from filodb.model.cache import BoundedCache

    memo: BoundedCache[tuple[str, str], bool] = BoundedCache(1_000)
    monkeypatch.setattr(regex, "_ANSWERS", memo)
    rx = compile_matcher("web-.*")
    assert compile_matcher("web-.*") is rx  # compiled once per pattern
    vals = [f"web-{i}" for i in range(3_000)] + ["db-1"]
    assert sum(rx.fullmatch(v) for v in vals) == 3_000
    assert memo.get(("web-.*", "db-1")) is False  # remembered
    # many patterns share one budget: the memo never holds more than two generations
    for p in range(200):
        other = regex.Regex(f"web-{p}.*")
        assert sum(other.fullmatch(v) for v in vals[:50]) == sum(
            v.startswith(f"web-{p}") for v in vals[:50]
        )
    assert len(memo) + len(memo._old) <= 2_000
    assert not rx.fullmatch("db-1") and rx.fullmatch("web-3")  # right after eviction too


def test_replace_keeps_groups() -> None:
    m = compile_replace("(?P<host>[^:]+):(\\d+)").match("db:5432")
    assert m is not None and m.expand(r"\g<host>/\g<2>") == "db/5432"
    assert compile_replace("b").match("abc") is None  # anchored
