"""Alert template expansion per alert: one alerting rule with ``--alerts`` firing alerts
(labels and annotations templated with ``$labels.x``, ``$value | humanize``), through
:func:`filodb.rules.alerting.evaluate_alerts` in process. The first evaluation expands every
alert; later ones find an alert's whole expansion in the rule's cache (same labels and value),
or, with a new value, each template that reads only labels in its own cache. No peer:
Prometheus's per-group evaluation time beside ours is ``bench/rules.py``.

Prints one JSON object per line: ``alert_eval_us_per_alert`` with ``evaluation`` ``first``,
``steady_same_value`` and ``steady_new_value`` (medians of ``--repeat`` later evaluations).

    python bench/rule_templates.py --alerts 10000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from filodb.rules.alerting import TemplateContext, evaluate_alerts
from filodb.rules.files import load_files

RULE = """groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 5m
        labels: {severity: page, team: "{{ $labels.job }}"}
        annotations:
          summary: "{{ $labels.instance }} of {{ $labels.job }} is down"
          description: "value {{ $value | humanize }}"
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "r.yml").write_text(RULE)
        rule = load_files([str(Path(d) / "r.yml")])[0].rules[0]
    n = a.alerts
    labels = [(("__name__", "up"), ("instance", f"host-{i}:9100"), ("job", f"job-{i % 20}"))
              for i in range(n)]  # fmt: skip
    active: dict = {}
    t0 = time.perf_counter()
    cache: dict = {}
    evaluate_alerts(rule, [(lb, 0.0) for lb in labels], 0, active, TemplateContext(), cache=cache)
    first = (time.perf_counter() - t0) / n * 1e6
    out = {"first": first}
    for name, val in (("steady_same_value", lambda k: 0.0), ("steady_new_value", float)):
        runs = []
        for k in range(1, a.repeat + 1):
            series = [(lb, val(k)) for lb in labels]
            t0 = time.perf_counter()
            evaluate_alerts(rule, series, k * 60_000, active, TemplateContext(), cache=cache)
            runs.append((time.perf_counter() - t0) / n * 1e6)
        out[name] = statistics.median(runs)
    for ev, v in out.items():
        print(json.dumps({"metric": "alert_eval_us_per_alert", "value": round(v, 2), "unit": "us",
                          "evaluation": ev, "alerts": n}))  # fmt: skip


if __name__ == "__main__":
    main()
