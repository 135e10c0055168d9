"""The data tools against a real ``filodb up``: gen then query, import -> export round trips
(OpenMetrics and remote-write dumps), metadata from remote write, remote read both ways."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch, concat_batches
from filodb.model.labels import Matcher, make_labels
from filodb.prom.remote_read import (
    SAMPLES,
    STREAMED_XOR_CHUNKS,
    decode_chunked,
    decode_samples,
    encode_read_request,
)
from filodb.prom.remote_write import decode_write_request_full, encode_write_request
from filodb.prom.text import PromTextParser
from filodb.testing.wait import eventually
from filodb.tools.rwdump import read_frames

pytestmark = pytest.mark.e2e

T0_S = 1_700_000_000
T0 = T0_S * 1000


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "filodb", *args], capture_output=True, text=True, timeout=timeout
    )


def _create(url: str, name: str) -> None:
    r = _cli("dataset", "create", name, "--shards", "4", "--url", url)
    assert r.returncode == 0, r.stderr


def _scalar(url: str, dataset: str, q: str, t_ms: int) -> float | None:
    r = requests.get(
        f"{url}/promql/{dataset}/api/v1/query", params={"query": q, "time": t_ms / 1000}, timeout=30
    )
    assert r.status_code == 200, r.text
    res = r.json()["data"]["result"]
    return float(res[0]["value"][1]) if res else None


def _eventually(fn, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    return eventually(fn, timeout, 0.3)


def _parse_om(text: str) -> dict:
    p = PromTextParser(True, 0)
    c = p.feed(text)
    assert c.errors == []
    out: dict = {}
    b = c.batch
    for s, t, v in zip(b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), strict=True):
        out.setdefault(b.series[s], {})[t] = v
    return out


def _same_samples(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for lb in a:
        assert sorted(a[lb]) == sorted(b[lb]), lb
        for t, v in a[lb].items():
            w = b[lb][t]
            assert (math.isnan(v) and math.isnan(w)) or (
                v == w and math.copysign(1, v) == math.copysign(1, w)
            )


@pytest.mark.parametrize("fmt", ["remote-write", "influx"])
def test_gen_then_query_counts(up, fmt: str) -> None:  # type: ignore[no-untyped-def]
    ds = f"gen_{fmt.replace('-', '_')}"
    _create(up.url, ds)
    r = _cli("gen", "--url", up.url, "--dataset", ds, "--series", "100", "--samples", "50",
             "--start", str(T0_S), "--batch", "700", "--format", fmt)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "100 series, 5,000 samples" in r.stdout and "histogram_quantile" in r.stdout
    end = T0 + 49 * 15_000

    def counted() -> None:
        assert _scalar(up.url, ds, 'count({job="node"})', end) == 100
        assert _scalar(up.url, ds, 'sum(count_over_time({job="node"}[15m]))', end) == 5000

    _eventually(counted)
    assert _scalar(up.url, ds, "count(sum by (mode) (rate(node_cpu_seconds_total[5m])))", end) == 4
    q = _scalar(
        up.url,
        ds,
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        end,
    )
    assert q is not None and 0 < q <= 2.5


def test_gen_into_a_missing_dataset_exits_1_with_the_server_message(up) -> None:  # type: ignore[no-untyped-def]
    r = _cli(
        "gen", "--url", up.url, "--dataset", "no_such_dataset", "--series", "5", "--samples", "2"
    )
    assert r.returncode == 1 and "no_such_dataset" in r.stderr and "404" in r.stderr


OM_FILE = """# TYPE rt_requests counter
# HELP rt_requests Requests served, with a \\\\ and a\\nnewline.
rt_requests_total{path="/a\\"b\\\\c",code="200"} 10 1700000000.000
rt_requests_total{path="/a\\"b\\\\c",code="200"} 12.5 1700000015.250
rt_requests_total{path="/x y",code="500"} 1 1700000000
# TYPE rt_temp gauge
rt_temp{room="k\\nitchen"} NaN 1700000001.001
rt_temp{room="k\\nitchen"} +Inf 1700000002.002
rt_temp{room="k\\nitchen"} -Inf 1700000003.003
rt_temp{room="k\\nitchen"} -0.0 1700000004.004
rt_temp{room="k\\nitchen"} 0.30000000000000004 1700000005.005
rt_temp{room="k\\nitchen"} 1e-300 1700000006.006
# EOF
"""


def test_import_export_roundtrip_openmetrics(up, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _create(up.url, "rt_om")
    src = tmp_path / "in.om"
    src.write_text(OM_FILE)
    r = _cli("import", str(src), "--url", up.url, "--dataset", "rt_om")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "3 series, 9 samples" in r.stdout and "openmetrics" in r.stdout
    want = _parse_om(OM_FILE)
    out = tmp_path / "out.om"

    def exported() -> None:
        e = _cli("export", '{__name__=~"rt_.*"}', "--start", str(T0_S - 10), "--end", str(T0_S + 60),
                 "--url", up.url, "--dataset", "rt_om", "--out", str(out))  # fmt: skip
        assert e.returncode == 0, e.stderr
        _same_samples(_parse_om(out.read_text()), want)

    _eventually(exported)
    text = out.read_text()
    assert (
        text.endswith("# EOF\n")
        and "# TYPE rt_requests counter" in text
        and "# TYPE rt_temp gauge" in text
    )
    meta = requests.get(f"{up.url}/promql/rt_om/api/v1/metadata", timeout=10).json()["data"]
    assert meta["rt_requests"] == [
        {"type": "counter", "help": "Requests served, with a \\ and a\nnewline.", "unit": ""}
    ]

    # remote read of the same data, both answer types
    q = [(T0, T0 + 60_000, [Matcher("__name__", "=~", "rt_.*")])]
    for accepted in ([SAMPLES], [STREAMED_XOR_CHUNKS]):
        rr = requests.post(
            f"{up.url}/promql/rt_om/api/v1/read", data=encode_read_request(q, accepted), timeout=30
        )
        assert rr.status_code == 200, rr.text[:300]
        got = (
            decode_samples(rr.content)[0]
            if accepted == [SAMPLES]
            else decode_chunked(rr.content)[0][0]
        )
        _same_samples(
            {lb: dict(zip(t.tolist(), v.tolist(), strict=True)) for lb, (t, v) in got.items()}, want
        )


def test_import_export_roundtrip_remote_write_dump(up, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _create(up.url, "rt_rw")
    dump = tmp_path / "gen.rw"
    r = _cli(
        "gen",
        "--series",
        "64",
        "--samples",
        "30",
        "--start",
        str(T0_S),
        "--batch",
        "500",
        "--out",
        str(dump),
    )
    assert r.returncode == 0, r.stderr
    r = _cli("import", str(dump), "--url", up.url, "--dataset", "rt_rw")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "64 series, 1,920 samples (remote-write; 6 metadata entries)" in r.stdout
    with open(dump, "rb") as f:
        wrote = concat_batches([decode_write_request_full(b)[0] for _, b in read_frames(f)])
    back = tmp_path / "back.rw"

    def exported() -> None:
        e = _cli("export", '{job="node"}', "--start", str(T0_S), "--end", str(T0_S + 30 * 15),
                 "--url", up.url, "--dataset", "rt_rw", "--out", str(back), "--format", "remote-write")  # fmt: skip
        assert e.returncode == 0, e.stderr
        with open(back, "rb") as f:
            frames = [decode_write_request_full(b) for _, b in read_frames(f)]
        got = concat_batches([fr[0] for fr in frames])
        assert {m["metric"] for m in frames[0][1]} >= {
            "node_cpu_seconds_total",
            "http_request_duration_seconds",
        }

        def triples(b: SampleBatch) -> set:
            return set(
                zip(
                    [b.series[s] for s in b.sidx.tolist()],
                    b.ts.tolist(),
                    b.vals.tolist(),
                    strict=True,
                )
            )

        assert triples(got) == triples(wrote)

    _eventually(exported)
    meta = requests.get(
        f"{up.url}/promql/rt_rw/api/v1/metadata?metric=node_load1", timeout=10
    ).json()
    assert meta["data"] == {
        "node_load1": [{"type": "gauge", "help": "1m load average.", "unit": ""}]
    }


def test_import_reports_bad_lines_and_exits_1(up, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _create(up.url, "rt_bad")
    f = tmp_path / "bad.prom"
    f.write_text('# TYPE ok gauge\nok 1 1700000000000\nok{a="x} 2\nok 3 1700000015000\nok 4 12.5\n')
    r = _cli("import", str(f), "--url", up.url, "--dataset", "rt_bad")
    assert r.returncode == 1
    assert "1 series, 2 samples" in r.stdout and "line 3:" in r.stdout and "line 5:" in r.stdout
    _eventually(
        lambda: _assert_eq(_scalar(up.url, "rt_bad", "count_over_time(ok[1m])", T0 + 15_000), 2.0)
    )
    assert _cli("import", str(tmp_path / "missing.prom"), "--url", up.url).returncode == 2


def _assert_eq(a, b) -> None:  # type: ignore[no-untyped-def]
    assert a == b


def test_metadata_after_remote_write(up) -> None:  # type: ignore[no-untyped-def]
    b = SampleBatch(
        [make_labels({"__name__": "md_jobs_total", "job": "x"})],
        np.zeros(1),
        np.array([T0]),
        np.ones(1),
    )
    meta = [{"metric": "md_jobs_total", "type": "counter", "help": "Jobs.", "unit": ""}]
    r = requests.post(up.url + "/api/v1/write", data=encode_write_request(b, meta), timeout=30)
    assert r.status_code == 204
    got = requests.get(
        up.url + "/api/v1/metadata", params={"metric": "md_jobs_total"}, timeout=10
    ).json()
    assert got == {
        "status": "success",
        "data": {"md_jobs_total": [{"type": "counter", "help": "Jobs.", "unit": ""}]},
    }
