"""Rule files: Prometheus's format, and every refusal names the file, the group and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from filodb.errors import BadInputError
from filodb.model.timeparse import parse_model_duration
from filodb.query.prettier import prom_duration
from filodb.rules.files import load_files, parse_rules, split_pattern

GOOD = """
groups:
  - name: g1
    interval: 30s
    limit: 10
    query_offset: 1m
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels: {team: infra}
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} down"}
  - name: g2
    rules:
      - record: x
        expr: vector(1)
"""


def test_good_file_parses_every_field() -> None:
    g1, g2 = parse_rules(GOOD, "r.yml")
    assert (g1.name, g1.interval_ms, g1.limit, g1.query_offset_ms) == ("g1", 30_000, 10, 60_000)
    rec, alert = g1.rules
    assert (rec.record, rec.kind, rec.labels) == ("job:up:sum", "recording", (("team", "infra"),))
    assert (alert.alert, alert.for_ms, alert.keep_firing_for_ms) == ("Down", 300_000, 60_000)
    assert alert.annotations == (("summary", "{{ $labels.instance }} down"),)
    assert g2.interval_ms == 60_000 and g2.key == "r.yml;g2"


@pytest.mark.parametrize(
    ("body", "where", "why"),
    [
        ("- record: 'bad name'\n        expr: up", 'rule 1 (record "bad name")', "invalid recording rule name"),
        ("- record: x\n        expr: 'sum(up'", 'rule 1 (record "x")', "could not parse expression"),
        ("- alert: A\n        expr: up\n        annotations: {s: '{{ .x'}", 'rule 1 (alert "A")', "unclosed action"),
        ("- alert: A\n        expr: up\n        labels: {s: '{{ nofunc }}'}", 'rule 1 (alert "A")', 'function "nofunc" not defined'),
        ("- alert: A\n        expr: up\n        for: 5 minutes", 'rule 1 (alert "A")', "not a valid duration"),
        ("- alert: A\n        record: B\n        expr: up", "rule 1", "only one of 'record' and 'alert'"),
        ("- expr: up", "rule 1", "one of 'record' or 'alert' must be set"),
        ("- record: x\n        expr: up\n        for: 1m", 'rule 1 (record "x")', "invalid field 'for'"),
        ("- record: x", 'rule 1 (record "x")', "field 'expr' must be set"),
        ("- record: x\n        expr: up\n        labels: {__name__: y}", 'rule 1 (record "x")', "invalid label name"),
    ],
)  # fmt: skip
def test_bad_rule_is_named(body: str, where: str, why: str) -> None:
    text = f"groups:\n  - name: grp\n    rules:\n      {body}\n"
    with pytest.raises(BadInputError) as e:
        parse_rules(text, "f.yml")
    msg = str(e.value)
    assert msg.startswith(f'f.yml: group "grp": {where}'), msg
    assert why in msg


def test_group_errors_named() -> None:
    dup = "groups:\n  - name: a\n    rules: []\n  - name: a\n    rules: []\n"
    with pytest.raises(BadInputError, match=r'f.yml: group "a": groupname: "a" is repeated'):
        parse_rules(dup, "f.yml")
    with pytest.raises(BadInputError, match=r'f.yml: group "a": interval: not a valid duration'):
        parse_rules("groups:\n  - name: a\n    interval: 1x\n    rules: []\n", "f.yml")
    with pytest.raises(BadInputError, match=r'f.yml: group "a": limit must be a non-negative'):
        parse_rules("groups:\n  - name: a\n    limit: -1\n    rules: []\n", "f.yml")
    with pytest.raises(BadInputError, match="f.yml: not valid YAML"):
        parse_rules("groups: [", "f.yml")
    with pytest.raises(BadInputError, match="unknown field 'intervall'"):
        parse_rules("groups:\n  - name: a\n    intervall: 1m\n    rules: []\n", "f.yml")


def test_load_files_globs(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(GOOD)
    (tmp_path / "b.yml").write_text("groups:\n  - name: g1\n    rules: []\n")
    groups = load_files([str(tmp_path / "*.yml")])
    assert [(Path(g.file).name, g.name) for g in groups] == [
        ("a.yml", "g1"),
        ("a.yml", "g2"),
        ("b.yml", "g1"),
    ]
    assert load_files([str(tmp_path / "none-*.yml")]) == []
    with pytest.raises(BadInputError, match="no such file"):
        load_files([str(tmp_path / "missing.yml")])


@pytest.mark.parametrize(
    ("text", "ms"), [("0", 0), ("5m", 300_000), ("1h30m", 5_400_000), ("1d2h", 93_600_000), ("250ms", 250), ("1y", 365 * 86_400_000)]
)  # fmt: skip
def test_durations(text: str, ms: int) -> None:
    assert parse_model_duration(text) == ms
    assert parse_model_duration(prom_duration(ms)) == ms


@pytest.mark.parametrize("text", ["", "5", "1.5m", "m", "5m1h", "-1m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_model_duration(text)


def test_dataset_prefix_of_a_rule_pattern() -> None:
    assert split_pattern("metrics=rules/*.yml") == ("metrics", "rules/*.yml")
    assert split_pattern("rules/*.yml") == ("", "rules/*.yml")
    assert split_pattern("rules/a=b.yml") == ("", "rules/a=b.yml")  # not a dataset name
