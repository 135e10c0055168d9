"""The head of a shard: the samples of its series not yet closed into chunks, in one pool.

The pool is two 2-D arrays, ``ts`` (int32: milliseconds after the series' ``base``, its
head's first sample) and ``vals`` (float64), whose rows are pages of ``page_rows`` samples:
12 bytes a sample. A series with unclosed samples owns up to ``J`` pages (``pages[sid, j]`` holds its
rows ``j*P .. j*P+P-1``; -1: none), so a full head of ``max_rows`` samples is ``J`` pages and
an idle series holds none. Pages come from a free list and go back to it when a series
closes.

Appending a batch (grouped by series) is a handful of numpy calls whatever the number of series
in it: each sample's position is its series' count plus its rank in its group, the pages the
positions need are taken from the free list at once, and one scatter writes timestamps and
values. Samples past ``max_rows``, or more than 2**31 ms away from their series' base, are
handed back: the shard closes those series and appends them again.

Reading (for a close, a flush or a query) gathers the used pages of many series with one fancy
index; series that took an out-of-order sample (``ordered`` False) are sorted by timestamp,
keeping the last written sample of a timestamp (last write wins, as Prometheus).
"""

from __future__ import annotations

import numpy as np

_PAGE_ROWS = 32
_KEEP_FREE = 1024  # free pages a pool may keep without being compacted
_I32 = np.iinfo(np.int32)


