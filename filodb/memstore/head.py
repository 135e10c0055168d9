"""The head of a shard: the samples of its series not yet closed into chunks, in one pool.

The pool is two 2-D arrays, ``ts`` (int32: milliseconds after the series' ``base``, its
head's first sample) and ``vals`` (float64), whose rows are pages of ``page_rows`` samples:
12 bytes a sample. A series with unclosed samples owns up to ``J`` pages (``pages[sid, j]`` holds its
rows ``j*P .. j*P+P-1``; -1: none), so a full head of ``max_rows`` samples is ``J`` pages and
an idle series holds none. Pages come from a free list and go back to it when a series
closes.

Appending a batch (grouped by series) is one numba call (two when the pool grows) whatever the number of series in it
(:func:`_plan`: which samples fit and how many new pages they need, so the pool grows before
anything changes; :func:`_write`: each sample at its series' count plus its rank in its
group, pages off the free list as positions reach them). Samples past ``soft_rows`` (or
``max_rows``), or more than 2**31 ms away from their series' base, are handed back: the shard
closes those series and appends them again.

Bulk heads: a head holds ``soft_rows`` samples, except one whose first sample came less than
``bulk_s`` seconds ago (backfill, replay: data arriving far faster than it is scraped), which
goes on up to ``max_rows`` (the chunk it will close into: encoded once, instead of re-encoded
each time a ``soft_rows`` head grows its chunk). The samples held past ``soft_rows`` are at
most ``bulk_extra`` per head pool (12 bytes each), so memory stays bounded whatever comes.

Reading (for a close, a flush or a query) gathers the used pages of many series with one fancy
index; series that took an out-of-order sample (``ordered`` False) are sorted by timestamp,
keeping the last written sample of a timestamp (last write wins, as Prometheus).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numba as nb
import numpy as np

from filodb.memstore.rows import extend_rows, held_nbytes

_PAGE_ROWS = 32  # at most; a head's ``soft_rows`` is split evenly into pages of up to this


def even_pages(max_rows: int, most: int = _PAGE_ROWS) -> int:
    """Rows a page holds so that ``max_rows`` is split into as few pages of at most ``most``
    rows as possible, evenly: a full head wastes less than a page (120 rows: 4 pages of 30,
    not 4 of 32)."""
    pages = -(-max(1, int(max_rows)) // max(1, int(most)))
    return -(-max(1, int(max_rows)) // pages)


# free pages a pool may keep without being compacted. Per shard: with 256 shards, 1024 (512
# kept after a compaction) held ~47 MB of empty pages on a node, 430 bytes a series at 110 k
_KEEP_FREE = 128
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1  # a head's timestamp offsets are int32
BULK_S = 60.0  # a head filled this soon after its first sample may grow past ``soft_rows``
BULK_EXTRA = 1 << 20  # samples held past ``soft_rows`` by all heads of a pool (12 MB)


class Head:
    """Unclosed samples of a shard's series, ``max_rows`` at most per series. Not thread-safe:
    the owning shard locks."""

    def __init__(self, max_rows: int, page_rows: int = 0, *, soft_rows: int = 0,
                 bulk_s: float = BULK_S, bulk_extra: int = BULK_EXTRA,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_rows = int(max_rows)
        self.soft_rows = min(int(soft_rows), self.max_rows) if soft_rows > 0 else self.max_rows
        self.bulk_s = float(bulk_s)
        self.bulk_extra = int(bulk_extra)
        self.clock = clock
        self.extra = 0  # samples held past soft_rows, all series together
        # pages split a scraped series' full head (soft_rows) evenly; bulk heads take more
        self.page_rows = min(int(page_rows) or even_pages(self.soft_rows), self.max_rows)
        self.pages_per_series = -(-self.max_rows // self.page_rows)
        self.pages = np.full((0, self.pages_per_series), -1, np.int32)
        self.count = np.zeros(0, np.int64)  # samples held per series
        self.ordered = np.ones(0, bool)  # the series' samples arrived in increasing order
        self.base = np.zeros(0, np.int64)  # timestamps are held as offsets from this
        self.born = np.zeros(0, np.float64)  # clock() when the head took its first sample
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
        return (self.ts.nbytes + self.vals.nbytes + self._free.nbytes
                + sum(held_nbytes(a) for a in (self.pages, self.count, self.ordered,
                                               self.base, self.born)))  # fmt: skip

    @property
    def samples(self) -> int:
        return int(self.count.sum())

    def add_series(self, k: int) -> None:
        """Room for ``k`` more series (ids follow the existing ones)."""
        self.pages = extend_rows(self.pages, k, -1)
        self.count = extend_rows(self.count, k, 0)
        self.ordered = extend_rows(self.ordered, k, True)
        self.base = extend_rows(self.base, k, 0)
        self.born = extend_rows(self.born, k, 0.0)

    # --- pages ----------------------------------------------------------------------------
    def _reserve(self, m: int) -> None:
        """At least ``m`` free pages (the pool grows by an eighth at least: a head that fills
        page by page keeps little more than it uses)."""
        if self._n_free < m:
            have = len(self.ts)
            grow = max(have // 8, m - self._n_free, 16)
            # realloc (mremap for large pools): no copy; nothing else views the pool
            self.ts.resize((have + grow, self.page_rows), refcheck=False)
            self.vals.resize((have + grow, self.page_rows), refcheck=False)
            self._push(np.arange(have + grow - 1, have - 1, -1, dtype=np.int32))

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
        mask of the samples that did not fit (their series reached ``soft_rows``, or
        ``max_rows`` for a bulk head, or the sample is more than 2**31 ms from the series'
        base: from there on the rest of its series)."""
        sid = np.ascontiguousarray(sid, np.int64)  # one compiled signature
        ts = np.ascontiguousarray(ts, np.int64)
        vals = np.ascontiguousarray(vals, np.float64)
        in_order = np.ascontiguousarray(in_order, np.bool_)
        fits = np.empty(len(sid), np.bool_)
        now = float(self.clock())
        extra_left = max(0, self.bulk_extra - self.extra)
        for _ in range(2):  # the second time with the pages the first found missing
            need, extra, n_free = _put(sid, ts, vals, in_order, fits, self.count, self.base,
                                       self.ordered, self.pages, self.ts, self.vals, self._free,
                                       self._n_free, self.born, now, self.max_rows,
                                       self.soft_rows, now - self.bulk_s, extra_left)  # fmt: skip
            if n_free >= 0:
                break
            self._reserve(need)
        self._n_free = n_free
        self.extra += extra
        return ~fits

    def release(self, sids: np.ndarray) -> None:
        """Forget the series' unclosed samples; their pages go back to the free list."""
        pg = self.pages[sids]
        self._push(pg[pg >= 0])
        if self.soft_rows < self.max_rows:
            self.extra -= int(np.maximum(self.count[sids] - self.soft_rows, 0).sum())
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
        self.born = self.born[keep]

    def _compact(self) -> None:
        """Move the used pages to the front of the pool and give the rest back: series that
        scrape together fill and close together, and the pool must not stay at that peak."""
        held = self.pages >= 0
        used = self.pages[held]
        u = len(used)
        self.ts[:u] = self.ts[used]
        self.vals[:u] = self.vals[used]
        self.pages[held] = np.arange(u, dtype=np.int32)
        cap = u + u // 8 + _KEEP_FREE // 2
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


