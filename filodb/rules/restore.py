"""``for`` state restored from ``ALERTS_FOR_STATE``, as Prometheus does at start
(``rules/group.go`` ``RestoreForState``), for alerting rules whose state Redis does not hold
(an emptied Redis, the very first evaluator).

Such a rule writes no ``ALERTS``/``ALERTS_FOR_STATE`` samples at its first evaluation; after
it, for a rule whose ``for`` is at least ``grace`` (``rules_for_grace_period``, 10 m, as
``--rules.alert.for-grace-period``), each pending alert takes the last raw sample of its
``ALERTS_FOR_STATE`` series within ``tolerance`` (``rules_for_outage_tolerance``, 1 h, as
``--rules.alert.for-outage-tolerance``): value ``activeAt`` (s), time ``downAt`` (s). With
``remaining = for - (downAt - activeAt)``: ``remaining <= 0`` keeps ``activeAt`` (it fires at
the next evaluation), ``remaining < grace`` makes it fire ``grace`` after now, else the time it
was down is added to ``activeAt``. A last sample that is a stale marker (the alert had ended)
restores nothing.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from filodb.model.labels import METRIC_NAME, Matcher
from filodb.model.source import SeriesBlock
from filodb.query.values import STALE_NAN_BITS
from filodb.rules.files import Rule
from filodb.rules.group import RuleState

log = logging.getLogger(__name__)


class RawSource(Protocol):
    def select(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> SeriesBlock: ...


def restore_for_state(rule: Rule, rs: RuleState, t: int, source: RawSource, grace_ms: int,
                      tolerance_ms: int) -> int:  # fmt: skip
    """Restore ``rs``'s pending alerts at ``t`` (ms); returns how many were restored."""
    rs.restoring = False
    pending = [a for a in rs.alerts.values() if a.state == "pending"]
    if rule.for_ms < grace_ms or not pending:
        return 0
    block = source.select([Matcher(METRIC_NAME, "=", "ALERTS_FOR_STATE"),
                           Matcher("alertname", "=", rule.alert)], t - tolerance_ms, t)  # fmt: skip
    ends = block.offsets[1:]
    has = np.diff(block.offsets) > 0
    last: dict[tuple[tuple[str, str], ...], tuple[int, float]] = {
        tuple(p for p in lb if p[0] != METRIC_NAME): (int(block.ts[e - 1]), float(block.vals[e - 1]))
        for lb, e, h in zip(block.labels, ends, has, strict=True) if h
    }  # fmt: skip
    n = 0
    t_s = t // 1000
    for a in pending:
        got = last.get(a.labels)
        if got is None:
            continue
        ts_ms, v = got
        if np.array([v]).view(np.uint64)[0] == STALE_NAN_BITS:
            continue  # the alert had ended
        down_s, active_s = ts_ms // 1000, int(v)
        remaining = rule.for_ms // 1000 - (down_s - active_s)
        if remaining <= 0:
            restored = active_s
        elif remaining < grace_ms // 1000:
            restored = t_s + grace_ms // 1000 - rule.for_ms // 1000
        else:
            restored = active_s + (t_s - down_s)
        a.active_at = restored * 1000
        n += 1
    if n:
        log.info(
            "alert %s: restored the for state of %d alerts from ALERTS_FOR_STATE", rule.alert, n
        )
    return n
