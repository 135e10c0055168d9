"""Cardinality through a real ``filodb up``: ``/api/v1/status/tsdb`` per dataset and for the
default one, side by side with Debian's Prometheus 2.42 holding the same series (written to
both by remote write), ``filodb card`` and the ``limit`` parameter."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.prometheus import PromServer
from filodb.testing.wait import wait_for, wait_healthy

pytestmark = pytest.mark.e2e
LISTS = ("seriesCountByMetricName", "labelValueCountByLabelName", "memoryInBytesByLabelName",
         "seriesCountByLabelValuePair")  # fmt: skip


def _series() -> list[Labels]:
    out = []
    for k in range(14):  # metric k has 3k+1 series: distinct counts per metric
        for j in range(3 * k + 1):
            d = {"__name__": f"card_m{k}", "inst": f"host-{j}", "job": f"job{j % (k + 1)}"}
            if k % 3 == 0:
                d["zone"] = f"zone-é{j % 2}"
            out.append(make_labels(d))
    return out


def _write(url: str, series: list[Labels], t0: int) -> None:
    n = len(series)
    b = SampleBatch(series, np.repeat(np.arange(n), 3), np.tile(t0 + 15_000 * np.arange(3), n),
                    np.arange(3.0 * n))  # fmt: skip
    r = requests.post(url, data=encode_write_request(b), timeout=30,
                      headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                               "X-Prometheus-Remote-Write-Version": "0.1.0"})  # fmt: skip
    assert r.status_code in (200, 204), r.text


@pytest.fixture(scope="module")
def both(up: UpProcess, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    prom = PromServer(tmp_path_factory.mktemp("prom"), {"global": {}},
                      ("--web.enable-remote-write-receiver",)).start()  # fmt: skip
    r = requests.post(up.url + "/api/v1/cluster/tcard", json={"shards": 4}, timeout=30)
    assert r.status_code == 200, r.text
    wait_healthy(up.url, 60, "tcard", up.log_tail)
    series = _series()
    t0 = (int(time.time()) - 60) * 1000
    _write(prom.url + "/api/v1/write", series, t0)
    _write(up.url + "/promql/tcard/api/v1/write", series, t0)
    _write(up.url + "/api/v1/write", series[:7], t0)  # the default dataset: a few of them

    def all_in() -> bool:
        r = requests.get(up.url + "/promql/tcard/api/v1/status/tsdb", timeout=10).json()
        return r["data"]["headStats"]["numSeries"] == len(series)

    wait_for(all_in, 30, "every series indexed", up.log_tail)
    yield up.url, prom, len(series)
    prom.stop()


def test_same_shape_and_figures_as_prometheus(both) -> None:  # type: ignore[no-untyped-def]
    url, prom, n = both
    ours = requests.get(url + "/promql/tcard/api/v1/status/tsdb", timeout=30).json()
    assert ours["status"] == "success" and "warnings" not in ours
    theirs = prom.get("/api/v1/status/tsdb")
    got = ours["data"]
    assert set(got) == set(theirs) and set(got["headStats"]) == set(theirs["headStats"])
    assert got["headStats"] == theirs["headStats"]
    assert got["headStats"]["numSeries"] == n
    for key in LISTS:
        assert len(got[key]) == len(theirs[key]) == (4 if "ByLabelName" in key else 10), key
        assert [r["value"] for r in got[key]] == [r["value"] for r in theirs[key]], key
        last = theirs[key][-1]["value"]  # ties at the cut may name another of equal count
        assert all(r in theirs[key] or r["value"] == last for r in got[key]), key
    assert got["seriesCountByMetricName"][0] == {"name": "card_m13", "value": 40}


def test_limit_default_dataset_and_bad_limits(both) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = both
    two = requests.get(url + "/promql/tcard/api/v1/status/tsdb", params={"limit": 2}, timeout=30)
    assert [len(two.json()["data"][k]) for k in LISTS] == [2, 2, 2, 2]
    dflt = wait_for(lambda: (d := requests.get(url + "/api/v1/status/tsdb", timeout=30)
                                  .json()["data"])["headStats"]["numSeries"] == 7 and d,
                    30, "the default dataset's 7 series")  # fmt: skip
    assert dflt["seriesCountByMetricName"] == [{"name": "card_m1", "value": 4},
                                               {"name": "card_m2", "value": 2},
                                               {"name": "card_m0", "value": 1}]  # fmt: skip
    for bad in ("0", "-1", "x"):
        r = requests.get(url + "/api/v1/status/tsdb", params={"limit": bad}, timeout=10)
        assert r.status_code == 400 and r.json()["errorType"] == "bad_data", bad
    r = requests.get(url + "/promql/nosuch/api/v1/status/tsdb", timeout=10)
    assert r.status_code == 404 and r.json()["status"] == "error"


def test_filodb_card_prints_the_tables(both) -> None:  # type: ignore[no-untyped-def]
    url, _, n = both
    r = subprocess.run([sys.executable, "-m", "filodb", "card", "--dataset", "tcard", "--top", "3",
                        "--url", url], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"tcard: {n} series" in r.stdout
    names = ("Series by metric name", "Values by label name", "Bytes of the values by label name",
             "Series by label pair")  # fmt: skip
    for title in names:
        assert title in r.stdout
    by_metric = r.stdout.split(names[0])[1].split(names[1])[0]
    assert "card_m13" in by_metric and "card_m11" in by_metric and "card_m10" not in by_metric
    bad = subprocess.run([sys.executable, "-m", "filodb", "card", "--dataset", "nosuch", "--url", url],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "nosuch" in bad.stderr
