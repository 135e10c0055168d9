"""The rules process's /metrics under Prometheus's names, scraped over HTTP from a manager
evaluating on a real Redis with an injected clock: iterations, missed ones, evaluations and
failures per group, the last evaluation's duration and samples, notifications that failed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.redisproc import free_port
from filodb.rules.manager import RuleManager, current_slot
from filodb.rules.metrics import serve
from filodb.rules.notifier import Notifier
from filodb.rules.state import LEASE_KEY, RuleStateStore
from filodb.shards.nodes import Lease
from filodb.testing.wait import wait_for

RULES = """
groups:
  - name: m
    interval: 1m
    limit: 1
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - record: all_up
        expr: up
      - alert: Down
        expr: up == 0
"""
T0 = 1_700_000_000.0


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}  # fmt: skip


def test_rule_metrics_under_prometheus_names(tmp_path: Path, redis_url: str) -> None:
    f = tmp_path / "m.yml"
    f.write_text(RULES)
    src = MemorySource()
    ts = np.arange(int(T0 - 3600) * 1000, int(T0 + 7200) * 1000, 15_000, dtype=np.int64)
    src.add((("__name__", "up"), ("instance", "a"), ("job", "api")), ts, np.zeros(len(ts)))
    src.add((("__name__", "up"), ("instance", "b"), ("job", "api")), ts, np.ones(len(ts)))
    store = RuleStateStore(redis_url)
    store.r.delete(LEASE_KEY)
    now = [T0]
    dead_am = f"http://127.0.0.1:{free_port()}"  # nothing listens: every send fails
    notifier = Notifier([dead_am], timeout_s=2)
    mgr = RuleManager([str(f)], Engine(src), type("Null", (), {"append": lambda s, b: None})(),
                      store=store, lease=Lease(store.r, LEASE_KEY, 5.0), notifier=notifier,
                      name="m", clock=lambda: now[0])  # fmt: skip
    mgr.load()
    g = mgr.groups[0]
    s0 = current_slot(g, int(T0 * 1000))
    server = serve(mgr, "127.0.0.1", 0)
    assert server is not None
    try:
        for t in (s0, s0 + 60_000, s0 + 240_000):  # the last tick skips two slots
            now[0] = t / 1000
            mgr.tick()
        url = f"http://127.0.0.1:{server.port}/metrics"
        key = (("rule_group", f"{f};m"),)
        m = scrape(url)
        assert m[("prometheus_rule_group_iterations_total", key)] == 3
        assert m[("prometheus_rule_group_iterations_missed_total", key)] == 2
        assert m[("prometheus_rule_evaluations_total", key)] == 9
        assert m[("prometheus_rule_evaluation_failures_total", key)] == 3  # all_up: 2 > limit 1
        assert m[("prometheus_rule_group_rules", key)] == 3
        assert m[("prometheus_rule_group_interval_seconds", key)] == 60
        assert (
            m[("prometheus_rule_group_last_evaluation_timestamp_seconds", key)]
            == (s0 + 240_000) / 1000
        )
        assert m[("prometheus_rule_group_last_duration_seconds", key)] > 0
        # job:up:sum, ALERTS and ALERTS_FOR_STATE of the firing alert (for 0)
        assert m[("prometheus_rule_group_last_evaluation_samples", key)] == 3
        assert m[("filodb_rules_leader", ())] == 1
        am = (("alertmanager", f"{dead_am}/api/v2/alerts"),)
        got = wait_for(lambda: (s := scrape(url))[("prometheus_notifications_dropped_total", ())] >= 1 and s,
                       30, "a failed notification counted")  # fmt: skip
        assert got[("prometheus_notifications_errors_total", am)] >= 1
        assert got[("prometheus_notifications_sent_total", am)] == 0
        assert got[("prometheus_notifications_alertmanagers_discovered", ())] == 1
    finally:
        server.close()
        notifier.close()
