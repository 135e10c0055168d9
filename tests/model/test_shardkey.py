from __future__ import annotations

import numpy as np
import pytest

from filodb.errors import BadInputError
from filodb.model.batch import series_identity
from filodb.model.labels import Matcher, make_labels
from filodb.model.shardkey import check_shards, query_shards, shards_for_series, shards_of_routes


def _series(n: int, metric: str = "m", **extra: str):
    return [make_labels({"__name__": metric, "instance": f"i{i}", **extra}) for i in range(n)]


def test_one_shard_key_stays_in_its_spread_group() -> None:
    shards = shards_for_series(_series(200), 16, 2)
    assert len(set(shards.tolist())) == 4  # 2**spread shards, all used with 200 series
    group = set(query_shards([Matcher("__name__", "=", "m"), Matcher("_ws_", "=", ""),
                              Matcher("_ns_", "=", "")], 16, 2))  # fmt: skip
    assert set(shards.tolist()) == group


def test_spread_zero_puts_a_metric_on_one_shard() -> None:
    assert len(set(shards_for_series(_series(50), 8, 0).tolist())) == 1


def test_many_metrics_use_every_shard_evenly() -> None:
    series = [s for m in range(200) for s in _series(4, f"metric_{m}")]
    counts = np.bincount(shards_for_series(series, 8, 1), minlength=8)
    assert counts.min() > 0.5 * counts.mean()


def test_routing_is_stable_across_calls() -> None:
    s = _series(10)
    assert (shards_for_series(s, 8, 1) == shards_for_series(list(reversed(s)), 8, 1)[::-1]).all()


def test_query_without_full_shard_key_asks_every_shard() -> None:
    assert query_shards([Matcher("__name__", "=", "m")], 8, 1) == list(range(8))
    assert query_shards([Matcher("__name__", "=~", "m.*")], 8, 1) == list(range(8))
    assert query_shards([], 4, 1) == [0, 1, 2, 3]


def test_workspace_namespace_are_part_of_the_key() -> None:
    series = _series(30, _ws_="demo", _ns_="app")
    got = set(shards_for_series(series, 16, 1).tolist())
    ms = [Matcher("__name__", "=", "m"), Matcher("_ws_", "=", "demo"), Matcher("_ns_", "=", "app")]
    assert got <= set(query_shards(ms, 16, 1))
    assert len(query_shards(ms, 16, 1)) == 2


@pytest.mark.parametrize("n,spread", [(3, 0), (0, 0), (6, 1), (4, 3), (4, -1)])
def test_bad_shard_counts_are_rejected(n: int, spread: int) -> None:
    with pytest.raises(BadInputError):
        check_shards(n, spread)


@pytest.mark.parametrize(("shards", "spread"), [(1, 0), (4, 0), (4, 2), (256, 3), (1024, 10)])
def test_shards_of_routes_is_the_shard_rule(shards: int, spread: int) -> None:
    series = _series(300) + _series(300, "other", _ws_="w", _ns_="n") + _series(50, "x" * 40)
    routes = np.array([series_identity(lb)[2] for lb in series], np.uint64)
    want = shards_for_series(series, shards, spread)
    assert shards_of_routes(routes, shards, spread).tolist() == want.tolist()
