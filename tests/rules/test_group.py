"""One group evaluation: recording rules renamed and relabelled, stale markers for series a
rule stopped returning, the group's limit, errors kept per rule while the others run on."""

from __future__ import annotations

import numpy as np

from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.query.parser import parse
from filodb.query.values import is_stale
from filodb.rules.files import parse_rules
from filodb.rules.fresh import FreshSamples, OverlaySource
from filodb.rules.group import GroupState, evaluate_group, to_batch

RULES = """
groups:
  - name: g
    limit: 2
    query_offset: 30s
    rules:
      - record: job:x:sum
        expr: sum by (job) (x)
        labels: {team: infra, job: ""}
      - record: too_many
        expr: x
      - record: dup
        expr: x
        labels: {i: same}
      - alert: X
        expr: x > 0
"""


class Sink:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def append(self, batch: SampleBatch) -> None:
        self.batches.append(batch)


def rows(b: SampleBatch) -> list[tuple]:
    return [
        (b.series[int(i)], int(t), float(v)) for i, t, v in zip(b.sidx, b.ts, b.vals, strict=True)
    ]


def test_recording_limit_errors_and_staleness() -> None:
    src = MemorySource()
    src.add(
        (("__name__", "x"), ("i", "1"), ("job", "a")), np.array([0, 60_000]), np.array([1.0, 2.0])
    )
    src.add((("__name__", "x"), ("i", "2"), ("job", "a")), np.array([0]), np.array([3.0]))
    src.add((("__name__", "x"), ("i", "3"), ("job", "b")), np.array([0]), np.array([4.0]))
    (g,) = parse_rules(RULES)
    st, sink = GroupState.new(g), Sink()
    evaluate_group(g, 60_000, Engine(src), sink, st)
    # queried at t - query_offset; the empty rule label removes "job": two series, one label set
    health = [(rs.health, rs.last_error) for rs in st.rules]
    assert health[0] == (
        "err",
        "vector contains metrics with the same labelset after applying rule labels",
    )
    assert health[1] == ("err", "exceeded limit of 2 with 3 series")
    assert health[2] == (
        "err",
        "vector contains metrics with the same labelset after applying rule labels",
    )
    assert health[3] == ("err", "exceeded limit of 2 with 3 alerts")
    assert sink.batches == [] and st.last_eval_ms == 60_000

    # one series left under the limit: written at t - 30 s, then a stale marker when it goes
    src.clear()
    src.add((("__name__", "x"), ("i", "1"), ("job", "a")), np.array([0]), np.array([5.0]))
    evaluate_group(g, 60_000, Engine(src), sink, st)
    assert [rs.health for rs in st.rules] == ["ok", "ok", "ok", "ok"]
    assert rows(sink.batches[0]) == [((("__name__", "job:x:sum"), ("team", "infra")), 30_000, 5.0)]
    assert rows(sink.batches[2]) == [
        ((("__name__", "dup"), ("i", "same"), ("job", "a")), 30_000, 5.0)
    ]
    n = len(sink.batches)
    src.clear()
    evaluate_group(g, 120_000, Engine(src), sink, st)
    stale = sink.batches[n:]
    assert [b.series for b in stale[:1]] == [[(("__name__", "job:x:sum"), ("team", "infra"))]]
    assert all(is_stale(b.vals).all() and (b.ts == 90_000).all() for b in stale)
    assert len(stale) == 4  # every rule's series went stale (ALERTS and ALERTS_FOR_STATE too)


def test_fresh_samples_laid_over_a_source() -> None:
    """The overlay a later rule reads: series of both sources, and at a timestamp both hold
    the fresh sample wins; only selectors that can match a fresh name read through it."""
    base = MemorySource()
    a, b = (("__name__", "r"), ("i", "a")), (("__name__", "r"), ("i", "b"))
    base.add(a, np.array([1000, 2000]), np.array([1.0, 2.0]))
    fresh = FreshSamples()
    assert not fresh.read_by(parse("r"))
    fresh.append({"r"}, to_batch([(a, 20.0), (b, 30.0)], 2000))
    assert fresh.read_by(parse("sum(r)")) and fresh.read_by(parse('{__name__=~"r|x"}'))
    assert not fresh.read_by(parse("other")) and not fresh.read_by(parse('r{i="c"}'))
    block = OverlaySource(base, fresh.source).select([Matcher("__name__", "=", "r")], 0, 5000)
    got = {lb: (block.ts[block.offsets[k]:block.offsets[k + 1]].tolist(),
                block.vals[block.offsets[k]:block.offsets[k + 1]].tolist())
           for k, lb in enumerate(block.labels)}  # fmt: skip
    assert got == {a: ([1000, 2000], [1.0, 20.0]), b: ([2000], [30.0])}
    fresh.append({"s"}, to_batch([((("__name__", "s"),), 5.0)], 2000))  # extends the built source
    assert fresh.read_by(parse("s")) and fresh.source.series(
        [Matcher("__name__", "=", "s")], 0, 5000
    )
