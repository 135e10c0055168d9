"""One shard's memstore: series registry, tag index, write buffers, encoded chunks, flush
groups, eviction and on-demand paging.

Ingest takes :class:`SampleBatch` columns and appends them to per-series write buffers with
numpy; the only Python loops run once per *series* of a batch, never per sample. A sample
whose timestamp is not newer than the newest of its series (in memory, in the column store, or
earlier in the same batch) is rejected and counted, as Prometheus does: nothing is reordered.
A buffer that reaches ``max_chunk_samples`` is closed into an encoded :class:`Chunk`.

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

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from filodb.memstore.chunks import Chunk, chunk_from_vectors, decode_chunks, encode_chunk
from filodb.memstore.exemplars import ExemplarRing
from filodb.memstore.index import TagIndex
from filodb.model.batch import SampleBatch
from filodb.model.cache import ByteBoundedCache
from filodb.model.cardinality import NO_MAX_TIME, NO_MIN_TIME, CardinalityStats, object_array
from filodb.model.labels import Labels, Matcher
from filodb.model.partkey import group_of, labels_of, part_key
from filodb.model.source import SeriesBlock

_INITIAL_CAPACITY = 32
_NO_TS = np.iinfo(np.int64).min
_NONE = np.iinfo(np.int64).max  # "nothing held" for the mem/store start times

Pager = Callable[[list[bytes], int, int], Iterable[Any]]


@dataclass
class IngestStats:
    """Counts of one :meth:`TimeSeriesShard.ingest` call."""

    accepted: int = 0
    out_of_order: int = 0
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
    part_keys: list[tuple[bytes, int, int]] = field(default_factory=list)
    series: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    generation: int = 0


class TimeSeriesShard:
    """Series and samples of one shard of one dataset."""

    def __init__(
        self, dataset: str, shard: int, *, max_chunk_samples: int = 480, num_groups: int = 8,
        memory_budget: int = 0, pager: Pager | None = None, flush_chunk_samples: int = 0,
        page_cache_bytes: int = 64 << 20, max_exemplars: int = 0,
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
        self._lock = threading.RLock()
        self._ids: dict[Labels, int] = {}
        self._labels: list[Labels] = []
        self._pk: list[bytes] = []
        self._index = TagIndex()
        self._ts: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._chunks: list[list[Chunk]] = []
        self._count = np.zeros(0, np.int64)  # samples in the write buffer
        self._first = np.zeros(0, np.int64)  # first and last sample anywhere (memory or store)
        self._last = np.zeros(0, np.int64)
        self._mem_start = np.zeros(0, np.int64)  # memory holds every sample from here on
        self._store_start = np.zeros(0, np.int64)  # first sample in the column store
        self._group = np.zeros(0, np.int64)
        self._touched = np.zeros(0, np.int64)  # generation of the last sample, per series
        self._pk_saved = np.zeros(0, np.int64)  # generation whose part key the store has
        self._generation = 0
        self.offset = 0  # the last log offset applied
        self.chunk_bytes = 0
        self.buffer_bytes = 0
        self.samples_ingested = 0
        self.samples_rejected = 0
        self.chunks_evicted = 0
        self.chunks_paged = 0  # read from the column store
        self.page_cache_hits = 0  # paged chunks served again from the page cache
        # per series: (lo, hi, chunks) = every stored chunk overlapping [lo, hi], as paged
        self._page_cache: ByteBoundedCache[int, tuple[int, int, list[Chunk]]] = ByteBoundedCache(
            max(0, int(page_cache_bytes)), _paged_weight
        )
        self.checkpoints: dict[int, int] = {}
        self.last_flush: dict[int, float] = {}

    # --- registry -------------------------------------------------------------------------
    @property
    def num_series(self) -> int:
        return len(self._labels)

    def _series_ids(self, series: Sequence[Labels]) -> tuple[np.ndarray, int]:
        ids = np.empty(len(series), np.int64)
        new_groups: list[int] = []
        for i, lb in enumerate(series):
            sid = self._ids.get(lb)
            if sid is None:
                sid = self._ids[lb] = len(self._labels)
                pk = part_key(lb)
                self._labels.append(lb)
                self._pk.append(pk)
                self._index.add(sid, lb)
                self._ts.append(np.empty(0, np.int64))
                self._vals.append(np.empty(0, np.float64))
                self._chunks.append([])
                new_groups.append(group_of(pk, self.num_groups))
            ids[i] = sid
        if new_groups:
            k = len(new_groups)

            def grow(a: np.ndarray, fill: int) -> np.ndarray:
                return np.concatenate([a, np.full(k, fill, np.int64)])

            self._count = grow(self._count, 0)
            self._first, self._last = grow(self._first, _NO_TS), grow(self._last, _NO_TS)
            self._mem_start, self._store_start = (
                grow(self._mem_start, _NONE),
                grow(self._store_start, _NONE),
            )
            self._touched, self._pk_saved = grow(self._touched, 0), grow(self._pk_saved, 0)
            self._group = np.concatenate([self._group, np.array(new_groups, np.int64)])
        return ids, len(new_groups)

    def load_part_keys(self, records: Iterable[Any]) -> int:
        """Register the series the column store knows (``part_key``, ``start_ms``, ``end_ms``
        records) before log replay: their data is in the store, none in memory."""
        recs = list(records)
        if not recs:
            return 0
        with self._lock:
            ids, _ = self._series_ids([labels_of(r.part_key) for r in recs])
            start = np.array([r.start_ms for r in recs], np.int64)
            end = np.array([r.end_ms for r in recs], np.int64)
            known = self._first[ids] != _NO_TS
            self._first[ids] = np.where(known, np.minimum(self._first[ids], start), start)
            self._last[ids] = np.maximum(self._last[ids], end)
            self._store_start[ids] = np.minimum(self._store_start[ids], start)
            return len(recs)

    # --- ingest ---------------------------------------------------------------------------
    def ingest(self, batch: SampleBatch, offset: int | None = None,
               flushed: dict[int, int] | None = None) -> IngestStats:  # fmt: skip
        """Append a batch (the log record at ``offset``); returns what was accepted/rejected.

        ``flushed`` (recovery) maps flush groups to their checkpoint: samples of a group whose
        checkpoint is at or past ``offset`` are already in the column store and are skipped.
        """
        with self._lock:
            if offset is not None:
                self.offset = max(self.offset, int(offset))
            ex = batch.exemplars
            if len(batch) == 0 and (ex is None or not self.exemplars.capacity):
                return IngestStats()
            ids, new = self._series_ids(batch.series)
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
            order = np.argsort(sid, kind="stable")  # arrival order kept within a series
            sid, ts, vals = sid[order], ts[order], vals[order]
            ok = _in_order(sid, ts, self._last)
            sid, ts, vals = sid[ok], ts[ok], vals[ok]
            self._append_grouped(sid, ts, vals)
            accepted = int(ok.sum())
            stats = IngestStats(accepted, len(ok) - accepted, new, skipped)
            self.samples_ingested += stats.accepted
            self.samples_rejected += stats.out_of_order
            return stats

    def _append_grouped(self, sid: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        if len(sid) == 0:
            return
        self._generation += 1
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        ends = np.r_[starts[1:], len(sid)]
        uniq = sid[starts]
        for s, a, b in zip(uniq.tolist(), starts.tolist(), ends.tolist(), strict=True):
            n = int(self._count[s])
            need = n + (b - a)
            if need > len(self._ts[s]):
                cap = max(need, 2 * len(self._ts[s]), _INITIAL_CAPACITY)
                self.buffer_bytes += 16 * (cap - len(self._ts[s]))
                self._ts[s] = _grow(self._ts[s], n, cap)
                self._vals[s] = _grow(self._vals[s], n, cap)
            self._ts[s][n:need] = ts[a:b]
            self._vals[s][n:need] = vals[a:b]
        first_ts = ts[starts]
        never = self._first[uniq] == _NO_TS
        self._first[uniq[never]] = first_ts[never]
        self._mem_start[uniq] = np.minimum(self._mem_start[uniq], first_ts)
        self._count[uniq] += ends - starts
        self._last[uniq] = ts[ends - 1]
        self._touched[uniq] = self._generation
        for s in uniq[self._count[uniq] >= self.max_chunk_samples].tolist():
            self._close(s)

    def _close(self, s: int) -> None:
        """Encode the series' write buffer into a chunk; the buffer starts small again."""
        n = int(self._count[s])
        if n == 0:
            return
        c = encode_chunk(self._ts[s][:n], self._vals[s][:n])
        self._chunks[s].append(c)
        self.chunk_bytes += c.nbytes
        self._count[s] = 0
        self._free_buffer(s, _INITIAL_CAPACITY)

    def _free_buffer(self, s: int, cap: int) -> None:
        self.buffer_bytes -= 16 * (len(self._ts[s]) - cap)
        self._ts[s] = np.empty(cap, np.int64)
        self._vals[s] = np.empty(cap, np.float64)

    # --- flush ----------------------------------------------------------------------------
    def prepare_flush(self, group: int) -> FlushData:
        """Close the group's buffers; its unflushed chunks and changed part keys, and the log
        offset they cover (every record up to it is in them or in earlier flushes)."""
        with self._lock:
            sids = np.flatnonzero(self._group == group)
            for s in sids[self._count[sids] > 0].tolist():
                self._close(s)
            fd = FlushData(group, self.offset, generation=self._generation)
            for s in sids.tolist():
                pk = self._pk[s]
                for run in self._flush_runs(self._chunks[s]):
                    fd.chunks.append((pk, run[0] if len(run) == 1 else _merge(run)))
                    fd.chunk_series.append(s)
                    fd.covers.append(run)
            dirty = sids[self._touched[sids] > self._pk_saved[sids]]
            fd.series = dirty
            fd.part_keys = [
                (self._pk[s], int(self._first[s]), int(self._last[s])) for s in dirty.tolist()
            ]
            return fd

    def commit_flush(self, fd: FlushData) -> None:
        """The column store holds ``fd``: its chunks become evictable; records the checkpoint."""
        with self._lock:
            for sid, run in zip(fd.chunk_series, fd.covers, strict=True):
                for c in run:
                    c.flushed = True
                self._store_start[sid] = min(int(self._store_start[sid]), run[0].start)
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
            if runs and rows + c.count <= self.flush_chunk_samples:
                runs[-1].append(c)
                rows += c.count
            else:
                runs.append([c])
                rows = c.count
        return runs

    # --- memory ---------------------------------------------------------------------------
    @property
    def memory_bytes(self) -> int:
        return self.chunk_bytes + self.buffer_bytes

    def _evict(self) -> None:
        if self.memory_budget <= 0 or self.memory_bytes <= self.memory_budget:
            return
        flushed = [(c.end, s) for s, cs in enumerate(self._chunks) for c in cs if c.flushed]
        flushed.sort()
        for _, s in flushed:
            if self.memory_bytes <= self.memory_budget:
                break
            c = self._chunks[s].pop(0)  # a series' chunks are in time order: oldest first
            self.chunk_bytes -= c.nbytes
            self.chunks_evicted += 1
            self._mem_start[s] = self._held_from(s)
        if self.memory_bytes > self.memory_budget:  # idle series: free their empty buffers
            for s in np.flatnonzero(self._count == 0).tolist():
                if len(self._ts[s]):
                    self._free_buffer(s, 0)

    def _held_from(self, s: int) -> int:
        if self._chunks[s]:
            return self._chunks[s][0].start
        if self._count[s]:
            return int(self._ts[s][0])
        return int(_NONE)

    def drop_before(self, cutoff_ms: int) -> int:
        """Retention: forget chunks that end before ``cutoff_ms``; returns how many."""
        dropped = 0
        with self._lock:
            self._page_cache.forget()  # the store drops what retention cuts, so must the cache
            for s, cs in enumerate(self._chunks):
                while cs and cs[0].end < cutoff_ms:
                    self.chunk_bytes -= cs.pop(0).nbytes
                    dropped += 1
                self._mem_start[s] = self._held_from(s) if cs or self._count[s] else _NONE
            gone = (self._last != _NO_TS) & (self._last < cutoff_ms)
            self._first[gone] = _NO_TS
            self._last[gone] = _NO_TS
            self._first = np.where(
                self._first != _NO_TS, np.maximum(self._first, cutoff_ms), _NO_TS
            )
            self._store_start = np.where(gone, _NONE, np.maximum(self._store_start, cutoff_ms))
        return dropped

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
            chunks: list[Chunk] = []
            owner: list[int] = []  # position in ids of each chunk
            limit: list[int] = []  # newest timestamp a chunk may contribute (paged: < mem_start)
            for i, s in enumerate(ids.tolist()):
                for c in paged.get(s, ()):
                    chunks.append(c)
                    owner.append(i)
                    limit.append(min(end_ms, int(self._mem_start[s]) - 1))
                for c in self._chunks[s]:
                    if c.end >= start_ms and c.start <= end_ms:
                        chunks.append(c)
                        owner.append(i)
                        limit.append(end_ms)
            cts, cvals, coffs = decode_chunks(chunks)
            n_chunk = np.diff(coffs)
            buf_n = self._count[ids]
            pieces_ts = [cts] + [
                self._ts[s][:n] for s, n in zip(ids.tolist(), buf_n.tolist(), strict=True) if n
            ]
            pieces_vals = [cvals] + [
                self._vals[s][:n] for s, n in zip(ids.tolist(), buf_n.tolist(), strict=True) if n
            ]
        ts = np.concatenate(pieces_ts)
        vals = np.concatenate(pieces_vals)
        owner_arr = np.array(owner, np.int64)
        buf_owner = np.flatnonzero(buf_n)
        sample_owner = np.concatenate(
            [np.repeat(owner_arr, n_chunk), np.repeat(buf_owner, buf_n[buf_owner])]
        )
        sample_limit = np.concatenate([np.repeat(np.array(limit, np.int64), n_chunk),
                                       np.full(int(buf_n.sum()), end_ms, np.int64)])  # fmt: skip
        keep = (ts >= start_ms) & (ts <= sample_limit)
        order = np.argsort(sample_owner[keep], kind="stable")  # series by series, pieces in order
        ts, vals, sample_owner = ts[keep][order], vals[keep][order], sample_owner[keep][order]
        ts, vals, sample_owner = _dedupe(ts, vals, sample_owner)
        counts = np.bincount(sample_owner, minlength=len(ids))
        present = np.flatnonzero(counts)
        offsets = np.zeros(len(present) + 1, np.int64)
        np.cumsum(counts[present], out=offsets[1:])
        labels = [self._labels[s] for s in ids[present].tolist()]
        return SeriesBlock(labels, offsets, ts, vals)

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
        by_pk = {self._pk[s]: s for s in missed}
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
            chunks = sum(len(cs) for cs in self._chunks) + int((self._count > 0).sum())
            lo = int(self._first[has].min()) if has.any() else NO_MIN_TIME
            hi = int(self._last[has].max()) if has.any() else NO_MAX_TIME
            n = self.num_series
        labels = {k: (object_array(v), c.astype(np.int64)) for k, (v, c) in counts.items()}
        return CardinalityStats(n, chunks, lo, hi, labels)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            n_chunks = sum(len(cs) for cs in self._chunks)
            in_chunks = sum(c.count for cs in self._chunks for c in cs)
            in_memory = int(((self._mem_start != _NONE) | (self._count > 0)).sum())
            return {
                "series": self.num_series,
                "series_in_memory": in_memory,
                "samples": in_chunks + int(self._count.sum()),  # in memory
                "chunks": n_chunks,
                "chunk_bytes": self.chunk_bytes,
                "buffer_samples": int(self._count.sum()),
                "memory_bytes": self.memory_bytes,
                "samples_ingested": self.samples_ingested,
                "samples_rejected": self.samples_rejected,
                "chunks_evicted": self.chunks_evicted,
                "chunks_paged": self.chunks_paged,
                "page_cache_hits": self.page_cache_hits,
                "page_cache_bytes": self._page_cache.nbytes,
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


def _paged_weight(entry: tuple[int, int, list[Chunk]]) -> int:
    return 120 + sum(c.nbytes + 200 for c in entry[2])  # the vectors, and Chunk objects


def _merge(run: list[Chunk]) -> Chunk:
    """One chunk holding the samples of consecutive chunks (its id: the first one's start)."""
    ts, vals, _ = decode_chunks(run)
    return encode_chunk(ts, vals)


def _dedupe(
    ts: np.ndarray, vals: np.ndarray, owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep each series' samples strictly increasing (a chunk written twice, paged data that
    overlaps memory). ``owner`` is sorted; only the rare series that need it are re-sorted."""
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
    keep = np.r_[True, ~((owner[1:] == owner[:-1]) & (ts[1:] == ts[:-1]))]
    return ts[keep], vals[keep], owner[keep]


def _grow(arr: np.ndarray, n: int, cap: int) -> np.ndarray:
    out = np.empty(cap, arr.dtype)
    out[:n] = arr[:n]
    return out


def _in_order(sid: np.ndarray, ts: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Mask of samples newer than everything before them in their series.

    ``sid`` is grouped (stable-sorted); ``last`` is each series' newest stored timestamp.
    Within a group the running maximum of earlier timestamps is computed with one
    ``maximum.accumulate`` over group-separated dense ranks.
    """
    n = len(ts)
    uniq, rank = np.unique(ts, return_inverse=True)
    starts = np.r_[True, sid[1:] != sid[:-1]]
    group = np.cumsum(starts) - 1
    u = len(uniq)
    key = group.astype(np.int64) * u + rank
    running = np.maximum.accumulate(key) - group * u  # rank of the max so far, incl. self
    prev_rank = np.empty(n, np.int64)
    prev_rank[1:] = running[:-1]
    prev_rank[starts] = -1
    prev_ts = np.where(prev_rank >= 0, uniq[np.maximum(prev_rank, 0)], _NO_TS)
    return ts > np.maximum(prev_ts, last[sid])
