"""One shard's memstore: series registry, tag index, write buffers, encoded chunks, flush
groups, eviction and on-demand paging.

Ingest takes :class:`SampleBatch` columns and appends them to the shard's :class:`Head` (the
unclosed samples of every series, compressed, in one paged pool) with a few numba calls, whatever
the number of series in the batch. A sample whose timestamp is not newer than the newest of
its series (in memory, in the column store, or earlier in the same batch) is rejected and
counted, as Prometheus does, unless it is within ``ooo_window_ms`` of that newest sample: then
it is accepted out of order (sorted in when read or closed; a repeated timestamp keeps the last
value written). A series' head holds ``head_samples`` samples (a bulk head, filled within a
minute as by a backfill or a replay, up to ``max_chunk_samples``: :mod:`filodb.memstore.head`);
full heads are closed into encoded :class:`Chunk` s together, one numba call for all of them,
into the series' last chunk while it holds fewer than ``max_chunk_samples``. A chunk holding a sample not newer
than everything closed before it (an out-of-order chunk) overlaps older chunks: its id is a
hash of its content (flagged by bit 62) instead of its start, so it never replaces a stored
chunk, and reads merge the overlap (``_dedupe``: the last written sample of a timestamp wins).

Flush: every series belongs to one of ``num_groups`` flush groups (a hash of its part key).
:meth:`prepare_flush` closes the group's buffers and returns its unflushed chunks and changed
part keys with the log offset they cover; the caller writes them to the column store and then
calls :meth:`commit_flush`, which marks them flushed (evictable) and records the checkpoint.

Memory: past ``memory_budget`` bytes, flushed chunks are evicted oldest first, then the empty
buffers of idle series are freed; a series keeps its labels and index entry. A query for data
older than what memory holds of a series pages it from the column store through ``pager``
(``pager(part_keys, start_ms, end_ms) -> chunk records``), so answers do not change. Paged
chunks are kept in a page cache (``page_cache_bytes``, a :class:`ByteBoundedCache` per shard)
with the range they were read for: a second query over the same old range reads no store and
decodes chunks as an in-memory query does. The store only gains chunks of samples newer than
both what memory held and the series' newest sample when a range was paged, so a cached range
(cut at that newest sample) stays exact; retention empties the cache.

Queries read through the :class:`~filodb.model.source.SeriesSource` methods. One lock guards
the shard: the ingest thread, flush tasks and query tasks of the worker share it.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from filodb.encoding import encode_many
from filodb.memstore.admit import admit
from filodb.memstore.chunks import (
    Chunk,
    chunk_from_vectors,
    decode_chunks,
    encode_chunk,
    ooo_id,
    trim_chunk,
    write_order,
)
from filodb.memstore.decoded import DecodedChunks
from filodb.memstore.exemplars import ExemplarRing
from filodb.memstore.gather import gather
from filodb.memstore.head import Head
from filodb.memstore.index import TagIndex
from filodb.memstore.keytable import PartKeyTable
from filodb.memstore.rows import extend_rows
from filodb.memstore.windowcount import add_samples, count_exact
from filodb.model.batch import SampleBatch, pick
from filodb.model.cache import ByteBoundedCache
from filodb.model.cardinality import NO_MAX_TIME, NO_MIN_TIME, CardinalityStats, object_array
from filodb.model.labels import Labels, Matcher
from filodb.model.libc import MEMCPY
from filodb.model.libc import gather as gather_bytes
from filodb.model.partkey import group_of, labels_of, part_key
from filodb.model.partkeyscan import decode_part_keys, groups_of, unique_spans
from filodb.model.record import RecordBatch
from filodb.model.source import SeriesBlock, WindowCounts, is_stale
from filodb.model.xxh64 import arena, words, xxh64_many

_NO_TS = np.iinfo(np.int64).min
_START, _END, _OOO = (operator.attrgetter(a) for a in ("start", "end", "ooo"))
_NONE = np.iinfo(np.int64).max  # "nothing held" for the mem/store start times
_NO_CHUNKS: list[Chunk] = []  # shared by every series without chunks (never appended to)

Pager = Callable[[list[bytes], int, int], Iterable[Any]]
# the per-series arrays (besides ``_group``) and what a new series starts with
_PER_SERIES = (("_closed_end", _NO_TS), ("_first", _NO_TS), ("_last", _NO_TS),
               ("_mem_start", _NONE), ("_store_start", _NONE), ("_touched", 0),
               ("_pk_saved", 0), ("_ooo_last", 0))  # fmt: skip
_KEPT_DELETES = 256  # deletions remembered for flushes prepared before them
# Samples a head holds (compressed as appended: memstore/head.py) before they are encoded into
# the series' chunk: 4 steps to a 480-row chunk
HEAD_SAMPLES = 120
# Samples that bulk heads (memstore/head.py) may hold past HEAD_SAMPLES, all shards of a dataset
# together (~12 MB compressed; the node splits it evenly over the dataset's shards)
BULK_EXTRA_SAMPLES = 1 << 22


@dataclass
class IngestStats:
    """Counts of one :meth:`TimeSeriesShard.ingest` call."""

    accepted: int = 0
    out_of_order: int = 0  # refused: not newer than their series' newest (outside the window)
    new_series: int = 0
    already_flushed: int = 0


@dataclass
class FlushData:
    """What one flush of one group writes: chunks, part keys ``(pk, start, end)``, offset."""

    group: int
    offset: int
    chunks: list[tuple[bytes, Chunk]] = field(default_factory=list)
    chunk_series: list[int] = field(default_factory=list)
    covers: list[list[Chunk]] = field(default_factory=list)  # memory's chunks in each chunk
    heads: list[tuple[bytes, Chunk]] = field(default_factory=list)  # open heads, provisional
    part_keys: list[tuple[bytes, int, int]] = field(default_factory=list)
    series: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    generation: int = 0
    layout: int = 0  # series ids are those of this layout (a purge renumbers them)
    deletes: int = 0  # deletions applied before it was prepared


@dataclass(frozen=True)
class Deletion:
    """What one :meth:`TimeSeriesShard.delete_series` removed: the column store must drop the
    ``whole`` series and the samples of the ``partial`` ones in ``[start_ms, end_ms]``."""

    number: int
    start_ms: int
    end_ms: int
    whole: list[bytes]
    partial: list[bytes]


class TimeSeriesShard:
    """Series and samples of one shard of one dataset."""

    def __init__(
        self, dataset: str, shard: int, *, max_chunk_samples: int = 480, num_groups: int = 8,
        memory_budget: int = 0, pager: Pager | None = None, flush_chunk_samples: int = 0,
        page_cache_bytes: int = 64 << 20, ooo_window_ms: int = 0, max_exemplars: int = 0,
        decode_cache_bytes: int = 32 << 20, head_samples: int = HEAD_SAMPLES,
        decoded: DecodedChunks | None = None, clock: Callable[[], float] = time.monotonic,
        bulk_extra: int = BULK_EXTRA_SAMPLES // 4,
    ) -> None:  # fmt: skip
        self.dataset = dataset
        self.exemplars = ExemplarRing(max_exemplars)  # the newest exemplars of the shard
        self.shard = shard
        self.max_chunk_samples = max(2, int(max_chunk_samples))
        # a flush writes a series' consecutive unflushed chunks as one, up to this many rows
        self.flush_chunk_samples = int(flush_chunk_samples) or 4 * self.max_chunk_samples
        self.num_groups = max(1, int(num_groups))
        self.memory_budget = int(memory_budget)
        self.pager = pager
        self.ooo_window_ms = max(0, int(ooo_window_ms))
        self._lock = threading.RLock()
        self._pks = PartKeyTable()  # every series' part key, found by the batch
        self._labels: list[Labels] = []
        self._index = TagIndex()
        # a head this full is closed into its series' last chunk (while that has room); a
        # bulk head (backfill, replay) goes on to a whole chunk: see memstore/head.py
        self.head_samples = max(2, min(int(head_samples), self.max_chunk_samples))
        self._head = Head(self.max_chunk_samples, soft_rows=self.head_samples, clock=clock,
                          bulk_extra=bulk_extra)  # fmt: skip
        self._chunks: list[list[Chunk]] = []
        self._closed_end = np.zeros(0, np.int64)  # newest sample in chunks or the store
        self._first = np.zeros(0, np.int64)  # first and last sample anywhere (memory or store)
        self._last = np.zeros(0, np.int64)
        self._mem_start = np.zeros(0, np.int64)  # memory holds every sample from here on
        self._store_start = np.zeros(0, np.int64)  # first sample in the column store
        self._group = np.zeros(0, np.int64)
        self._touched = np.zeros(0, np.int64)  # generation of the last sample, per series
        self._pk_saved = np.zeros(0, np.int64)  # generation whose part key the store has
        # id of the series' last out-of-order chunk: the next one's id is above it, so ids keep
        # the write order even for two chunks closed at one tick (the hash would not)
        self._ooo_last = np.zeros(0, np.int64)
        self._generation = 0
        self.offset = 0  # the last log offset applied
        self.chunk_bytes = 0
        self.chunk_count = 0  # chunks in memory, and the samples they hold: kept as they change
        self.chunk_samples = 0  # (stats() every second must not walk every chunk)
        self.samples_ingested = 0
        self.rejected: dict[str, int] = {}  # samples refused, by reason
        self.chunks_evicted = 0
        self.chunks_paged = 0  # read from the column store
        self.page_cache_hits = 0  # paged chunks served again from the page cache
        # per series: (lo, hi, chunks) = every stored chunk overlapping [lo, hi], as paged
        self._page_cache: ByteBoundedCache[int, tuple[int, int, list[Chunk]]] = ByteBoundedCache(
            max(0, int(page_cache_bytes)), _paged_weight
        )
        # hot chunks' vectors, decoded: the node's cache (``decoded``) or one of its own
        self._decoded = decoded if decoded is not None else DecodedChunks(decode_cache_bytes)
        self.checkpoints: dict[int, int] = {}
        self.last_flush: dict[int, float] = {}
        self._layout = 0  # bumped by every purge (series ids change)
        self.deletes: list[Deletion] = []  # the latest ones, for flushes prepared before them
        self.num_deletes = 0
        self.series_purged = 0
        # bumped (under the lock) by everything that may change what stats() reports, except
        # the node-wide decode cache's numbers: an unchanged count, unchanged stats (the node
        # does not recompute an idle shard's)
        self.changes = 0

    # --- registry -------------------------------------------------------------------------
    @property
    def num_series(self) -> int:
        return len(self._labels)

    @property
    def samples_rejected(self) -> int:
        return sum(self.rejected.values())

    def _series_ids(self, series: Sequence[Labels], absent: list[bytes] | None = None,
                    absent_hashes: np.ndarray | None = None) -> tuple[np.ndarray, int]:  # fmt: skip
        """Ids of label sets, found by their part keys (exact) or registered; how many are
        new. ``absent``: part keys the table was just asked for and does not hold (with their
        hashes); when they are the label sets' own (canonical), they are not looked up again."""
        pks = [part_key(lb) for lb in series]
        if absent is not None and absent_hashes is not None and pks == absent:
            hashes, ids = absent_hashes, np.full(len(pks), -1, np.int64)
        else:
            data, ends = arena(pks)
            hashes = xxh64_many(data, ends)
            ids = self._pks.find(data, ends, hashes)
        miss = np.flatnonzero(ids < 0).tolist()
        if not miss:
            return ids, 0
        fresh: dict[bytes, int] = {}  # part key -> its id, registered by this call
        first: list[int] = []
        base = len(self._labels)
        for j in miss:
            sid = fresh.get(pks[j])
            if sid is None:
                sid = fresh[pks[j]] = base + len(first)
                first.append(j)
                lb = series[j]
                self._labels.append(lb)
                self._index.add(sid, lb)
                self._chunks.append(_NO_CHUNKS)
            ids[j] = sid
        new_data, new_ends = arena([pks[j] for j in first])
        self._pks.add(new_data, new_ends, hashes[first])
        self._grow(len(first), np.array([group_of(pks[j], self.num_groups) for j in first],
                                        np.int64))  # fmt: skip
        return ids, len(first)

    def _grow(self, k: int, groups: np.ndarray) -> None:
        """The per-series state of ``k`` series just registered (their flush ``groups``)."""
        self._head.add_series(k)
        for name, fill in _PER_SERIES:
            setattr(self, name, extend_rows(getattr(self, name), k, fill))
        self._group = extend_rows(self._group, k, 0)
        self._group[len(self._group) - k :] = groups

    def _register(self, data: np.ndarray, ends: np.ndarray, miss: np.ndarray,
                  keys: np.ndarray | None, series: Sequence[Labels] | None
                  ) -> tuple[np.ndarray, int] | None:  # fmt: skip
        """Ids of the part keys ``miss`` (indexes) of the arena ``data`` (key ``i`` ends at
        ``ends[i]``) that the table does not hold, registered many at once: repeated keys
        found with one numba call, the distinct ones decoded together
        (:func:`~filodb.model.partkeyscan.decode_part_keys`), indexed with
        :meth:`TagIndex.add_many`, their flush groups hashed in one call; and how many are
        new. None, with nothing changed, when the keys are not all canonical part keys, when
        ``keys`` (their xxh64, as a batch gave them) are not theirs, or when the batch's
        label sets ``series`` (indexed as the keys) are not theirs: the caller goes series
        by series then."""
        starts = np.where(miss > 0, ends[miss - 1], 0)
        group, first, hashes = unique_spans(words(data), starts, ends[miss])
        if keys is not None and not np.array_equal(keys[first], hashes):
            return None
        a, b = starts[first], ends[miss[first]]
        new_data = gather_bytes(data, a, b, MEMCPY)
        new_ends = np.cumsum(b - a)
        new_starts = new_ends - (b - a)
        dec = decode_part_keys(new_data, new_starts, new_ends)
        if dec is None:
            return None
        if series is not None and dec.labels != pick(series, miss[first].tolist()):
            return None
        k, base = len(first), len(self._labels)
        self._labels.extend(dec.labels)
        self._chunks.extend([_NO_CHUNKS] * k)
        self._index.add_many(base, dec.counts, dec.pair_of, dec.names, dec.name_of, dec.values)
        self._pks.add(new_data, new_ends, hashes)
        self._grow(k, groups_of(new_data, new_starts, new_ends, self.num_groups))
        return group + base, k

    def _part_key(self, sid: int) -> bytes:
        return self._pks.part_key(sid)

    def _resolve(self, batch: SampleBatch | RecordBatch) -> tuple[np.ndarray, int]:
        """Series ids of a batch's series, and how many are new. Their part keys are found
        in the shard's table with one numba call (bytes compared: exact); only part keys not
        found are decoded (BadInputError when one is not a part key: nothing has changed
        then) and looked up again by their label set's canonical part key, or registered."""
        rb = batch.as_record() if isinstance(batch, SampleBatch) else batch
        hashes = None  # the part keys' xxh64, when computed here (a batch's keys may be others)
        if rb.keys is None:  # hashed and found in one call
            ids, hashes, missing = self._pks.find_hashing(rb.pk_data, rb.pk_ends)
            rb.keys = hashes
        else:
            ids = self._pks.find(rb.pk_data, rb.pk_ends, rb.keys)
            missing = int((ids < 0).sum())
        if not missing:
            return ids, 0
        miss = np.flatnonzero(ids < 0)
        got = self._register(rb.pk_data, rb.pk_ends, miss, None if hashes is not None
                             else rb.keys[miss], rb.series)  # fmt: skip
        if got is not None:
            ids[miss] = got[0]
            return ids, got[1]
        decoded: dict[bytes, Labels] = {}
        labels = []
        raw = []
        for i in miss.tolist():
            pk = rb.part_key(i)
            lb = decoded.get(pk)
            if lb is None:
                lb = decoded[pk] = rb.labels(i)
            labels.append(lb)
            raw.append(pk)
        ids[miss], new = self._series_ids(labels, raw, None if hashes is None else hashes[miss])
        return ids, new

    def load_part_keys(self, records: Iterable[Any]) -> int:
        """Register the series the column store knows (``part_key``, ``start_ms``, ``end_ms``
        records) before log replay: their data is in the store, none in memory."""
        recs = list(records)
        if not recs:
            return 0
        with self._lock:
            self.changes += 1
            data, ends = arena([r.part_key for r in recs])
            ids, _, missing = self._pks.find_hashing(data, ends)
            got = (
                self._register(data, ends, np.flatnonzero(ids < 0), None, None) if missing else None
            )
            if got is not None:
                ids[ids < 0] = got[0]
            elif missing:  # not all canonical part keys: one at a time (or BadInputError)
                ids, _ = self._series_ids([labels_of(r.part_key) for r in recs])
            start = np.array([r.start_ms for r in recs], np.int64)
            end = np.array([r.end_ms for r in recs], np.int64)
            known = self._first[ids] != _NO_TS
            self._first[ids] = np.where(known, np.minimum(self._first[ids], start), start)
            self._last[ids] = np.maximum(self._last[ids], end)
            self._store_start[ids] = np.minimum(self._store_start[ids], start)
            self._closed_end[ids] = np.maximum(self._closed_end[ids], end)
            return len(recs)

    # --- ingest ---------------------------------------------------------------------------
    def ingest(self, batch: SampleBatch | RecordBatch, offset: int | None = None,
               flushed: dict[int, int] | None = None) -> IngestStats:  # fmt: skip
        """Append a batch (the log record at ``offset``); returns what was accepted/rejected.

        ``flushed`` (recovery) maps flush groups to their checkpoint: samples of a group whose
        checkpoint is at or past ``offset`` are already in the column store and are skipped.
        A record whose new part keys are not part keys raises BadInputError and changes
        nothing (the offset included).
        """
        with self._lock:
            self.changes += 1
            ex = batch.exemplars
            if len(batch) == 0 and (ex is None or not self.exemplars.capacity):
                if offset is not None:
                    self.offset = max(self.offset, int(offset))
                return IngestStats()
            ids, new = self._resolve(batch)
            if offset is not None:
                self.offset = max(self.offset, int(offset))
            if ex is not None:  # replayed records add theirs again (the ring starts empty)
                self.exemplars.add(ids[ex.sidx], ex.ts, ex.vals, ex.labels)
            if len(batch) == 0:
                return IngestStats(0, 0, new, 0)
            sid, ts, vals = ids[batch.sidx], batch.ts, batch.vals
            skipped = 0
            if flushed and offset is not None:
                cp = np.zeros(self.num_groups, np.int64)
                for g, o in flushed.items():
                    if 0 <= g < self.num_groups:
                        cp[g] = o
                keep = cp[self._group[sid]] < offset
                skipped = int(len(keep) - keep.sum())
                if skipped:
                    sid, ts, vals = sid[keep], ts[keep], vals[keep]
            n = len(sid)
            sid = np.ascontiguousarray(sid, np.int64)
            ts = np.ascontiguousarray(ts, np.int64)
            ok, in_order = np.empty(n, np.bool_), np.empty(n, np.bool_)
            args = (self.ooo_window_ms, self._generation + 1, self._first, self._last,
                    self._closed_end, self._mem_start, self._touched, ok, in_order)  # fmt: skip
            accepted = admit(sid, ts, *args)
            if accepted < 0:
                order = np.argsort(sid, kind="stable")  # arrival order kept within a series
                sid, ts, vals = sid[order], ts[order], vals[order]
                accepted = admit(sid, ts, *args)
            if accepted < n:
                sid, ts, vals, in_order = sid[ok], ts[ok], vals[ok], in_order[ok]
                why = "too_old" if self.ooo_window_ms else "out_of_order"
                self.rejected[why] = self.rejected.get(why, 0) + n - accepted
            if accepted:
                self._generation += 1
                self._append(sid, ts, vals, in_order)
            stats = IngestStats(accepted, n - accepted, new, skipped)
            self.samples_ingested += stats.accepted
            return stats

    def _append(self, sid: np.ndarray, ts: np.ndarray, vals: np.ndarray,
                in_order: np.ndarray) -> None:  # fmt: skip
        """Append grouped samples (taken: :func:`~filodb.memstore.admit.admit`) to the head;
        series that fill up are closed together."""
        head = self._head
        while True:  # a full head is closed when its series' next sample comes (as
            # Prometheus cuts a chunk): the samples that fill heads are queryable at once
            rest = head.append(sid, ts, vals, in_order)
            if not rest.any():
                return
            self._close(np.unique(sid[rest]))  # full, or too far from the head's first sample
            sid, ts, vals, in_order = sid[rest], ts[rest], vals[rest], in_order[rest]

    def _close(self, sids: np.ndarray) -> None:
        """Encode the heads of ``sids`` (ids, unique) into chunks, one numba call for all.

        A head that follows its series' last chunk in order, while that chunk is unflushed
        and has room (``max_chunk_samples``), is encoded together with that chunk's samples
        into one chunk under the same id (the head stays small, chunks keep
        their size)."""
        sids = sids[self._head.count[sids] > 0]
        if len(sids) == 0:
            return
        ts, vals, counts = self._head.read(sids)
        self._head.release(sids)
        offsets = np.zeros(len(sids) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        starts = ts[offsets[:-1]]
        ooo = starts <= self._closed_end[sids]
        chunks_of = self._chunks
        lasts = [chunks_of[s][-1] if chunks_of[s] else None for s in sids.tolist()]
        grow = [
            i for i, (c, n, late) in enumerate(zip(lasts, counts.tolist(), ooo.tolist(), strict=True))
            if c is not None and not (late or c.flushed or c.ooo)
            and c.count + n <= self.max_chunk_samples
        ]  # fmt: skip
        grown: list[Chunk | None] = [None] * len(sids)
        if grow:
            old = [lasts[i] for i in grow]
            ots, ovals, ooff = decode_chunks(old)  # type: ignore[arg-type]
            extra = np.zeros(len(sids), np.int64)
            extra[grow] = np.diff(ooff)
            ts, vals, counts, offsets = _prepend(ts, vals, counts, ots, ovals, extra)
            starts = ts[offsets[:-1]]
            for i, c in zip(grow, old, strict=True):
                grown[i] = c
        tvecs, vvecs = encode_many(ts, vals, offsets)
        ends = ts[offsets[1:] - 1]
        self._closed_end[sids] = np.maximum(self._closed_end[sids], ends)
        marks = is_stale(vals)  # stale markers per chunk (every head closed holds samples)
        stale = (np.add.reduceat(marks.astype(np.int64), offsets[:-1]) if marks.any()
                 else np.zeros(len(sids), np.int64))  # fmt: skip
        # series scraped together close chunks of equal start, end, count and timestamps:
        # one int and one bytes object each for all of them (~100 bytes a series less)
        rows = zip(sids.tolist(), _shared_ints(starts), _shared_ints(ends),
                   _shared_ints(counts), ooo.tolist(), _shared_bytes(tvecs), vvecs, grown,
                   stale.tolist(), strict=True)  # fmt: skip
        added = n_new = samples = 0
        tick = self.offset or self._generation  # no log (tests, tools): batches applied
        ooo_last = self._ooo_last
        for s, start, end, n, late, tv, vv, prev, k in rows:
            if late:
                cid = max(ooo_id(tick, tv, vv), int(ooo_last[s]) + 1)
                ooo_last[s] = cid
            else:
                cid = start
            c = Chunk(cid, start, end, n, tv, vv, ooo=late, stale=k)
            cs = chunks_of[s]
            if prev is not None:
                cs[-1] = c
                added -= prev.nbytes
                samples -= prev.count
                n_new -= 1
            elif cs is _NO_CHUNKS:
                chunks_of[s] = [c]
            else:
                cs.append(c)
            added += len(tv) + len(vv)
            samples += n
            n_new += 1
        self.chunk_bytes += added
        self.chunk_count += n_new
        self.chunk_samples += samples

    # --- flush ----------------------------------------------------------------------------
    def prepare_flush(self, group: int, close_heads: bool = True) -> FlushData:
        """Close the group's buffers; its unflushed chunks and changed part keys, and the log
        offset they cover (every record up to it is in them or in earlier flushes).

        ``close_heads`` False (a flush for the log's size, not the schedule) leaves the heads
        open, so chunks keep their size: a series' last run (its unflushed chunks that may
        still grow, and its head) is written as a provisional chunk under the id it will have
        when written whole (its first sample's time), which that write then replaces, and
        stays unflushed in memory; only heads that would close out of order (or may yet take
        an older sample: an ``ooo_window``) are closed."""
        with self._lock:
            self.changes += 1
            sids = np.flatnonzero(self._group == group)
            heads = np.zeros(0, np.int64)
            open_runs = not (close_heads or self.ooo_window_ms)
            if not open_runs:
                self._close(sids)
            else:
                heads = sids[self._head.count[sids] > 0]
                # an ordered head's first sample (its base) is its oldest
                late = ~self._head.ordered_of(heads) | (
                    self._head.base[heads] <= self._closed_end[heads]
                )
                self._close(heads[late])
                heads = heads[~late]
            fd = FlushData(group, self.offset, generation=self._generation, layout=self._layout,
                           deletes=self.num_deletes)  # fmt: skip
            open_heads = self._head_chunks(heads)
            for s in sids.tolist():
                h = open_heads.get(s)
                cs = self._chunks[s]
                runs = self._flush_runs(cs if h is None else [*cs, h])
                pk = self._part_key(s) if runs else b""
                grows = open_runs and runs and not runs[-1][0].ooo and (
                    h is not None or sum(c.count for c in runs[-1]) < self.flush_chunk_samples
                )  # fmt: skip
                for i, run in enumerate(runs):
                    c = run[0] if len(run) == 1 else _merge(run)
                    if grows and i == len(runs) - 1:  # the run that may still grow:
                        fd.heads.append((pk, c))  # provisional, none of it marked flushed
                        continue
                    fd.chunks.append((pk, c))
                    fd.chunk_series.append(s)
                    fd.covers.append(run)
            dirty = sids[self._touched[sids] > self._pk_saved[sids]]
            fd.series = dirty
            fd.part_keys = [
                (self._part_key(s), int(self._first[s]), int(self._last[s])) for s in dirty.tolist()
            ]
            return fd

    def _head_chunks(self, sids: np.ndarray) -> dict[int, Chunk]:
        """The open heads of ``sids`` (ordered, past everything closed) encoded as the chunks
        they would close into now (one numba call), by series."""
        if len(sids) == 0:
            return {}
        ts, vals, counts = self._head.read(sids)
        offsets = np.zeros(len(sids) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        tvecs, vvecs = encode_many(ts, vals, offsets)
        starts, ends = ts[offsets[:-1]].tolist(), ts[offsets[1:] - 1].tolist()
        rows = zip(sids.tolist(), starts, ends, counts.tolist(), tvecs, vvecs, strict=True)
        return {s: Chunk(a, a, b, n, tv, vv) for s, a, b, n, tv, vv in rows}

    def commit_flush(self, fd: FlushData) -> None:
        """The column store holds ``fd``: its chunks become evictable; records the checkpoint."""
        with self._lock:
            self.changes += 1
            if fd.layout != self._layout:  # a purge renumbered the series: their chunks stay
                self.checkpoints[fd.group] = fd.offset  # unflushed and are written again
                self.last_flush[fd.group] = time.time()
                return
            for sid, run in zip(fd.chunk_series, fd.covers, strict=True):
                for c in run:
                    c.flushed = True
                self._store_start[sid] = min(int(self._store_start[sid]), run[0].start)
                if run[0].ooo:  # the store gained samples older than a cached range may hold
                    self._page_cache.discard(sid)
            self._pk_saved[fd.series] = np.maximum(self._pk_saved[fd.series], fd.generation)
            self.checkpoints[fd.group] = fd.offset
            self.last_flush[fd.group] = time.time()
            self._evict()

    def _flush_runs(self, chunks: list[Chunk]) -> list[list[Chunk]]:
        """The series' unflushed chunks in runs of consecutive ones that together hold at most
        ``flush_chunk_samples`` rows: each run is written as one chunk. Fewer, larger chunks
        at rest cost fewer headers, rows and index entries; the samples are the same."""
        runs: list[list[Chunk]] = []
        rows = 0
        for c in chunks:
            if c.flushed:
                continue
            if c.ooo:  # written alone, under its own id
                runs.append([c])
                rows = self.flush_chunk_samples
            elif runs and not runs[-1][0].ooo and rows + c.count <= self.flush_chunk_samples:
                runs[-1].append(c)
                rows += c.count
            else:
                runs.append([c])
                rows = c.count
        return runs

    # --- memory ---------------------------------------------------------------------------
    @property
    def memory_bytes(self) -> int:
        return self.chunk_bytes + self._head.nbytes

    def _evict(self) -> None:
        if self.memory_budget <= 0 or self.memory_bytes <= self.memory_budget:
            return
        flushed = [(c.end, s, c) for s, cs in enumerate(self._chunks) for c in cs if c.flushed]
        flushed.sort(key=lambda e: e[:2])
        for _, s, c in flushed:
            if self.memory_bytes <= self.memory_budget:
                break
            cs = self._chunks[s]
            del cs[next(i for i, x in enumerate(cs) if x is c)]
            self.chunk_bytes -= c.nbytes
            self.chunk_count -= 1
            self.chunk_samples -= c.count
            self.chunks_evicted += 1
            # memory no longer holds what that chunk held (an out-of-order one included)
            self._mem_start[s] = max(self._held_from(s), c.end + 1)

    def _held_from(self, s: int) -> int:
        """From where memory holds every sample of the series, after chunks left it: the
        first in-order chunk, else past everything closed when the head has samples."""
        for c in self._chunks[s]:
            if not c.ooo:
                return max(c.start, int(self._mem_start[s]))
        if self._head.count[s]:
            return (
                int(self._closed_end[s]) + 1
                if self._closed_end[s] != _NO_TS
                else int(self._head.oldest(np.array([s]))[0])
            )
        return int(_NONE)

    def drop_before(self, cutoff_ms: int) -> int:
        """Retention: forget chunks that end before ``cutoff_ms``; returns how many."""
        dropped = 0
        with self._lock:
            self.changes += 1
            self._page_cache.forget()  # the store drops what retention cuts, so must the cache
            head_n = self._head.count
            for s, cs in enumerate(self._chunks):
                if cs and min(c.end for c in cs) < cutoff_ms:
                    keep = [c for c in cs if c.end >= cutoff_ms]
                    self.chunk_bytes -= sum(c.nbytes for c in cs) - sum(c.nbytes for c in keep)
                    self.chunk_samples -= sum(c.count for c in cs) - sum(c.count for c in keep)
                    self.chunk_count -= len(cs) - len(keep)
                    dropped += len(cs) - len(keep)
                    cs[:] = keep
                    self._mem_start[s] = self._held_from(s) if keep or head_n[s] else _NONE
            gone = (self._last != _NO_TS) & (self._last < cutoff_ms)
            self._first[gone] = _NO_TS
            self._last[gone] = _NO_TS
            self._first = np.where(
                self._first != _NO_TS, np.maximum(self._first, cutoff_ms), _NO_TS
            )
            self._store_start = np.where(gone, _NONE, np.maximum(self._store_start, cutoff_ms))
        return dropped

    # --- deletion and purge ---------------------------------------------------------------
    def delete_series(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> Deletion:
        """Delete the matching series' samples in ``[start_ms, end_ms]`` from memory. Series
        left without samples are purged (labels, index entry, buffers); the answer tells the
        caller what to delete from the column store. Flushes prepared before it learn of it
        through :meth:`deletions_since`."""
        with self._lock:
            self.changes += 1
            ids = self._ids_in_range(matchers, start_ms, end_ms)
            whole = (self._first[ids] >= start_ms) & (self._last[ids] <= end_ms)
            gone, part = ids[whole], ids[~whole]
            for s in part.tolist():
                self._trim_series(s, start_ms, end_ms)
            first, last = self._first[part], self._last[part]
            after, before = min(end_ms + 1, int(_NONE)), max(start_ms - 1, int(_NO_TS) + 1)
            self._first[part] = np.where((first >= start_ms) & (first <= end_ms), after, first)
            self._last[part] = np.where((last >= start_ms) & (last <= end_ms), before, last)
            self._page_cache.forget()
            self.num_deletes += 1
            d = Deletion(self.num_deletes, start_ms, end_ms, [self._part_key(s) for s in gone.tolist()],
                         [self._part_key(s) for s in part.tolist()])  # fmt: skip
            self.deletes = [*self.deletes[-(_KEPT_DELETES - 1) :], d]
            if len(gone):
                self._last[gone] = _NO_TS
                self.purge_empty()
            return d

    def deletions_since(self, number: int) -> list[Deletion] | None:
        """Deletions after the ``number``-th (None: some are no longer known)."""
        with self._lock:
            if self.num_deletes == number:
                return []
            if not self.deletes or self.deletes[0].number > number + 1:
                return None
            return [d for d in self.deletes if d.number > number]

    def _trim_series(self, s: int, start_ms: int, end_ms: int) -> None:
        """Drop one series' samples in the range from its buffer and chunks."""
        if self._head.count[s]:
            one = np.array([s], np.int64)
            ts, vals, _ = self._head.read(one)  # sorted, last write of a timestamp kept
            keep = (ts < start_ms) | (ts > end_ms)
            self._head.release(one)
            k = int(keep.sum())
            if k:
                self._head.append(np.full(k, s, np.int64), ts[keep], vals[keep], np.ones(k, bool))
        chunks = []
        for c in self._chunks[s]:
            t = trim_chunk(c, start_ms, end_ms)
            self.chunk_bytes += (t.nbytes if t is not None else 0) - c.nbytes
            self.chunk_samples += (t.count if t is not None else 0) - c.count
            if t is not None:
                chunks.append(t)
            else:
                self.chunk_count -= 1
        self._chunks[s] = chunks
        if self._mem_start[s] != _NONE:
            self._mem_start[s] = self._held_from(s)

    def purge_empty(self) -> int:
        """Forget series with no samples left (retention or deletion took them all): labels,
        index entry, buffers and chunks; the others are renumbered. Returns how many."""
        with self._lock:
            keep = self._last != _NO_TS
            n = len(keep) - int(keep.sum())
            if n == 0:
                return 0
            self.changes += 1
            idx = np.flatnonzero(keep).tolist()
            gone = np.flatnonzero(~keep).tolist()
            for s in gone:
                self.chunk_bytes -= sum(c.nbytes for c in self._chunks[s])
                self.chunk_samples -= sum(c.count for c in self._chunks[s])
                self.chunk_count -= len(self._chunks[s])
            self._labels = [self._labels[i] for i in idx]
            self._chunks = [self._chunks[i] for i in idx]
            self._head.keep_series(keep)
            self.exemplars.keep_series(keep)
            for name in [*(n for n, _ in _PER_SERIES), "_group"]:
                setattr(self, name, getattr(self, name)[keep])
            self._pks.keep(keep)
            self._index.compact(keep)
            self._page_cache.forget()
            self._layout += 1
            self.series_purged += n
            return n

    # --- SeriesSource ---------------------------------------------------------------------
    def _ids_in_range(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> np.ndarray:
        ids = self._index.match(matchers)
        if len(ids) == 0:
            return ids
        keep = (
            (self._last[ids] != _NO_TS)
            & (self._first[ids] <= end_ms)
            & (self._last[ids] >= start_ms)
        )
        return ids[keep]

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> SeriesBlock:
        with self._lock:
            ids = self._ids_in_range(matchers, start_ms, end_ms)
            if len(ids) == 0:
                return SeriesBlock.empty()
            paged = self._page(ids, start_ms, end_ms)
            chunks, owner, limit = self._pieces(ids, paged, start_ms, end_ms)
            ts, vals, counts = self._gather(ids, chunks, owner, limit, start_ms, end_ms)
            labels_of_ids = self._labels
        present = np.flatnonzero(counts)
        offsets = np.zeros(len(present) + 1, np.int64)
        np.cumsum(counts[present], out=offsets[1:])
        labels = [labels_of_ids[s] for s in ids[present].tolist()]
        return SeriesBlock(labels, offsets, ts, vals)

    def _gather(self, ids: np.ndarray, chunks: list[Chunk], owner: Sequence[int] | np.ndarray,
                limit: Sequence[int] | np.ndarray, start_ms: int, end_ms: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """The samples of ``ids`` in the range from their pieces (:meth:`_pieces`) and heads,
        each series' strictly increasing: ``(ts, vals, counts per position of ids)``."""
        cts, ctpos, cvals, coffs = self._decoded.columns(chunks)
        ts, vals, counts, ordered = gather(
            ids, cts, ctpos, cvals, coffs, np.asarray(owner, np.int64),
            np.asarray(limit, np.int64), self._head, start_ms, end_ms,
        )  # fmt: skip
        if not ordered:  # overlapping pieces (paged data, out-of-order writes): last write wins
            sample_owner = np.repeat(np.arange(len(ids)), counts)
            ts, vals, sample_owner = dedupe_samples(ts, vals, sample_owner)
            counts = np.bincount(sample_owner, minlength=len(ids))
        return ts, vals, counts

    def window_counts(self, matchers: Sequence[Matcher], times: np.ndarray, range_ms: int
                      ) -> WindowCounts | None:  # fmt: skip
        """Samples that are not stale markers per matching series and window ``(t - range_ms,
        t]`` (:class:`~filodb.model.source.WindowCounts`), from chunk metadata where no
        window's edge cuts a chunk (:mod:`filodb.memstore.windowcount`); None for steps out
        of time order. Series whose pieces may overlap (paged, out-of-order chunks or head)
        are gathered as :meth:`select` does and counted sample by sample."""
        times = np.ascontiguousarray(times, np.int64)
        n_steps = len(times)
        if n_steps == 0 or bool((times[1:] < times[:-1]).any()):
            return None
        lo, hi = int(times[0]) - range_ms + 1, int(times[-1])
        with self._lock:
            ids = self._ids_in_range(matchers, lo, hi)
            if len(ids) == 0:
                return WindowCounts([], np.zeros((0, n_steps), np.int64), 0)
            paged = self._page(ids, lo, hi)
            chunks, owner_l, limit = self._pieces(ids, paged, lo, hi)
            owner = np.array(owner_l, np.int64)
            head = self._head
            held = head.count[ids] > 0
            exact = head.ordered_of(ids) & (~held | (head.base[ids] > self._closed_end[ids]))
            if paged:
                exact &= ~np.isin(ids, np.fromiter(paged, np.int64, len(paged)))
            if chunks and any(map(_OOO, chunks)):
                exact[owner[np.fromiter(map(_OOO, chunks), bool, len(chunks))]] = False
            D = np.zeros((len(ids), n_steps + 1), np.int64)
            total = np.zeros(len(ids), np.int64)
            mine = exact[owner] if len(owner) else np.zeros(0, bool)
            at = np.flatnonzero(mine)
            count_exact(D, total, ids, [chunks[k] for k in at.tolist()] if len(at) < len(chunks)
                        else chunks, owner[at], np.flatnonzero(exact & held), head,
                        self._decoded, times, range_ms)  # fmt: skip
            rest = np.flatnonzero(~exact)
            if len(rest):  # as a select reads them, then sample by sample
                far = np.flatnonzero(~mine)
                where = np.full(len(ids), -1, np.int64)
                where[rest] = np.arange(len(rest))
                ts, vals, cnt = self._gather(ids[rest], [chunks[k] for k in far.tolist()],
                                             where[owner[far]], np.asarray(limit)[far], lo, hi)  # fmt: skip
                starts = np.zeros(len(rest), np.int64)
                np.cumsum(cnt[:-1], out=starts[1:])
                add_samples(D, total, rest, starts, starts, cnt, ts, vals.view(np.uint64),
                            times, np.int64(range_ms), np.int64(lo), np.int64(hi))  # fmt: skip
            labels_of_ids = self._labels
        read = np.flatnonzero(total)
        counts = np.cumsum(D[read, :n_steps], axis=1)
        labels = [labels_of_ids[s] for s in ids[read].tolist()]
        return WindowCounts(labels, counts, int(total.sum()))

    def _pieces(
        self, ids: np.ndarray, paged: dict[int, list[Chunk]], start_ms: int, end_ms: int
    ) -> tuple[list[Chunk], list[int], list[int]]:
        """The chunks of ``ids`` overlapping the range, series by series in write order, with
        the position in ``ids`` of each one's series and the newest timestamp it may give
        (paged chunks: what memory no longer holds). Only series whose closed data reaches the
        range (or that paged some) are walked."""
        chunks: list[Chunk] = []
        owner: list[int] = []
        limit: list[int] = []
        walk = np.flatnonzero(self._closed_end[ids] >= start_ms).tolist()
        if not paged:  # memory's chunks only: no Python step per series
            return self._mem_pieces(ids, np.array(walk, np.int64), start_ms, end_ms)
        pos = {s: i for i, s in enumerate(ids.tolist())}
        walk = sorted(set(walk) | {pos[s] for s in paged})
        mem_start = self._mem_start
        for i in walk:
            s = int(ids[i])
            mem = [c for c in self._chunks[s] if c.end >= start_ms and c.start <= end_ms]
            got = paged.get(s)
            if got:
                below = min(end_ms, int(mem_start[s]) - 1)
                pieces = [(c, below) for c in got] + [(c, end_ms) for c in mem]
            elif mem:
                pieces = [(c, end_ms) for c in mem]
            else:
                continue
            if any(c.ooo for c, _ in pieces):  # write order: the last write of a ts wins
                pieces.sort(key=lambda p: write_order(p[0]))
            for c, lim in pieces:
                chunks.append(c)
                owner.append(i)
                limit.append(lim)
        return chunks, owner, limit

    def _mem_pieces(self, ids: np.ndarray, walk: np.ndarray, start_ms: int, end_ms: int
                    ) -> tuple[list[Chunk], list[int], list[int]]:  # fmt: skip
        """:meth:`_pieces` without paged chunks: the chunk lists of ``ids[walk]`` flattened
        and filtered with C-level maps and numpy; series with out-of-order chunks are put in
        write order by one stable sort."""
        lists = list(map(self._chunks.__getitem__, ids[walk].tolist()))
        flat: list[Chunk] = list(chain.from_iterable(lists))
        if not flat:
            return [], [], []
        n = len(flat)
        lens = np.fromiter(map(len, lists), np.int64, len(lists))
        owner = np.repeat(walk, lens)
        starts = np.fromiter(map(_START, flat), np.int64, n)
        ends = np.fromiter(map(_END, flat), np.int64, n)
        keep = (ends >= start_ms) & (starts <= end_ms)
        if any(map(_OOO, flat)):  # write order within a series: the last write of a ts wins
            order = np.lexsort((np.fromiter(map(write_order, flat), np.int64, n), owner))
            keep_at = order[keep[order]]
        else:
            keep_at = np.flatnonzero(keep)
        picked = list(map(flat.__getitem__, keep_at.tolist()))
        return picked, owner[keep_at].tolist(), [end_ms] * len(picked)

    def _page(self, ids: np.ndarray, start_ms: int, end_ms: int) -> dict[int, list[Chunk]]:
        """Chunks of the column store for the part of the range memory no longer holds."""
        if self.pager is None:
            return {}
        older = (start_ms < self._mem_start[ids]) & (
            self._store_start[ids] <= np.minimum(end_ms, self._mem_start[ids] - 1)
        )
        need = ids[older]
        if len(need) == 0:
            return {}
        self.changes += 1  # paged or served from the page cache: its counters move
        his = np.minimum(end_ms, self._mem_start[need] - 1)
        # Every later sample of a series is newer than its newest now (in-order ingestion),
        # and memory holds everything from mem_start on, so the store's chunks overlapping
        # [start_ms, min(hi, last)] are final: that range is what a cache entry vouches for.
        upto = np.minimum(his, self._last[need])
        out: dict[int, list[Chunk]] = {}
        missed: list[int] = []
        for s, s_hi in zip(need.tolist(), upto.tolist(), strict=True):
            got = self._page_cache.get(s)
            if got is not None and got[0] <= start_ms and s_hi <= got[1]:
                hit = [c for c in got[2] if c.end >= start_ms and c.start <= s_hi]
                self.page_cache_hits += len(hit)
                if hit:
                    out[s] = hit
            else:
                missed.append(s)
        if not missed:
            return out
        hi = int(his.max())
        by_pk = {self._part_key(s): s for s in missed}
        read: dict[int, list[Chunk]] = {s: [] for s in missed}
        final = dict(zip(need.tolist(), upto.tolist(), strict=True))
        for rec in self.pager(list(by_pk), start_ms, hi):
            s = by_pk.get(rec.part_key)
            if s is not None:
                read[s].append(
                    chunk_from_vectors(
                        rec.chunk_id, rec.start_ms, rec.end_ms, rec.num_rows, rec.vectors
                    )
                )
        for s, cs in read.items():
            cs.sort(key=lambda c: c.start)
            self.chunks_paged += len(cs)
            self._page_cache.put(s, (start_ms, final[s], cs))
            if cs:
                out[s] = cs
        return out

    def series(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, limit: int = 0
    ) -> list[Labels]:
        """Label sets of the matching series with samples in the range, in id order; at most
        ``limit`` of them when ``limit`` > 0 (the label sets are built only for those)."""
        with self._lock:
            ids = self._ids_in_range(matchers, start_ms, end_ms)
            if limit > 0:
                ids = ids[:limit]
            labels = self._labels
            return [labels[s] for s in ids.tolist()]

    def query_exemplars(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int
                        ) -> list[tuple[Labels, np.ndarray, np.ndarray, list[Labels]]]:  # fmt: skip
        """Per matching series with exemplars in the range: its labels, and their timestamps,
        values and label sets (oldest first)."""
        with self._lock:
            ids = self._index.match(matchers)
            sid, ts, vals, labels = self.exemplars.select(ids, start_ms, end_ms)
            if len(sid) == 0:
                return []
            starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
            ends = np.r_[starts[1:], len(sid)]
            return [(self._labels[s], ts[a:b], vals[a:b], labels[a:b])
                    for s, a, b in zip(sid[starts].tolist(), starts.tolist(), ends.tolist(),
                                       strict=True)]  # fmt: skip

    def label_names(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[str]:
        """Label names of the matching series in the range, from the index (no series walk)."""
        with self._lock:
            return self._index.label_names(self._ids_in_range(matchers, start_ms, end_ms))

    def label_values(
        self, name: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> list[str]:
        """Values of ``name`` among the matching series in the range, from the index."""
        with self._lock:
            return self._index.label_values(name, self._ids_in_range(matchers, start_ms, end_ms))

    def cardinality(self) -> CardinalityStats:
        """Series per label value from the index (no series walk), chunks held (closed ones
        plus open write buffers, as Prometheus's head chunks) and the time range of the data."""
        with self._lock:
            counts = self._index.label_counts()
            has = self._last != _NO_TS
            chunks = self.chunk_count + int((self._head.count > 0).sum())
            lo = int(self._first[has].min()) if has.any() else NO_MIN_TIME
            hi = int(self._last[has].max()) if has.any() else NO_MAX_TIME
            n = self.num_series
        labels = {k: (object_array(v), c.astype(np.int64)) for k, (v, c) in counts.items()}
        return CardinalityStats(n, chunks, lo, hi, labels)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            n_chunks, in_chunks = self.chunk_count, self.chunk_samples
            head_n = self._head.count
            in_memory = int(((self._mem_start != _NONE) | (head_n > 0)).sum())
            return {
                "series": self.num_series,
                "series_in_memory": in_memory,
                "samples": in_chunks + int(head_n.sum()),  # in memory
                "chunks": n_chunks,
                "chunk_bytes": self.chunk_bytes,
                "buffer_samples": int(head_n.sum()),
                "head_bytes": self._head.nbytes,
                "memory_bytes": self.memory_bytes,
                "samples_ingested": self.samples_ingested,
                "samples_rejected": self.samples_rejected,
                "samples_rejected_by_reason": dict(self.rejected),
                "chunks_evicted": self.chunks_evicted,
                "chunks_paged": self.chunks_paged,
                "page_cache_hits": self.page_cache_hits,
                "page_cache_bytes": self._page_cache.nbytes,
                "decode_cache_bytes": self._decoded.nbytes,
                "decode_cache_hits": self._decoded.hits,
                "decode_cache_misses": self._decoded.misses,
                "last_flush": max(self.last_flush.values(), default=0.0),
                # every group flushed since: what the shard held then is in the column store
                "flushed_through": min(
                    (self.last_flush.get(g, 0.0) for g in range(self.num_groups)), default=0.0
                ),  # fmt: skip
                "last_checkpoint": max(self.checkpoints.values(), default=0),
                "exemplars": len(self.exemplars),
                "exemplars_appended": self.exemplars.added,
                "exemplars_dropped": self.exemplars.dropped,
            }


def _shared_ints(a: np.ndarray) -> list[int]:
    """``a.tolist()``, equal values given as one int object (``tolist`` makes one an entry)."""
    if len(a) < 2:
        return a.tolist()
    uniq, inv = np.unique(a, return_inverse=True)
    if len(uniq) == len(a):
        return a.tolist()
    return list(map(uniq.tolist().__getitem__, inv.tolist()))


def _shared_bytes(vecs: list[bytes]) -> list[bytes]:
    """``vecs``, equal ones given as one object (the first of them)."""
    seen: dict[bytes, bytes] = {}
    return list(map(seen.setdefault, vecs, vecs))


def _paged_weight(entry: tuple[int, int, list[Chunk]]) -> int:
    return 120 + sum(c.nbytes + 200 for c in entry[2])  # the vectors, and Chunk objects


def _prepend(
    ts: np.ndarray,
    vals: np.ndarray,
    counts: np.ndarray,
    ots: np.ndarray,
    ovals: np.ndarray,
    extra: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Groups of samples (``counts`` each) with ``extra[i]`` samples from ``ots``/``ovals`` put
    before group ``i`` (``ots`` holds them group after group): the samples, counts, offsets."""
    total = counts + extra
    offsets = np.zeros(len(total) + 1, np.int64)
    np.cumsum(total, out=offsets[1:])
    head_pos = np.repeat(offsets[:-1] + extra, counts) + (
        np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    old_pos = np.repeat(offsets[:-1], extra) + (
        np.arange(int(extra.sum())) - np.repeat(np.cumsum(extra) - extra, extra)
    )
    out_ts = np.empty(int(offsets[-1]), np.int64)
    out_vals = np.empty(int(offsets[-1]), np.float64)
    out_ts[head_pos], out_vals[head_pos] = ts, vals
    out_ts[old_pos], out_vals[old_pos] = ots, ovals
    return out_ts, out_vals, total, offsets


def _merge(run: list[Chunk]) -> Chunk:
    """One chunk holding the samples of consecutive chunks (its id: the first one's start)."""
    ts, vals, _ = decode_chunks(run)
    return encode_chunk(ts, vals)


def dedupe_samples(
    ts: np.ndarray, vals: np.ndarray, owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep each series' samples strictly increasing (a chunk written twice, paged data that
    overlaps memory, out-of-order chunks). ``owner`` is sorted; only the rare series that need
    it are re-sorted. Of samples with one timestamp the last one is kept: pieces come in write
    order (the store, memory's chunks as they closed, the head), so the last write wins."""
    if len(ts) < 2:
        return ts, vals, owner
    same = owner[1:] == owner[:-1]
    if not (same & (ts[1:] <= ts[:-1])).any():
        return ts, vals, owner
    perm = np.arange(len(ts))
    bounds = np.flatnonzero(np.r_[True, ~same, True])
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if b - a > 1 and (np.diff(ts[a:b]) <= 0).any():
            perm[a:b] = a + np.argsort(ts[a:b], kind="stable")
    ts, vals, owner = ts[perm], vals[perm], owner[perm]
    keep = np.r_[~((owner[1:] == owner[:-1]) & (ts[1:] == ts[:-1])), True]
    return ts[keep], vals[keep], owner[keep]
