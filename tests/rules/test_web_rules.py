"""``/api/v1/rules``, ``/api/v1/alerts`` and ``POST /-/reload`` of the web tier, over the state
a rule evaluator published in a real Redis (filters, pagination, admin scope, 404 without an
evaluator)."""

from __future__ import annotations

import numpy as np
import pytest

from filodb.config import Config
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.rules.files import parse_rules
from filodb.rules.group import GroupState, evaluate_group
from filodb.rules.state import RuleStateStore, group_json
from filodb.web import create_app

RULES = """
groups:
  - name: a
    rules:
      - record: r1
        expr: vector(1)
      - alert: Up
        expr: up > 0
        annotations: {summary: "{{ $labels.instance }}"}
  - name: b
    rules:
      - record: r2
        expr: sum(
"""


class Sink:
    def append(self, batch: object) -> None:
        pass


@pytest.fixture
def client(redis_url: str):  # type: ignore[no-untyped-def]
    cfg = Config(redis_url=redis_url, admin_token="s3cret")
    app = create_app(cfg)
    src = MemorySource()
    src.add((("__name__", "up"), ("instance", "i1")), np.array([60_000]), np.array([2.5]))
    good = parse_rules(RULES.split("  - name: b")[0], "f.yml")
    bad_group = parse_rules(RULES.replace("sum(", "sum(up)"), "f.yml")[1]
    groups = [*good, bad_group]
    states = [GroupState.new(g) for g in groups]
    for g, st in zip(groups, states, strict=True):
        evaluate_group(g, 120_000, Engine(src), Sink(), st)
    RuleStateStore(redis_url).publish(
        [group_json(g, st) for g, st in zip(groups, states, strict=True)]
    )
    return app.test_client()


def test_rules_and_alerts_shapes_and_filters(client) -> None:  # type: ignore[no-untyped-def]
    data = client.get("/api/v1/rules").json["data"]
    assert [g["name"] for g in data["groups"]] == ["a", "b"]
    a = data["groups"][0]
    assert set(a) == {
        "name",
        "file",
        "interval",
        "limit",
        "rules",
        "evaluationTime",
        "lastEvaluation",
    }
    assert (a["file"], a["interval"], a["lastEvaluation"]) == (
        "f.yml",
        60.0,
        "1970-01-01T00:02:00Z",
    )
    rec, alert = a["rules"]
    assert rec == {**rec, "name": "r1", "query": "vector(1)", "health": "ok", "type": "recording"}
    assert alert["state"] == "firing" and alert["duration"] == 0 and alert["keepFiringFor"] == 0
    assert alert["alerts"] == [{"labels": {"alertname": "Up", "instance": "i1"}, "annotations": {"summary": "i1"},
                                "state": "firing", "activeAt": "1970-01-01T00:02:00Z", "value": "2.5e+00"}]  # fmt: skip
    assert client.get("/api/v1/alerts").json["data"]["alerts"] == alert["alerts"]
    only = client.get("/api/v1/rules?type=alert").json["data"]["groups"]
    assert [[r["name"] for r in g["rules"]] for g in only] == [["Up"]]
    named = client.get("/api/v1/rules", query_string={"rule_name[]": "r2"}).json["data"]["groups"]
    assert [(g["name"], [r["name"] for r in g["rules"]]) for g in named] == [("b", ["r2"])]
    assert (
        "alerts"
        not in client.get("/api/v1/rules?exclude_alerts=true").json["data"]["groups"][0]["rules"][1]
    )
    page = client.get("/api/v1/rules?group_limit=1").json["data"]
    assert [g["name"] for g in page["groups"]] == ["a"] and page["groupNextToken"]
    nxt = client.get(
        "/api/v1/rules",
        query_string={"group_limit": "1", "group_next_token": page["groupNextToken"]},
    )
    assert [g["name"] for g in nxt.json["data"]["groups"]] == [
        "b"
    ] and "groupNextToken" not in nxt.json["data"]


def test_reload_needs_admin_and_an_evaluator(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/-/reload")
    assert r.status_code == 401
    r = client.post("/-/reload", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 404 and r.json["errorType"] == "not_found"
    assert "no rule evaluator is running" in r.json["error"]
