"""Churn under ``filodb up``: cycles of new series through a dataset with a 4 s retention (each cycle is purged before the next is written).
The workers purge the series whose data all passed it (memory, index, part keys), so the
series the shards hold are one cycle's and their memory the same after every cycle."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually

pytestmark = pytest.mark.e2e

PER = 10_000
CYCLES = 8
ENV = {"FILODB_FLUSH_INTERVAL": "1", "FILODB_FLUSH_GROUPS": "2"}


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def _active(url: str) -> None:
    rows = requests.get(url + "/api/v1/cluster/churn/status", timeout=10).json()["data"]
    assert rows and all(r["status"] == "Active" for r in rows), rows


def _gauge(url: str, name: str) -> int:
    """A worker gauge summed over the shards of ``churn`` (e.g. the series their registries
    know), from the workers' own metrics."""
    nodes = requests.get(url + "/admin/nodes", timeout=10).json()["data"]
    total = 0
    for n in nodes:
        text = requests.get(f"http://127.0.0.1:{n['metrics_port']}/metrics", timeout=10).text
        for fam in text_string_to_metric_families(text):
            if fam.name == name:
                total += sum(int(s.value) for s in fam.samples if s.labels["dataset"] == "churn")
    return total


def test_churn_keeps_series_and_memory_bounded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    up = UpProcess(tmp_path / "data", shards=2, env=ENV).start()
    try:
        r = requests.post(up.url + "/api/v1/cluster/churn", json={"shards": 2, "retention": "4s"},
                          timeout=10)  # fmt: skip
        assert r.status_code == 200, r.text
        eventually(lambda: _active(up.url), 60, 0.3, (AssertionError, KeyError))
        (worker,) = up.pids("filodb worker")
        rss: list[int] = []
        held: list[int] = []
        for c in range(CYCLES):
            series = [make_labels({"__name__": "churn", "pod": f"p{c}-{i}"}) for i in range(PER)]
            now = int(time.time() * 1000)
            b = SampleBatch(series, np.arange(PER), np.full(PER, now), np.ones(PER))
            r = requests.post(up.url + "/promql/churn/api/v1/write", data=encode_write_request(b),
                              timeout=30)  # fmt: skip
            assert r.status_code == 204, r.text

            def only_this_cycle() -> None:  # earlier cycles passed the retention: purged
                assert _gauge(up.url, "filodb_worker_series") == PER

            eventually(only_this_cycle, 60, 0.3, (AssertionError, KeyError))
            rss.append(_rss(worker))
            held.append(_gauge(up.url, "filodb_worker_memory_bytes"))
            if c < CYCLES - 1:  # this cycle passes the retention before the next one is written

                def purged() -> None:
                    assert _gauge(up.url, "filodb_worker_series") == 0

                eventually(purged, 60, 0.3, (AssertionError, KeyError))
        print("worker RSS MiB per cycle:", [x >> 20 for x in rss], "memstore bytes:", held)
        # the memstores hold one cycle, every cycle: no later cycle holds more than the first
        # two did (the head's page pool swings between keeping the overlapping cycle's pages
        # for reuse and giving them back, so consecutive figures alternate)
        assert max(held[2:]) <= 1.05 * max(held[:2]), held
        # RSS: no cycle's series stay (10 k series with their buffers, index entries and
        # labels are ~25 MB); what may still grow is bounded caches (label pairs, allocator
        # slack).
        assert max(b - a for a, b in zip(rss[2:], rss[3:], strict=False)) < 18 << 20, rss
        q = requests.get(up.url + "/promql/churn/api/v1/series",
                         params={"match[]": "churn", "start": 0}, timeout=30)  # fmt: skip
        assert len(q.json()["data"]) == PER  # the index knows only the last cycle
    finally:
        up.stop()
