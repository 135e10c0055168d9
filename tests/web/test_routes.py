"""Web routes against a real Redis, without workers: ingestion lands in the log, admin routes
answer with the right shapes and codes, bad input gets 4xx."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from filodb.config import Config
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.web import create_app


@pytest.fixture
def client(redis_url: str):  # type: ignore[no-untyped-def]
    cfg = Config(redis_url=redis_url, admin_token="s3cret", max_body_bytes=1 << 20)
    app = create_app(cfg)
    app.extensions["filodb"].shard_map.create_dataset("prometheus", 4, 1)
    return app.test_client()


def _logged(client) -> SampleBatch:  # type: ignore[no-untyped-def]
    from filodb.model.batch import concat_batches

    ingest_log = client.application.extensions["filodb"].ingest_log
    got = ingest_log.read("prometheus", {s: 0 for s in range(4)}, 1000, 0)
    return concat_batches([SampleBatch.from_bytes(r) for recs in got.values() for _, r in recs])


def test_remote_write_lands_in_the_log(client) -> None:  # type: ignore[no-untyped-def]
    series = [make_labels({"__name__": f"m{i}", "i": str(i)}) for i in range(20)]
    b = SampleBatch(
        series, np.repeat(np.arange(20), 5), np.tile(np.arange(5), 20), np.arange(100.0)
    )
    r = client.post("/api/v1/write", data=encode_write_request(b))
    assert r.status_code == 204
    got = _logged(client)
    assert sorted(got.series) == sorted(series) and len(got) == 100
    pairs = {
        (got.series[s], int(t), float(v))
        for s, t, v in zip(got.sidx, got.ts, got.vals, strict=True)
    }
    assert pairs == {
        (b.series[s], int(t), float(v)) for s, t, v in zip(b.sidx, b.ts, b.vals, strict=True)
    }


@pytest.mark.parametrize("body", [b"", b"garbage", b"\x05\x00ab"])
def test_bad_remote_write_is_400_and_writes_nothing(client, body) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/write", data=body)
    assert (
        r.status_code == 400 and r.json["status"] == "error" and r.json["errorType"] == "bad_data"
    )
    assert len(_logged(client)) == 0


def test_snappy_bomb_is_413(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/write", data=b"\xff\xff\xff\xff\x0f")  # claims 4 GiB
    assert r.status_code == 413 and r.json["status"] == "error"


def test_influx_shapes_and_gzip(client) -> None:  # type: ignore[no-untyped-def]
    line = b"cpu,host=a value=1 1700000000\n"
    assert client.post("/influx/prometheus/write?precision=s", data=line).status_code == 204
    assert (
        client.post(
            "/write?db=prometheus&precision=s", data=line.replace(b"=1 ", b"=2 ")
        ).status_code
        == 204
    )
    gz = gzip.compress(b"cpu,host=b value=3 1700000000000\n")
    r = client.post(
        "/api/v2/write?bucket=prometheus&precision=ms",
        data=gz,
        headers={"Content-Encoding": "gzip"},
    )
    assert r.status_code == 204
    assert sorted(_logged(client).vals.tolist()) == [1.0, 2.0, 3.0]


def test_influx_bad_lines_reported_good_lines_kept(client) -> None:  # type: ignore[no-untyped-def]
    body = b"ok1 value=1 1\nnot a valid line at all\nok2 value=2 2\n"
    r = client.post("/influx/prometheus/write?precision=s", data=body)
    assert r.status_code == 400 and "line 2" in r.json["error"]
    assert sorted(_logged(client).vals.tolist()) == [1.0, 2.0]
    assert (
        client.post("/influx/prometheus/write?precision=weeks", data=b"a value=1").status_code
        == 400
    )


def test_oversized_body_is_413(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/influx/prometheus/write", data=b"x value=1\n" * 200_000)
    assert r.status_code == 413


def test_unknown_dataset_is_404(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/influx/nosuch/write", data=b"a value=1 1")
    assert r.status_code == 404 and r.json["errorType"] == "not_found"


def test_admin_token_and_dataset_creation(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/api/v1/cluster/metrics2", json={"shards": 8}).status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    r = client.post("/api/v1/cluster/metrics2", json={"shards": 8, "spread": 2}, headers=auth)
    assert r.status_code == 200 and r.json["data"]["shards"] == 8
    assert client.post("/api/v1/cluster/bad", json={"shards": 6}, headers=auth).status_code == 400
    assert client.post("/api/v1/cluster/bad", json={"shards": "x"}, headers=auth).status_code == 400
    for bad in ("%C3%BCn%C3%AF", "x" * 300, "-x"):  # ünï: a name some backend would refuse
        r = client.post(f"/api/v1/cluster/{bad}", json={"shards": 2}, headers=auth)
        assert r.status_code == 400 and "invalid dataset name" in r.json["error"], bad
    names = [d["dataset"] for d in client.get("/api/v1/cluster").json["data"]]
    assert names == ["metrics2", "prometheus"]  # nothing written for the refused names
    rows = client.get("/api/v1/cluster/metrics2/status").json["data"]
    assert [(r["shard"], r["status"], r["lag"]) for r in rows] == [
        (s, "Unassigned", 0) for s in range(8)
    ]


def test_health_is_503_until_every_shard_is_active(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/admin/health")
    assert r.status_code == 503
    assert {x["shard"] for x in r.json["not_active"]} == {0, 1, 2, 3}


def test_query_parameter_errors(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/query_range?query=up&start=10&end=1&step=1")
    assert r.status_code == 400 and "end timestamp" in r.json["error"]
    r = client.get("/api/v1/query_range?query=up&start=0&end=100000&step=1")
    assert r.status_code == 400 and "11,000 points" in r.json["error"]
    r = client.get("/api/v1/query_range?query=up&start=0&end=10&step=0")
    assert r.status_code == 400
    r = client.get("/api/v1/query?query=up&time=yesterday")
    assert r.status_code == 400 and 'invalid parameter "time"' in r.json["error"]
    assert client.get("/api/v1/series").status_code == 400


def test_redis_down_is_503_not_500(redis_url: str) -> None:
    from filodb.redisproc import free_port

    app = create_app(Config(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    c = app.test_client()
    r = c.post("/influx/prometheus/write", data=b"a value=1 1")
    assert r.status_code == 503 and r.json["errorType"] == "unavailable"
    assert c.get("/admin/health").status_code == 503


def test_missing_shards_give_partial_answer_with_warnings(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/query?query=up&time=100")
    assert r.status_code == 200
    body = r.json
    assert body["data"] == {"resultType": "vector", "result": []}
    assert sorted(body["warnings"]) == [
        f"partial response: shard {s} of prometheus is Unassigned" for s in range(4)
    ]
    r = client.get("/api/v1/query?query=up&time=100&partial_response=false")
    assert r.status_code == 503 and r.json["errorType"] == "unavailable"


def test_parse_error_shape(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/query", data={"query": "sum(rate(x[5m])"})
    assert r.status_code == 400
    assert r.json == {"status": "error", "errorType": "bad_data",
                      "error": 'invalid parameter "query": parse error at char 16: unexpected end of input'}  # fmt: skip


def test_a_pattern_re2_refuses_is_400_naming_it(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/query", query_string={"query": 'up{job=~"(?=a)b"}'})
    assert r.status_code == 400 and r.json["errorType"] == "bad_data"
    assert "(?=a)b" in r.json["error"] and "invalid regular expression" in r.json["error"]
    r = client.get("/api/v1/series", query_string={"match[]": 'up{job=~"a(b"}'})
    assert r.status_code == 400 and "a(b" in r.json["error"]


def test_deeply_nested_query_is_400_not_500(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/query", data={"query": "(" * 2000 + "1" + ")" * 2000})
    assert r.status_code == 400 and "nested too deeply" in r.json["error"]
    r = client.post("/api/v1/query", data={"query": "-" * 3000 + "up"})
    assert r.status_code == 400 and r.json["errorType"] == "bad_data"
