"""The tag index of one shard: label name → label value → postings (sorted series ids).

Postings are appended as series are created (ids only grow, so lists stay sorted) and turned
into int32 arrays lazily; set algebra runs on numpy (``intersect1d``/``setdiff1d``/``union1d``).
Regex matchers test each distinct value of the label once, never each series.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from filodb.model.labels import Labels, Matcher

_EMPTY = np.zeros(0, np.int32)


class _Postings:
    __slots__ = ("_list", "_arr")

    def __init__(self) -> None:
        self._list: list[int] = []
        self._arr: np.ndarray | None = _EMPTY

    def add(self, sid: int) -> None:
        self._list.append(sid)
        self._arr = None

    def array(self) -> np.ndarray:
        if self._arr is None:
            self._arr = np.array(self._list, np.int32)
        return self._arr


class TagIndex:
    """Postings per (label name, value). Not thread-safe: the owning shard locks."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, _Postings]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, sid: int, labels: Labels) -> None:
        """Index a new series; ``sid`` must be larger than every id added before."""
        for name, value in labels:
            self._by_name.setdefault(name, {}).setdefault(value, _Postings()).add(sid)
        self._count = max(self._count, sid + 1)

    def all_ids(self) -> np.ndarray:
        return np.arange(self._count, dtype=np.int32)

    def _matching_values(self, m: Matcher) -> np.ndarray:
        """Ids of series that have label ``m.name`` with a value ``m`` accepts."""
        values = self._by_name.get(m.name, {})
        if m.op == "=":
            p = values.get(m.value)
            return p.array() if p is not None else _EMPTY
        arrays = [p.array() for v, p in values.items() if m.matches(v)]
        if not arrays:
            return _EMPTY
        return np.unique(np.concatenate(arrays)) if len(arrays) > 1 else arrays[0]

    def _rejected(self, m: Matcher) -> np.ndarray:
        """Ids of series whose value of ``m.name`` the matcher refuses (for matchers that
        accept ""; series without the label are never refused by them)."""
        arrays = [p.array() for v, p in self._by_name.get(m.name, {}).items() if not m.matches(v)]
        if not arrays:
            return _EMPTY
        return np.unique(np.concatenate(arrays)) if len(arrays) > 1 else arrays[0]

    def match_one(self, m: Matcher) -> np.ndarray:
        if m.matches_empty():  # series without the label match too: all but the refused
            return np.setdiff1d(self.all_ids(), self._rejected(m), assume_unique=True)
        return self._matching_values(m)

    def match(self, matchers: Sequence[Matcher]) -> np.ndarray:
        """Sorted int32 ids of series matching every matcher (all series for none).

        Selective matchers (those that refuse "") narrow first by postings; the others then
        only remove the series whose value they refuse (``!=`` is one postings list)."""
        ordered = sorted(matchers, key=lambda m: (m.matches_empty(), m.op != "="))
        result: np.ndarray | None = None
        for m in ordered:
            if m.matches_empty():
                base = self.all_ids() if result is None else result
                result = np.setdiff1d(base, self._rejected(m), assume_unique=True)
            else:
                ids = self._matching_values(m)
                result = ids if result is None else np.intersect1d(result, ids, assume_unique=True)
            if len(result) == 0:
                return _EMPTY
        return self.all_ids() if result is None else result.astype(np.int32, copy=False)

    def label_names(self) -> list[str]:
        return sorted(self._by_name)

    def label_values(self, name: str) -> list[str]:
        return sorted(self._by_name.get(name, {}))
