"""The rules process's self-metrics under Prometheus's names, so the alerts people already have
on a Prometheus's rule evaluation (failures, missed iterations, slow groups, notifications
dropped) work unchanged. Served on the process's own port (``rules_metrics_port``; 0: a free
one; negative: off), printed at start and recorded in Redis (``filodb:rules:metrics``, process
name → ``host:port``). Read from the manager and the notifier at scrape time; ``rule_group``
is ``<file>;<group>`` as in Prometheus. A standby (``filodb_rules_leader`` 0) shows its groups
with the counters it had while it last evaluated.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from filodb.exposition import MetricsServer
from filodb.rules.manager import RuleManager
from filodb.rules.notifier import MAX_QUEUE

METRICS_KEY = "filodb:rules:metrics"
_COUNTERS = (
    ("iterations", "prometheus_rule_group_iterations", "The number of scheduled evaluations of the group"),
    ("missed", "prometheus_rule_group_iterations_missed",
     "The number of rule group evaluations missed due to slow rule group evaluation"),
    ("evaluations", "prometheus_rule_evaluations", "The total number of rule evaluations"),
    ("failures", "prometheus_rule_evaluation_failures", "The total number of rule evaluation failures"),
)  # fmt: skip


class RulesCollector(Collector):
    def __init__(self, mgr: RuleManager) -> None:
        self.mgr = mgr

    def collect(self) -> Iterator[Metric]:
        mgr = self.mgr
        groups = list(mgr.groups)
        lb = ["rule_group"]
        for attr, name, doc in _COUNTERS:
            fam = CounterMetricFamily(name, doc, labels=lb)
            for g in groups:
                fam.add_metric([g.key], getattr(mgr.counters[g.key], attr))
            yield fam
        gauges = {
            "prometheus_rule_group_last_duration_seconds": "The duration of the last rule group evaluation",
            "prometheus_rule_group_last_evaluation_timestamp_seconds": "The timestamp of the last rule group evaluation in seconds",
            "prometheus_rule_group_interval_seconds": "The interval of a rule group",
            "prometheus_rule_group_rules": "The number of rules",
            "prometheus_rule_group_last_evaluation_samples": "The number of samples returned during the last rule group evaluation",
        }  # fmt: skip
        gfams = {n: GaugeMetricFamily(n, doc, labels=lb) for n, doc in gauges.items()}
        for g in groups:
            st = mgr.states[g.key]
            vals = (st.eval_seconds, st.last_eval_ms / 1000, g.interval_ms / 1000, len(g.rules),
                    mgr.counters[g.key].last_samples)  # fmt: skip
            for gfam, v in zip(gfams.values(), vals, strict=True):
                gfam.add_metric([g.key], v)
        yield from gfams.values()
        yield GaugeMetricFamily("filodb_rules_leader", "1 when this process holds the rules "
                                "lease and evaluates", value=int(mgr.leader))  # fmt: skip
        yield from self._notifications()

    def _notifications(self) -> Iterator[Metric]:
        n = self.mgr.notifier
        urls = n.urls if n is not None else []
        am = ["alertmanager"]
        sent = CounterMetricFamily("prometheus_notifications_sent", "Total number of alerts sent.",
                                   labels=am)  # fmt: skip
        errors = CounterMetricFamily("prometheus_notifications_errors",
                                     "Total number of sent alerts affected by errors.", labels=am)  # fmt: skip
        for u in urls:
            assert n is not None
            sent.add_metric([f"{u}/api/v2/alerts"], n.sent[u])
            errors.add_metric([f"{u}/api/v2/alerts"], n.errors[u])
        yield sent
        yield errors
        yield CounterMetricFamily("prometheus_notifications_dropped",
                                  "Total number of alerts dropped due to errors when sending to "
                                  "Alertmanager.", value=n.dropped if n is not None else 0)  # fmt: skip
        yield GaugeMetricFamily("prometheus_notifications_queue_length",
                                "The number of alert notifications in the queue.",
                                value=n.queue_length() if n is not None else 0)  # fmt: skip
        yield GaugeMetricFamily("prometheus_notifications_queue_capacity",
                                "The capacity of the alert notifications queue.", value=MAX_QUEUE)  # fmt: skip
        yield GaugeMetricFamily("prometheus_notifications_alertmanagers_discovered",
                                "The number of alertmanagers discovered and active.", value=len(urls))  # fmt: skip


def serve(mgr: RuleManager, host: str, port: int) -> MetricsServer | None:
    """Serve ``mgr``'s metrics on ``host:port`` (0: a free port); ``None`` when negative."""
    if port < 0:
        return None
    return MetricsServer([RulesCollector(mgr)], host, port)
