"""The dataset description and the one rule for dataset names."""

from __future__ import annotations

import pytest

from filodb.errors import BadInputError
from filodb.model.dataset import Dataset, check_dataset_name


@pytest.mark.parametrize(
    "name", ["", "../x", "a/b", "ünï", "-x", "a b", "a.b", "x" * 101, "a\n", 5, None]
)
def test_bad_names(name: object) -> None:
    with pytest.raises(BadInputError, match="invalid dataset name"):
        check_dataset_name(name)


@pytest.mark.parametrize("name", ["prometheus", "_x", "a-b_c", "9", "x" * 100, "metrics_ds_5"])
def test_good_names(name: str) -> None:
    assert check_dataset_name(name) == name


def test_a_long_bad_name_is_shown_shortened() -> None:
    with pytest.raises(BadInputError) as e:
        check_dataset_name("ü" * 5000)
    assert "(5000 characters)" in str(e.value) and len(str(e.value)) < 300


def test_create_validates_and_round_trips() -> None:
    d = Dataset.create("m", 8, 2, [{"_ws_": "w", "_ns_": "n", "spread": 3}], 86400.0, 1.5)
    assert Dataset.from_json("m", d.to_json()) == d and d.retention(7.0) == 86400.0
    assert Dataset.create("m", 4).retention(7.0) == 7.0 and Dataset.create("m", 4).spread_rule == 1
    for bad in (dict(shards=6), dict(shards=4, spread=3), dict(shards=4, retention_s=-1),
                dict(shards=4, retention_s="1d"), dict(shards=4, spread_overrides=[{"spread": 9}])):  # fmt: skip
        with pytest.raises(BadInputError):
            Dataset.create("m", **bad)  # type: ignore[arg-type]
    with pytest.raises(BadInputError):
        Dataset.create("ünï", 4)
