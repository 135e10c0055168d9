"""Rules end to end: ``filodb up --rules --alertmanager-url`` with Debian's Alertmanager.

A recorded series and ``ALERTS`` come back through the ingestion path and are queryable; the
alert reaches Alertmanager when it fires and leaves it when it resolves; ``/api/v1/rules`` and
``/api/v1/alerts`` answer in Prometheus's shapes; ``POST /-/reload`` refuses a bad file with the
reason (the old rules keep running) and SIGHUP reloads; a second ``filodb rules`` process takes
the lease over when the evaluating one is killed with SIGKILL, and the alert's ``activeAt``
survives the handover.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import redis
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.rules.state import LEASE_KEY, RETURNED_KEY
from filodb.testing.alertmanager import AlertmanagerServer
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import wait_for

RULES = """
groups:
  - name: e2e
    interval: 1s
    rules:
      - record: job:probe_value:sum
        expr: sum by (job) (probe_value)
      - alert: ProbeDown
        expr: probe_value == 0
        for: 2s
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.instance }} is down ({{ $value }})"
      - record: probe:down
        expr: probe_value == 0
      - record: job:probe_value:sum_doubled
        expr: job:probe_value:sum * 2
"""
RW = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[UpProcess, AlertmanagerServer, Path]]:
    home = tmp_path_factory.mktemp("rules-e2e")
    am = AlertmanagerServer(home / "am").start()
    rules = home / "rules"
    rules.mkdir()
    (rules / "e2e.yml").write_text(RULES)
    up = UpProcess(home / "data", shards=2,
                   extra=["--rules", str(rules / "*.yml"), "--alertmanager-url", am.url],
                   env={"FILODB_HEARTBEAT_TTL": "2"})  # fmt: skip
    up.start()
    yield up, am, rules
    up.stop()
    am.stop()


def write(url: str, value: float, instance: str = "db-1") -> None:
    lb = make_labels({"__name__": "probe_value", "job": "probe", "instance": instance})
    batch = SampleBatch(
        [lb], np.zeros(1, np.int32), np.array([int(time.time() * 1000)]), np.array([value])
    )
    r = requests.post(
        url + "/api/v1/write", data=encode_write_request(batch), headers=RW, timeout=30
    )
    assert r.status_code == 204, r.text


def query(url: str, q: str) -> list[dict]:
    r = requests.get(url + "/api/v1/query", params={"query": q}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]["result"]


def rules_api(url: str, **params: str) -> dict:
    r = requests.get(url + "/api/v1/rules", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_alert_fires_reaches_alertmanager_and_resolves(
    env: tuple[UpProcess, AlertmanagerServer, Path],
) -> None:
    up, am, _ = env
    write(up.url, 0.0)
    rec = wait_for(lambda: query(up.url, "job:probe_value:sum"), 60, "recorded series", up.log_tail)
    assert rec[0]["metric"] == {"__name__": "job:probe_value:sum", "job": "probe"}
    firing = wait_for(
        lambda: query(up.url, 'ALERTS{alertstate="firing"}'), 60, "ALERTS firing", up.log_tail
    )
    assert firing[0]["metric"] == {"__name__": "ALERTS", "alertname": "ProbeDown", "alertstate": "firing",
                                   "instance": "db-1", "job": "probe", "severity": "page"}  # fmt: skip
    got = wait_for(lambda: [a for a in am.alerts() if a["labels"].get("alertname") == "ProbeDown"],
                   60, "alert in Alertmanager", am.log)  # fmt: skip
    assert got[0]["annotations"] == {"summary": "db-1 is down (0)"}
    assert got[0]["labels"]["severity"] == "page" and got[0]["status"]["state"] == "active"
    assert "/graph?g0.expr=probe_value+%3D%3D+0" in got[0]["generatorURL"]
    # the API shapes while firing
    (alert,) = requests.get(up.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert (
        alert["state"] == "firing" and alert["value"] == "0e+00" and alert["activeAt"].endswith("Z")
    )
    (group,) = rules_api(up.url)["groups"]
    assert group["name"] == "e2e" and group["file"].endswith("e2e.yml") and group["interval"] == 1
    rec_rule, alert_rule, _, _ = group["rules"]
    assert rec_rule["type"] == "recording" and rec_rule["health"] == "ok"
    assert alert_rule["type"] == "alerting" and alert_rule["state"] == "firing"
    assert (
        alert_rule["duration"] == 2
        and alert_rule["alerts"][0]["labels"]["alertname"] == "ProbeDown"
    )
    assert not group["lastEvaluation"].startswith("0001") and group["evaluationTime"] >= 0
    assert [r["name"] for g in rules_api(up.url, type="record")["groups"] for r in g["rules"]] == [
        "job:probe_value:sum",
        "probe:down",
        "job:probe_value:sum_doubled",
    ]
    assert "alerts" not in rules_api(up.url, exclude_alerts="true")["groups"][0]["rules"][1]
    # resolve: Alertmanager drops it long before the 4 minutes of endsAt a firing alert carries
    write(up.url, 1.0)
    wait_for(lambda: not [a for a in am.alerts() if a["labels"].get("alertname") == "ProbeDown"],
             60, "alert resolved in Alertmanager", am.log)  # fmt: skip
    wait_for(lambda: requests.get(up.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"] == [],
             30, "no active alert")  # fmt: skip
    # the recorded series that vanished ends with a stale marker, not 5 minutes later
    wait_for(lambda: query(up.url, 'probe:down{instance="db-1"}') == [], 30, "probe:down ended")


def test_reload_refuses_bad_file_and_sighup_reloads(
    env: tuple[UpProcess, AlertmanagerServer, Path],
) -> None:
    up, _, rules = env
    (rules / "bad.yml").write_text(
        "groups:\n  - name: bad\n    rules:\n      - record: x\n        expr: sum(\n"
    )
    r = requests.post(up.url + "/-/reload", timeout=30)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert 'bad.yml: group "bad": rule 1 (record "x"): could not parse expression' in body["error"]
    assert [g["name"] for g in rules_api(up.url)["groups"]] == ["e2e"]  # the old rules run on
    (rules / "bad.yml").write_text("groups:\n  - name: more\n    interval: 1s\n    rules:\n"
                                   "      - record: one\n        expr: vector(1)\n")  # fmt: skip
    assert requests.post(up.url + "/-/reload", timeout=30).status_code == 200
    assert [g["name"] for g in rules_api(up.url)["groups"]] == ["more", "e2e"]  # files in order
    (rules / "bad.yml").unlink()
    assert up.proc is not None
    os.kill(up.proc.pid, signal.SIGHUP)  # filodb up passes it on to its rules process
    wait_for(
        lambda: [g["name"] for g in rules_api(up.url)["groups"]] == ["e2e"], 30, "SIGHUP reload"
    )


def _holder(r: redis.Redis) -> str:
    v = r.get(LEASE_KEY)
    return v.decode() if v else ""


def test_failover_to_a_second_rules_process(
    env: tuple[UpProcess, AlertmanagerServer, Path],
) -> None:
    up, _, rules = env
    redis_url = f"redis://127.0.0.1:{(up.data_dir / 'redis' / 'port').read_text().strip()}"
    r = redis.Redis.from_url(redis_url)
    other = subprocess.Popen(
        [sys.executable, "-m", "filodb", "rules", "--rules", str(rules / "*.yml"), "--redis-url", redis_url],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("FILODB_")},
             "FILODB_HEARTBEAT_TTL": "2"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        write(up.url, 0.0, instance="db-2")
        pending_or_firing = wait_for(lambda: [a for a in requests.get(up.url + "/api/v1/alerts", timeout=10)
                                              .json()["data"]["alerts"] if a["labels"]["instance"] == "db-2"],
                                     60, "db-2 alert")  # fmt: skip
        active_at = pending_or_firing[0]["activeAt"]
        holder = _holder(r)
        pid = int(holder.rsplit("-", 1)[1])
        assert pid in (other.pid, *up.pids("rules"))
        write(up.url, 0.0, instance="db-3")
        wait_for(lambda: b"db-3" in b"".join(r.hvals(RETURNED_KEY)), 30, "probe:down of db-3 saved")
        os.kill(pid, signal.SIGKILL)
        # db-3 comes back while no one evaluates: only the new holder can end probe:down{db-3},
        # from the set of series the old one saved in Redis (else it shows for 5 minutes)
        write(up.url, 1.0, instance="db-3")
        new = wait_for(lambda: (h := _holder(r)) and h != holder and h, 30, "lease handed over")
        assert new != holder
        wait_for(lambda: query(up.url, 'probe:down{instance="db-3"}') == [], 30,
                 "probe:down of db-3 ended by the new holder")  # fmt: skip

        def last_eval() -> datetime:
            raw = rules_api(up.url)["groups"][0]["lastEvaluation"]
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))

        before = last_eval()
        wait_for(lambda: last_eval() > before, 30, "evaluation goes on")
        (after,) = [a for a in requests.get(up.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
                    if a["labels"]["instance"] == "db-2"]  # fmt: skip
        assert after["activeAt"] == active_at and after["state"] == "firing"
    finally:
        write(up.url, 1.0, instance="db-2")
        write(up.url, 1.0, instance="db-3")
        other.kill()
        other.wait()


VMALERT = "/usr/bin/vmalert"


def test_vmalert_evaluates_against_us_and_writes_back(env: tuple[UpProcess, AlertmanagerServer, Path],
                                                      tmp_path: Path) -> None:  # fmt: skip
    """VictoriaMetrics's vmalert with this project as its data source and remote-write target."""
    assert os.access(VMALERT, os.X_OK), f"{VMALERT} missing: scripts/setup --test installs it"
    up, am, _ = env
    (tmp_path / "vm.yml").write_text(
        "groups:\n  - name: vm\n    interval: 1s\n    rules:\n"
        "      - record: vmalert:probe_value:count\n        expr: count(probe_value)\n"
        "      - alert: VmProbeSeen\n        expr: count(probe_value) > 0\n"
    )  # fmt: skip
    from filodb.redisproc import free_port

    port = free_port()
    log = open(tmp_path / "vmalert.log", "ab")  # noqa: SIM115 - the child keeps it
    vm = subprocess.Popen([VMALERT, f"-rule={tmp_path / 'vm.yml'}", f"-datasource.url={up.url}",
                           f"-remoteWrite.url={up.url}", f"-notifier.url={am.url}",
                           f"-httpListenAddr=127.0.0.1:{port}", "-evaluationInterval=1s",
                           "-remoteWrite.flushInterval=500ms"], stdout=log, stderr=log)  # fmt: skip
    try:
        write(up.url, 1.0, instance="vm-1")
        got = wait_for(lambda: query(up.url, "vmalert:probe_value:count"), 60, "vmalert's recorded series",
                       lambda: (tmp_path / "vmalert.log").read_text()[-2000:])  # fmt: skip
        assert float(got[0]["value"][1]) >= 1
        alerts = wait_for(
            lambda: query(up.url, 'ALERTS{alertname="VmProbeSeen"}'), 60, "vmalert's ALERTS"
        )
        assert alerts[0]["metric"]["alertstate"] == "firing"
    finally:
        vm.terminate()
        vm.wait(10)


