"""Limits per dataset: parsed from the admin API's JSON or the CLI's text, stored with the
dataset (old stored datasets without limits still load), defaults from the config."""

from __future__ import annotations

import pytest

from filodb.config import Config
from filodb.errors import BadInputError
from filodb.model.dataset import Dataset
from filodb.model.limits import DatasetLimits


def test_parse_numbers_text_and_durations() -> None:
    lim = DatasetLimits.parse({"max_series": 1000, "max_series_per_metric": "50",
                               "ingest_samples_per_s": 2.5e4, "query_timeout": "1m30s",
                               "max_samples": None})  # fmt: skip
    assert lim == DatasetLimits(max_series=1000, max_series_per_metric=50,
                                ingest_samples_per_s=25000.0, query_timeout=90.0)  # fmt: skip
    assert DatasetLimits.parse({"query_timeout": 12}).query_timeout == 12.0
    assert DatasetLimits.parse(None) == DatasetLimits()


@pytest.mark.parametrize("raw", [
    {"max_sieries": 1}, {"max_series": -1}, {"max_series": 1.5}, {"max_series": True},
    {"max_series": "many"}, {"query_timeout": "soon"}, {"ingest_samples_per_s": float("nan")},
    {"max_series": 10**30}, [1, 2], "max_series=1", {"query_timeout": 1e18},
    {"query_timeout": "8d"}, {"ingest_samples_per_s": "1e400"}, {7: 1},
])  # fmt: skip
def test_bad_limits_are_bad_input(raw: object) -> None:
    with pytest.raises(BadInputError):
        DatasetLimits.parse(raw)


def test_unknown_key_names_the_known_ones() -> None:
    with pytest.raises(BadInputError, match="max_series_per_metric"):
        DatasetLimits.parse({"max_metrics": 3})


def test_stored_with_the_dataset_and_old_descriptions_load() -> None:
    ds = Dataset.create("t", 4, 1, limits={"max_series": 10, "query_timeout": "5s"})
    stored = ds.to_json()
    assert stored["limits"] == {"max_series": 10, "query_timeout": 5.0}
    assert Dataset.from_json("t", stored) == ds
    old = {"shards": 4, "spread": 1, "created": 1.0}  # written before limits existed
    assert Dataset.from_json("t", old).limits == DatasetLimits()
    assert "limits" not in Dataset.from_json("t", old).to_json()
    newer = {**old, "limits": {"max_series": 3, "from_the_future": 1}}
    assert Dataset.from_json("t", newer).limits == DatasetLimits(max_series=3)


def test_resolved_takes_the_config_defaults() -> None:
    cfg = Config(dataset_max_series=7, max_samples=99, max_series=5, query_timeout=30.0)
    lim = DatasetLimits(max_series=100, query_timeout=2.0).resolved(cfg)
    assert lim == DatasetLimits(max_series=100, max_series_per_metric=0, ingest_samples_per_s=0.0,
                                max_query_concurrency=0, max_samples=99, max_series_per_query=5,
                                query_timeout=2.0)  # fmt: skip
