"""One evaluation of a rule group, pure: a querier in, samples out, the group's state moved.

Rules run in file order at the group's time ``t``; each queries at ``t - query_offset``. A
recording rule's answer is renamed and relabelled; an alerting rule's moves its alerts
(:mod:`filodb.rules.alerting`). A series a rule returned last time and not now gets a stale
marker, as Prometheus writes one. A rule whose query fails (or whose answer breaks a rule:
duplicate label sets, more than the group's ``limit``) writes nothing and is ``health: err``
with the reason; the next rules still run. The samples go to an :class:`Appender` once per
rule; a later rule of the group that selects an earlier one's output reads it at once through
:mod:`filodb.rules.fresh` when the querier can lay it over its source (:class:`OverlayQuerier`),
as Prometheus's later rules read its TSDB.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

from filodb.errors import BadInputError, FiloError
from filodb.model.batch import SampleBatch
from filodb.model.labels import METRIC_NAME, Labels, make_labels
from filodb.model.source import SeriesSource
from filodb.query import ast
from filodb.query.result import Result
from filodb.query.values import STALE_NAN_BITS
from filodb.rules.alerting import Alert, TemplateContext, evaluate_alerts
from filodb.rules.files import Rule, RuleGroup
from filodb.rules.fresh import FreshSamples

_ALERT_NAMES = {"ALERTS", "ALERTS_FOR_STATE"}
STALE = float(np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0])


class Querier(Protocol):
    def instant(self, expr: str | ast.Expr, t_ms: int) -> Result: ...


class OverlayQuerier(Querier, Protocol):
    def overlaid(self, fresh: SeriesSource) -> Querier:
        """A querier over this one's source with ``fresh`` laid over it."""
        ...


class Appender(Protocol):
    def append(self, batch: SampleBatch) -> None: ...


@dataclass
class RuleState:
    health: str = "unknown"  # ok | err | unknown
    last_error: str = ""
    last_eval_ms: int = 0
    eval_seconds: float = 0.0
    alerts: dict[Labels, Alert] = field(default_factory=dict)
    returned: set[Labels] = field(default_factory=set)  # series written last time (staleness)
    returned_dirty: bool = False  # ``returned`` changed since it was last saved to Redis
    restoring: bool = False  # ``for`` state to restore from ALERTS_FOR_STATE (rules.restore)
    expansions: dict[Any, tuple[Labels, Labels]] = field(default_factory=dict)  # templates


@dataclass
class GroupState:
    rules: list[RuleState]
    last_eval_ms: int = 0
    eval_seconds: float = 0.0
    last_samples: int = 0  # samples the last evaluation wrote (stale markers included)

    @classmethod
    def new(cls, group: RuleGroup) -> GroupState:
        return cls([RuleState() for _ in group.rules])


def vector(res: Result) -> list[tuple[Labels, float]]:
    if res.result_type == "scalar":
        assert res.scalar is not None
        return [((), res.scalar[1])]
    if res.result_type != "vector":
        raise BadInputError(f"rule result is not a vector or scalar: {res.result_type}")
    return [(lb, float(vs[-1])) for lb, _, vs in res.series]


def record(rule: Rule, series: list[tuple[Labels, float]]) -> list[tuple[Labels, float]]:
    out: dict[Labels, float] = {}
    extra = dict(rule.labels)
    for lb, v in series:
        d = {**dict(lb), METRIC_NAME: rule.record, **extra}
        key = make_labels({k: x for k, x in d.items() if x != ""})
        if key in out:
            raise BadInputError("vector contains metrics with the same labelset after applying "
                                "rule labels")  # fmt: skip
        out[key] = v
    return list(out.items())


def _query_fn(querier: Querier, t: int) -> Callable[[str], list[dict[str, Any]]]:
    def query(q: str) -> list[dict[str, Any]]:
        return [{"Labels": dict(lb), "Value": v} for lb, v in vector(querier.instant(q, t))]

    return query


def evaluate_group(group: RuleGroup, t: int, querier: Querier, appender: Appender,
                   state: GroupState, ctx: TemplateContext | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> list[Alert]:  # fmt: skip
    """Evaluate every rule of ``group`` at ``t`` (ms); returns the alerts due to Alertmanager."""
    ctx = ctx or TemplateContext()
    qt = t - group.query_offset_ms
    tctx = TemplateContext(ctx.external_labels, ctx.external_url, _query_fn(querier, qt))
    start = clock()
    to_send: list[Alert] = []
    fresh = FreshSamples()
    written = 0
    for rule, rs in zip(group.rules, state.rules, strict=True):
        t0 = clock()
        rs.last_eval_ms = t
        q: Querier = querier
        if hasattr(querier, "overlaid") and fresh.read_by(rule.parsed):
            q = cast(OverlayQuerier, querier).overlaid(fresh.source)
        try:
            series = vector(q.instant(rule.parsed, qt))
            if rule.record:
                samples = record(rule, series)  # duplicates first, then the limit (Prometheus)
                if group.limit and len(samples) > group.limit:
                    raise BadInputError(
                        f"exceeded limit of {group.limit} with {len(samples)} series"
                    )
            else:
                out = evaluate_alerts(rule, series, t, rs.alerts, tctx, group.limit, rs.expansions)
                samples = out.samples
                to_send.extend(out.to_send)
            rs.health, rs.last_error = "ok", ""
        except FiloError as e:
            rs.health, rs.last_error = "err", str(e)
            rs.eval_seconds = clock() - t0
            continue
        if rs.restoring:  # no ALERTS samples until its for state is restored (Prometheus)
            rs.eval_seconds = clock() - t0
            continue
        now = {lb for lb, _ in samples}
        gone = sorted(rs.returned - now)
        if now != rs.returned:
            rs.returned, rs.returned_dirty = now, True
        all_samples = samples + [(lb, STALE) for lb in gone]
        if all_samples:
            batch = to_batch(all_samples, qt)
            written += len(all_samples)
            appender.append(batch)
            fresh.append({rule.record} if rule.record else _ALERT_NAMES, batch)
        rs.eval_seconds = clock() - t0
    state.last_eval_ms, state.last_samples = t, written
    state.eval_seconds = clock() - start
    return to_send


def to_batch(samples: list[tuple[Labels, float]], t: int) -> SampleBatch:
    n = len(samples)
    return SampleBatch([lb for lb, _ in samples], np.arange(n, dtype=np.int32),
                       np.full(n, t, np.int64), np.array([v for _, v in samples], np.float64))  # fmt: skip
