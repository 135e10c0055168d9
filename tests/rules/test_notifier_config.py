"""What goes to Alertmanager (one alert's JSON, as Prometheus sends it) and the rule settings
of the config (lists from flags, TOML, JSON or comma-separated environment; external labels)."""

from __future__ import annotations

import pytest

from filodb.config import load_config
from filodb.errors import BadInputError
from filodb.rules.alerting import Alert
from filodb.rules.notifier import am_alert
from filodb.rules.process import parse_external_labels


def test_am_alert_firing_and_resolved() -> None:
    a = Alert((("alertname", "X"), ("cluster", "mine")), (("summary", "s"),), 1.0, active_at=60_000,
              state="firing", fired_at=120_000)  # fmt: skip
    got = am_alert(
        a, "up == 0", 30_000, 120_000, (("cluster", "eu"), ("region", "r1")), "http://f:8080"
    )
    assert got == {
        "labels": {"alertname": "X", "cluster": "mine", "region": "r1"},  # the alert's label wins
        "annotations": {"summary": "s"},
        "startsAt": "1970-01-01T00:02:00Z",
        "endsAt": "1970-01-01T00:06:00Z",  # 4 × max(1 m resend delay, 30 s interval) ahead
        "generatorURL": "http://f:8080/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
    }
    a.state, a.resolved_at = "inactive", 180_000
    assert am_alert(a, "up == 0", 30_000, 180_000)["endsAt"] == "1970-01-01T00:03:00Z"


def test_rule_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    toml = tmp_path / "f.toml"
    toml.write_text('rule_files = ["a/*.yml", "b.yml"]\nalertmanager_urls = ["http://am:9093"]\n')
    cfg = load_config(str(toml), {}, {})
    assert (cfg.rule_files, cfg.alertmanager_urls) == (["a/*.yml", "b.yml"], ["http://am:9093"])
    assert load_config(None, {}, cfg.to_env()).rule_files == ["a/*.yml", "b.yml"]
    assert load_config(None, {}, {"FILODB_RULE_FILES": "x.yml, y.yml"}).rule_files == [
        "x.yml",
        "y.yml",
    ]
    assert load_config(None, {"rule_files": ["z.yml"]}, {}).rule_files == ["z.yml"]
    assert parse_external_labels("cluster=eu, region = r1") == (("cluster", "eu"), ("region", "r1"))
    with pytest.raises(BadInputError, match="is not name=value"):
        parse_external_labels("cluster")