@nb.njit(cache=True, nogil=True)
def _put(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, in_order: np.ndarray,
         fits: np.ndarray, count: np.ndarray, base: np.ndarray, ordered: np.ndarray,
         pages: np.ndarray, pool_ts: np.ndarray, pool_vals: np.ndarray, free: np.ndarray,
         n_free: int, born: np.ndarray, now: float, max_rows: int, soft_rows: int,
         bulk_since: float, extra_left: int) -> tuple[int, int, int]:  # fmt: skip
    """:func:`_plan`, then :func:`_write` when the free list holds the pages needed: (pages
    needed, samples past ``soft_rows``, free pages left; -1: nothing written, too few)."""
    need, extra = _plan(sid, ts, count, base, pages, max_rows, pool_ts.shape[1], fits,
                        soft_rows, born, bulk_since, extra_left)  # fmt: skip
    if need > n_free:
        return need, extra, -1
    n_free = _write(sid, ts, vals, in_order, fits, count, base, ordered, pages, pool_ts,
                    pool_vals, free, n_free, born, now)  # fmt: skip
    return need, extra, n_free


@nb.njit(cache=True, nogil=True)
def _plan(sid: np.ndarray, ts: np.ndarray, count: np.ndarray, base: np.ndarray,
          pages: np.ndarray, max_rows: int, page_rows: int, fits: np.ndarray, soft_rows: int,
          born: np.ndarray, bulk_since: float, extra_left: int) -> tuple[int, int]:  # fmt: skip
    """``fits`` per sample (a series' samples up to the first that does not fit), the
    number of pages the fitting ones need that their series do not hold, and how many of
    them go past ``soft_rows`` (heads born after ``bulk_since``, ``extra_left`` at most);
    changes nothing."""
    n = len(sid)
    need = 0
    extra = 0
    i = 0
    while i < n:
        s = sid[i]
        c = count[s]
        b = base[s] if c > 0 else ts[i]
        bulk = c == 0 or born[s] >= bulk_since
        ok = True
        r = i
        while r < n and sid[r] == s:
            p = c + (r - i)
            off = ts[r] - b
            if ok and (p >= max_rows or off < _I32_MIN or off > _I32_MAX):
                ok = False
            if ok and p >= soft_rows:
                if bulk and extra < extra_left:
                    extra += 1
                else:
                    ok = False
            fits[r] = ok
            if ok and (r == i or p % page_rows == 0) and pages[s, p // page_rows] < 0:
                need += 1
            r += 1
        i = r
    return need, extra


@nb.njit(cache=True, nogil=True)
def _write(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, in_order: np.ndarray,
           fits: np.ndarray, count: np.ndarray, base: np.ndarray, ordered: np.ndarray,
           pages: np.ndarray, pool_ts: np.ndarray, pool_vals: np.ndarray, free: np.ndarray,
           n_free: int, born: np.ndarray, now: float) -> int:  # fmt: skip
    """Write the samples :func:`_plan` let fit (pages taken off the top of ``free``, which
    holds enough; a head's first sample stamps ``born`` with ``now``); returns the free
    pages left."""
    n = len(sid)
    rows = pool_ts.shape[1]
    i = 0
    while i < n:
        s = sid[i]
        c = count[s]
        if c == 0:
            base[s] = ts[i]
            born[s] = now
        b = base[s]
        k = 0
        r = i
        while r < n and sid[r] == s:
            if fits[r]:
                p = c + k
                j = p // rows
                pg = pages[s, j]
                if pg < 0:
                    n_free -= 1
                    pg = free[n_free]
                    pages[s, j] = pg
                pool_ts[pg, p % rows] = ts[r] - b
                pool_vals[pg, p % rows] = vals[r]
                if not in_order[r]:
                    ordered[s] = False
                k += 1
            r += 1
        count[s] = c + k
        i = r
    return n_free
