"""The UI driven by Selenium in Debian's headless Chromium (chromium + chromium-driver): a
typed query draws one line per series, the cluster page shows every node and every shard
Active, the dataset page lists datasets and metrics and creates a dataset (showing the
server's error for a bad one). Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import wait_for

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    assert chromium and driver, (
        "UI tests need Debian's chromium and chromium-driver (apt-get install)"
    )
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(a)
    b = webdriver.Chrome(service=Service(driver), options=opts)
    b.implicitly_wait(0)
    yield b
    b.quit()


def _until(b, cond, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(b, timeout, poll_frequency=0.1).until(lambda d: cond(d))


def _shot(b, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    b.save_screenshot(str(path))
    assert path.stat().st_size > 10_000


def _write(url: str) -> None:
    now = int(time.time() * 1000)
    series = [make_labels({"__name__": "sel_cpu_seconds_total", "mode": m, "instance": "h1"})
              for m in ("user", "system", "idle")]  # fmt: skip
    n = 120
    ts = now - 15_000 * np.arange(n)[::-1]
    vals = np.concatenate([np.cumsum(np.full(n, k + 1.0)) for k in range(3)])
    batch = SampleBatch(series, np.repeat(np.arange(3), n), np.tile(ts, 3), vals)
    assert (
        requests.post(
            url + "/api/v1/write", data=encode_write_request(batch), timeout=30
        ).status_code
        == 204
    )
    wait_for(  # ingestion is asynchronous
        lambda: len(requests.get(url + "/api/v1/query", params={"query": "sel_cpu_seconds_total"},
                                 timeout=10).json()["data"]["result"]) == 3,
        30, "the written series queryable", interval=0.1,
    )  # fmt: skip


def test_query_cluster_and_dataset_pages(up: UpProcess, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    b = browser
    _write(up.url)

    # --- query page: type a query, run it as a graph --------------------------------------
    b.get(up.url + "/")
    expr = b.find_element(By.ID, "expr")
    expr.clear()
    expr.send_keys("sum by (mode) (rate(sel_cpu_seconds_total[5m]))")
    b.find_element(By.ID, "tab-graph").click()
    b.find_element(By.ID, "run").click()
    _until(b, lambda d: d.find_element(By.ID, "graph").get_attribute("data-series-count") == "3")
    assert len(b.find_elements(By.CSS_SELECTOR, "#graph path.line")) == 3
    legend = b.find_element(By.ID, "legend").text
    for mode in ("user", "system", "idle"):
        assert f'mode="{mode}"' in legend
    _shot(b, "selenium-query-graph.png")

    # --- cluster page: every node and every shard ------------------------------------------
    b.get(up.url + "/cluster?live=0")
    _until(b, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#datasets .status-Active")) >= 4)
    nodes = requests.get(up.url + "/admin/nodes", timeout=10).json()["data"]
    page = b.find_element(By.TAG_NAME, "body").text
    for n in nodes:
        assert n["name"] in page
    _shot(b, "selenium-cluster.png")

    # --- dataset page: datasets, metrics, create -------------------------------------------
    b.get(up.url + "/datasets")
    _until(b, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-dataset="prometheus"]'))
    row = b.find_element(By.CSS_SELECTOR, 'tr[data-dataset="prometheus"]')
    assert "4/4" in row.find_element(By.CSS_SELECTOR, ".active-count").text
    link = _until(b, lambda d: [a for a in d.find_elements(By.CSS_SELECTOR, "#metrics a.metric")
                                if a.text == "sel_cpu_seconds_total"])[0]  # fmt: skip
    assert "ds=prometheus" in link.get_attribute("href")

    def create(name: str, shards: str) -> str:
        for fid, val in (("c-name", name), ("c-shards", shards)):
            f = b.find_element(By.ID, fid)
            f.clear()
            f.send_keys(val)
        before = b.find_element(By.ID, "c-result").text
        b.find_element(By.ID, "c-submit").click()
        # the page clears the last answer on submit: wait for this request's own answer
        return _until(b, lambda d: (t := d.find_element(By.ID, "c-result").text) != before and t)

    msg = create("uibad", "3")
    assert "power of two" in msg  # the server's 400 message
    msg = create("uitest", "2")
    assert "created uitest" in msg
    _until(b, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-dataset="uitest"]'))
    _shot(b, "selenium-datasets.png")

    # a metric link opens the query page on that metric and dataset
    b.get(link.get_attribute("href"))
    _until(b, lambda d: d.find_element(By.ID, "graph").get_attribute("data-series-count") == "3")
