"""Exemplars in columns: what a remote-write ``TimeSeries`` carries in field 3.

An exemplar is a sample of a series with labels of its own (usually a ``trace_id``): Prometheus's
``Exemplar { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }``. A batch
carries them as :class:`Exemplars`: ``sidx`` (the series, an index into the batch's
``series``), ``ts`` (ms), ``vals`` and ``labels`` (one label set each). In a log record they
are one optional msgpack entry of the header (``"x"``, :meth:`Exemplars.to_wire`), so a record
without exemplars is unchanged and an older reader skips the entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from filodb.model.labels import Labels


@dataclass
class Exemplars:
    """Exemplars of a batch's series, in columns (arrival order kept)."""

    sidx: np.ndarray
    ts: np.ndarray
    vals: np.ndarray
    labels: list[Labels]

    def __post_init__(self) -> None:
        self.sidx = np.ascontiguousarray(self.sidx, dtype=np.int32)
        self.ts = np.ascontiguousarray(self.ts, dtype=np.int64)
        self.vals = np.ascontiguousarray(self.vals, dtype=np.float64)
        if not (len(self.sidx) == len(self.ts) == len(self.vals) == len(self.labels)):
            raise ValueError("exemplar columns must have the same length")

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, mask: np.ndarray, new_index: np.ndarray) -> Exemplars | None:
        """The exemplars where boolean ``mask`` (one per exemplar) holds, their series renumbered
        by ``new_index`` (old series index -> new); None when none is left."""
        if not mask.any():
            return None
        pick = np.flatnonzero(mask)
        labels = [self.labels[i] for i in pick.tolist()]
        return Exemplars(new_index[self.sidx[pick]], self.ts[pick], self.vals[pick], labels)

    def to_wire(self) -> list[Any]:
        """msgpack-able: the three columns as little-endian bytes, then the flat label sets."""
        return [self.sidx.astype("<i4").tobytes(), self.ts.astype("<i8").tobytes(),
                self.vals.astype("<f8").tobytes(),
                [[*chain.from_iterable(lb)] for lb in self.labels]]  # fmt: skip

    @classmethod
    def from_wire(cls, w: Sequence[Any], num_series: int) -> Exemplars:
        """Inverse of :meth:`to_wire`; ValueError when malformed."""
        if not isinstance(w, list | tuple) or len(w) != 4:
            raise ValueError("exemplar section is not [sidx, ts, vals, labels]")
        sidx = np.frombuffer(w[0], "<i4")
        ts = np.frombuffer(w[1], "<i8")
        vals = np.frombuffer(w[2], "<f8")
        if not all(isinstance(x, str) for f in w[3] for x in f):
            raise ValueError("exemplar labels are not strings")
        labels = [tuple(zip(f[0::2], f[1::2], strict=True)) for f in w[3]]
        if len(sidx) and (sidx.min() < 0 or sidx.max() >= num_series):
            raise ValueError("exemplar series index out of range")
        return cls(sidx, ts, vals, labels)

    @staticmethod
    def concat(parts: Sequence[tuple[Exemplars, np.ndarray]]) -> Exemplars | None:
        """Exemplars of several batches, each with its series renumbering (old -> new)."""
        if not parts:
            return None
        return Exemplars(np.concatenate([remap[e.sidx] for e, remap in parts]),
                         np.concatenate([e.ts for e, _ in parts]),
                         np.concatenate([e.vals for e, _ in parts]),
                         [lb for e, _ in parts for lb in e.labels])  # fmt: skip
