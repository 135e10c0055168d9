"""``info()`` with several info metrics for one target: each name's newest series adds its data
labels, whatever order the source lists series in (a cluster lists them shard by shard)."""

from __future__ import annotations

import numpy as np
import pytest

from filodb.errors import ExecutionError
from filodb.model.labels import make_labels
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource

TS = np.array([0, 60_000], np.int64)


def _engine(series: list[dict[str, str]]) -> Engine:
    src = MemorySource()
    for lb in series:
        src.add(make_labels(lb), TS, np.ones(2))
    return Engine(src)


BASE = {"__name__": "metric", "instance": "a", "job": "1"}
TARGET = {"__name__": "target_info", "instance": "a", "job": "1", "data": "info"}
BUILD = {"__name__": "build_info", "instance": "a", "job": "1", "build_data": "build"}


@pytest.mark.parametrize("order", [[BASE, TARGET, BUILD], [BUILD, TARGET, BASE]])
def test_every_matching_info_metric_adds_its_labels(order: list[dict[str, str]]) -> None:
    res = _engine(order).instant('info(metric, {__name__=~".+_info"})', 60_000)
    assert [dict(lb) for lb, _, _ in res.series] == [
        {**BASE, "data": "info", "build_data": "build"}
    ]


def test_newest_series_of_one_info_metric_wins() -> None:
    src = MemorySource()
    src.add(make_labels(BASE), TS, np.ones(2))
    src.add(make_labels({**TARGET, "data": "old"}), TS[:1], np.ones(1))
    src.add(make_labels(TARGET), TS[1:], np.ones(1))
    res = Engine(src).instant("info(metric)", 60_000)
    assert [dict(lb)["data"] for lb, _, _ in res.series] == ["info"]


def test_two_info_metrics_disagreeing_on_a_label_is_an_error() -> None:
    eng = _engine([BASE, TARGET, {**BUILD, "data": "other"}])
    with pytest.raises(ExecutionError, match="conflicting label: data"):
        eng.instant('info(metric, {__name__=~".+_info"})', 60_000)
