"""A group's own output, visible to its later rules in the same evaluation.

Prometheus evaluates the rules of a group in order against its local TSDB, so a rule reads
what an earlier rule of the group has just written. Here writes go through the ingestion log
and show up once a worker applies them, so :func:`~filodb.rules.group.evaluate_group` keeps the
samples of the evaluation in :class:`FreshSamples` and a rule whose selectors match any of them
is evaluated over :class:`OverlaySource` (the cluster's source with the fresh samples laid over
it: a fresh sample replaces a stored one of the same series and timestamp). Other rules keep
the querier's own path (the distributed engine's push-down).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from filodb.model.batch import SampleBatch
from filodb.model.labels import METRIC_NAME, Labels, Matcher
from filodb.model.source import SeriesBlock, SeriesSource
from filodb.query import ast
from filodb.query.distributed import selectors
from filodb.query.memsource import MemorySource

_ALL = (-(2**62), 2**62)


def add_batch(source: MemorySource, batch: SampleBatch) -> None:
    """Add a batch's samples to an in-memory source, series by series."""
    order = np.argsort(batch.sidx, kind="stable")
    cuts = np.searchsorted(batch.sidx[order], np.arange(1, len(batch.series)))
    for lb, rows in zip(batch.series, np.split(order, cuts), strict=True):
        source.add(lb, batch.ts[rows], batch.vals[rows])


class FreshSamples:
    """The samples one group evaluation has written so far, by metric name; put in a
    :class:`MemorySource` only when a later rule selects one of the names."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.batches: list[SampleBatch] = []
        self._source: MemorySource | None = None

    def append(self, names: set[str], batch: SampleBatch) -> None:
        self.names |= names
        self.batches.append(batch)
        if self._source is not None:  # already built for an earlier rule: extend it
            add_batch(self._source, batch)

    @property
    def source(self) -> MemorySource:
        if self._source is None:
            self._source = MemorySource()
            for b in self.batches:
                add_batch(self._source, b)
        return self._source

    def read_by(self, expr: ast.Expr) -> bool:
        """Whether ``expr`` selects any series written so far."""
        if not self.batches:
            return False
        for sel in selectors(expr):
            by_name = [m for m in sel.matchers if m.name == METRIC_NAME]
            if not all(any(m.matches(n) for n in self.names) for m in by_name):
                continue
            if self.source.series(list(sel.matchers), *_ALL):
                return True
        return False


def merge_blocks(base: SeriesBlock, top: SeriesBlock) -> SeriesBlock:
    """``base`` and ``top`` as one block; where both have a series at one timestamp, ``top``'s
    sample wins."""
    if not top.labels:
        return base
    if not base.labels:
        return top
    index = {lb: i for i, lb in enumerate(base.labels)}
    labels = list(base.labels)
    top_ids = np.empty(len(top.labels), np.int64)
    for j, lb in enumerate(top.labels):
        i = index.get(lb)
        if i is None:
            i = index[lb] = len(labels)
            labels.append(lb)
        top_ids[j] = i
    ids = np.concatenate([np.repeat(np.arange(len(base.labels)), np.diff(base.offsets)),
                          np.repeat(top_ids, np.diff(top.offsets))])  # fmt: skip
    ts = np.concatenate([base.ts, top.ts])
    vals = np.concatenate([base.vals, top.vals])
    prio = np.concatenate([np.zeros(len(base.ts), np.int8), np.ones(len(top.ts), np.int8)])
    order = np.lexsort((prio, ts, ids))
    ids, ts, vals = ids[order], ts[order], vals[order]
    last = np.ones(len(ts), bool)  # the last of each (series, timestamp): top's when it has one
    last[:-1] = (ids[1:] != ids[:-1]) | (ts[1:] != ts[:-1])
    ids, ts, vals = ids[last], ts[last], vals[last]
    offsets = np.zeros(len(labels) + 1, np.int64)
    np.cumsum(np.bincount(ids, minlength=len(labels)), out=offsets[1:])
    return SeriesBlock(labels, offsets, ts, vals)


class OverlaySource:
    """``base`` with ``fresh`` laid over it, as one :class:`SeriesSource`."""

    def __init__(self, base: SeriesSource, fresh: SeriesSource) -> None:
        self.base, self.fresh = base, fresh

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> SeriesBlock:
        return merge_blocks(self.base.select(matchers, start_ms, end_ms),
                            self.fresh.select(matchers, start_ms, end_ms))  # fmt: skip

    def series(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Labels]:
        return sorted({*self.base.series(matchers, start_ms, end_ms),
                       *self.fresh.series(matchers, start_ms, end_ms)})  # fmt: skip

    def label_names(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[str]:
        return sorted({*self.base.label_names(matchers, start_ms, end_ms),
                       *self.fresh.label_names(matchers, start_ms, end_ms)})  # fmt: skip

    def label_values(
        self, name: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> list[str]:
        return sorted({*self.base.label_values(name, matchers, start_ms, end_ms),
                       *self.fresh.label_values(name, matchers, start_ms, end_ms)})  # fmt: skip
