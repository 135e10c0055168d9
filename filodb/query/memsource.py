"""An in-memory :class:`SeriesSource` for tests and the conformance runner (brute force)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from filodb.model.labels import Labels, Matcher, labels_match
from filodb.model.source import SeriesBlock


class MemorySource:
    """Holds whole series in numpy arrays; matching is brute force over label sets."""

    def __init__(self) -> None:
        self._series: dict[Labels, tuple[np.ndarray, np.ndarray]] = {}

    def clear(self) -> None:
        self._series.clear()

    def add(self, labels: Labels, ts: np.ndarray, vals: np.ndarray) -> None:
        """Add samples to a series, merging by timestamp (later writes win)."""
        ts = np.asarray(ts, np.int64)
        vals = np.asarray(vals, np.float64)
        if labels in self._series:
            ots, ovals = self._series[labels]
            ts = np.concatenate([ots, ts])
            vals = np.concatenate([ovals, vals])
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]
        # keep the last write per timestamp
        keep = np.ones(len(ts), bool)
        keep[:-1] = ts[1:] != ts[:-1]
        self._series[labels] = (ts[keep], vals[keep])

    def _matching(self, matchers: Sequence[Matcher]) -> list[Labels]:
        return [lb for lb in self._series if labels_match(lb, matchers)]

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> SeriesBlock:
        out = []
        for lb in sorted(self._matching(matchers)):
            ts, vals = self._series[lb]
            a, b = np.searchsorted(ts, start_ms, "left"), np.searchsorted(ts, end_ms, "right")
            if b > a:
                out.append((lb, ts[a:b], vals[a:b]))
        return SeriesBlock.from_series(out)

    def series(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Labels]:
        return list(self.select(matchers, start_ms, end_ms).labels)

    def label_names(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[str]:
        names = {k for lb in self.series(matchers, start_ms, end_ms) for k, _ in lb}
        return sorted(names)

    def label_values(
        self, name: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> list[str]:
        vals = {v for lb in self.series(matchers, start_ms, end_ms) for k, v in lb if k == name}
        return sorted(vals)
