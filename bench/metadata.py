"""Metadata benchmark: label names, label values and series listings from the tag index.

Prints one JSON object per line (``{"metric", "value", "unit", ...context}``):

- in-process on one shard (``TimeSeriesShard``) at each ``--series`` size (100 k and 1 M by
  default): ``label_values_ms`` (``label/__name__/values``, no ``match[]``, and ``job`` values
  with ``match[]={job=~"job-1.*"}``), ``labels_ms`` (label names with a ``match[]`` that picks
  one metric name, and one that picks a tenth of the series), ``series_limit_ms``
  (``/series?match[]={job="job-3"}&limit=100``); ``*_walk``: the same answer by walking each
  matched series' labels in Python, as the shard did before the index answered;
- with ``--http``, the same calls through HTTP against a real ``filodb up`` holding
  ``--http-series`` series (100 k by default) written by remote write, the median of
  ``--repeat`` requests; with ``--peers`` also Prometheus 2.42 holding the same series (written
  by remote write as well: ``--web.enable-remote-write-receiver``) and the ratio.

    python bench/metadata.py                 # 100 k and 1 M in-process, 100 k through HTTP
    python bench/metadata.py --quick         # 100 k in-process and through HTTP, 3 repeats
    python bench/metadata.py --peers         # and Prometheus side by side

Series: ``n_metrics`` metric names (one per 1 000 series), each with ``job`` (20 values),
``instance`` (500) and ``code`` (5) labels, plus a sparse ``rare`` label on 1 % of them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filodb.memstore.shard import TimeSeriesShard  # noqa: E402
from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.model.labels import Labels, Matcher, make_labels  # noqa: E402

T0 = 1_700_000_000_000


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    line = {"metric": metric, "value": round(value, 3), "unit": unit, **ctx}
    print(orjson.dumps(line).decode(), flush=True)


def series_set(n: int) -> list[Labels]:
    out = []
    for i in range(n):
        d = {
            "__name__": f"metric_{i // 1000:04d}_total",
            "job": f"job-{i % 20}",
            "instance": f"host-{(i // 20) % 500}:9100",
            "code": str(200 + (i % 5)),
        }
        if i % 100 == 7:
            d["rare"] = f"r{i % 3}"
        out.append(make_labels(d))
    return out


def best_ms(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def cases(n: int) -> list[tuple[str, str, list[Matcher], dict]]:
    """(metric, kind, matchers, context): what each measurement asks."""
    return [
        ("label_values_ms", "values", [], {"label": "__name__", "match": ""}),
        ("label_values_ms", "values", [Matcher("job", "=~", "job-1.*")],
         {"label": "job", "match": '{job=~"job-1.*"}'}),
        ("labels_ms", "names", [Matcher("__name__", "=", "metric_0007_total")],
         {"match": '{__name__="metric_0007_total"}'}),
        ("labels_ms", "names", [Matcher("code", "=", "201"), Matcher("job", "=~", "job-(1|6)")],
         {"match": '{code="201",job=~"job-(1|6)"}'}),
        ("series_limit_ms", "series", [Matcher("job", "=", "job-3")],
         {"match": '{job="job-3"}', "limit": 100}),
    ]  # fmt: skip


def in_process(n: int, repeat: int) -> None:
    t = time.perf_counter()
    series = series_set(n)
    shard = TimeSeriesShard("bench", 0)
    step = 200_000
    for a in range(0, n, step):
        part = series[a : a + step]
        k = len(part)
        shard.ingest(SampleBatch(part, np.arange(k), np.full(k, T0), np.ones(k)))
    emit("load_s", time.perf_counter() - t, "s", series=n)
    lo, hi = T0 - 3_600_000, T0 + 3_600_000
    for metric, kind, ms, ctx in cases(n):
        if kind == "values":
            label = str(ctx["label"])
            ms_, out = best_ms(lambda: shard.label_values(label, ms, lo, hi), repeat)  # noqa: B023
        elif kind == "names":
            ms_, out = best_ms(lambda: shard.label_names(ms, lo, hi), repeat)  # noqa: B023
        else:
            ms_, out = best_ms(lambda: shard.series(ms, lo, hi, limit=100), repeat)  # noqa: B023
        emit(metric, ms_, "ms", series=n, where="shard", answers=len(out), **ctx)  # type: ignore[arg-type]
        if kind != "series":  # the per-series walk the shard did before, for reference
            walk_ms, _ = best_ms(lambda: _walk(shard, kind, ms, ctx, lo, hi), 1)  # noqa: B023
            emit(metric + "_walk", walk_ms, "ms", series=n, where="shard", **ctx)  # type: ignore[arg-type]


def _walk(
    shard: TimeSeriesShard, kind: str, ms: list[Matcher], ctx: dict, lo: int, hi: int
) -> list[str]:
    found = shard.series(ms, lo, hi)
    if kind == "names":
        return sorted({k for lb in found for k, _ in lb})
    return sorted({v for lb in found for k, v in lb if k == ctx["label"]})


def _push(url: str, series: list[Labels]) -> None:
    from filodb.prom.remote_write import encode_write_request

    step = 20_000
    for a in range(0, len(series), step):
        part = series[a : a + step]
        k = len(part)
        body = encode_write_request(SampleBatch(part, np.arange(k), np.full(k, T0), np.ones(k)))
        r = requests.post(url, data=body, timeout=120, headers={
            "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0"})  # fmt: skip
        assert r.status_code in (200, 204), r.text


def _http_cases(base: str, n: int, repeat: int, where: str) -> dict[tuple, float]:
    out = {}
    for metric, kind, _ms, ctx in cases(n):
        params: dict[str, object] = {
            "start": (T0 - 3_600_000) / 1000,
            "end": (T0 + 3_600_000) / 1000,
        }
        if ctx["match"]:
            params["match[]"] = ctx["match"]
        if kind == "values":
            path = f"/api/v1/label/{ctx['label']}/values"
        elif kind == "names":
            path = "/api/v1/labels"
        else:
            path = "/api/v1/series"
            params["limit"] = ctx["limit"]
        ms_, r = best_ms(lambda: requests.get(base + path, params=params, timeout=60), repeat)  # noqa: B023
        assert r.status_code == 200, r.text  # type: ignore[attr-defined]
        answers = len(r.json()["data"])  # type: ignore[attr-defined]
        emit(metric, ms_, "ms", series=n, where=where, answers=answers, **ctx)
        out[(metric, orjson.dumps(ctx))] = ms_
    return out


def through_http(n: int, repeat: int, peers: bool) -> None:
    from filodb.testing.cluster import UpProcess
    from filodb.testing.wait import wait_for

    series = series_set(n)
    with tempfile.TemporaryDirectory() as tmp:
        up = UpProcess(Path(tmp) / "data", shards=4).start()
        try:
            t = time.perf_counter()
            _push(up.url + "/api/v1/write", series)

            def loaded() -> bool:
                r = requests.get(up.url + "/api/v1/label/__name__/values", timeout=30)
                return len(r.json()["data"]) == (n + 999) // 1000

            wait_for(loaded, 300, "series visible", up.log_tail, interval=0.5)
            wait_for(lambda: len(requests.get(up.url + "/api/v1/series", timeout=60, params={
                "match[]": '{job=~".+"}'}).json()["data"]) == n, 300, "all series", up.log_tail,
                interval=1)  # fmt: skip
            emit("load_s", time.perf_counter() - t, "s", series=n, where="filodb http")
            ours = _http_cases(up.url, n, repeat, "filodb http")
        finally:
            up.stop()
        if not peers:
            return
        from filodb.testing.prometheus import PromServer

        prom = PromServer(Path(tmp) / "prom", {"global": {}},
                          extra_args=("--web.enable-remote-write-receiver",)).start(60)  # fmt: skip
        try:
            _push(prom.url + "/api/v1/write", series)
            theirs = _http_cases(prom.url, n, repeat, "prometheus 2.42 http")
        finally:
            prom.stop()
        for key, v in ours.items():
            metric, ctx = key[0], orjson.loads(key[1])
            emit(
                metric + "_ratio", v / max(theirs[key], 1e-6), "filodb/prometheus", series=n, **ctx
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--http-series", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--peers", action="store_true", help="Prometheus 2.42 side by side (HTTP)")
    ap.add_argument("--quick", action="store_true", help="100 k only, 3 repeats")
    a = ap.parse_args()
    if a.quick:
        a.series, a.repeat = [100_000], 3
    for n in a.series:
        in_process(n, a.repeat)
    if not a.no_http:
        through_http(a.http_series, a.repeat, a.peers)


if __name__ == "__main__":
    main()