def test_rules_page_in_a_browser(env: tuple[UpProcess, AlertmanagerServer, Path]) -> None:
    """The UI's rules page in Debian's headless Chromium: groups, health, last evaluation and
    the firing alert."""
    import shutil

    up, _, _ = env
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is required for UI tests: apt-get install chromium"
    write(up.url, 0.0, instance="ui-1")
    try:
        wait_for(lambda: [a for a in requests.get(up.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
                          if a["labels"]["instance"] == "ui-1" and a["state"] == "firing"], 60, "ui-1 firing")  # fmt: skip
        dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000",
                              "--dump-dom", f"{up.url}/rules"], capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    finally:
        write(up.url, 1.0, instance="ui-1")
    assert 'data-group="e2e"' in dom, dom[:3000]
    assert 'data-rule="job:probe_value:sum"' in dom and 'data-rule="ProbeDown"' in dom
    assert (
        dom.count("pill health-ok") >= 2 and "never" not in dom.split('data-group="e2e"')[1][:400]
    )
    assert (
        'data-alertname="ProbeDown"' in dom
        and "pill state-firing" in dom
        and "ui-1 is down (0)" in dom
    )


def test_rules_process_metrics_are_discoverable(
    env: tuple[UpProcess, AlertmanagerServer, Path],
) -> None:
    """The rules child of ``filodb up`` records its /metrics address in Redis; it answers
    under Prometheus's names with the group's iterations and the notifications sent."""
    from filodb.rules.metrics import METRICS_KEY

    up, _, _ = env
    redis_url = f"redis://127.0.0.1:{(up.data_dir / 'redis' / 'port').read_text().strip()}"
    r = redis.Redis.from_url(redis_url)
    holder = wait_for(lambda: _holder(r), 30, "a rules lease holder")
    addr = wait_for(lambda: r.hget(METRICS_KEY, holder), 30, "the holder's metrics address")

    def sample(name: str) -> float:
        for line in requests.get(f"http://{addr.decode()}/metrics", timeout=10).text.splitlines():
            if line.startswith(name) and ";e2e" in line:
                return float(line.rsplit(" ", 1)[1])
        return -1.0

    first = wait_for(lambda: (v := sample("prometheus_rule_group_iterations_total")) > 0 and v,
                     30, "iterations counted")  # fmt: skip
    wait_for(lambda: sample("prometheus_rule_group_iterations_total") > first, 30, "counting on")
    assert sample("prometheus_rule_group_interval_seconds") == 1.0
    assert sample("prometheus_rule_group_rules") == 4
    text = requests.get(f"http://{addr.decode()}/metrics", timeout=10).text
    assert "filodb_rules_leader 1.0" in text and "prometheus_notifications_sent_total{" in text


