"""The Prometheus routes Grafana calls besides queries, against a real Redis and no workers:
their shapes (Prometheus 3's, from ``web/api/v1/api.go``), their 400s, the probes, the limits
that are checked before any shard is asked."""

from __future__ import annotations

import numpy as np
import pytest

from filodb.config import Config
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.web import create_app


@pytest.fixture
def client(redis_url: str):  # type: ignore[no-untyped-def]
    url = redis_url.replace("redis://", "redis://:hunter2@") if "@" not in redis_url else redis_url
    cfg = Config(redis_url=redis_url, admin_token="s3cret")
    app = create_app(cfg)
    app.extensions["filodb"].cfg = cfg.replace(redis_url=url)  # what status/config shows
    app.extensions["filodb"].shard_map.create_dataset("prometheus", 2, 1)
    return app.test_client()


def _bad(r, message: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 400, r.data
    assert r.json["status"] == "error" and r.json["errorType"] == "bad_data", r.json
    if message is not None:
        assert r.json["error"] == message, r.json["error"]


@pytest.mark.parametrize("prefix", ["", "/promql/prometheus"])
def test_format_and_parse_query_get_and_post(client, prefix) -> None:  # type: ignore[no-untyped-def]
    q = 'sum(rate(http_requests_total{job="api",code=~"5.."}[5m])) by (job)'
    for r in (client.get(f"{prefix}/api/v1/format_query", query_string={"query": q}),
              client.post(f"{prefix}/api/v1/format_query", data={"query": q})):  # fmt: skip
        assert r.status_code == 200
        assert r.json == {"status": "success",
                          "data": 'sum by (job) (rate(http_requests_total{code=~"5..",job="api"}[5m]))'}  # fmt: skip
    r = client.post(f"{prefix}/api/v1/parse_query", data={"query": "-foo{a!~'x'} @ 12 offset 1m"})
    assert r.json["data"] == {"type": "unaryExpr", "op": "-", "expr": {
        "type": "vectorSelector", "name": "foo", "offset": 60000, "offsetExpr": None,
        "matchers": [{"name": "a", "value": "x", "type": "!~"},
                     {"name": "__name__", "value": "foo", "type": "="}],
        "timestamp": 12000, "startOrEnd": None, "anchored": False, "smoothed": False}}  # fmt: skip
    _bad(client.get(f"{prefix}/api/v1/format_query", query_string={"query": "sum("}))
    _bad(client.get(f"{prefix}/api/v1/parse_query"))


def test_parse_query_tree_shape(client) -> None:  # type: ignore[no-untyped-def]
    q = "topk(3, sum by (job) (rate(x[5m]))) / on (job) group_left (env) info and y[1h:1m]"
    d = client.get(
        "/api/v1/parse_query", query_string={"query": "max_over_time(" + "x[1h:1m])"}
    ).json["data"]
    assert d["type"] == "call" and d["func"] == {"name": "max_over_time", "argTypes": ["matrix"],
                                                   "variadic": 0, "returnType": "vector"}  # fmt: skip
    assert d["args"][0] | {"expr": None} == {"type": "subquery", "expr": None, "range": 3600000,
        "rangeExpr": None, "offset": 0, "offsetExpr": None, "step": 60000, "stepExpr": None,
        "timestamp": None, "startOrEnd": None}  # fmt: skip
    d = client.get("/api/v1/parse_query", query_string={"query": q.split(" and ")[0]}).json["data"]
    assert d["type"] == "binaryExpr" and d["op"] == "/" and d["bool"] is False
    assert d["matching"] == {"card": "many-to-one", "labels": ["job"], "on": True,
                             "include": ["env"], "fillValues": {"lhs": None, "rhs": None}}  # fmt: skip
    agg = d["lhs"]
    assert (agg["type"], agg["op"], agg["param"], agg["grouping"], agg["without"]) == (
        "aggregation",
        "topk",
        {"type": "numberLiteral", "val": "3"},
        [],
        False,
    )
    d = client.get("/api/v1/parse_query", query_string={"query": "a > bool 2"}).json["data"]
    assert d["matching"] is None  # a scalar side: no vector matching, as Prometheus
    d = client.get("/api/v1/parse_query", query_string={"query": "a or b"}).json["data"]
    assert d["matching"]["card"] == "many-to-many"


def test_status_routes(client) -> None:  # type: ignore[no-untyped-def]
    cfg = client.get("/api/v1/status/config").json["data"]
    assert list(cfg) == ["yaml"]
    yaml_text = cfg["yaml"]
    assert "s3cret" not in yaml_text and "hunter2" not in yaml_text
    assert 'admin_token: "<secret>"' in yaml_text and ":<secret>@" in yaml_text
    assert 'dataset: "prometheus"' in yaml_text and "shards: 4" in yaml_text
    flags = client.get("/api/v1/status/flags").json["data"]
    assert flags["data-dir"] == "./filodb-data" and flags["admin-token"] == "<secret>"
    assert all(isinstance(v, str) for v in flags.values())
    info = client.get("/promql/prometheus/api/v1/status/runtimeinfo").json["data"]
    assert info["storageRetention"] == "15d" and info["reloadConfigSuccess"] is True
    assert info["startTime"].endswith("Z") and isinstance(info["goroutineCount"], int)
    assert client.get("/api/v1/status/buildinfo").json["data"]["version"]


def test_empty_but_valid_answers(client) -> None:  # type: ignore[no-untyped-def]
    def data(path: str, **params: str):  # type: ignore[no-untyped-def]
        r = client.get(path, query_string=params)
        assert r.status_code == 200 and r.json["status"] == "success", r.data
        return r.json["data"]

    assert data("/api/v1/targets") == {"activeTargets": [], "droppedTargets": [],
                                       "droppedTargetCounts": {}}  # fmt: skip
    assert data("/api/v1/targets/metadata", match_target='{job="x"}', limit="3") == []
    assert data("/api/v1/alertmanagers") == {"activeAlertmanagers": [], "droppedAlertmanagers": []}
    assert data("/api/v1/rules") == data("/api/v1/rules", type="alert") == {"groups": []}
    assert data("/api/v1/rules", group_limit="2", exclude_alerts="true") == {"groups": []}
    assert data("/api/v1/alerts") == {"alerts": []}
    assert data("/api/v1/query_exemplars", query="rate(x[5m])", start="10", end="20") == []
    none = client.get("/api/v1/query_exemplars?query=1%2B2")  # no selector: no content
    assert none.status_code == 204 and none.data == b""
    r = client.post("/promql/prometheus/api/v1/query_exemplars", data={"query": "up"})
    assert r.json["status"] == "success" and r.json["data"] == []  # no worker: warnings too
    assert all(w.startswith("partial response") for w in r.json["warnings"])


def test_bad_parameters_are_400(client) -> None:  # type: ignore[no-untyped-def]
    _bad(
        client.get("/api/v1/rules?type=bogus"),
        'invalid parameter "type": not supported value "bogus"',
    )
    _bad(client.get("/api/v1/rules?match[]=foo{"))
    _bad(client.get("/api/v1/rules?group_limit=0"))
    _bad(client.get("/api/v1/rules?group_next_token=abc"))
    _bad(client.get("/api/v1/rules?exclude_alerts=maybe"))
    _bad(client.get("/api/v1/targets/metadata?limit=x"), "limit must be a number")
    _bad(client.get("/api/v1/targets/metadata?match_target=up{"))
    _bad(client.get("/api/v1/query_exemplars?query=up&start=20&end=10"),
         "end timestamp must not be before start timestamp")  # fmt: skip
    _bad(client.get("/api/v1/query_exemplars?query=sum("))
    _bad(client.get("/api/v1/query_exemplars?query=up&start=yesterday"))
    for path in ("/api/v1/labels", "/api/v1/label/job/values", "/api/v1/series?match[]=up&"):
        sep = "&" if "?" in path else "?"
        _bad(
            client.get(f"{path}{sep}limit=-1"),
            'invalid parameter "limit": limit must be non-negative',
        )
        _bad(client.get(f"{path}{sep}limit=abc"),
             'invalid parameter "limit": strconv.Atoi: parsing "abc": invalid syntax')  # fmt: skip
        _bad(client.get(f"{path}{sep}limit=1.5"))
        _bad(client.get(f"{path}{sep}limit=18446744073709551616"),  # past Go's int: not a 500
             'invalid parameter "limit": strconv.Atoi: parsing "18446744073709551616": '
             'value out of range')  # fmt: skip


def test_probes(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/-/healthy")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    assert client.head("/-/healthy").status_code == 200
    # no worker: every shard is Unassigned, so not ready (as /admin/health)
    assert client.get("/-/ready").status_code == client.get("/admin/health").status_code == 503
    sm = client.application.extensions["filodb"].shard_map
    from filodb.shards.state import ShardStatus

    for shard in range(2):
        st = sm.move(sm.shard_state("prometheus", shard), ShardStatus.ASSIGNED, node="n1")
        st = sm.move(st, ShardStatus.RECOVERY, node="n1")
        sm.move(st, ShardStatus.ACTIVE, node="n1")
    assert client.get("/-/ready").status_code == client.get("/admin/health").status_code == 200
    assert client.head("/-/ready").status_code == 200


def test_metadata_limits(client) -> None:  # type: ignore[no-untyped-def]
    b = SampleBatch([make_labels({"__name__": "a_total"})], np.zeros(1), np.array([1]), np.ones(1))
    meta = [
        {"metric": n, "type": "counter", "help": "", "unit": ""}
        for n in ("a_total", "b_total", "c")
    ]
    assert client.post("/api/v1/write", data=encode_write_request(b, meta)).status_code == 204
    assert list(client.get("/api/v1/metadata").json["data"]) == ["a_total", "b_total", "c"]
    assert list(client.get("/api/v1/metadata?limit=2").json["data"]) == ["a_total", "b_total"]
    assert list(client.get("/api/v1/metadata?limit=-1").json["data"]) == ["a_total", "b_total", "c"]
    assert client.get("/api/v1/metadata?limit=0").json["data"] == {}  # as Prometheus counts
    assert len(client.get("/api/v1/metadata?limit_per_metric=1").json["data"]["c"]) == 1
    _bad(client.get("/api/v1/metadata?limit=x"), "limit must be a number")
    _bad(client.get("/api/v1/metadata?limit_per_metric=1e3"), "limit_per_metric must be a number")


def test_influx_types_become_metadata_without_overwriting(client) -> None:  # type: ignore[no-untyped-def]
    lines = (b"reqs,host=a counter=5 1700000000000000000\n"
             b"lat,host=a sum=1,count=2,0.5=1,+Inf=2 1700000000000000000\n")  # fmt: skip
    assert client.post("/write?db=prometheus", data=lines).status_code == 204
    data = client.get("/api/v1/metadata").json["data"]
    assert data["reqs"] == [{"type": "counter", "help": "", "unit": ""}]
    assert data["lat"][0]["type"] == "histogram"
    # remote write's entry (with help) wins, and a later Influx line does not overwrite it
    b = SampleBatch([make_labels({"__name__": "g"})], np.zeros(1), np.array([1]), np.ones(1))
    meta = [{"metric": "g", "type": "gauge", "help": "A gauge.", "unit": ""}]
    assert client.post("/api/v1/write", data=encode_write_request(b, meta)).status_code == 204
    assert (
        client.post(
            "/write?db=prometheus", data=b"g,host=a counter=1 1700000000000000000\n"
        ).status_code
        == 204
    )
    assert client.get("/api/v1/metadata?metric=g").json["data"]["g"][0]["help"] == "A gauge."
