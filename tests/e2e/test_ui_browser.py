"""The pages in a real browser (Debian's headless Chromium): the query page draws a graph with
one line per series and lists them in the legend; the cluster page shows every shard Active."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
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


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is required for UI tests: apt-get install chromium"
    return exe


def _browse(url: str, screenshot: Path) -> str:
    """DOM after the page's scripts ran (and a screenshot kept as a test artifact)."""
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
            "--virtual-time-budget=8000"]  # fmt: skip
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
    out = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    return out.stdout


def test_query_page_draws_graph_and_cluster_page_lists_shards(up: UpProcess) -> None:
    import time

    now = int(time.time() * 1000)
    series = [make_labels({"__name__": "ui_cpu_seconds_total", "mode": m, "instance": "h1"})
              for m in ("user", "system", "idle")]  # fmt: skip
    n = 120
    ts = now - 15_000 * np.arange(n)[::-1]
    vals = np.concatenate([np.cumsum(np.full(n, k + 1.0)) for k in range(3)])
    batch = SampleBatch(series, np.repeat(np.arange(3), n), np.tile(ts, 3), vals)
    assert (
        requests.post(
            up.url + "/api/v1/write", data=encode_write_request(batch), timeout=30
        ).status_code
        == 204
    )
    q = "sum by (mode) (rate(ui_cpu_seconds_total[5m]))"
    wait_for(  # ingestion is asynchronous
        lambda: len(requests.get(up.url + "/api/v1/query", params={"query": q},
                                 timeout=10).json()["data"]["result"]) == 3,
        30, "the written series queryable", up.log_tail, interval=0.1,
    )  # fmt: skip
    frag = urllib.parse.urlencode({"q": q, "mode": "graph", "range": "1h", "ds": "prometheus"})
    dom = _browse(f"{up.url}/#{frag}", ARTIFACTS / "query-graph.png")
    assert 'data-series-count="3"' in dom, dom[:2000]
    assert dom.count('class="line"') == 3
    for mode in ("user", "system", "idle"):
        assert f'{{mode="{mode}"}}' in dom
    assert (ARTIFACTS / "query-graph.png").stat().st_size > 10_000

    frag = urllib.parse.urlencode({"q": "sum(rate(", "mode": "table"})
    dom = _browse(f"{up.url}/#{frag}", ARTIFACTS / "query-error.png")
    assert "parse error" in dom  # the error box shows the server's message

    dom = _browse(f"{up.url}/cluster?live=0", ARTIFACTS / "cluster.png")
    assert dom.count("status-Active") >= 4 and "node-1" in dom


def test_cardinality_page_lists_the_top_metrics(up: UpProcess) -> None:
    series = [make_labels({"__name__": "ui_card_big", "pod": f"p{i}"}) for i in range(30)]
    series += [make_labels({"__name__": "ui_card_small", "pod": f"p{i}"}) for i in range(20)]
    n = len(series)
    batch = SampleBatch(series, np.arange(n), np.full(n, 1_700_000_000_000), np.ones(n))
    r = requests.post(up.url + "/api/v1/write", data=encode_write_request(batch), timeout=30)
    assert r.status_code == 204
    wait_for(lambda: requests.get(up.url + "/api/v1/status/tsdb", timeout=10)
             .json()["data"]["seriesCountByMetricName"][:2]
             == [{"name": "ui_card_big", "value": 30}, {"name": "ui_card_small", "value": 20}],
             30, "the written series counted", up.log_tail, interval=0.1)  # fmt: skip
    dom = _browse(f"{up.url}/cardinality?dataset=prometheus&limit=2", ARTIFACTS / "cardinality.png")
    table = dom.split('id="seriesCountByMetricName"')[1].split("</table>")[0]
    assert table.index("ui_card_big") < table.index(">30<") < table.index("ui_card_small")
    assert table.count("<tr>") == 3  # the header and the top 2
    pairs = dom.split('id="seriesCountByLabelValuePair"')[1].split("</table>")[0]
    assert "__name__=ui_card_big" in pairs
    assert "series," in dom.split('id="head"')[1][:200]


def test_dataset_page_shows_limits(up: UpProcess) -> None:
    r = requests.post(up.url + "/api/v1/cluster/uilim",
                      json={"shards": 2, "limits": {"max_series": 7, "query_timeout": "30s"}},
                      timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    dom = _browse(f"{up.url}/datasets", ARTIFACTS / "datasets-limits.png")
    row = dom.split('data-dataset="uilim"')[1].split("</tr>")[0]
    assert "max_series=7, query_timeout=30" in row
    other = dom.split('data-dataset="prometheus"')[1].split("</tr>")[0]
    assert "defaults" in other


def test_cluster_page_live_line_shows_the_snapshot(up: UpProcess) -> None:
    """The event stream opens with the map's snapshot (no single shard): the live line says so
    instead of ``shard prometheus/undefined → undefined``."""
    dom = _browse(f"{up.url}/cluster", ARTIFACTS / "cluster-live.png")
    live = dom.split('id="live"')[1].split("</span>")[0]
    assert "undefined" not in live, live
    assert "live · snapshot" in live, live