def test_a_later_rule_reads_the_earlier_rules_output_of_the_same_evaluation(
    env: tuple[UpProcess, AlertmanagerServer, Path],
) -> None:
    """``job:probe_value:sum_doubled`` reads ``job:probe_value:sum`` recorded just before it in
    the same evaluation, through the cluster's overlay path (the plain engine over the shards'
    raw series with the group's fresh samples laid over): it is healthy and at every
    evaluation time the two agree exactly, also across the value changes the other tests
    wrote. The log here often applies before the next rule reads, so that the overlay is what
    makes the answer fresh is checked deterministically against promtool in
    ``tests/rules/testdata/chain-test.yml``."""
    up, _, _ = env
    write(up.url, 5.0, instance="chain-1")
    wait_for(lambda: query(up.url, 'probe_value{instance="chain-1"}'), 30, "chain-1 written")
    end = time.time()
    wait_for(lambda: query(up.url, "job:probe_value:sum_doubled == 2 * job:probe_value:sum"
                           " and timestamp(job:probe_value:sum) > %f" % (end + 1)), 30,
             "an evaluation after the write")  # fmt: skip

    def by_ts(q: str) -> dict[float, float]:
        r = requests.get(up.url + "/api/v1/query", params={"query": f"{q}[10m]"}, timeout=30)
        assert r.status_code == 200, r.text
        ((series,),) = [r.json()["data"]["result"]]
        return {float(t): float(v) for t, v in series["values"]}

    total, doubled = by_ts("job:probe_value:sum"), by_ts("job:probe_value:sum_doubled")
    common = sorted(set(total) & set(doubled))
    assert len(common) >= 5 and len(set(total.values())) >= 2  # the sum changed over the run
    assert [doubled[t] for t in common] == [2 * total[t] for t in common]
    (group,) = rules_api(up.url)["groups"]
    assert group["rules"][3]["health"] == "ok"