class Head:
    """Unclosed samples of a shard's series, ``max_rows`` at most per series. Not thread-safe:
    the owning shard locks."""

    def __init__(self, max_rows: int, page_rows: int = _PAGE_ROWS) -> None:
        self.max_rows = int(max_rows)
        self.page_rows = min(int(page_rows), self.max_rows)
        self.pages_per_series = -(-self.max_rows // self.page_rows)
        self.pages = np.full((0, self.pages_per_series), -1, np.int32)
        self.count = np.zeros(0, np.int64)  # samples held per series
        self.ordered = np.ones(0, bool)  # the series' samples arrived in increasing order
        self.base = np.zeros(0, np.int64)  # timestamps are held as offsets from this
        self.ts = np.empty((0, self.page_rows), np.int32)
        self.vals = np.empty((0, self.page_rows), np.float64)
        self._free = np.zeros(0, np.int32)  # a stack of free page ids
        self._n_free = 0

    @property
    def num_series(self) -> int:
        return len(self.count)

    @property
    def nbytes(self) -> int:
        """The pool (used or free pages) and the per-series arrays."""
        return (self.ts.nbytes + self.vals.nbytes + self._free.nbytes + self.pages.nbytes
                + self.count.nbytes + self.ordered.nbytes + self.base.nbytes)  # fmt: skip

    @property
    def samples(self) -> int:
        return int(self.count.sum())

    def add_series(self, k: int) -> None:
        """Room for ``k`` more series (ids follow the existing ones)."""
        self.pages = np.concatenate([self.pages, np.full((k, self.pages_per_series), -1, np.int32)])
        self.count = np.concatenate([self.count, np.zeros(k, np.int64)])
        self.ordered = np.concatenate([self.ordered, np.ones(k, bool)])
        self.base = np.concatenate([self.base, np.zeros(k, np.int64)])

    # --- pages ----------------------------------------------------------------------------
    def _alloc(self, m: int) -> np.ndarray:
        if self._n_free < m:
            have = len(self.ts)
            grow = max(have // 4, m - self._n_free, 64)
            # realloc (mremap for large pools): no copy; nothing else views the pool
            self.ts.resize((have + grow, self.page_rows), refcheck=False)
            self.vals.resize((have + grow, self.page_rows), refcheck=False)
            self._push(np.arange(have + grow - 1, have - 1, -1, dtype=np.int32))
        self._n_free -= m
        return self._free[self._n_free : self._n_free + m].copy()

    def _push(self, ids: np.ndarray) -> None:
        need = self._n_free + len(ids)
        if need > len(self._free):
            grown = np.empty(max(need, 2 * len(self._free)), np.int32)
            grown[: self._n_free] = self._free[: self._n_free]
            self._free = grown
        self._free[self._n_free : need] = ids
        self._n_free = need

    # --- writing --------------------------------------------------------------------------
    def append(
        self, sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, in_order: np.ndarray
    ) -> np.ndarray:
        """Append samples grouped by series (arrival order kept within a series);
        ``in_order``: the sample is newer than everything its series held before. Returns the
        mask of the samples that did not fit (their series reached ``max_rows``)."""
        n = len(sid)
        starts = group_starts(sid)
        sizes = np.diff(np.r_[starts, n])
        uniq = sid[starts]
        fresh = self.count[uniq] == 0
        self.base[uniq[fresh]] = ts[starts[fresh]]
        pos = self.count[sid] + (np.arange(n) - np.repeat(starts, sizes))
        off = ts - self.base[sid]
        fits = (pos < self.max_rows) & (off >= _I32.min) & (off <= _I32.max)
        if not fits.all():  # from a sample that does not fit, the rest of its series waits
            bad = np.cumsum(~fits)
            fits = bad == np.repeat(bad[starts] - ~fits[starts], sizes)
            sid, off, vals, pos, in_order = (
                sid[fits],
                off[fits],
                vals[fits],
                pos[fits],
                in_order[fits],
            )
        self.ordered[sid[~in_order]] = False
        j, slot = np.divmod(pos, self.page_rows)
        page = self.pages[sid, j]
        need = page < 0
        if need.any():
            ns, nj = sid[need], j[need]
            first = group_starts(ns * self.pages_per_series + nj)
            self.pages[ns[first], nj[first]] = self._alloc(len(first))
            page = self.pages[sid, j]
        self.ts[page, slot] = off
        self.vals[page, slot] = vals
        self.count[uniq] += np.add.reduceat(fits, starts)
        return ~fits

    def release(self, sids: np.ndarray) -> None:
        """Forget the series' unclosed samples; their pages go back to the free list."""
        pg = self.pages[sids]
        self._push(pg[pg >= 0])
        self.pages[sids] = -1
        self.count[sids] = 0
        self.ordered[sids] = True
        if self._n_free > 2 * (len(self.ts) - self._n_free) + _KEEP_FREE:
            self._compact()

    def keep_series(self, keep: np.ndarray) -> None:
        """Forget the series not in the mask ``keep`` (their pages go back to the pool); the
        kept ones are renumbered in order, as the shard renumbers them after a purge."""
        self.release(np.flatnonzero(~keep))
        self.pages = self.pages[keep]
        self.count = self.count[keep]
        self.ordered = self.ordered[keep]
        self.base = self.base[keep]

    def _compact(self) -> None:
        """Move the used pages to the front of the pool and give the rest back: series that
        scrape together fill and close together, and the pool must not stay at that peak."""
        held = self.pages >= 0
        used = self.pages[held]
        u = len(used)
        self.ts[:u] = self.ts[used]
        self.vals[:u] = self.vals[used]
        self.pages[held] = np.arange(u, dtype=np.int32)
        cap = u + u // 4 + _KEEP_FREE // 2
        if cap < len(self.ts):
            self.ts.resize((cap, self.page_rows), refcheck=False)
            self.vals.resize((cap, self.page_rows), refcheck=False)
        self._free = np.arange(len(self.ts) - 1, u - 1, -1, dtype=np.int32)
        self._n_free = len(self._free)

    # --- reading --------------------------------------------------------------------------
    def read(self, sids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples of ``sids``, each series sorted and without repeated timestamps:
        (timestamps, values, counts per series)."""
        cnt = self.count[sids]
        if not cnt.any():
            return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(len(sids), np.int64)
        p = self.page_rows
        used = -(-cnt // p)
        held = np.arange(self.pages_per_series) < used[:, None]
        pg = self.pages[sids][held]  # series by series, pages in order
        rows = np.minimum(p, np.repeat(cnt, used) - p * (np.cumsum(held, axis=1)[held] - 1))
        valid = (np.arange(p) < rows[:, None]).ravel()
        owner = np.repeat(np.arange(len(sids)), cnt)
        ts = self.ts[pg].ravel()[valid] + self.base[sids][owner]
        vals = self.vals[pg].ravel()[valid]
        if self.ordered[sids].all():
            return ts, vals, cnt
        order = np.lexsort((ts, owner))  # stable: a timestamp's samples stay in write order
        ts, vals, owner = ts[order], vals[order], owner[order]
        last = np.r_[(owner[1:] != owner[:-1]) | (ts[1:] != ts[:-1]), True]
        return ts[last], vals[last], np.bincount(owner[last], minlength=len(sids))

    def oldest(self, sids: np.ndarray) -> np.ndarray:
        """The oldest unclosed timestamp of each series (int64 max for none)."""
        out = np.full(len(sids), np.iinfo(np.int64).max, np.int64)
        has = self.count[sids] > 0
        if has.any():
            ts, _, cnt = self.read(sids[has])
            out[has] = ts[np.r_[0, np.cumsum(cnt)[:-1]]]
        return out


def group_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal ``keys`` begins (``keys`` grouped; none when empty)."""
    n = len(keys)
    m = np.empty(n, bool)
    if n:
        m[0] = True
        np.not_equal(keys[1:], keys[:-1], out=m[1:])
    return np.flatnonzero(m)
