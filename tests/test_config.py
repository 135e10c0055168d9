from __future__ import annotations

import pytest

from filodb.config import load_config
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
