"""The tag index of one shard: label name → label value → postings (sorted series ids).

Postings are appended as series are created (ids only grow, so lists stay sorted) and turned
into int32 arrays lazily; set algebra runs on numpy (``intersect1d``/``setdiff1d``/``union1d``).
Regex matchers test each distinct value of the label once, never each series.

Metadata comes from the index too: beside the postings, each label name keeps a column of
``(series id, value code)`` pairs in id order, so the label names and values of a set of matched
series are found with numpy (a gather, or a ``searchsorted`` against the smaller side, then a
mask over the value codes), never by walking each series' labels in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from filodb.model.labels import Labels, Matcher

_EMPTY = np.zeros(0, np.int32)


class _Postings:
    __slots__ = ("_list", "_arr")

    def __init__(self) -> None:
        self._list: list[int] | None = []
        self._arr: np.ndarray | None = _EMPTY

    @classmethod
    def of(cls, arr: np.ndarray) -> _Postings:
        """Postings holding the sorted int32 ids ``arr`` (a list only once one is added)."""
        p = cls.__new__(cls)  # no __init__: one of these per label value after a purge
        p._list, p._arr = None, arr
        return p

    def add(self, sid: int) -> None:
        if self._list is None:
            assert self._arr is not None
            self._list = self._arr.tolist()
        self._list.append(sid)
        self._arr = None

    def array(self) -> np.ndarray:
        if self._arr is None:
            self._arr = np.array(self._list, np.int32)
        return self._arr


class _Column:
    """One label name's values per series: ``sids`` (increasing) and ``codes`` (index into
    ``values``), in doubling numpy buffers."""

    __slots__ = ("_sids", "_codes", "n", "values", "code_of")

    def __init__(self) -> None:
        self._sids = np.zeros(8, np.int32)
        self._codes = np.zeros(8, np.int32)
        self.n = 0
        self.values: list[str] = []
        self.code_of: dict[str, int] = {}

    def add(self, sid: int, value: str) -> None:
        code = self.code_of.get(value)
        if code is None:
            code = self.code_of[value] = len(self.values)
            self.values.append(value)
        if self.n == len(self._sids):
            self._sids = np.concatenate([self._sids, np.zeros(self.n, np.int32)])
            self._codes = np.concatenate([self._codes, np.zeros(self.n, np.int32)])
        self._sids[self.n] = sid
        self._codes[self.n] = code
        self.n += 1

    def sids(self) -> np.ndarray:
        return self._sids[: self.n]

    def codes(self) -> np.ndarray:
        return self._codes[: self.n]

    def codes_of(self, ids: np.ndarray, dense: bool) -> np.ndarray:
        """Value codes of the series in ``ids`` (sorted, unique) that have this label."""
        codes = self._codes[: self.n]
        if dense:  # every series has the label: sids is 0..n-1
            return codes[ids]
        sids = self._sids[: self.n]
        if len(ids) <= self.n:
            pos = np.minimum(np.searchsorted(sids, ids), self.n - 1)
            return codes[pos[sids[pos] == ids]]
        pos = np.minimum(np.searchsorted(ids, sids), len(ids) - 1)
        return codes[ids[pos] == sids]

    def any_of(self, ids: np.ndarray, dense: bool) -> bool:
        """Whether a series in ``ids`` has this label."""
        if dense or self.n == 0:
            return self.n > 0 and len(ids) > 0
        return len(self.codes_of(ids, False)) > 0


class TagIndex:
    """Postings per (label name, value). Not thread-safe: the owning shard locks."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, _Postings]] = {}
        self._columns: dict[str, _Column] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, sid: int, labels: Labels) -> None:
        """Index a new series; ``sid`` must be larger than every id added before."""
        for name, value in labels:
            self._by_name.setdefault(name, {}).setdefault(value, _Postings()).add(sid)
            col = self._columns.get(name)
            if col is None:
                col = self._columns[name] = _Column()
            col.add(sid, value)
        self._count = max(self._count, sid + 1)

    def compact(self, keep: np.ndarray) -> None:
        """Forget the series where the bool array ``keep`` (one entry per id) is False and
        renumber the others ``0..n-1`` in their order (the shard purges with it). Per label
        name a few numpy calls; values no series has any more are dropped with their postings."""
        remap = np.cumsum(keep, dtype=np.int64) - 1
        for name in list(self._columns):
            col = self._columns[name]
            sids, codes = col.sids(), col.codes()
            live = keep[sids]
            sids, codes = remap[sids[live]].astype(np.int32), codes[live]
            if len(sids) == 0:
                del self._columns[name], self._by_name[name]
                continue
            used, codes = np.unique(codes, return_inverse=True)
            codes = codes.astype(np.int32)
            new = _Column()
            new._sids, new._codes, new.n = sids, codes, len(sids)
            new.values = [col.values[c] for c in used.tolist()]
            new.code_of = dict(zip(new.values, range(len(new.values)), strict=True))
            order = np.argsort(codes, kind="stable")  # ids stay sorted within a value
            bounds = np.searchsorted(codes[order], np.arange(len(used) + 1))
            by_value = {
                v: _Postings.of(sids[order[a:b]])
                for v, a, b in zip(
                    new.values, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True
                )
            }
            self._columns[name], self._by_name[name] = new, by_value
        self._count = int(keep.sum())

    def all_ids(self) -> np.ndarray:
        return np.arange(self._count, dtype=np.int32)

    def _union(self, name: str, accept: Callable[[str], bool]) -> np.ndarray:
        """Sorted ids of series whose value of ``name`` ``accept`` takes. The postings of one
        label's values are disjoint, so few ids are one sort of their concatenation; many are
        one pass over the label's column (already in id order), with no sort at all."""
        col = self._columns.get(name)
        if col is None:
            return _EMPTY
        postings = self._by_name[name]
        codes = [c for c, v in enumerate(col.values) if accept(v)]
        if not codes:
            return _EMPTY
        if len(codes) == 1:
            return postings[col.values[codes[0]]].array()
        arrays = [postings[col.values[c]].array() for c in codes]
        if sum(len(a) for a in arrays) * 4 < col.n:
            return np.sort(np.concatenate(arrays))
        keep = np.zeros(len(col.values), bool)
        keep[codes] = True
        return col.sids()[keep[col.codes()]]

    def _matching_values(self, m: Matcher) -> np.ndarray:
        """Ids of series that have label ``m.name`` with a value ``m`` accepts."""
        if m.op == "=":
            p = self._by_name.get(m.name, {}).get(m.value)
            return p.array() if p is not None else _EMPTY
        return self._union(m.name, m.matches)

    def _rejected(self, m: Matcher) -> np.ndarray:
        """Ids of series whose value of ``m.name`` the matcher refuses (for matchers that
        accept ""; series without the label are never refused by them)."""
        return self._union(m.name, lambda v: not m.matches(v))

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

    def label_names(self, ids: np.ndarray | None = None) -> list[str]:
        """Sorted label names of the series in ``ids`` (sorted, unique; all series for None)."""
        if ids is None or len(ids) == self._count:
            return sorted(self._columns)
        if len(ids) == 0:
            return []
        return sorted(
            name for name, col in self._columns.items() if col.any_of(ids, col.n == self._count)
        )

    def label_values(self, name: str, ids: np.ndarray | None = None) -> list[str]:
        """Sorted values of label ``name`` among the series in ``ids`` (sorted, unique; all
        series for None): one numpy pass over the ids, one Python step per distinct value."""
        col = self._columns.get(name)
        if col is None:
            return []
        if ids is None or len(ids) == self._count:
            return sorted(col.values)
        if len(ids) == 0:
            return []
        present = np.zeros(len(col.values), bool)
        present[col.codes_of(ids, col.n == self._count)] = True
        values = col.values
        return sorted(values[i] for i in np.flatnonzero(present).tolist())

    def label_counts(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """Per label name: its distinct values and the series of each (posting lengths),
        one ``bincount`` over the label's value codes per name (cardinality stats)."""
        return {name: (list(col.values), np.bincount(col.codes(), minlength=len(col.values)))
                for name, col in self._columns.items()}  # fmt: skip
