from __future__ import annotations

from pathlib import Path

import pytest

from filodb.config import NOT_SETTINGS, load_config
from filodb.errors import BadInputError


def test_layers_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "c.toml"
    f.write_text('port = 9000\nshards = 8\nhost = "0.0.0.0"\n')
    env = {"FILODB_PORT": "9100", "FILODB_SHARDS": "16"}
    cfg = load_config(str(f), {"port": 9200, "host": None}, env)
    assert (cfg.port, cfg.shards, cfg.host) == (9200, 16, "0.0.0.0")


def test_env_round_trip() -> None:
    cfg = load_config(None, {"shards": 2, "redis_url": "redis://x:1/0"}, {})
    again = load_config(None, {}, cfg.to_env())
    assert again == cfg


def test_bad_values_are_bad_input(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInputError):
        load_config(None, {}, {"FILODB_PORT": "eighty"})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(BadInputError):
        load_config(str(bad), {}, {})


def test_unknown_file_key_names_the_closest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "c.toml"
    f.write_text("shrads = 8\n")
    want = r"unknown setting shrads in .*c\.toml \(did you mean shards\?\)"
    with pytest.raises(BadInputError, match=want):
        load_config(str(f), {}, {})


def test_unknown_env_variable_names_the_closest() -> None:
    with pytest.raises(BadInputError) as e:
        load_config(None, {}, {"FILODB_SHRADS": "8"})
    assert str(e.value) == "unknown setting FILODB_SHRADS (did you mean FILODB_SHARDS?)"
    with pytest.raises(BadInputError, match=r"^unknown setting FILODB_XYZZY$"):
        load_config(None, {}, {"FILODB_XYZZY": "1"})  # nothing close: no guess


@pytest.mark.parametrize("name", sorted(NOT_SETTINGS))
def test_variables_read_elsewhere_are_accepted(name: str) -> None:
    env = {name: "/nowhere.toml" if name == "FILODB_CONFIG" else "x", "FILODB_SHARDS": "3"}
    if name == "FILODB_CONFIG":
        with pytest.raises(BadInputError, match="cannot read config file /nowhere.toml"):
            load_config(None, {}, env)  # read, as the file's path
        return
    assert load_config(None, {}, env).shards == 3


def test_cli_exits_2_on_unknown_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from filodb.cli import main

    monkeypatch.chdir(tmp_path)  # no ./filodb.toml
    monkeypatch.delenv("FILODB_CONFIG", raising=False)
    res = CliRunner().invoke(main, ["worker"], env={"FILODB_SHRADS": "8"})
    assert res.exit_code == 2
    assert "unknown setting FILODB_SHRADS (did you mean FILODB_SHARDS?)" in res.output


def test_a_log_cap_at_or_below_the_node_backlog_is_refused() -> None:
    """Found at scale: with log_max_mb 4 under log_backlog_mb 16, writes waited for flushes the
    node never started (503 after 503)."""
    import pytest

    from filodb.config import load_config
    from filodb.errors import BadInputError

    off = {"FILODB_LOG_SPILL_MB": "0"}  # spills keep Redis small without any flush
    with pytest.raises(BadInputError, match="log_max_mb"):
        load_config(environ={**off, "FILODB_LOG_MAX_MB": "4"})
    assert load_config(environ={**off, "FILODB_LOG_MAX_MB": "65"}).log_max_mb == 65
    assert load_config(environ={"FILODB_LOG_MAX_MB": "4"}).log_max_mb == 4
    assert (
        load_config(environ={"FILODB_LOG_MAX_MB": "1", "FILODB_LOG_BACKLOG_MB": "0"}).log_max_mb
        == 1
    )


@pytest.mark.parametrize("nice", ["-1", "20"])
def test_background_nice_outside_the_kernel_s_range_is_bad_input(nice: str) -> None:
    with pytest.raises(BadInputError, match=r"background_nice \(.*\) must be within 0..19"):
        load_config(None, {}, {"FILODB_BACKGROUND_NICE": nice})
    assert load_config(None, {}, {"FILODB_BACKGROUND_NICE": "0"}).background_nice == 0
