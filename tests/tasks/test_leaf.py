"""Which subtrees run on the shards, and that leaf answers survive the wire unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.query.binops import final_labels
from filodb.query.distributed import is_local
from filodb.query.engine import Engine
from filodb.query.parser import parse
from filodb.tasks.leaf import run_op
from filodb.tasks.wire import unflat_labels, unpack


@pytest.mark.parametrize("q,local", [
    ("x", True), ("rate(x[5m])", True), ("abs(x - 20)", True), ("x > 3", True),
    ("max_over_time(x[10m:1m])", True), ('label_replace(x, "a", "$1", "b", "(.*)")', True),
    ("-rate(x[1m])", True), ("predict_linear(x[1h], 60)", True),
    ("sum(x)", False), ("x / y", False), ("x and y", False), ("scalar(x)", False),
    ("histogram_quantile(0.9, x)", False), ("absent(x)", False), ("vector(1)", False),
    ("max_over_time(sum(x)[10m:1m])", False), ("x * scalar(y)", False), ("sort(x)", False),
])  # fmt: skip
def test_locality(q: str, local: bool) -> None:
    assert is_local(parse(q)) is local


def test_leaf_answer_equals_local_engine() -> None:
    shard = TimeSeriesShard("ds", 0)
    series = [make_labels({"__name__": "x", "i": str(i)}) for i in range(5)]
    n = 40
    b = SampleBatch(series, np.repeat(np.arange(5), n), np.tile(np.arange(n) * 15_000, 5),
                    np.arange(5 * n, dtype=float))  # fmt: skip
    shard.ingest(b)
    q = "rate(x[2m]) * 60"
    p = {"query": q, "lookback": 300_000, "max_samples": 10**7, "timeout": 10, "qstart": 60_000,
         "qend": 540_000, "start": 60_000, "end": 540_000, "step": 30_000}  # fmt: skip
    header, (vals, pres) = unpack(run_op(shard, [3], "eval", p))
    assert header["ok"] and header["shards"] == [3] and header["shard"] == 3
    want = Engine(shard).range(q, 60_000, 540_000, 30_000)
    # leaf labels still carry names to be dropped (delayed removal): the web tier drops them last
    got = {
        final_labels(lb): vals[i][pres[i]] for i, lb in enumerate(unflat_labels(header["labels"]))
    }
    assert len(got) == len(want.series) == 5
    for lb, _, vs in want.series:
        assert np.array_equal(got[lb], vs)


def test_limit_is_applied_on_the_shards() -> None:
    """``series``, ``label_names`` and ``label_values`` answer at most ``limit`` items and say
    whether some were left out, over one shard and over the union of a node's shards."""
    from filodb.model.source import UnionSource

    shards = [TimeSeriesShard("ds", s) for s in range(2)]
    for s, shard in enumerate(shards):
        series = [make_labels({"__name__": "m", "pod": f"p{s}-{i}", f"l{s}{i}": "x"})
                  for i in range(6)]  # fmt: skip
        shard.ingest(SampleBatch(series, np.arange(6), np.full(6, 1000), np.ones(6)))
    m = [["__name__", "=", "m"]]
    for source, total in ((shards[0], 6), (UnionSource(shards), 12)):
        base = {"matchers": m, "start": 0, "end": 10_000}
        for limit, cut in ((4, True), (total, False), (0, False)):
            p = {**base, "limit": limit}
            h, _ = unpack(run_op(source, [0], "series", p))
            assert len(unflat_labels(h["labels"])) == (limit or total) and h["truncated"] is cut
            h, _ = unpack(run_op(source, [0], "label_values", {**p, "name": "pod"}))
            assert len(h["values"]) == (limit or total) and h["truncated"] is cut
            assert h["values"] == sorted(h["values"])
        h, _ = unpack(run_op(source, [0], "label_names", {**base, "limit": 3}))
        assert h["values"] == ["__name__", "l00", "l01"] and h["truncated"] is True
