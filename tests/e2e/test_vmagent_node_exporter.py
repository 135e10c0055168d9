"""A real scraper in front of a real ``filodb up``: Debian's ``vmagent`` scrapes Debian's
``prometheus-node-exporter`` and remote-writes what it scraped; the exporter's series are then
queryable under their real names, with their label sets and the values the exporter serves.
The binaries are required: a missing one fails the test."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from filodb.prom.text import PromTextParser
from filodb.redisproc import free_port
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually, wait_for

pytestmark = pytest.mark.e2e

VMAGENT = "/usr/bin/vmagent"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def _need(binary: str, package: str) -> None:
    assert os.access(binary, os.X_OK), f"{binary} is required: apt-get install {package}"


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(args, stdout=f, stderr=f)


def _stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _exposed(url: str) -> dict[tuple, float]:
    """The exporter's own /metrics: label set -> value."""
    text = requests.get(url + "/metrics", timeout=10).text
    chunk = PromTextParser(False, 0).feed(text)
    assert not chunk.errors, chunk.errors[:3]
    b = chunk.batch
    return {b.series[s]: v for s, v in zip(b.sidx.tolist(), b.vals.tolist(), strict=True)}


def _query(up: UpProcess, q: str) -> dict[tuple, float]:
    r = requests.get(up.url + "/api/v1/query", params={"query": q}, timeout=30)
    assert r.status_code == 200, r.text
    return {
        tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in r.json()["data"]["result"]
    }


def test_vmagent_scrapes_node_exporter_into_filodb(up: UpProcess, tmp_path: Path) -> None:
    _need(VMAGENT, "victoria-metrics")
    _need(NODE_EXPORTER, "prometheus-node-exporter")
    ne_addr = f"127.0.0.1:{free_port()}"
    ne = _start([NODE_EXPORTER, f"--web.listen-address={ne_addr}"], tmp_path / "node-exporter.log")
    vm = None
    try:
        wait_for(lambda: requests.get(f"http://{ne_addr}/metrics", timeout=2).ok, 30,
                 "node exporter up", lambda: (tmp_path / "node-exporter.log").read_text())  # fmt: skip
        cfg = tmp_path / "scrape.yml"
        cfg.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [ne_addr]}]}],
        }))  # fmt: skip
        vm = _start([VMAGENT, f"-promscrape.config={cfg}", f"-remoteWrite.url={up.url}/api/v1/write",
                     f"-remoteWrite.tmpDataPath={tmp_path / 'vmagent-data'}",
                     f"-httpListenAddr=127.0.0.1:{free_port()}", "-remoteWrite.flushInterval=500ms"],
                    tmp_path / "vmagent.log")  # fmt: skip
        sel = f'{{job="node",instance="{ne_addr}"}}'

        def scraped() -> dict[tuple, float]:  # three scrapes in (counters can have a rate)
            got = _query(up, f"count_over_time(up{sel}[1m])")
            assert got and next(iter(got.values())) >= 3, got
            return got

        eventually(scraped, 60, 0.2)
        exposed = _exposed(f"http://{ne_addr}")
    finally:
        if vm is not None:
            _stop(vm)
        _stop(ne)
    assert ne.returncode is not None

    extra = (("instance", ne_addr), ("job", "node"))

    def ours(lb: tuple) -> tuple:
        return tuple(sorted((*lb, *extra)))

    # a constant gauge, label sets with many values, and a constant info series: as exposed
    # (vmagent's own text parser is not exact: it sends 2.5276502016e+10 as 25276502016.000004,
    # one ulp off, as a remote-write receiver that prints what it gets shows; so within 1e-12)
    mem = [k for k in exposed if dict(k)["__name__"] == "node_memory_MemTotal_bytes"]
    got = _query(up, f"node_memory_MemTotal_bytes{sel}")
    assert list(got) == [ours(mem[0])], got
    assert math.isclose(got[ours(mem[0])], exposed[mem[0]], rel_tol=1e-12), (got, exposed[mem[0]])
    assert exposed[mem[0]] > 1e8  # bytes of a real machine
    info = {
        ours(k): v for k, v in exposed.items() if dict(k)["__name__"] == "node_exporter_build_info"
    }
    assert _query(up, f"node_exporter_build_info{sel}") == info
    cpu = {ours(k) for k in exposed if dict(k)["__name__"] == "node_cpu_seconds_total"}
    assert len(cpu) >= 8 and set(_query(up, f"node_cpu_seconds_total{sel}")) == cpu
    # every family the exporter serves is there by name, beside vmagent's own up/scrape_*
    r = requests.get(up.url + "/api/v1/label/__name__/values", params={"match[]": sel}, timeout=30)
    names = set(r.json()["data"])
    assert {dict(k)["__name__"] for k in exposed} <= names
    assert {"up", "scrape_samples_scraped"} <= names
    assert _query(up, f"up{sel}") == {(("__name__", "up"), *extra): 1.0}
    # the counters go up between scrapes: rate over the scraped samples is positive
    rates = _query(up, f"sum(rate(node_cpu_seconds_total{sel}[1m]))")
    assert len(rates) == 1 and next(iter(rates.values())) > 0
