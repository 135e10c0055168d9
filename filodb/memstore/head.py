"""The head of a shard: the samples of its series not yet closed into chunks, compressed as they
are appended, in one pool of pages.

Each series' unclosed samples are a byte stream in pages of ``page_bytes`` bytes from one pool
(``pool``, a 2-D uint8 array; ``nxt[page]`` is the series' next page, ``first``/``last`` its
first and last, ``nbytes`` the bytes written), so an idle series holds no page and a full one
the bytes its samples took. A sample is encoded against its series' previous one (:func:`_enc`):

- a header byte: bit 7 set when the timestamp's delta of delta is 0 (a regular scrape: no
  timestamp byte), bits 5-6 the value's mode, bits 0-2 a decimal exponent;
- the delta of delta, a zigzag varint, when it is not 0;
- the value. Mode 0: the previous value's bits again (nothing more). Mode 1: a decimal
  ``m / 10**e`` with the previous value's exponent ``e``, as the zigzag varint of ``m`` minus
  the previous ``m``. Mode 2: a decimal with a new exponent (bits 0-2), the zigzag varint of
  ``m``. Mode 3: the value's 8 bytes.

A value is taken as a decimal only when ``m / 10**e`` gives its exact bits back (NaNs, stale
markers, infinities, -0.0 and values with more than 7 decimals go raw), so the head is
lossless. Exporters' counters and gauges of a few decimals take 1-3 bytes a sample, against 12
uncompressed (an int32 offset and a float64); a head's first sample's timestamp is its
``base``, kept per series. Decoding is sequential per series (one numba call for many).

Appending a batch (grouped by series) is two numba calls whatever the number of series in it
(:func:`_plan`: which samples fit; :func:`_write`: each sample encoded onto its series' stream,
pages off the free list as the stream reaches them; when the free list runs out it stops
before a sample, the pool grows and it goes on from there). Samples past ``soft_rows`` (or
``max_rows``), or more than 2**31 ms away from their series' base, are handed back: the shard
closes those series and appends them again.

Bulk heads: a head holds ``soft_rows`` samples, except one whose first sample came less than
``bulk_s`` seconds ago (backfill, replay: data arriving far faster than it is scraped), which
goes on up to ``max_rows`` (the chunk it will close into: encoded once, instead of re-encoded
each time a ``soft_rows`` head grows its chunk). The samples held past ``soft_rows`` are at
most ``bulk_extra`` per head pool, so memory stays bounded whatever comes.

Reading (for a close, a flush or a query) decodes the streams of many series in one call;
series that took an out-of-order sample (``ordered`` False) are sorted by timestamp, keeping the
last written sample of a timestamp (last write wins, as Prometheus).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numba as nb
import numpy as np

from filodb.encoding.blocks import put_sv
from filodb.encoding.kernels import _unzigzag  # the chunk codecs' own
from filodb.memstore.rows import extend_rows, held_nbytes
from filodb.model.borrow import borrowed

PAGE_BYTES = 64  # a 120-sample head of an exporter's series takes 2-6 pages
# free pages a pool may keep without being compacted (per shard: hundreds of shards a node)
_KEEP_FREE = 128
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1  # a head's samples stay this close to its base
BULK_S = 60.0  # a head filled this soon after its first sample may grow past ``soft_rows``
BULK_EXTRA = 1 << 20  # samples held past ``soft_rows`` by all heads of a pool
_MAX_SAMPLE_BYTES = 16  # header, a varint of a delta of delta within 2**33, 8 value bytes
_P10 = np.array([10.0**e for e in range(8)])  # exact in float64


# a series' state, one row of int64 (a cache line): its samples, its head's first timestamp, the
# encoder's state after its last sample (timestamp, delta, value bits, decimal mantissa) and
# two packed words; a row of zeros is an empty head
_COUNT, _BASE, _LAST_T, _LAST_D, _LAST_BITS, _LAST_M, _META, _PAGES = range(8)
# _META: bytes of the stream (bits 0-19), decimal exponent + 1 (20-27; 0: not a decimal), an
# out-of-order sample taken (28), clock() at the head's first sample in 1/16 s (29-63)
# _PAGES: first page + 1 (bits 0-31), last page + 1 (32-63); 0: none
_BORN_Q = 16.0


class Head:
    """Unclosed samples of a shard's series, ``max_rows`` at most per series. Not thread-safe:
    the owning shard locks."""

    def __init__(self, max_rows: int, page_bytes: int = PAGE_BYTES, *, soft_rows: int = 0,
                 bulk_s: float = BULK_S, bulk_extra: int = BULK_EXTRA,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_rows = int(max_rows)
        if self.max_rows * _MAX_SAMPLE_BYTES >= 1 << 20:
            raise ValueError(f"a head holds at most {(1 << 20) // _MAX_SAMPLE_BYTES - 1} samples")
        self.soft_rows = min(int(soft_rows), self.max_rows) if soft_rows > 0 else self.max_rows
        self.bulk_s = float(bulk_s)
        self.bulk_extra = int(bulk_extra)
        self.clock = clock
        self.extra = 0  # samples held past soft_rows, all series together
        self.page_bytes = max(_MAX_SAMPLE_BYTES, int(page_bytes))
        self.st = np.zeros((0, 8), np.int64)  # per series, see _COUNT...
        self.pool = np.empty((0, self.page_bytes), np.uint8)
        self.nxt = np.empty(0, np.int32)  # a page's successor in its series' stream
        self._free = np.zeros(0, np.int32)  # a stack of free page ids
        self._n_free = 0

    # --- per-series views ---------------------------------------------------------------
    @property
    def count(self) -> np.ndarray:
        """Samples held per series (a view)."""
        return self.st[:, _COUNT]

    @property
    def base(self) -> np.ndarray:
        """Each head's first timestamp (a view; meaningless where ``count`` is 0)."""
        return self.st[:, _BASE]

    @property
    def last_t(self) -> np.ndarray:
        """Each head's last written timestamp (a view)."""
        return self.st[:, _LAST_T]

    @property
    def ordered(self) -> np.ndarray:
        """Whether each series' samples arrived in increasing order (a copy)."""
        return self.ordered_of(slice(None))

    def ordered_of(self, sids: np.ndarray | slice) -> np.ndarray:
        """:attr:`ordered` of ``sids`` only."""
        return (self.st[sids, _META] >> 28) & 1 == 0

    @property
    def nbytes_of(self) -> np.ndarray:
        """Bytes of each series' stream (a copy)."""
        return self.st[:, _META] & 0xFFFFF

    @property
    def first(self) -> np.ndarray:
        return (self.st[:, _PAGES] & 0xFFFFFFFF) - 1

    @property
    def last(self) -> np.ndarray:
        return (self.st[:, _PAGES] >> 32) - 1

    @property
    def num_series(self) -> int:
        return len(self.st)

    @property
    def nbytes(self) -> int:
        """The pool (used or free pages) and the per-series state."""
        return self.pool.nbytes + self.nxt.nbytes + self._free.nbytes + held_nbytes(self.st)

    @property
    def used_bytes(self) -> int:
        """Bytes of the series' streams (pages partly used counted in full)."""
        return (len(self.pool) - self._n_free) * self.page_bytes

    @property
    def samples(self) -> int:
        return int(self.count.sum())

    def add_series(self, k: int) -> None:
        """Room for ``k`` more series (ids follow the existing ones)."""
        self.st = extend_rows(self.st, k, 0)

    # --- pages ----------------------------------------------------------------------------
    def _reserve(self, m: int) -> None:
        """At least ``m`` free pages (the pool grows by an eighth at least: a head that fills
        page by page keeps little more than it uses)."""
        if self._n_free < m:
            have = len(self.pool)
            grow = max(have // 8, m - self._n_free, 16)
            # realloc (mremap for large pools): no copy; nothing else views the pool
            self.pool.resize((have + grow, self.page_bytes), refcheck=False)
            self.nxt.resize(have + grow, refcheck=False)
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
        clock = self.clock()
        now = max(0, int(clock * _BORN_Q))
        since = int(np.floor((clock - self.bulk_s) * _BORN_Q))
        self.extra += int(_plan(sid, ts, self.st, self.max_rows, fits, self.soft_rows, since,
                                max(0, self.bulk_extra - self.extra)))  # fmt: skip
        at = 0
        buf = np.empty(_MAX_SAMPLE_BYTES, np.uint8)  # a sample's bytes, as the encoder writes them
        while True:  # resumed where the free pages ran out, with more
            self._n_free, at = _write(sid, ts, vals, vals.view(np.uint64), in_order, fits,
                                      self.st, self.pool, self.nxt, self._free, self._n_free,
                                      now, buf, at)  # fmt: skip
            if at < 0:
                break
            left = int(fits[at:].sum())  # ~3 bytes a sample, more if it takes more
            self._reserve(self._n_free + 1 + 3 * left // self.page_bytes)
        return ~fits

    def release(self, sids: np.ndarray) -> None:
        """Forget the series' unclosed samples; their pages go back to the free list."""
        sids = np.asarray(sids, np.int64)
        held = sids[self.st[sids, _META] & 0xFFFFF > 0]
        if len(held):
            self._push(_pages_of(held, self.st, self.nxt, self.page_bytes))
        if self.soft_rows < self.max_rows:
            self.extra -= int(np.maximum(self.st[sids, _COUNT] - self.soft_rows, 0).sum())
        self.st[sids] = 0
        if self._n_free > 2 * (len(self.pool) - self._n_free) + _KEEP_FREE:
            self._compact()

    def keep_series(self, keep: np.ndarray) -> None:
        """Forget the series not in the mask ``keep`` (their pages go back to the pool); the
        kept ones are renumbered in order, as the shard renumbers them after a purge."""
        self.release(np.flatnonzero(~keep))
        self.st = self.st[keep]

    def _compact(self) -> None:
        """Move the used pages to the front of the pool and give the rest back: series that
        scrape together fill and close together, and the pool must not stay at that peak."""
        used = np.ones(len(self.pool), bool)
        used[self._free[: self._n_free]] = False
        old = np.flatnonzero(used)
        u = len(old)
        new_of = np.full(len(self.pool) + 1, -1, np.int64)  # [-1] maps -1 to -1
        new_of[old] = np.arange(u)
        self.pool[:u] = self.pool[old]
        self.nxt[:u] = new_of[self.nxt[old]]
        held = np.flatnonzero(self.st[:, _PAGES] != 0)
        pages = self.st[held, _PAGES]
        self.st[held, _PAGES] = ((new_of[(pages & 0xFFFFFFFF) - 1] + 1)
                                 | ((new_of[(pages >> 32) - 1] + 1) << 32))  # fmt: skip
        cap = u + u // 8 + _KEEP_FREE // 2
        if cap < len(self.pool):
            self.pool.resize((cap, self.page_bytes), refcheck=False)
            self.nxt.resize(cap, refcheck=False)
        self._free = np.arange(len(self.pool) - 1, u - 1, -1, dtype=np.int32)
        self._n_free = len(self._free)

    # --- reading --------------------------------------------------------------------------
    def decode(self, sids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples of ``sids`` in write order: (timestamps, values, offsets: series ``i``'s
        are ``offsets[i]:offsets[i+1]``)."""
        return self._decode(np.ascontiguousarray(sids, np.int64))

    def _decode(self, sids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decode` of ``sids`` (int64; -1: none)."""
        offsets = np.zeros(len(sids) + 1, np.int64)
        np.cumsum(np.where(sids >= 0, self.st[sids, _COUNT], 0), out=offsets[1:])
        n = int(offsets[-1])
        ts = np.empty(n, np.int64)
        vals = np.empty(n, np.float64)
        if n:
            _decode(sids, offsets, self.st, self.pool, self.nxt, ts, vals, vals.view(np.uint64),
                    _P10)  # fmt: skip
        return ts, vals, offsets

    def decode_in(self, sids: np.ndarray, start_ms: int, end_ms: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """As :meth:`decode`, but a head that cannot hold a sample in ``[start_ms, end_ms]``
        (an ordered one: its samples lie from its base to its last timestamp) is not decoded
        and reads as empty."""
        sids = np.ascontiguousarray(sids, np.int64)
        row = self.st[sids]
        skip = self.ordered_of(sids) & ((row[:, _BASE] > end_ms) | (row[:, _LAST_T] < start_ms))
        return self._decode(np.where(skip, -1, sids) if skip.any() else sids)

    def read(self, sids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples of ``sids``, each series sorted and without repeated timestamps:
        (timestamps, values, counts per series)."""
        cnt = self.st[sids, _COUNT]
        if not cnt.any():
            return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(len(sids), np.int64)
        ts, vals, _ = self.decode(sids)
        if self.ordered_of(sids).all():
            return ts, vals, cnt
        owner = np.repeat(np.arange(len(sids)), cnt)
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
def _pages_of(sids, st, nxt, page_bytes):  # pragma: no cover - numba
    """The pages of the streams of ``sids`` (each with bytes)."""
    n = 0
    for s in sids:
        n += ((st[s, _META] & 0xFFFFF) + page_bytes - 1) // page_bytes
    out = np.empty(n, np.int32)
    k = 0
    for s in sids:
        pg = (st[s, _PAGES] & 0xFFFFFFFF) - 1
        for _ in range(((st[s, _META] & 0xFFFFF) + page_bytes - 1) // page_bytes):
            out[k] = pg
            k += 1
            pg = nxt[pg]
    return out


@nb.njit(cache=True, nogil=True)
def _decimal(v, bits, e):  # pragma: no cover - numba
    """``(True, m)`` when ``m / 10**e`` is exactly ``v`` (its bits), else ``(False, 0)``."""
    p = _P10[e]  # a global: frozen in the kernel, no array passed (no reference counting)
    if not abs(v) < 9007199254740992.0 / p:  # NaN and infinities too
        return False, np.int64(0)
    m = np.int64(np.rint(v * p))
    # as the decoder computes it; equal floats have equal bits but for 0.0 and -0.0
    if np.float64(m) / p != v or (v == 0.0 and bits != np.uint64(0)):
        return False, np.int64(0)
    return True, m


@nb.njit(cache=True, nogil=True)
def _enc(t, v, bits, lt, ld, lbits, lm, le, buf):  # pragma: no cover - numba
    """Encode the sample ``(t, v)`` (``bits``: ``v``'s) after the state ``lt`` (last
    timestamp), ``ld`` (its delta), ``lbits``, ``lm``, ``le`` (last value's bits, decimal
    mantissa and exponent, -1: none) into ``buf`` (borrowed by the caller: a sample must not
    cost an atomic reference count, model/borrow.py): (bytes, delta, mantissa, exponent)."""
    d = t - lt
    dod = d - ld
    k = 1
    h = 0
    if dod == 0:
        h = 0x80
    else:
        k = put_sv(buf, k, dod)
    m = lm
    e = le
    if bits != lbits:
        done = False
        if le >= 0:
            ok, mm = _decimal(v, bits, le)
            if ok:
                h |= 1 << 5
                k = put_sv(buf, k, mm - lm)
                m = mm
                done = True
        if not done:
            for ee in range(8):
                ok, mm = _decimal(v, bits, ee)
                if ok:
                    h |= (2 << 5) | ee
                    k = put_sv(buf, k, mm)
                    m = mm
                    e = ee
                    done = True
                    break
        if not done:
            h |= 3 << 5
            for q in range(8):
                buf[k + q] = np.uint8((bits >> np.uint64(8 * q)) & np.uint64(0xFF))
            k += 8
            m = 0
            e = -1
    buf[0] = np.uint8(h)
    return k, d, m, e


@nb.njit(cache=True, nogil=True)
def _plan(sid, ts, st, max_rows, fits, soft_rows, bulk_since,
          extra_left):  # pragma: no cover - numba  # fmt: skip
    """``fits`` per sample (a series' samples up to the first that does not fit); returns how
    many of them go past ``soft_rows`` (heads born at ``bulk_since`` or later, ``extra_left``
    at most); changes nothing else."""
    n = len(sid)
    extra = 0
    i = 0
    while i < n:
        s = sid[i]
        c = st[s, _COUNT]
        b = st[s, _BASE] if c > 0 else ts[i]
        bulk = c == 0 or (st[s, _META] >> 29) >= bulk_since
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
            r += 1
        i = r
    return extra


@nb.njit(cache=True, nogil=True)
def _write(sid, ts, vals, vbits, in_order, fits, st, pool, nxt, free, n_free, now, buf,
           r0):  # pragma: no cover - numba  # fmt: skip
    """Encode the samples :func:`_plan` let fit, from sample ``r0`` on, onto their series'
    streams (pages taken off the top of ``free``; a head's first sample stamps its base and
    ``now``). Returns (free pages left, -1), or (free pages left, the sample to resume from)
    when a sample may need a page and none is free: everything before it is written."""
    n = len(sid)
    P = pool.shape[1]
    buf = borrowed(buf)  # a sample's bytes (_MAX_SAMPLE_BYTES), handed to the encoder a sample
    i = r0
    while i < n:
        s = sid[i]
        c = st[s, _COUNT]
        if c == 0:
            st[s, _BASE] = ts[i]
            st[s, _LAST_T] = ts[i]
            st[s, _LAST_D] = 0
            st[s, _LAST_BITS] = 0
            st[s, _LAST_M] = 0
            st[s, _META] = now << 29
            st[s, _PAGES] = 0
        meta = st[s, _META]
        pages = st[s, _PAGES]
        lt, ld, lm = st[s, _LAST_T], st[s, _LAST_D], st[s, _LAST_M]
        lb = np.uint64(st[s, _LAST_BITS])
        le = np.int8(((meta >> 20) & 0xFF) - 1)
        unordered = (meta >> 28) & 1
        at = meta & 0xFFFFF
        first = (pages & 0xFFFFFFFF) - 1
        pg = (pages >> 32) - 1
        o = P if at == 0 else (at - 1) % P + 1  # bytes used of page pg (P: a new one next)
        k_n = 0
        stop = -1
        r = i
        while r < n and sid[r] == s:
            if fits[r]:
                if n_free == 0 and o + _MAX_SAMPLE_BYTES > P:
                    stop = r  # may need a page: the caller adds some, then resumes here
                    break
                k, ld, lm, e = _enc(ts[r], vals[r], vbits[r], lt, ld, lb, lm, le, buf)
                le = np.int8(e)
                lt = ts[r]
                lb = vbits[r]
                for q in range(k):
                    if o == P:  # the stream reaches a new page
                        n_free -= 1
                        new = free[n_free]
                        nxt[new] = -1
                        if at == 0:
                            first = new
                        else:
                            nxt[pg] = new
                        pg = new
                        o = 0
                    pool[pg, o] = buf[q]
                    o += 1
                    at += 1
                if not in_order[r]:
                    unordered = 1
                k_n += 1
            r += 1
        st[s, _COUNT] = c + k_n
        st[s, _LAST_T] = lt
        st[s, _LAST_D] = ld
        st[s, _LAST_BITS] = np.int64(lb)
        st[s, _LAST_M] = lm
        st[s, _META] = (at | (np.int64(le + 1) << 20) | (unordered << 28)
                        | ((meta >> 29) << 29))  # fmt: skip
        st[s, _PAGES] = (first + 1) | ((pg + 1) << 32)
        if stop >= 0:
            return n_free, stop
        i = r
    return n_free, -1


@nb.njit(cache=True, nogil=True, inline="always")
def _uvarint(sc, q):  # pragma: no cover - numba
    """The varint at ``sc[q]`` and the position after it (``sc`` is padded: two bytes are read
    whatever the length, so that one of one or two bytes takes no branch)."""
    b0 = np.uint64(sc[q])
    b1 = np.uint64(sc[q + 1])
    c = b0 >> np.uint64(7)  # 1: a second byte follows
    u = (b0 & np.uint64(0x7F)) | (((b1 & np.uint64(0x7F)) << np.uint64(7)) * c)
    q += 1 + np.int64(c)
    if c == 0 or b1 < np.uint64(0x80):
        return u, q
    sh = np.uint64(14)
    while True:
        b = np.uint64(sc[q])
        q += 1
        u |= (b & np.uint64(0x7F)) << sh
        sh += np.uint64(7)
        if b < np.uint64(0x80):
            return u, q


@nb.njit(cache=True, nogil=True)
def _decode(sids, offsets, st, pool, nxt, out_ts, out_vals, out_bits,
            p10):  # pragma: no cover - numba  # fmt: skip
    """Decode the streams of ``sids`` (-1: none) into ``out_*[offsets[i]:offsets[i+1]]``: each
    stream's pages copied into one buffer, then read without a look at page ends."""
    P = pool.shape[1]
    most = 0
    for i in range(len(sids)):
        if sids[i] >= 0:
            most = max(most, st[sids[i], _META] & 0xFFFFF)
    sc = np.zeros(most + P, np.uint8)
    for i in range(len(sids)):
        s = sids[i]
        if s < 0 or offsets[i + 1] == offsets[i]:
            continue
        size = st[s, _META] & 0xFFFFF
        pg = (st[s, _PAGES] & 0xFFFFFFFF) - 1
        j = 0
        while j < size:  # byte by byte: a slice is a view, counted by numba's runtime
            for x in range(P):
                sc[j + x] = pool[pg, x]
            j += P
            pg = nxt[pg]
        q = 0
        t = st[s, _BASE]
        d = np.int64(0)
        bits = np.uint64(0)  # the last raw value's (a decimal's value is kept as a float:
        prev = 0.0  # no division waits for the one before)
        raw = True
        m = np.int64(0)
        e = 0
        for p in range(offsets[i], offsets[i + 1]):
            h = sc[q]
            q += 1
            if h < 0x80:  # a delta of delta follows
                u, q = _uvarint(sc, q)
                d += _unzigzag(u)
            t += d
            out_ts[p] = t
            mode = (h >> 5) & 3
            if mode == 0:
                if raw:
                    out_bits[p] = bits
                else:
                    out_vals[p] = prev
            elif mode == 3:
                bits = np.uint64(0)
                for k in range(8):
                    bits |= np.uint64(sc[q + k]) << np.uint64(8 * k)
                q += 8
                out_bits[p] = bits
                raw = True
            else:
                u, q = _uvarint(sc, q)
                if mode == 1:
                    m += _unzigzag(u)
                else:
                    m = _unzigzag(u)
                    e = h & 7
                prev = np.float64(m) if e == 0 else np.float64(m) / p10[e]
                out_vals[p] = prev
                raw = False
