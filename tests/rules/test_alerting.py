"""The alert state machine, step by step (Prometheus's rules/alerting.go semantics)."""

from __future__ import annotations

import pytest

from filodb.errors import BadInputError
from filodb.rules.alerting import RESOLVED_RETENTION_MS, Alert, TemplateContext, evaluate_alerts
from filodb.rules.files import parse_rules

M = 60_000
RULES = """
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 2m
        labels: {severity: "{{ if gt $value 1.0 }}page{{ else }}ticket{{ end }}"}
        annotations: {summary: "{{ $labels.instance }} is {{ $value }}"}
      - alert: Sticky
        expr: up == 0
        keep_firing_for: 3m
      - alert: Now
        expr: up == 0
"""
DOWN, STICKY, NOW = parse_rules(RULES)[0].rules
A = (("__name__", "up"), ("instance", "a"))


def run(rule, steps: list[list[tuple]], limit: int = 0) -> list[list[tuple[str, int, int, int]]]:  # type: ignore[no-untyped-def]
    """Evaluate ``rule`` once a minute over ``steps`` (the query answer of each minute);
    returns each minute's alerts as (state, active_at, fired_at, resolved_at)."""
    active: dict = {}
    out = []
    for i, series in enumerate(steps):
        evaluate_alerts(rule, series, i * M, active, TemplateContext(), limit)
        out.append([(a.state, a.active_at, a.fired_at, a.resolved_at) for a in active.values()])
    return out


def test_for_pending_then_firing_then_resolved_and_forgotten() -> None:
    up = [(A, 0.0)]
    states = run(DOWN, [up, up, up, [], *[[]] * 16])
    assert states[:4] == [
        [("pending", 0, 0, 0)],
        [("pending", 0, 0, 0)],
        [("firing", 0, 2 * M, 0)],
        [("inactive", 0, 2 * M, 3 * M)],
    ]
    # kept while it may still be sent as resolved (15 m), then dropped
    assert states[3 + RESOLVED_RETENTION_MS // M] == [("inactive", 0, 2 * M, 3 * M)]
    assert states[4 + RESOLVED_RETENTION_MS // M] == []


def test_pending_that_stops_is_dropped_and_restarts_from_scratch() -> None:
    up = [(A, 0.0)]
    assert run(DOWN, [up, [], up]) == [[("pending", 0, 0, 0)], [], [("pending", 2 * M, 0, 0)]]


def test_keep_firing_for() -> None:
    up = [(A, 0.0)]
    states = run(STICKY, [up, [], [], [], [], up])
    assert [s[0][0] for s in states[:5]] == ["firing", "firing", "firing", "firing", "inactive"]
    assert states[4] == [("inactive", 0, 0, 4 * M)]
    assert states[5] == [("firing", 5 * M, 5 * M, 0)]  # a new alert (no ``for``: fires at once)


def test_no_for_fires_at_once_and_samples() -> None:
    active: dict = {}
    out = evaluate_alerts(NOW, [(A, 0.0)], 7 * M, active, TemplateContext())
    assert out.samples == [
        (
            (
                ("__name__", "ALERTS"),
                ("alertname", "Now"),
                ("alertstate", "firing"),
                ("instance", "a"),
            ),
            1.0,
        ),
        ((("__name__", "ALERTS_FOR_STATE"), ("alertname", "Now"), ("instance", "a")), 420.0),
    ]
    assert [a.state for a in out.to_send] == ["firing"]
    # resent only after the resend delay (1 m), resolved sent once at once
    assert evaluate_alerts(NOW, [(A, 0.0)], 7 * M + 30_000, active, TemplateContext()).to_send == []
    assert len(evaluate_alerts(NOW, [(A, 0.0)], 8 * M, active, TemplateContext()).to_send) == 1
    sent = evaluate_alerts(NOW, [], 8 * M + 10_000, active, TemplateContext()).to_send
    assert [(a.state, a.resolved_at) for a in sent] == [("inactive", 8 * M + 10_000)]


def test_templates_in_labels_and_annotations() -> None:
    active: dict[tuple, Alert] = {}
    evaluate_alerts(DOWN, [(A, 2.0), ((("instance", "b"),), 0.5)], 0, active, TemplateContext())
    got = sorted(((dict(a.labels), dict(a.annotations)) for a in active.values()),
                 key=lambda x: x[0]["instance"])  # fmt: skip
    assert got == [
        ({"alertname": "Down", "instance": "a", "severity": "page"}, {"summary": "a is 2"}),
        ({"alertname": "Down", "instance": "b", "severity": "ticket"}, {"summary": "b is 0.5"}),
    ]


def test_limit_and_duplicates() -> None:
    active: dict = {}
    two = [(A, 0.0), ((("instance", "b"),), 0.0)]
    with pytest.raises(BadInputError, match="exceeded limit of 1 with 2 alerts"):
        evaluate_alerts(NOW, two, 0, active, TemplateContext(), limit=1)
    assert active == {}
    with pytest.raises(BadInputError, match="same labelset after applying alert labels"):
        evaluate_alerts(NOW, [(A, 0.0), ((("instance", "a"),), 1.0)], 0, active, TemplateContext())


def test_expansion_cache_follows_labels_values_and_queries() -> None:
    """The rule's expansion cache gives what expanding anew gives; a rule whose template
    runs a query is never cached (the query's answer changes)."""
    cache: dict = {}
    active: dict = {}
    b = (("__name__", "up"), ("instance", "b"))
    for t, v in enumerate((0.0, 0.0, 2.0, 0.0)):
        evaluate_alerts(DOWN, [(A, v), (b, v)], t * M, active, TemplateContext(), cache=cache)
        fresh: dict = {}
        evaluate_alerts(DOWN, [(A, v), (b, v)], t * M, fresh, TemplateContext())
        assert [(a.labels, a.annotations) for a in active.values()] == [
            (a.labels, a.annotations) for a in fresh.values()]  # fmt: skip
    assert len(cache) == 4  # two alerts × two values
    (q,) = parse_rules("""
groups:
  - name: q
    rules:
      - alert: Q
        expr: up == 0
        annotations: {n: '{{ query "x" | first | value }}'}
""")[0].rules  # fmt: skip
    answers = iter([1.0, 2.0])
    ctx = TemplateContext(query=lambda _: [{"Labels": {}, "Value": next(answers)}])
    cache, active = {}, {}
    evaluate_alerts(q, [(A, 0.0)], 0, active, ctx, cache=cache)
    evaluate_alerts(q, [(A, 0.0)], M, active, ctx, cache=cache)
    assert dict(active[next(iter(active))].annotations) == {"n": "2"} and cache == {}
