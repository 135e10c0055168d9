"""Alerts of one alerting rule: Prometheus's state machine (``rules/alerting.go``), pure.

Each evaluation takes the rule's query answer at ``t`` and the alerts active so far, and
moves them: a new label set is *pending* from ``t`` (``active_at``), *firing* once it has been
active for ``for``; one that is no longer returned is dropped when pending, and when firing
is *inactive* (resolved at ``t``), unless ``keep_firing_for`` keeps it firing that long after
it was last returned. Resolved alerts stay 15 minutes, to be sent as resolved. The answer is
the ``ALERTS``/``ALERTS_FOR_STATE`` samples and the alerts due to Alertmanager (firing ones
every ``resend_delay``, resolved ones once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from filodb.errors import BadInputError
from filodb.model.labels import METRIC_NAME, Labels
from filodb.rules.files import Rule
from filodb.rules.template import CACHE_SIZE, TemplateError

log = logging.getLogger(__name__)
RESOLVED_RETENTION_MS = 15 * 60_000
RESEND_DELAY_MS = 60_000
ALERTNAME = "alertname"

QueryFn = Callable[[str], list[dict[str, Any]]]


@dataclass
class Alert:
    labels: Labels
    annotations: Labels
    value: float
    active_at: int  # ms
    state: str = "pending"  # pending | firing | inactive
    fired_at: int = 0
    resolved_at: int = 0
    last_sent_at: int = 0
    keep_firing_since: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"labels": list(map(list, self.labels)), "annotations": list(map(list, self.annotations)),
                "value": self.value, "active_at": self.active_at, "state": self.state,
                "fired_at": self.fired_at, "resolved_at": self.resolved_at,
                "last_sent_at": self.last_sent_at, "keep_firing_since": self.keep_firing_since}  # fmt: skip

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Alert:
        return cls(labels=tuple((k, v) for k, v in d["labels"]),
                   annotations=tuple((k, v) for k, v in d["annotations"]), value=float(d["value"]),
                   active_at=int(d["active_at"]), state=str(d["state"]), fired_at=int(d["fired_at"]),
                   resolved_at=int(d["resolved_at"]), last_sent_at=int(d["last_sent_at"]),
                   keep_firing_since=int(d["keep_firing_since"]))  # fmt: skip


@dataclass
class TemplateContext:
    external_labels: Labels = ()
    external_url: str = ""
    query: QueryFn | None = None


@dataclass
class AlertOutcome:
    samples: list[tuple[Labels, float]] = field(default_factory=list)
    to_send: list[Alert] = field(default_factory=list)


class _Expander:
    """Expands a rule's label and annotation templates for one sample after another (the
    template data of a sample is built once for all its templates)."""

    def __init__(self, rule: Rule, ctx: TemplateContext,
                 cache: dict[Any, tuple[Labels, Labels]] | None = None) -> None:  # fmt: skip
        self.rule = rule
        self.ext = dict(ctx.external_labels)
        self.url = ctx.external_url
        self.funcs = {"query": ctx.query} if ctx.query else None
        reads = [t.reads for t in rule.templates.values()]
        # every template reads only the sample's labels and value (and constants): the
        # expansion of a sample is cached by its labels (and value, when one reads it)
        self.cache = cache if all(r is not None for r in reads) else None
        self.by_value = any(p in (("$value",), ("$", "Value")) for r in reads for p in r or ())
        if self.cache is not None and len(self.cache) > CACHE_SIZE:
            self.cache.clear()

    def sample(self, labels: Labels, value: float) -> tuple[Labels, Labels]:
        """The alert's labels and annotations for one sample of the rule's answer."""
        if self.cache is None:
            return self._sample(labels, value)
        key = (labels, value.hex() if self.by_value else None)
        hit = self.cache.get(key)
        if hit is None:
            hit = self.cache[key] = self._sample(labels, value)
        return hit

    def _sample(self, labels: Labels, value: float) -> tuple[Labels, Labels]:
        lbl = dict(labels)
        data = {"Labels": lbl, "ExternalLabels": self.ext, "ExternalURL": self.url, "Value": value}
        variables = {"$labels": lbl, "$externalLabels": self.ext, "$externalURL": self.url,
                     "$value": value}  # fmt: skip
        out = {k: v for k, v in labels if k != METRIC_NAME}
        for k, _ in self.rule.labels:
            v = self._expand(f"label:{k}", data, variables)
            if v:
                out[k] = v
            else:
                out.pop(k, None)
        out[ALERTNAME] = self.rule.alert
        # annotations keep empty values, as Prometheus keeps them
        ann = tuple((k, self._expand(f"annotation:{k}", data, variables))
                    for k, _ in self.rule.annotations)  # fmt: skip
        return tuple(sorted(out.items())), ann

    def _expand(self, key: str, data: dict[str, Any], variables: dict[str, Any]) -> str:
        """An error becomes the text ``<error expanding template: ...>``, as in Prometheus."""
        try:
            return self.rule.templates[key].execute(data, variables, self.funcs)
        except (TemplateError, BadInputError) as e:
            log.warning("alert %s: expanding %s: %s", self.rule.alert, key, e)
            return f"<error expanding template: {e}>"


def evaluate_alerts(rule: Rule, series: list[tuple[Labels, float]], t: int,
                    active: dict[Labels, Alert], ctx: TemplateContext, limit: int = 0,
                    cache: dict[Any, tuple[Labels, Labels]] | None = None) -> AlertOutcome:  # fmt: skip
    """Move ``active`` (changed in place) to time ``t`` given the rule's answer ``series``;
    ``cache`` (kept by the caller across evaluations) holds the rule's template expansions.

    Raises :class:`BadInputError` for two samples with one alert label set, or more active
    alerts than ``limit`` (then ``active`` is cleared, as Prometheus does)."""
    new: dict[Labels, Alert] = {}
    expander = _Expander(rule, ctx, cache)
    for labels, value in series:
        lb, ann = expander.sample(labels, value)
        if lb in new:
            raise BadInputError("vector contains metrics with the same labelset after applying "
                                "alert labels")  # fmt: skip
        new[lb] = Alert(lb, ann, value, t)
    for lb, a in new.items():
        old = active.get(lb)
        if old is not None and old.state != "inactive":
            old.value, old.annotations = a.value, a.annotations
        else:
            active[lb] = a
    out = AlertOutcome()
    n_active = 0
    for lb in list(active):
        a = active[lb]
        if lb not in new:
            keep = False
            if a.state == "firing" and rule.keep_firing_for_ms > 0:
                if not a.keep_firing_since:
                    a.keep_firing_since = t
                keep = t - a.keep_firing_since < rule.keep_firing_for_ms
            if a.state == "pending" or (
                a.resolved_at and t - a.resolved_at > RESOLVED_RETENTION_MS
            ):
                del active[lb]
            if a.state != "inactive" and not keep:
                a.state, a.resolved_at = "inactive", t
            if not keep:
                continue
        else:
            a.keep_firing_since = 0
        n_active += 1
        if a.state == "pending" and t - a.active_at >= rule.for_ms:
            a.state, a.fired_at = "firing", t
        out.samples.append((_plus(lb, (METRIC_NAME, "ALERTS"), ("alertstate", a.state)), 1.0))
        out.samples.append((_plus(lb, (METRIC_NAME, "ALERTS_FOR_STATE")), a.active_at / 1000))
    if limit and n_active > limit:
        active.clear()
        raise BadInputError(f"exceeded limit of {limit} with {n_active} alerts")
    for a in active.values():
        if needs_sending(a, t):
            a.last_sent_at = t
            out.to_send.append(a)
    return out


def _plus(lb: Labels, *pairs: tuple[str, str]) -> Labels:
    """``lb`` (sorted, without these names) with ``pairs`` added, sorted."""
    return tuple(sorted((*lb, *pairs)))


def needs_sending(a: Alert, t: int, resend_delay_ms: int = RESEND_DELAY_MS) -> bool:
    if a.state == "pending":
        return False
    if a.resolved_at > a.last_sent_at:
        return True
    return a.last_sent_at + resend_delay_ms <= t
