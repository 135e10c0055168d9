"""Rule group evaluation time, FiloDB (``filodb up --rules``) beside Prometheus 2.42 (Debian)
evaluating the same rule file over the same samples (remote write into both).

Prints one JSON object per line ``{"metric", "value", "unit", ...context}``:
``rule_group_eval_ms`` per system (the median of the group's last evaluation duration, read
``--polls`` times: FiloDB's ``evaluationTime`` from ``/api/v1/rules``, Prometheus's
``prometheus_rule_group_last_duration_seconds``), ``rule_group_eval_ratio`` (FiloDB / Prometheus:
below 1 is faster) and ``answers_agree`` (1 when both systems' recorded series and ``ALERTS``
have the same counts).

    python bench/rules.py                 # 10 000 series (bench/promql.py's workload), 15 min
    python bench/rules.py --series 2000   # quick
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from promql import Peer, bodies, emit, push, workload  # noqa: E402

from filodb.testing.cluster import UpProcess  # noqa: E402
from filodb.testing.wait import wait_for  # noqa: E402

RULES = """groups:
  - name: bench
    interval: 5s
    rules:
      - record: job_code:bench_requests:rate5m
        expr: sum by (job, code) (rate(bench_requests_total[5m]))
      - record: instance:bench_temp:max
        expr: max by (instance) (bench_temp)
      - record: bench_temp:scaled
        expr: bench_temp * 1.8 + 32
      - alert: WarmSensor
        expr: bench_temp > 22
        labels: {severity: "{{ if gt $value 24.0 }}page{{ else }}ticket{{ end }}"}
        annotations: {summary: "{{ $labels.instance }}/{{ $labels.sensor }} at {{ $value | humanize }}"}
"""
COUNTS = ("count(job_code:bench_requests:rate5m)", "count(instance:bench_temp:max)",
          "count(bench_temp:scaled)", "count(ALERTS)")  # fmt: skip


def prom_group_seconds(base: str) -> float | None:
    for line in requests.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith("prometheus_rule_group_last_duration_seconds{") and ';bench"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def counts(base: str) -> list[float]:
    out = []
    for q in COUNTS:
        res = requests.get(base + "/api/v1/query", params={"query": q}, timeout=60).json()["data"][
            "result"
        ]
        out.append(float(res[0]["value"][1]) if res else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--minutes", type=int, default=15)
    ap.add_argument("--polls", type=int, default=6)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "rules.yml").write_text(RULES)
        series, vals = workload(a.series, a.minutes * 4)
        t0 = int(time.time() * 1000) - a.minutes * 60_000
        payloads = bodies(series, vals[:, : a.minutes * 4], t0, 15_000)
        up = UpProcess(
            work / "filodb", shards=4, extra=["--rules", str(work / "rules.yml")]
        ).start()
        prom = Peer("prometheus", work)
        try:
            cfg = prom.base  # give Prometheus the same rule file, then reload it (SIGHUP)
            (work / "prometheus" / "prometheus.yml").write_text(
                f"global:\n  scrape_interval: 1h\nrule_files:\n  - {work / 'rules.yml'}\n"
            )
            os.kill(prom.proc.pid, signal.SIGHUP)
            for name, url in (("filodb", up.url), ("prometheus", cfg)):
                emit(
                    "ingest_s",
                    push(url + "/api/v1/write", payloads),
                    "s",
                    system=name,
                    series=a.series,
                )
            ours: list[float] = []
            theirs: list[float] = []
            wait_for(lambda: counts(up.url)[-1] > 0 and counts(cfg)[-1] > 0, 120, "both evaluate")
            for _ in range(a.polls):
                time.sleep(5)  # one group interval between readings
                g = requests.get(up.url + "/api/v1/rules", timeout=10).json()["data"]["groups"][0]
                ours.append(g["evaluationTime"] * 1000)
                p = prom_group_seconds(cfg)
                if p is not None:
                    theirs.append(p * 1000)
            f_ms, p_ms = statistics.median(ours), statistics.median(theirs)
            emit("rule_group_eval_ms", f_ms, "ms", system="filodb", series=a.series)
            emit("rule_group_eval_ms", p_ms, "ms", system="prometheus", series=a.series)
            emit("rule_group_eval_ratio", f_ms / p_ms, "ratio", peer="prometheus", series=a.series)
            c_f, c_p = counts(up.url), counts(cfg)
            emit(
                "answers_agree",
                float(c_f == c_p),
                "bool",
                series=a.series,
                filodb=c_f,
                prometheus=c_p,
            )
        finally:
            up.stop()
            prom.stop()


if __name__ == "__main__":
    main()
