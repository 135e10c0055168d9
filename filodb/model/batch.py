"""Column batches: how samples travel from a parser to the log and into a memstore.

A :class:`SampleBatch` holds many samples of many series in columns. Each distinct label set
appears once in ``series``; ``sidx[i]`` says which series sample ``i`` belongs to. Parsers
(remote write, Influx, Graphite) produce batches; the router splits them per shard; the log
carries them as msgpack metadata plus raw array bytes (never pickle); the memstore ingests
them with numpy, so no per-sample Python loop runs anywhere on the path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import cramjam
import msgpack
import numpy as np
import xxhash

from filodb.model.cache import BoundedCache
from filodb.model.exemplars import Exemplars
from filodb.model.labels import Labels
from filodb.model.partkey import labels_of, part_key
from filodb.model.partkeys import PartKeyLabels, PartKeys
from filodb.model.shardkey import part_key_hash, shard_key_hash, shard_key_of

if TYPE_CHECKING:
    from filodb.model.record import RecordBatch


class Routed(Protocol):
    """Where a door's series-key cache holds a batch's series
    (:class:`filodb.model.identity.Routed`; a protocol here, since identity imports this
    module)."""

    def take(self, keep: np.ndarray) -> Routed: ...


T = TypeVar("T")
BATCH_FORMAT_VERSION = 4  # what to_bytes writes; from_bytes reads 1 to 4


@dataclass
class SampleBatch:
    """Samples in columns.

    ``series``: distinct label sets. ``sidx``: int32 index into ``series`` per sample.
    ``ts``: int64 milliseconds since the epoch. ``vals``: float64, bit patterns kept (the stale
    marker NaN survives). ``types``: optional metric type per series name from metadata
    ("counter", "gauge", "histogram", ...), keyed by metric family name.

    ``keys``: optional uint64 per series, the xxh64 of its part key
    (:func:`~filodb.model.partkey.part_key`, the canonical bytes of the sorted label set), so a
    consumer can map series to its own ids with numpy (equal keys of different label sets are
    possible in principle: compare the label sets where a key is new). Batches read from the
    log have them; :meth:`series_keys` computes them (cached per label set) when None.

    ``exemplars``: optional :class:`~filodb.model.exemplars.Exemplars` of the series (remote
    write's field 3); they follow their series through ``take_series``, ``split`` and the log.

    ``pks`` and ``routes``: optional, one per series, what a door that caches series identity
    (:func:`series_identity`) already knows: the part keys :meth:`to_bytes` writes and the
    hashes the router shards by (``shard_key_hash << 32 | part_key_hash``, see
    :func:`~filodb.model.shardkey.shards_of_routes`). They follow ``take_series`` and
    ``split``; they are not on the wire.

    ``routed``: optional, where a door's series-key cache holds the series
    (:class:`~filodb.model.identity.Routed`: the door checks the samples against the newest
    timestamp it routed per series). It follows ``take_series`` and ``take_samples``, not
    ``split``; not on the wire.
    """

    series: Sequence[Labels]  # a list, or PartKeyLabels (a door's: its part keys decoded)
    sidx: np.ndarray
    ts: np.ndarray
    vals: np.ndarray
    types: dict[str, str] = field(default_factory=dict)
    keys: np.ndarray | None = None
    exemplars: Exemplars | None = None
    pks: Sequence[bytes] | None = None  # a list, or PartKeys (a door's part-key arena)
    routes: np.ndarray | None = None
    routed: Routed | None = None

    def __post_init__(self) -> None:
        self.sidx = np.ascontiguousarray(self.sidx, dtype=np.int32)
        self.ts = np.ascontiguousarray(self.ts, dtype=np.int64)
        self.vals = np.ascontiguousarray(self.vals, dtype=np.float64)
        if not (len(self.sidx) == len(self.ts) == len(self.vals)):
            raise ValueError("sidx, ts and vals must have the same length")
        if self.keys is not None:
            self.keys = np.ascontiguousarray(self.keys, dtype=np.uint64)
            if len(self.keys) != len(self.series):
                raise ValueError("keys must have one entry per series")
        if self.pks is not None and len(self.pks) != len(self.series):
            raise ValueError("pks must have one entry per series")
        if self.routes is not None and len(self.routes) != len(self.series):
            raise ValueError("routes must have one entry per series")

    def series_keys(self) -> np.ndarray:
        """``keys``, computed (and kept) when the batch has none."""
        if self.keys is None:
            self.keys = _encoded(self.series)[1]
        return self.keys

    @classmethod
    def empty(cls) -> SampleBatch:
        return cls([], np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64))

    def __len__(self) -> int:
        return len(self.ts)

    def take_series(self, keep: np.ndarray) -> SampleBatch:
        """The sub-batch of the series where boolean ``keep`` (one per series) is True."""
        keep = np.asarray(keep, bool)
        new_index = np.cumsum(keep) - 1
        mask = keep[self.sidx]
        kept = np.flatnonzero(keep).tolist()
        series: Sequence[Labels] = (
            self.series.take(keep)
            if isinstance(self.series, PartKeyLabels)
            else [self.series[i] for i in kept]
        )
        return SampleBatch(
            series,
            new_index[self.sidx[mask]].astype(np.int32),
            self.ts[mask],
            self.vals[mask],
            self.types,
            None if self.keys is None else self.keys[keep],
            None
            if self.exemplars is None
            else self.exemplars.take(keep[self.exemplars.sidx], new_index),
            None if self.pks is None else _take_pks(self.pks, kept, keep),
            None if self.routes is None else self.routes[keep],
            None if self.routed is None else self.routed.take(keep),
        )

    def take_samples(self, keep: np.ndarray) -> SampleBatch:
        """The samples where boolean ``keep`` (one per sample) is True, without the series
        left with none (and their exemplars)."""
        keep = np.asarray(keep, bool)
        out = SampleBatch(self.series, self.sidx[keep], self.ts[keep], self.vals[keep],
                          self.types, self.keys, self.exemplars, self.pks, self.routes,
                          self.routed)  # fmt: skip
        has = np.bincount(out.sidx, minlength=len(self.series)) > 0
        return out if has.all() else out.take_series(has)

    def split(self, shard_of_series: np.ndarray, num_shards: int) -> dict[int, SampleBatch]:
        """Split into one batch per shard, given the shard of each series: two stable sorts
        (series, samples by their series' shard: radix sorts on 16-bit shard numbers) and
        slices, whatever the number of shards. Samples keep their order within a shard."""
        return {shard: SampleBatch(*part)
                for shard, part in self._parts(shard_of_series, num_shards, True)}  # fmt: skip

    def shard_records(
        self, shard_of_series: np.ndarray, num_shards: int
    ) -> tuple[dict[int, bytes], dict[int, int]]:
        """The log record of each shard's part and its number of samples: the bytes of
        :meth:`split`'s parts' :meth:`to_bytes`, written by one kernel for every shard
        (:func:`~filodb.model.recordpack.write_records`), no label set or part key touched one
        at a time, and laid out per shard by one kernel too
        (:func:`~filodb.model.recordpack.shard_layout`: on a small body the dozen numpy steps
        it replaced cost more than the work)."""
        from filodb.model.recordpack import shard_layout  # numba: not loaded for the CLI's sake

        of = np.asarray(shard_of_series, np.int64)
        pk_arena, pk_start, pk_end = _pk_arena(self.series, self.pks)
        shards, s_bounds, n_bounds, rank, sidx, ts, vals, pk_s, pk_e = shard_layout(
            of, self.sidx, self.ts, self.vals, pk_start, pk_end, num_shards
        )
        if not len(shards):
            return {}, {}
        ex = self.exemplars
        ex_parts: dict[int, Exemplars | None] = {}
        if ex is not None and len(ex):
            ex_shard = of[ex.sidx]
            for shard in np.unique(ex_shard).tolist():
                ex_parts[shard] = ex.take(np.asarray(ex_shard == shard), rank)
        at = shards.tolist()
        recs = _records(sidx, ts, vals, pk_arena, pk_s, pk_e, s_bounds, n_bounds, self.types,
                        [ex_parts.get(s) for s in at] if ex_parts else None)  # fmt: skip
        return dict(zip(at, recs, strict=True)), dict(
            zip(at, np.diff(n_bounds).tolist(), strict=True)
        )

    def _layout(self, shard_of_series: np.ndarray, num_shards: int) -> tuple[np.ndarray, ...]:
        """Where each series and sample goes when split per shard: the shard of each series,
        series per shard, the series in shard order, each series' index within its shard,
        the samples in shard order, samples per shard, and the shards with series (two
        stable radix sorts on 16-bit shard numbers)."""
        of: np.ndarray = np.asarray(
            shard_of_series, np.int16 if num_shards <= 1 << 15 else np.int64
        )
        s_count = np.bincount(of, minlength=num_shards)
        s_start = np.cumsum(s_count) - s_count
        s_order = np.argsort(of, kind="stable")
        rank = np.empty(len(of), np.int32)  # a series' index within its shard's batch
        rank[s_order] = np.arange(len(of)) - s_start[of[s_order]]
        sample_shard = of[self.sidx]
        order = np.argsort(sample_shard, kind="stable")
        n_count = np.bincount(sample_shard, minlength=num_shards)
        return of, s_count, s_order, rank, order, n_count, np.flatnonzero(s_count)

    def _parts(self, shard_of_series: np.ndarray, num_shards: int, with_series: bool
               ) -> Iterator[tuple[int, tuple[Any, ...]]]:  # fmt: skip
        """Each shard's part as SampleBatch's fields (``series`` None unless
        ``with_series``)."""
        of, s_count, s_order, rank, order, n_count, shards = self._layout(
            shard_of_series, num_shards
        )
        s_start = np.cumsum(s_count) - s_count
        bounds = np.concatenate(([0], np.cumsum(n_count))).tolist()
        sidx, ts, vals = rank[self.sidx][order], self.ts[order], self.vals[order]
        at = s_order.tolist()
        series: Sequence[Labels] | None = None
        if with_series:
            series = (self.series.take(s_order) if isinstance(self.series, PartKeyLabels)
                      else pick(self.series, at))  # fmt: skip
        keys = None if self.keys is None else self.keys[s_order]
        pks = None if self.pks is None else _take_pks(self.pks, at, s_order)
        routes = None if self.routes is None else self.routes[s_order]
        ex = self.exemplars
        ex_shard = None if ex is None else of[ex.sidx]
        for shard, a, c in zip(shards.tolist(), s_start[shards].tolist(),
                               s_count[shards].tolist(), strict=True):  # fmt: skip
            x, y = bounds[shard], bounds[shard + 1]
            yield shard, (None if series is None else series[a : a + c], sidx[x:y], ts[x:y],
                          vals[x:y], self.types, None if keys is None else keys[a : a + c],
                          None if ex is None else ex.take(np.asarray(ex_shard == shard), rank),
                          None if pks is None else pks[a : a + c],
                          None if routes is None else routes[a : a + c])  # fmt: skip

    # --- wire format -------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """msgpack header, then the columns and the series' part keys (LZ4-compressed; see
        docs/architecture.md, "Log record format")."""
        pk_arena, pk_start, pk_end = _pk_arena(self.series, self.pks)
        ex = self.exemplars if self.exemplars is not None and len(self.exemplars) else None
        return _records(self.sidx, self.ts, self.vals, pk_arena, pk_start, pk_end,
                        _bounds([len(pk_start)]), _bounds([len(self.ts)]), self.types,
                        None if ex is None else [ex])[0]  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> SampleBatch:
        """Inverse of :meth:`to_bytes` (and of version 1's: see
        :func:`~filodb.model.record.read_record`); raises ``BadInputError`` on a malformed
        record. Every part key is decoded (a memstore reads records as
        :class:`~filodb.model.record.RecordBatch` instead, decoding only the series it does
        not know)."""
        from filodb.model.record import read_record  # numba: not loaded for the CLI's sake

        r = read_record(data)
        pks = [r.part_key(i) for i in range(r.num_series)]
        series = r.series
        if series is None:
            decoded = {pk: labels_of(pk) for pk in dict.fromkeys(pks)}
            series = [decoded[pk] for pk in pks]
        keys = np.fromiter(map(xxhash.xxh64_intdigest, pks), np.uint64, len(pks))
        return cls(series, r.sidx, r.ts, r.vals, r.types, keys, r.exemplars, pks)

    def as_record(self) -> RecordBatch:
        """The batch with its series as part keys, the form a memstore ingests."""
        from filodb.model.record import RecordBatch  # numba: not loaded for the CLI's sake
        from filodb.model.xxh64 import arena

        if isinstance(self.pks, PartKeys):  # a door's arena: its bytes as they are
            joined, ends = self.pks.joined()
            return RecordBatch(np.frombuffer(joined, np.uint8), np.asarray(ends, np.int64),
                               self.sidx, self.ts, self.vals, self.types, self.exemplars,
                               self.series, self.keys)  # fmt: skip
        if self.pks is not None:
            pks, keys = self.pks, self.keys
        elif self.keys is not None:  # not through the cache (a churning caller keys its own)
            pks, keys = [part_key(lb) for lb in self.series], self.keys
        else:
            pks, keys = _encoded(self.series)
        data, ends = arena(pks)
        return RecordBatch(data, ends, self.sidx, self.ts, self.vals, self.types,
                           self.exemplars, self.series, keys)  # fmt: skip


def _part_keys(series: Sequence[Labels] | None, pks: Sequence[bytes] | None) -> Sequence[bytes]:
    """A batch's part keys: the ones it carries, else those of its label sets (cached)."""
    if pks is not None:
        return pks
    assert series is not None
    return _encoded(series)[0]


def _pk_arena(series: Sequence[Labels] | None, pks: Sequence[bytes] | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """A batch's part keys as an arena and where each starts and ends (int64)."""
    if isinstance(pks, PartKeys):  # a door's arena: as it is
        return (pks.arena, np.asarray(pks.start, np.int64), np.asarray(pks.end, np.int64))
    from filodb.model.xxh64 import arena  # numba: not loaded for the CLI's sake

    data, ends = arena(_part_keys(series, pks))
    return data, ends - np.diff(ends, prepend=0), ends


def _bounds(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


def _records(sidx: np.ndarray, ts: np.ndarray, vals: np.ndarray, pk_arena: np.ndarray,
             pk_start: np.ndarray, pk_end: np.ndarray, s_bounds: np.ndarray,
             n_bounds: np.ndarray, types: dict[str, str],
             exemplars: Sequence[Exemplars | None] | None) -> list[bytes]:  # fmt: skip
    """Version 4 records (:mod:`filodb.model.recordpack`): record ``r`` holds samples
    ``n_bounds[r]:n_bounds[r+1]`` and series ``s_bounds[r]:s_bounds[r+1]``; ``types`` go in
    every record's header, ``exemplars[r]`` (when there) in record ``r``'s. Payloads are
    LZ4-compressed where that makes them smaller."""
    from filodb.model.libc import MEMCPY  # numba: not loaded for the CLI's sake
    from filodb.model.recordpack import C_AT, HEAD, LZ4_LIBRARY_MIN, write_records

    k = len(s_bounds) - 1
    head = msgpack.packb("types") + msgpack.packb(types) if types else b""
    if exemplars is None:
        extra, x_bounds = head * k, np.arange(k + 1, dtype=np.int64) * len(head)
        x_count = np.full(k, 1 if head else 0, np.int64)
    else:
        parts = [head + (b"" if x is None or not len(x) else
                         msgpack.packb("x") + msgpack.packb(x.to_wire())) for x in exemplars]  # fmt: skip
        extra, x_bounds = b"".join(parts), _bounds([len(p) for p in parts])
        x_count = np.array([(1 if head else 0) + (len(p) > len(head)) for p in parts], np.int64)
    buf, ends = write_records(np.asarray(sidx, np.int32), np.asarray(ts, np.int64),
                              np.ascontiguousarray(vals, np.float64), pk_arena, pk_start, pk_end,
                              s_bounds, n_bounds, np.frombuffer(extra, np.uint8), x_bounds,
                              x_count, LZ4_LIBRARY_MIN, MEMCPY)  # fmt: skip
    bounds = [0, *ends.tolist()]
    payload = np.diff(bounds) - 4 - HEAD - np.diff(x_bounds)
    big = payload >= LZ4_LIBRARY_MIN
    if not big.any():
        data = buf.tobytes()
        return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    mv = memoryview(buf.data)
    # a record compressed here is not copied as it is first (a body's large records are
    # 20-64 kB each; the copies were thrown away)
    out: list[bytes] = [b"" if g else bytes(mv[a:b])
                        for a, b, g in zip(bounds[:-1], bounds[1:], big.tolist(), strict=True)]  # fmt: skip
    for r in np.flatnonzero(big).tolist():
        a, b = bounds[r], bounds[r + 1]
        hl = 4 + HEAD + int(x_bounds[r + 1] - x_bounds[r])
        block = cramjam.lz4.compress_block(mv[a + hl : b])  # size first
        if len(block) < payload[r]:
            head = bytearray(mv[a : a + hl])
            head[4 + C_AT] = 1
            out[r] = b"".join([head, block])
        else:
            out[r] = bytes(mv[a:b])
    return out


# Part key and key by label set (the writers' side).
_BY_LABELS: BoundedCache[Labels, tuple[bytes, int]] = BoundedCache(1_000_000)
_PUT_LOCK = threading.Lock()  # BoundedCache.put is not atomic; web threads share the caches


def _encoded(series: Sequence[Labels]) -> tuple[list[bytes], np.ndarray]:
    """Part keys and their xxh64 keys of label sets (cached: one dict lookup per known set)."""
    cache = _BY_LABELS
    got = [cache.get(lb) for lb in series]
    if None in got:
        for i, e in enumerate(got):
            if e is None:
                pk = part_key(series[i])
                got[i] = e = (pk, xxhash.xxh64_intdigest(pk))
                with _PUT_LOCK:
                    cache.put(series[i], e)
    pks = [e[0] for e in got]
    return pks, np.fromiter((e[1] for e in got), np.uint64, len(got))


def pick(seq: Sequence[T], at: list[int]) -> list[T]:
    """``[seq[i] for i in at]``, in C."""
    if isinstance(seq, PartKeyLabels):
        seq = seq.items()  # type: ignore[assignment]  # label sets, when T is Labels
    if len(at) > 1:
        return list(itemgetter(*at)(seq))
    return [seq[i] for i in at]


def _take_pks(pks: Sequence[bytes], at: list[int], where: np.ndarray) -> Sequence[bytes]:
    """The part keys of series ``at`` (``where``: the same as an index array or a mask)."""
    if isinstance(pks, PartKeys):
        return pks.take(where)
    return pick(pks, at)


def series_identity(labels: Labels) -> tuple[bytes, int, int]:
    """What a door caches per series so a series seen before costs no hashing of its labels:
    its part key, the part key's xxh64 (``keys``) and its route (``routes``: shard-key hash
    << 32 | part-key hash)."""
    pk = part_key(labels)
    route = shard_key_hash(shard_key_of(labels)) << 32 | part_key_hash(labels)
    return pk, xxhash.xxh64_intdigest(pk), route


def concat_batches(batches: Sequence[SampleBatch]) -> SampleBatch:
    """Concatenate batches, re-interning label sets so each appears once."""
    batches = [b for b in batches if len(b.series)]
    if not batches:
        return SampleBatch.empty()
    if len(batches) == 1:
        return batches[0]
    index: dict[Labels, int] = {}
    parts = []
    types: dict[str, str] = {}
    ex_parts: list[tuple[Exemplars, np.ndarray]] = []
    firsts: list[tuple[int, int]] = []  # (batch, index in it) of each distinct series
    for k, b in enumerate(batches):
        remap = np.array([index.setdefault(lb, len(index)) for lb in b.series], np.int32)
        ids, first = np.unique(remap, return_index=True)  # new ids ascend as they appear
        firsts.extend((k, i) for i in first[ids >= len(firsts)].tolist())
        parts.append(remap[b.sidx])
        types.update(b.types)
        if b.exemplars is not None:
            ex_parts.append((b.exemplars, remap))
    keys = None
    if all(b.keys is not None for b in batches):  # kept: a consumer may map series by key
        keys = np.array([batches[k].keys[i] for k, i in firsts], np.uint64)  # type: ignore[index]
    return SampleBatch(
        list(index),
        np.concatenate(parts),
        np.concatenate([b.ts for b in batches]),
        np.concatenate([b.vals for b in batches]),
        types,
        keys,
        Exemplars.concat(ex_parts),
    )
