"""Tokens on the web routes, against a real Redis: the 401/403/allowed matrix per scope and
dataset, basic auth, the open routes, listings filtered to what a token may read, every route
given a rule, and the config's admin_token with and without an auth file."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from flask import Flask

from filodb.config import Config
from filodb.errors import BadInputError
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.web import auth, create_app

AUTH = """
[[tokens]]
name = "reader"
token = "r-tok"
datasets = ["prometheus"]
scopes = ["read"]

[[tokens]]
name = "writer"
token = "w-tok"
datasets = ["prometheus"]
scopes = ["write"]

[[tokens]]
name = "team-a"
token = "a-tok"
datasets = ["team-a"]
scopes = ["read", "write", "admin"]

[[tokens]]
name = "root"
token = "root-tok"
datasets = ["*"]
scopes = ["read", "write", "admin"]
"""
TOKENS = {"reader": "r-tok", "writer": "w-tok", "team-a": "a-tok", "root": "root-tok"}
GRANTS = {  # what each token may do, as in AUTH
    "reader": {("read", "prometheus")},
    "writer": {("write", "prometheus")},
    "team-a": {(s, "team-a") for s in ("read", "write", "admin")},
    "root": {(s, d) for s in ("read", "write", "admin") for d in ("prometheus", "team-a")},
}


def _rw_body() -> bytes:
    series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(3)]
    return encode_write_request(SampleBatch(series, np.arange(3), np.arange(3), np.ones(3)))


# (method, path, body or json, scope, dataset, the route's own answer when allowed)
ROUTES = [
    ("GET", "/api/v1/metadata", None, "read", "prometheus", 200),
    ("GET", "/promql/team-a/api/v1/metadata", None, "read", "team-a", 200),
    ("GET", "/api/v1/query?query=sum(", None, "read", "prometheus", 400),
    ("POST", "/promql/team-a/api/v1/query_range", {"query": "up"}, "read", "team-a", 400),
    ("GET", "/api/v1/series", None, "read", "prometheus", 400),
    ("GET", "/promql/team-a/api/v1/export", None, "read", "team-a", 400),
    ("POST", "/api/v1/read", b"junk", "read", "prometheus", 400),
    ("GET", "/api/v1/cluster/prometheus/status", None, "read", "prometheus", 200),
    ("GET", "/api/v1/cluster/team-a", None, "read", "team-a", 200),
    ("GET", "/api/v1/cluster/team-a/statusByAddress", None, "read", "team-a", 200),
    ("POST", "/api/v1/write", "rw", "write", "prometheus", 204),
    ("POST", "/promql/team-a/api/v1/write", "rw", "write", "team-a", 204),
    ("POST", "/influx/team-a/write", b"cpu v=1 1", "write", "team-a", 204),
    ("POST", "/write?db=team-a", b"cpu v=1 1", "write", "team-a", 204),
    ("POST", "/write", b"cpu v=1 1", "write", "prometheus", 204),
    ("POST", "/api/v2/write?bucket=prometheus", b"cpu v=1 1", "write", "prometheus", 204),
    ("POST", "/api/v1/cluster/team-a/stopshards", {"shards": [0]}, "admin", "team-a", 200),
    ("POST", "/api/v1/cluster/prometheus/stopshards", {"shards": [1]}, "admin", "prometheus", 200),
    ("POST", "/api/v1/cluster/team-a", {"shards": 2}, "admin", "team-a", 200),
    (
        "POST",
        "/promql/team-a/api/v1/admin/tsdb/delete_series?match[]=x",
        None,
        "admin",
        "team-a",
        204,
    ),
    ("PUT", "/api/v1/admin/tsdb/delete_series", None, "admin", "prometheus", 400),
    ("GET", "/api/v1/format_query?query=sum(x)", None, "read", "prometheus", 200),
    ("GET", "/promql/team-a/api/v1/status/config", None, "read", "team-a", 200),
    ("GET", "/promql/team-a/api/v1/rules", None, "read", "team-a", 200),
    ("GET", "/federate?match[]=up", None, "read", "prometheus", 200),
]


@pytest.fixture
def auth_file(tmp_path: Path) -> str:
    p = tmp_path / "auth.toml"
    p.write_text(AUTH)
    return str(p)


def _app(redis_url: str, **cfg: object) -> Flask:
    app = create_app(Config(redis_url=redis_url, max_body_bytes=1 << 20, **cfg))  # type: ignore[arg-type]
    shard_map = app.extensions["filodb"].shard_map
    shard_map.create_dataset("prometheus", 4, 1)
    shard_map.create_dataset("team-a", 2, 1)
    return app


def _call(client, method: str, path: str, body: object, headers: dict):  # type: ignore[no-untyped-def]
    if body == "rw":
        return client.open(path, method=method, data=_rw_body(), headers=headers)
    if isinstance(body, dict):
        return client.open(path, method=method, json=body, headers=headers)
    return client.open(path, method=method, data=body, headers=headers)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _basic(token: str, user: str = "prometheus") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_every_token_gets_401_403_or_the_routes_own_answer(redis_url: str, auth_file: str,
                                                           route: tuple) -> None:  # fmt: skip
    method, path, body, scope, ds, own = route
    # the route's own answer without an auth file: the token must change nothing else
    assert _call(_app(redis_url).test_client(), method, path, body, {}).status_code == own

    client = _app(redis_url, auth_file=auth_file).test_client()
    for who, token in [*TOKENS.items(), ("nobody", None), ("stranger", "guess")]:
        headers = _bearer(token) if token else {}
        r = _call(client, method, path, body, headers)
        if token is None or who == "stranger":
            want = 401
        else:
            want = own if (scope, ds) in GRANTS[who] else 403
        assert r.status_code == want, (who, r.status_code, r.get_data(as_text=True))
        if want in (401, 403):
            assert r.json["status"] == "error" and set(r.json) == {"status", "errorType", "error"}
            assert r.json["errorType"] == ("unauthorized" if want == 401 else "forbidden")
            assert ("WWW-Authenticate" in r.headers) == (want == 401)
        if want == 403:
            assert f"no {scope} scope on dataset '{ds}'" in r.json["error"]


def test_basic_auth_carries_the_token_as_password(redis_url: str, auth_file: str) -> None:
    client = _app(redis_url, auth_file=auth_file).test_client()
    assert client.post("/api/v1/write", data=_rw_body(), headers=_basic("w-tok")).status_code == 204
    assert client.get("/api/v1/metadata", headers=_basic("r-tok", user="")).status_code == 200
    assert client.get("/api/v1/metadata", headers=_basic("w-tok")).status_code == 403
    assert client.get("/api/v1/metadata", headers=_basic("nope")).status_code == 401
    assert (
        client.get("/api/v1/metadata", headers={"Authorization": "Token r-tok"}).status_code == 200
    )
    r = client.get("/api/v1/metadata")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="filodb"'
    assert "Authorization: Bearer <token>" in r.json["error"]


def test_kubernetes_probes_are_open(redis_url: str, auth_file: str) -> None:
    c = _app(redis_url, auth_file=auth_file).test_client()
    assert c.get("/-/healthy").status_code == 200
    assert c.get("/-/ready").status_code == 503  # open, and honest: no shard is Active here


def test_health_metrics_and_the_ui_shell_are_open(redis_url: str, auth_file: str) -> None:
    client = _app(redis_url, auth_file=auth_file).test_client()
    assert client.get("/admin/health").status_code == 503  # open: unhealthy, not 401
    r = client.get("/metrics")
    assert r.status_code == 200 and b"filodb_http_requests_total" in r.data
    for path in ("/", "/cluster", "/datasets", "/static/auth.js", "/static/app.js"):
        assert client.get(path).status_code == 200, path
    assert client.get("/no/such/route").status_code == 401  # a token first, then 404
    assert client.get("/no/such/route", headers=_bearer("r-tok")).status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert 'filodb_http_requests_total{code="401",method="GET",route="unmatched"} 1.0' in text


def test_listings_show_only_the_datasets_a_token_may_read(redis_url: str, auth_file: str) -> None:
    client = _app(redis_url, auth_file=auth_file).test_client()

    def names(token: str) -> list[str]:
        r = client.get("/api/v1/cluster", headers=_bearer(token))
        assert r.status_code == 200
        return [d["dataset"] for d in r.json["data"]]

    assert names("root-tok") == ["prometheus", "team-a"]
    assert names("r-tok") == ["prometheus"]
    assert names("a-tok") == ["team-a"]
    assert names("w-tok") == []  # a write-only token reads nothing
    assert client.get("/api/v1/cluster").status_code == 401
    assert client.get("/admin/nodes", headers=_bearer("w-tok")).status_code == 200
    assert client.get("/api/v1/status/buildinfo", headers=_bearer("w-tok")).status_code == 200
    assert client.get("/api/v1/status/buildinfo").status_code == 401


def test_without_an_auth_file_admin_token_guards_only_admin_routes(redis_url: str) -> None:
    client = _app(redis_url, admin_token="adm").test_client()
    assert client.get("/api/v1/metadata").status_code == 200
    assert client.post("/api/v1/write", data=_rw_body()).status_code == 204
    body = {"shards": 2}
    assert client.post("/api/v1/cluster/x1", json=body).status_code == 401
    assert client.post("/api/v1/cluster/x1", json=body, headers=_bearer("ad")).status_code == 401
    assert client.post("/api/v1/cluster/x1", json=body, headers=_bearer("nope")).status_code == 401
    assert client.post("/api/v1/cluster/x1", json=body, headers=_bearer("adm")).status_code == 200
    assert client.post("/api/v1/cluster/x2", json=body, headers=_basic("adm")).status_code == 200
    open_app = _app(redis_url).test_client()  # neither: everything open, as before
    assert open_app.post("/api/v1/cluster/x3", json=body).status_code == 200


def test_with_both_admin_token_is_an_admin_only_token(redis_url: str, auth_file: str) -> None:
    client = _app(redis_url, auth_file=auth_file, admin_token="adm").test_client()
    assert (
        client.post("/api/v1/cluster/x1", json={"shards": 2}, headers=_bearer("adm")).status_code
        == 200
    )
    assert client.get("/api/v1/metadata", headers=_bearer("adm")).status_code == 403
    assert (
        client.post("/api/v1/cluster/x2", json={"shards": 2}, headers=_bearer("r-tok")).status_code
        == 403
    )


def test_a_bad_auth_file_stops_the_app_from_starting(redis_url: str, tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[[tokens]]\ntoken = "x"\ndatasets = ["*"]\nscopes = ["rule"]\n')
    with pytest.raises(BadInputError, match=r"unknown scope\(s\) \['rule'\]"):
        create_app(Config(redis_url=redis_url, auth_file=str(p)))


def test_a_route_without_a_rule_is_refused_at_start() -> None:
    app = Flask(__name__)
    app.add_url_rule("/api/v1/new_thing", "new_thing", lambda: "")
    with pytest.raises(RuntimeError, match="new_thing"):
        auth.init_app(app, Config())
