"""The tag index of one shard: label name → label value → postings (sorted series ids).

Each label name keeps a column of ``(series id, value code)`` pairs in id order (ids only
grow), and the postings of a value are read from it (a lazily built sort of the column by
code, plus a scan of the entries added since): no Python object per posting. Set algebra runs
on numpy (``intersect1d``/``setdiff1d``/``union1d``). Regex matchers test each distinct value
of the label once, never each series.

Metadata comes from the same columns: the label names and values of a set of matched series
are found with numpy (a gather, or a ``searchsorted`` against the smaller side, then a mask
over the value codes), never by walking each series' labels in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from filodb.model.batch import pick
from filodb.model.labels import Labels, Matcher

_EMPTY = np.zeros(0, np.int32)


class _Column:
    """One label name's values per series: ``sids`` (increasing) and ``codes`` (index into
    ``values``), in doubling numpy buffers. The postings of a value are read from the column:
    ``_order`` sorts its first ``_built`` entries by code (ids stay increasing within a code),
    ``_bounds`` cuts that per code, and the entries added since (the tail) are scanned; the sort
    is redone once the tail passes an eighth of the column. A series costs two int32 entries
    and 4 bytes of sort order per label, not a Python int in a list per posting."""

    __slots__ = ("_sids", "_codes", "n", "values", "code_of", "_order", "_bounds", "_built")

    def __init__(self) -> None:
        self._sids = np.zeros(8, np.int32)
        self._codes = np.zeros(8, np.int32)
        self.n = 0
        self.values: list[str] = []
        self.code_of: dict[str, int] = {}
        self._order = _EMPTY
        self._bounds = np.zeros(1, np.int64)
        self._built = 0

    @classmethod
    def of(cls, sids: np.ndarray, codes: np.ndarray, values: list[str]) -> _Column:
        """A column holding int32 ``sids`` (increasing) with value ``codes`` into ``values``."""
        col = cls()
        col._sids, col._codes, col.n = sids, codes, len(sids)
        col.values = values
        col.code_of = dict(zip(values, range(len(values)), strict=True))
        return col

    def code(self, value: str) -> int:
        """The code of ``value``, a new one (the next) when the column has not had it."""
        code = self.code_of.get(value)
        if code is None:
            code = self.code_of[value] = len(self.values)
            self.values.append(value)
        return code

    def codes_for(self, values: list[str]) -> list[int]:
        """The codes of ``values`` (distinct), new ones (the next, in turn) for values the
        column has not had: one C-level lookup each, then the new ones added at once."""
        got = list(map(self.code_of.get, values))
        if None in got:
            fresh = [v for v, c in zip(values, got, strict=True) if c is None]
            n = len(self.values)
            self.code_of.update(zip(fresh, range(n, n + len(fresh)), strict=True))
            self.values.extend(fresh)
            got = list(map(self.code_of.__getitem__, values))
        return got  # type: ignore[return-value]

    def add(self, sid: int, value: str) -> None:
        code = self.code(value)
        if self.n == len(self._sids):
            self._sids = np.concatenate([self._sids, np.zeros(self.n, np.int32)])
            self._codes = np.concatenate([self._codes, np.zeros(self.n, np.int32)])
        self._sids[self.n] = sid
        self._codes[self.n] = code
        self.n += 1

    def add_many(self, sids: np.ndarray, codes: np.ndarray) -> None:
        """Append entries: ``sids`` (non-decreasing, not below the last one) with ``codes``
        (from :meth:`code`); the buffers double until they hold them."""
        n, k = self.n, len(sids)
        if n + k > len(self._sids):
            cap = max(len(self._sids), 8)
            while cap < n + k:
                cap *= 2
            self._sids = np.concatenate([self._sids[:n], np.zeros(cap - n, np.int32)])
            self._codes = np.concatenate([self._codes[:n], np.zeros(cap - n, np.int32)])
        self._sids[n : n + k] = sids
        self._codes[n : n + k] = codes
        self.n = n + k

    def sids(self) -> np.ndarray:
        return self._sids[: self.n]

    def codes(self) -> np.ndarray:
        return self._codes[: self.n]

    def _sorted(self) -> None:
        """Sort the column by code again once the unsorted tail passes an eighth of it."""
        if self.n - self._built > self._built // 8:
            self._order = np.argsort(self.codes(), kind="stable").astype(np.int32)
            self._bounds = np.searchsorted(
                self._codes[self._order], np.arange(len(self.values) + 1)
            )
            self._built = self.n

    def postings(self, code: int) -> np.ndarray:
        """Sorted ids of the series whose value has ``code``."""
        self._sorted()
        head = _EMPTY
        if code + 1 < len(self._bounds):
            head = self._sids[self._order[self._bounds[code] : self._bounds[code + 1]]]
        if self._built == self.n:
            return head
        tail = self._sids[self._built : self.n][self._codes[self._built : self.n] == code]
        return np.concatenate([head, tail]) if len(head) else tail

    def union(self, codes: list[int]) -> np.ndarray:
        """Sorted ids of the series whose value has one of ``codes`` (distinct): few ids are
        gathered from the sorted column in one step and sorted; many are one pass over it."""
        self._sorted()
        c = np.array(codes, np.int64)
        c = c[c + 1 < len(self._bounds)]
        lo, lens = self._bounds[c], self._bounds[c + 1] - self._bounds[c]
        total = int(lens.sum())
        if (total + self.n - self._built) * 4 >= self.n:
            keep = np.zeros(len(self.values), bool)
            keep[codes] = True
            return self.sids()[keep[self.codes()]]
        at = np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(total)
        head = self._sids[self._order[at]]
        tail = self._sids[self._built : self.n][np.isin(self._codes[self._built : self.n], codes)]
        return np.sort(np.concatenate([head, tail]))

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
        self._columns: dict[str, _Column] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, sid: int, labels: Labels) -> None:
        """Index a new series; ``sid`` must be larger than every id added before."""
        for name, value in labels:
            col = self._columns.get(name)
            if col is None:
                col = self._columns[name] = _Column()
            col.add(sid, value)
        self._count = max(self._count, sid + 1)

    def add_many(self, first: int, counts: np.ndarray, pair_of: np.ndarray,
                 names: Sequence[str], name_of: np.ndarray, values: Sequence[str]
                 ) -> None:  # fmt: skip
        """Index new series ``first, first + 1, ...`` (``first`` larger than every id added
        before), series ``first + s`` having ``counts[s]`` labels. Label ``i`` of them (in
        series order, then label order) is the distinct pair ``pair_of[i]``: pair ``j`` is
        ``names[name_of[j]]``, ``values[j]``. With the pairs numbered by first appearance, as
        :func:`~filodb.model.partkeyscan.decode_part_keys` numbers them, values get the codes
        :meth:`add` would give them one series at a time. Per label name: its pairs' codes
        (a dict lookup each, in C), then one append of its labels."""
        if not len(counts):
            return
        self._count = max(self._count, first + len(counts))
        sids = np.repeat(np.arange(first, first + len(counts), dtype=np.int32), counts)
        if not len(sids):
            return
        code_of = np.empty(len(values), np.int64)
        by_name = np.argsort(name_of, kind="stable")
        cuts = np.searchsorted(name_of[by_name], np.arange(len(names) + 1)).tolist()
        cols = []
        for n, name in enumerate(names):
            col = self._columns.get(name)
            if col is None:
                col = self._columns[name] = _Column()
            cols.append(col)
            at = by_name[cuts[n] : cuts[n + 1]]
            code_of[at] = col.codes_for(pick(values, at.tolist()))
        occ_col, occ_code = name_of[pair_of], code_of[pair_of]
        if len(cols) == 1:
            cols[0].add_many(sids, occ_code)
        else:
            order = np.argsort(occ_col, kind="stable")
            bounds = np.searchsorted(occ_col[order], np.arange(len(cols) + 1)).tolist()
            for c, col in enumerate(cols):
                sel = order[bounds[c] : bounds[c + 1]]
                col.add_many(sids[sel], occ_code[sel])

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
                del self._columns[name]
                continue
            used, codes = np.unique(codes, return_inverse=True)
            values = [col.values[c] for c in used.tolist()]
            self._columns[name] = _Column.of(sids, codes.astype(np.int32), values)
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
        codes = [c for c, v in enumerate(col.values) if accept(v)]
        if not codes:
            return _EMPTY
        if len(codes) == 1:
            return col.postings(codes[0])
        return col.union(codes)

    def _matching_values(self, m: Matcher) -> np.ndarray:
        """Ids of series that have label ``m.name`` with a value ``m`` accepts."""
        if m.op == "=":
            col = self._columns.get(m.name)
            code = None if col is None else col.code_of.get(m.value)
            return _EMPTY if code is None else col.postings(code)  # type: ignore[union-attr]
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
