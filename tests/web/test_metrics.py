"""The web tier's /metrics: request, query and ingestion counters after real requests through
the factory app (real Redis, no workers: queries are ones the web tier answers by itself),
parsed with prometheus_client's own exposition parser."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from filodb.config import Config
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.web import create_app

T0 = 1_700_000_000_000


def _app(redis_url: str):  # type: ignore[no-untyped-def]
    app = create_app(Config(redis_url=redis_url, max_body_bytes=1 << 20))
    app.extensions["filodb"].shard_map.create_dataset("prometheus", 4, 1)
    return app


@pytest.fixture
def client(redis_url: str):  # type: ignore[no-untyped-def]
    return _app(redis_url).test_client()


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    """Every sample of /metrics as (name, sorted labels) -> value."""
    r = client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.get_data(as_text=True)):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(m: dict, name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


def _batch(n_series: int, per: int) -> SampleBatch:
    series = [make_labels({"__name__": "w", "i": str(i)}) for i in range(n_series)]
    return SampleBatch(series, np.repeat(np.arange(n_series), per), np.tile(T0 + np.arange(per), n_series),
                       np.arange(float(n_series * per)))  # fmt: skip


def test_remote_write_and_queries_are_counted(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/api/v1/write", data=encode_write_request(_batch(20, 5))).status_code == 204
    assert client.post("/api/v1/write", data=encode_write_request(_batch(3, 7))).status_code == 204
    assert client.post("/api/v1/write", data=b"garbage").status_code == 400
    assert client.post("/api/v1/write", data=b"\xff\xff\xff\xff\x0f").status_code == 413
    r = client.get("/api/v1/query", query_string={"query": "1 + 8", "time": (T0 + 9000) / 1000})
    assert r.status_code == 200 and r.json["data"]["result"] == [T0 / 1000 + 9, "9"]
    q = {"query": "vector(2)", "start": T0 / 1000, "end": (T0 + 9000) / 1000, "step": "1s"}
    assert client.get("/api/v1/query_range", query_string=q).status_code == 200
    assert client.post("/promql/prometheus/api/v1/query_range", data=q).status_code == 200
    assert client.get("/api/v1/query", query_string={"query": "sum("}).status_code == 400

    m = scrape(client)
    assert val(m, "filodb_ingest_samples_total", door="remote_write") == 100 + 21
    assert (
        val(m, "filodb_ingest_rejected_requests_total", door="remote_write", reason="malformed")
        == 1
    )
    assert (
        val(m, "filodb_ingest_rejected_requests_total", door="remote_write", reason="too_large")
        == 1
    )
    http = "filodb_http_requests_total"
    assert val(m, http, route="/api/v1/write", method="POST", code="204") == 2
    assert val(m, http, route="/api/v1/write", method="POST", code="400") == 1
    assert val(m, http, route="/api/v1/write", method="POST", code="413") == 1
    assert val(m, http, route="/api/v1/query", method="GET", code="200") == 1
    assert val(m, http, route="/api/v1/query", method="GET", code="400") == 1
    assert (
        val(m, http, route="/promql/<dataset>/api/v1/query_range", method="POST", code="200") == 1
    )
    assert val(m, "filodb_query_duration_seconds_count", endpoint="query") == 2
    assert val(m, "filodb_query_duration_seconds_count", endpoint="query_range") == 2
    total = val(m, "filodb_query_duration_seconds_sum", endpoint="query_range")
    assert total is not None and 0 < total < 10
    inf = val(m, "filodb_query_duration_seconds_bucket", endpoint="query_range", le="+Inf")
    assert inf == 2
    # the scrape itself is counted by the next one
    assert val(scrape(client), http, route="/metrics", method="GET", code="200") == 1


def test_influx_accepted_and_malformed_lines(client) -> None:  # type: ignore[no-untyped-def]
    body = b"cpu,host=a value=1 1\nnot a line\ncpu,host=b value=2,other=3 2\nx y z\n"
    assert client.post("/write?db=prometheus&precision=s", data=body).status_code == 400
    assert (
        client.post("/influx/prometheus/write?precision=s", data=b"mem v=1 1\n").status_code == 204
    )
    assert client.post("/influx/nope/write?precision=s", data=b"mem v=1 1\n").status_code == 404
    m = scrape(client)
    assert val(m, "filodb_ingest_samples_total", door="influx_http") == 3 + 1  # value, other, v
    assert (
        val(m, "filodb_ingest_rejected_samples_total", door="influx_http", reason="malformed_line")
        == 2
    )
    assert (
        val(m, "filodb_ingest_rejected_samples_total", door="influx_http", reason="unknown_dataset")
        == 1
    )
    assert (
        val(
            m,
            "filodb_http_requests_total",
            route="/influx/<dataset>/write",
            method="POST",
            code="404",
        )
        == 1
    )


def test_shards_by_status_and_log_lag(client) -> None:  # type: ignore[no-untyped-def]
    svc = client.application.extensions["filodb"]
    svc.shard_map.create_dataset("other", 2, 0)
    assert client.post("/api/v1/write", data=encode_write_request(_batch(40, 2))).status_code == 204
    assert client.post("/api/v1/write", data=encode_write_request(_batch(40, 2))).status_code == 204
    m = scrape(client)
    for ds, n in (("prometheus", 4), ("other", 2)):
        assert val(m, "filodb_shards", dataset=ds, status="Unassigned") == n
        assert val(m, "filodb_shards", dataset=ds, status="Active") == 0
    ends = svc.ingest_log.end_offsets("prometheus", [0, 1, 2, 3])
    assert sum(ends.values()) > 0
    for s, end in ends.items():  # no worker ingested anything: the lag is the whole log
        assert val(m, "filodb_shard_log_lag_records", dataset="prometheus", shard=str(s)) == end
    busy = max(ends, key=lambda s: ends[s])
    svc.shard_map.set_progress("prometheus", {busy: ends[busy] - 1}, {})
    m = scrape(client)
    assert val(m, "filodb_shard_log_lag_records", dataset="prometheus", shard=str(busy)) == 1
    assert val(m, "filodb_shard_log_lag_records", dataset="other", shard="1") == 0


def test_apps_keep_their_own_registries(redis_url: str) -> None:
    a, b = _app(redis_url).test_client(), _app(redis_url).test_client()
    assert a.post("/api/v1/write", data=encode_write_request(_batch(2, 3))).status_code == 204
    assert val(scrape(a), "filodb_ingest_samples_total", door="remote_write") == 6
    assert val(scrape(b), "filodb_ingest_samples_total", door="remote_write") is None
