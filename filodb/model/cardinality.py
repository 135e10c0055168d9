"""Cardinality of a dataset: series per label value, from the shards' indexes, in the shape of
Prometheus's ``/api/v1/status/tsdb``.

A shard gives a :class:`CardinalityStats` from its index (the posting length of every label
value, counted with one ``bincount`` per label name); a node merges its shards' and the web
tier merges the nodes'. A series lives in one shard, so series counts add; label values are
merged as sets (one dict of the values of every part), so ``labelValueCountByLabelName``
counts distinct values cluster-wide, as one Prometheus would. The cost is one entry per
distinct label pair on the wire, like Prometheus's own walk of its postings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

NO_MIN_TIME = 2**63 - 1  # Prometheus's head times when it holds no sample
NO_MAX_TIME = -(2**63)
DEFAULT_LIMIT = 10


@dataclass
class CardinalityStats:
    """``labels``: label name -> (distinct values as an object array, series per value)."""

    num_series: int = 0
    chunk_count: int = 0
    min_time: int = NO_MIN_TIME
    max_time: int = NO_MAX_TIME
    labels: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @staticmethod
    def merge(parts: Sequence[CardinalityStats]) -> CardinalityStats:
        """The stats of disjoint sets of series (shards) together."""
        if len(parts) == 1:
            return parts[0]
        by_name: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for p in parts:
            for name, vc in p.labels.items():
                by_name.setdefault(name, []).append(vc)
        labels = {}
        for name, vcs in by_name.items():
            if len(vcs) == 1:
                labels[name] = vcs[0]
                continue
            # the union of the values, and each part's values as codes into it: dict
            # operations driven from C (fromkeys, zip, map), no Python step per value; an
            # np.unique of the object arrays sorts by Python comparisons, 1.5-2x slower
            union = dict.fromkeys(chain.from_iterable(v for v, _ in vcs))
            code_of = dict(zip(union, range(len(union)), strict=True))
            codes = np.concatenate([np.fromiter(map(code_of.__getitem__, v), np.int64, len(v))
                                    for v, _ in vcs])  # fmt: skip
            counts = np.bincount(codes, np.concatenate([c for _, c in vcs]), len(union))
            labels[name] = (object_array(list(union)), counts.astype(np.int64))
        return CardinalityStats(
            sum(p.num_series for p in parts), sum(p.chunk_count for p in parts),
            min(p.min_time for p in parts), max(p.max_time for p in parts), labels,
        )  # fmt: skip

    # --- wire: a header (msgpack-able) and one int64 array of counts per label name --------
    def to_wire(self) -> tuple[dict[str, Any], list[np.ndarray]]:
        names = sorted(self.labels)
        header = {"num_series": self.num_series, "chunks": self.chunk_count,
                  "min_time": self.min_time, "max_time": self.max_time, "names": names,
                  "values": [self.labels[n][0].tolist() for n in names]}  # fmt: skip
        return header, [np.asarray(self.labels[n][1], np.int64) for n in names]

    @classmethod
    def from_wire(cls, header: dict[str, Any], arrays: list[np.ndarray]) -> CardinalityStats:
        labels = {}
        for name, values, counts in zip(header["names"], header["values"], arrays, strict=True):
            labels[name] = (object_array(values), np.asarray(counts, np.int64))
        return cls(int(header["num_series"]), int(header["chunks"]), int(header["min_time"]),
                   int(header["max_time"]), labels)  # fmt: skip

    # --- Prometheus's shape ---------------------------------------------------------------
    def to_prom(self, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        """``/api/v1/status/tsdb``'s data: ``headStats`` and four top-``limit`` lists, each
        ``[{"name": ..., "value": n}]`` by decreasing value (ties by name). As Prometheus,
        ``memoryInBytesByLabelName`` is the UTF-8 bytes of a label's distinct values."""
        names = sorted(self.labels)
        n_values = np.array([len(self.labels[n][0]) for n in names], np.int64)
        memory = np.array([int(_lengths(self.labels[n][0]).sum()) for n in names], np.int64)
        metric_vals, metric_counts = self.labels.get("__name__", (object_array([]), _NONE))
        pair_counts = np.concatenate([self.labels[n][1] for n in names] or [_NONE])
        owner = np.repeat(np.arange(len(names)), n_values)
        start = np.concatenate([[0], np.cumsum(n_values)])
        pairs = [(f"{names[owner[i]]}={self.labels[names[owner[i]]][0][i - start[owner[i]]]}",
                  int(pair_counts[i])) for i in _top(pair_counts, limit)]  # fmt: skip
        return {
            "headStats": {
                "numSeries": self.num_series,
                "numLabelPairs": int(n_values.sum()),
                "chunkCount": self.chunk_count,
                "minTime": self.min_time,
                "maxTime": self.max_time,
            },  # fmt: skip
            "seriesCountByMetricName": _stats(metric_vals, metric_counts, limit),
            "labelValueCountByLabelName": _stats(names, n_values, limit),
            "memoryInBytesByLabelName": _stats(names, memory, limit),
            "seriesCountByLabelValuePair": [
                {"name": n, "value": v} for n, v in sorted(pairs, key=lambda p: (-p[1], p[0]))
            ],  # fmt: skip
        }


_NONE = np.zeros(0, np.int64)


def object_array(values: Sequence[str]) -> np.ndarray:
    out = np.empty(len(values), object)
    out[:] = values
    return out


def _lengths(values: np.ndarray) -> np.ndarray:
    """UTF-8 byte length of each value (Go's ``len`` of a string, as Prometheus counts)."""
    return np.fromiter((len(v.encode()) for v in values), np.int64, len(values))


def _top(counts: np.ndarray, limit: int) -> list[int]:
    """Indexes of the ``limit`` largest counts (all when ``limit`` <= 0)."""
    if limit <= 0 or limit >= len(counts):
        return list(range(len(counts)))
    return [int(i) for i in np.argpartition(-counts, limit - 1)[:limit]]


def _stats(
    names: Sequence[str] | np.ndarray, counts: np.ndarray, limit: int
) -> list[dict[str, Any]]:
    rows = [(str(names[i]), int(counts[i])) for i in _top(counts, limit)]
    return [{"name": n, "value": v} for n, v in sorted(rows, key=lambda r: (-r[1], r[0]))]
