"""``filodb rules check|test`` and the rule checks of ``filodb up``/``filodb rules``: exit codes
and messages before any server is involved."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from filodb.cli import main

HERE = Path(__file__).parent
BAD = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: 5x\n"


def test_check(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["rules", "check", str(HERE / "testdata" / "features-rules.yml")])
    assert r.exit_code == 0 and "SUCCESS: 2 groups, 5 rules" in r.output, r.output
    (tmp_path / "bad.yml").write_text(BAD)
    r = CliRunner().invoke(main, ["rules", "check", str(tmp_path / "bad.yml")])
    assert r.exit_code == 2
    assert (
        'bad.yml: group "g": rule 1 (alert "A"): for: not a valid duration string: "5x"' in r.output
    )


def test_test_exit_codes() -> None:
    good = CliRunner().invoke(main, ["rules", "test", str(HERE / "testdata" / "features-test.yml")])
    assert good.exit_code == 0 and "SUCCESS" in good.output, good.output
    bad = CliRunner().invoke(
        main, ["rules", "test", str(HERE / "promtool_testdata" / "failing.yml")]
    )
    assert (
        bad.exit_code == 1
        and "FAILED" in bad.output
        and "exp:" in bad.output
        and "got:" in bad.output
    )


def test_servers_refuse_bad_rule_files_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(BAD)
    r = CliRunner().invoke(
        main, ["up", "--rules", str(tmp_path / "bad.yml"), "--data-dir", str(tmp_path)]
    )
    assert r.exit_code == 2 and "not a valid duration" in r.output, r.output
    r = CliRunner().invoke(main, ["rules", "--redis-url", "redis://127.0.0.1:1"])
    assert r.exit_code == 2 and "no rule files" in r.output
