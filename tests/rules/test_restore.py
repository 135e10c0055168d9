"""``for`` state restored from ALERTS_FOR_STATE (Prometheus's RestoreForState): the three cases
of the time left pending, an alert that had ended (stale marker), one outside the tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from filodb.query.memsource import MemorySource
from filodb.rules.alerting import Alert
from filodb.rules.files import parse_rules
from filodb.rules.group import STALE, RuleState
from filodb.rules.restore import restore_for_state

(RULE,) = parse_rules("""
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 30m
""")[0].rules  # fmt: skip
LB = (("alertname", "Down"), ("instance", "a"))
T = 1_700_000_000_000  # the new evaluator's first evaluation (ms)
S = T // 1000
GRACE, TOL = 600_000, 3_600_000


def restored(last: list[tuple[int, float]]) -> int:
    """activeAt (s) after restoring an alert pending since ``T`` given the ALERTS_FOR_STATE
    samples ``last`` ((time s, value))."""
    src = MemorySource()
    if last:
        src.add((("__name__", "ALERTS_FOR_STATE"), *LB), np.array([t * 1000 for t, _ in last]),
                np.array([v for _, v in last]))  # fmt: skip
    rs = RuleState(alerts={LB: Alert(LB, (), 0.0, T)}, restoring=True)
    restore_for_state(RULE, rs, T, src, GRACE, TOL)
    assert not rs.restoring
    return rs.alerts[LB].active_at // 1000


@pytest.mark.parametrize(
    ("samples", "want"),
    [
        ([(S - 600, S - 1200), (S - 300, S - 1200)], S - 1200 + 300),  # 25 m left: down time added
        ([(S - 300, S - 1700)], S + 600 - 1800),  # 2.5 m left < grace: fires a grace from now
        ([(S - 300, S - 2400)], S - 2400),  # was firing: keeps its activeAt, fires at once
        ([(S - 300, S - 1200), (S - 200, STALE)], S),  # the alert had ended: nothing restored
        ([(S - 4000, S - 5000)], S),  # beyond the outage tolerance
        ([], S),
    ],
)
def test_restore_cases(samples: list[tuple[int, float]], want: int) -> None:
    assert restored(samples) == want


def test_short_for_is_not_restored() -> None:
    (short,) = parse_rules("groups: [{name: g, rules: [{alert: Down, expr: up == 0, for: 5m}]}]")[
        0
    ].rules
    src = MemorySource()
    src.add(
        (("__name__", "ALERTS_FOR_STATE"), *LB), np.array([(S - 60) * 1000]), np.array([S - 200.0])
    )
    rs = RuleState(alerts={LB: Alert(LB, (), 0.0, T)}, restoring=True)
    assert restore_for_state(short, rs, T, src, GRACE, TOL) == 0
    assert rs.alerts[LB].active_at == T and not rs.restoring
