"""The Go-template interpreter: Go's output formats and Prometheus's functions."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from filodb.rules.govalues import TemplateError
from filodb.rules.template import MAX_STEPS, Template


def expand(
    text: str, value: float = 0.0, labels: dict[str, str] | None = None, **funcs: Any
) -> str:
    labels = labels or {}
    data = {
        "Labels": labels,
        "Value": value,
        "ExternalLabels": {"cluster": "eu"},
        "ExternalURL": "",
    }
    variables = {
        "$labels": labels,
        "$value": value,
        "$externalLabels": {"cluster": "eu"},
        "$externalURL": "",
    }
    return Template(text).execute(data, variables, funcs or None)


@pytest.mark.parametrize(
    ("text", "value", "want"),
    [
        ("{{ $value }}", 3.0, "3"),
        ("{{ $value }}", 0.5, "0.5"),
        ("{{ $value }}", 1234567.0, "1.234567e+06"),
        ("{{ $value }}", 1e-5, "1e-05"),
        ("{{ $value }}", math.inf, "+Inf"),
        ("{{ $value }}", math.nan, "NaN"),
        ("{{ humanize $value }}", 1234567.0, "1.235M"),
        ("{{ humanize $value }}", 0.000123, "123u"),
        ("{{ humanize $value }}", 0.0, "0"),
        ("{{ humanize $value }}", -2500.0, "-2.5k"),
        ("{{ humanize1024 $value }}", 1024.0, "1ki"),
        ("{{ humanize1024 $value }}", 0.5, "0.5"),
        ("{{ humanizeDuration $value }}", 90061.0, "1d 1h 1m 1s"),
        ("{{ humanizeDuration $value }}", 61.0, "1m 1s"),
        ("{{ humanizeDuration $value }}", 1.5, "1.5s"),
        ("{{ humanizeDuration $value }}", 0.0015, "1.5ms"),
        ("{{ humanizeDuration $value }}", 0.0, "0s"),
        ("{{ humanizePercentage $value }}", 0.25, "25%"),
        ("{{ humanizeTimestamp $value }}", 1435065584.128, "2015-06-23 13:19:44.128 +0000 UTC"),
        ('{{ printf "%.1f|%5.2f|%d|%s|%q|%x|%v|%%" $value $value 7 "s" "q" 255 $value }}', 2.25,
         '2.2| 2.25|7|s|"q"|ff|2.25|%'),
        ('{{ printf "%d" $value }}', 1.5, "%!d(float64=1.5)"),
        ('{{ printf "%s" }}', 0.0, "%!s(MISSING)"),
    ],
)  # fmt: skip
def test_numbers_as_prometheus_prints_them(text: str, value: float, want: str) -> None:
    assert expand(text, value) == want


def test_control_flow_and_functions() -> None:
    lb = {"instance": "web-1:9090", "job": "api"}
    assert (
        expand("{{ $labels.instance }}/{{ .Labels.job }}/{{ $labels.nope }}|", 0, lb)
        == "web-1:9090/api/|"
    )
    assert (
        expand(
            "{{ if gt $value 10.0 }}big{{ else if gt $value 1.0 }}mid{{ else }}small{{ end }}", 5
        )
        == "mid"
    )
    assert (
        expand("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}", 0, lb)
        == "instance=web-1:9090;job=api;"
    )
    assert expand('{{ range query "x" }}x{{ else }}empty{{ end }}', query=lambda q: []) == "empty"
    assert (
        expand(
            "{{ with $labels.job }}job={{ . }}{{ end }}{{ with $labels.x }}never{{ end }}", 0, lb
        )
        == "job=api"
    )
    assert (
        expand('{{ reReplaceAll "(.*):(\\\\d+)" "$2 on ${1}" $labels.instance }}', 0, lb)
        == "9090 on web-1"
    )
    assert (
        expand('{{ "hello wORLD" | title }} {{ "ab" | toUpper }} {{ "AB" | toLower }}')
        == "Hello WORLD AB ab"
    )
    assert expand("{{ $externalLabels.cluster }}") == "eu"
    assert expand('{{ $x := "a" }}{{ $x = "b" }}{{ $x }}') == "b"
    assert (
        expand('{{ if and (eq $labels.job "api") (not (eq $labels.job "x")) }}yes{{ end }}', 0, lb)
        == "yes"
    )
    assert expand("a {{- /* note */ -}} b\n  {{- 1 }}") == "ab1"
    assert (
        expand(
            '{{ match "^web" $labels.instance }} {{ len $labels }} {{ index $labels "job" }}', 0, lb
        )
        == "true 2 api"
    )
    assert (
        expand('{{ "x:80" | stripPort }} {{ "a.b.c:80" | stripDomain }} {{ parseDuration "1m" }}')
        == "x a:80 60"
    )


def test_query_first_value_label() -> None:
    def query(q: str) -> list[dict[str, Any]]:
        assert q == "up"
        return [
            {"Labels": {"instance": "a"}, "Value": 2.0},
            {"Labels": {"instance": "b"}, "Value": 0.0},
        ]

    assert expand('{{ query "up" | first | value }}', query=query) == "2"
    assert (
        expand('{{ with query "up" }}{{ . | first | label "instance" }}{{ end }}', query=query)
        == "a"
    )
    assert (
        expand('{{ range query "up" }}{{ .Labels.instance }}={{ .Value }} {{ end }}', query=query)
        == "a=2 b=0 "
    )
    assert (
        expand(
            '{{ range sortByLabel "instance" (query "up") }}{{ .Labels.instance }}{{ end }}',
            query=query,
        )
        == "ab"
    )
    with pytest.raises(TemplateError, match="first\\(\\) called on vector with no elements"):
        expand('{{ query "up" | first }}', query=lambda q: [])


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{{ nope }}", 'function "nope" not defined'),
        ("{{ $x }}", 'undefined variable "$x"'),
        ("{{ if 1 }}", "unexpected EOF"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ .a", "unclosed action"),
        ('{{ "a" | 1 }}', "non executable command"),
        ("{{ template \"x\" }}", "not supported"),
        ("{{ (1 }}", "unclosed left paren"),
    ],
)  # fmt: skip
def test_parse_errors(text: str, why: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(why)):
        Template(text)


def test_execution_is_bounded() -> None:
    t = Template("{{ range $i := 1000000 }}{{ $i }}{{ end }}")
    with pytest.raises(TemplateError, match=f"more than {MAX_STEPS} steps"):
        t.execute({}, {})
    with pytest.raises(TemplateError, match="incompatible types"):
        Template('{{ gt "a" 1 }}').execute({}, {})


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        (
            "{{ $labels.instance }} at {{ $value | humanize }}",
            (("$labels", "instance"), ("$value",)),
        ),
        ("{{ .Labels.job }}/{{ $.Value }}", (("$", "Labels", "job"), ("$", "Value"))),
        ("{{ with $labels.a }}{{ . }}{{ end }}", (("$labels", "a"),)),
        ("{{ $x := $labels.a }}{{ $x | toUpper }}", (("$labels", "a"),)),
        ("plain", ()),
        ("{{ range $labels }}{{ . }}{{ end }}", None),  # the whole label map
        ("{{ . }}", None),
        ('{{ query "up" | first | value }}', None),  # depends on the data, not the alert
        ("{{ if $labels }}x{{ end }}", None),
    ],
)
def test_what_a_template_reads(text: str, reads: tuple | None) -> None:
    assert Template(text).reads == reads


def test_cached_expansions_equal_fresh_ones() -> None:
    """A template's cache, keyed by what it reads, never changes its output: floats that
    print apart (-0 and 0, NaN, infinities) and labels it does not read included."""
    text = "{{ $labels.i }} {{ $value }} {{ $value | humanize }} {{ .Labels.j }}"
    cached = Template(text)
    for v in (0.0, -0.0, math.nan, math.inf, -math.inf, 1.5, 0.0, -0.0, math.nan):
        for lb in ({"i": "a", "j": "x"}, {"i": "a", "j": "y"}, {"i": "a", "j": "x", "k": "z"}):
            data = {"Labels": lb, "Value": v, "ExternalLabels": {}, "ExternalURL": ""}
            variables = {"$labels": lb, "$value": v, "$externalLabels": {}, "$externalURL": ""}
            assert cached.execute(data, variables) == Template(text).execute(data, variables)
    assert cached.execute({"Labels": {"i": "a", "j": "x"}, "Value": -0.0},
                          {"$labels": {"i": "a"}, "$value": -0.0}) == "a -0 -0 x"  # fmt: skip
