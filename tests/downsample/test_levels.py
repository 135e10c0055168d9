"""Downsample levels: parsing, the rules, the admin API and the CLI; bad input writes nothing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from filodb.cli import main
from filodb.config import Config
from filodb.errors import BadInputError
from filodb.model.dataset import Dataset
from filodb.model.resolution import check_levels, parse_levels
from filodb.web import create_app


def test_levels_parse_and_round_trip() -> None:
    lv = parse_levels("1m:30d,5m:183d")
    assert [(x.resolution_ms, x.retention_s) for x in lv] == [
        (60_000, 30 * 86400.0),
        (300_000, 183 * 86400.0),
    ]
    assert (
        parse_levels(
            [{"resolution": "1m", "retention": "30d"}, {"resolution": "1h", "retention": "1y"}]
        )[1].minutes
        == 60
    )
    d = Dataset.create("m", 4, downsample="1m:30d")
    assert Dataset.from_json("m", d.to_json()) == d
    assert (
        Dataset.from_json("old", {"shards": 2, "spread": 1}).downsample == ()
    )  # old stored datasets load


@pytest.mark.parametrize(
    "bad", ["7x:3d", "30s:3d", "1m", "1m:30d,90s:60d", "2m:30d,3m:30d", "5m:30d,1m:30d"]
)
def test_bad_levels_are_refused(bad: str) -> None:
    with pytest.raises(BadInputError):
        check_levels(parse_levels(bad), 86400.0)


def test_a_level_keeping_less_than_raw_is_refused() -> None:
    with pytest.raises(BadInputError, match="less than the raw"):
        check_levels(parse_levels("1m:1d"), 15 * 86400.0)


@pytest.fixture
def client(redis_url: str):  # type: ignore[no-untyped-def]
    app = create_app(Config(redis_url=redis_url))
    return app.test_client()


def test_admin_creates_the_ds_datasets_and_refuses_bad_levels(client) -> None:  # type: ignore[no-untyped-def]
    body = {"shards": 4, "retention": "2d", "downsample": [{"resolution": "1m", "retention": "30d"},
                                                            {"resolution": "5m", "retention": "183d"}]}  # fmt: skip
    r = client.post("/api/v1/cluster/metrics", json=body)
    assert r.status_code == 200, r.json
    rows = {d["dataset"]: d for d in client.get("/api/v1/cluster").json["data"]}
    assert rows["metrics_ds_1"]["resolution_ms"] == 60_000 and rows["metrics_ds_5"]["shards"] == 4
    assert rows["metrics"]["downsample"][1]["resolution"] == "5m"
    for bad in ([{"resolution": "7x", "retention": "30d"}], [{"resolution": "1m", "retention": "1d"}],
                [{"resolution": "2m", "retention": "30d"}, {"resolution": "3m", "retention": "30d"}], "nope"):  # fmt: skip
        r = client.post(
            "/api/v1/cluster/other", json={"shards": 4, "retention": "2d", "downsample": bad}
        )
        assert r.status_code == 400 and r.json["errorType"] == "bad_data", bad
    names = {d["dataset"] for d in client.get("/api/v1/cluster").json["data"]}
    assert not any(n.startswith("other") for n in names)  # nothing written


def test_cli_refuses_a_bad_resolution_before_asking_the_server() -> None:
    r = CliRunner().invoke(main, ["dataset", "create", "m", "--shards", "2", "--downsample", "1q:3d",
                                  "--url", "http://127.0.0.1:9"])  # fmt: skip
    assert r.exit_code == 2 and "unknown resolution" in r.output + str(r.stderr_bytes or b"")


def test_up_refuses_bad_levels_in_the_config_before_starting_anything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(main, ["up", "--data-dir", str(tmp_path / "d")],
                           env={"FILODB_DOWNSAMPLE": "5m:30d,3m:30d"})  # fmt: skip
    assert r.exit_code == 2 and not (tmp_path / "d").exists()
