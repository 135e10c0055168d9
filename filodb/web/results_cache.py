"""The results cache of range queries: finished extents of steps kept in Redis, so a dashboard
refresh that moves the end by a few seconds recomputes only the new steps.

Extents: the steps of a query (``start + i*step``) are grouped by ``EXTENT_STEPS`` on a grid
anchored at 0, so extent ``e`` holds the steps ``t`` with ``t ≡ start (mod step)`` in
``[e*W + phase, (e+1)*W + phase)`` (``W = EXTENT_STEPS*step``, ``phase = start mod step``):
queries over moving windows with the same step and phase share their extents. An extent is
*finished* when its last step plus the query's reach (:mod:`filodb.query.stepwise`) is at
least ``margin`` older than now (``margin`` = max(``query_cache_freshness``, ``ooo_window``):
samples may still arrive for anything newer) and any ``@ t`` is too; only finished extents are
stored. A finished extent missing from the cache is computed whole (also its steps before
``start``), so the next refresh finds it (when those extra steps fail, e.g. a NaN ``topk``
parameter there, the asked steps alone are computed and not stored); the unfinished tail is
computed for the asked steps.
Contiguous pieces to compute go to the engine as one range query each.

Key: ``filodb:{qc}:x:<dataset>:<generation>:<blake2b(canonical text, step, phase, lookback,
extent)>``; the canonical text is the printer's form of the parsed tree, so spelling does
not matter. The per-dataset generation (``filodb:{qc}:gen:<dataset>``) is bumped by
:func:`invalidate` (deletes, late samples, new downsampled data;
:mod:`filodb.shards.cache_generation`): older entries are never read again and age out.

Bounded size: every entry is in a sorted set by last use and a hash of sizes; a Lua script
stores an entry, adds its size to the total and evicts the least recently used until the total
fits ``query_cache_mb``; an entry larger than an eighth of that is not stored. A hit refreshes
the entry's last use. Redis unreachable: the query is answered without the cache. Values are
:func:`filodb.tasks.wire.pack` messages (msgpack header, raw arrays: never pickle). A piece
answered with warnings (a missing shard) is never stored.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgpack
import numpy as np
import redis

from filodb.errors import BadInputError, ExecutionError
from filodb.model.cache import BoundedCache
from filodb.model.labels import Labels
from filodb.query import ast
from filodb.query.printer import to_string
from filodb.query.result import Result
from filodb.query.stepwise import Reach, reach
from filodb.shards.cache_generation import PREFIX, generation_key, invalidate
from filodb.tasks.wire import flat_labels, pack, unflat_labels, unpack

log = logging.getLogger(__name__)
EXTENT_STEPS = 16
_LRU, _SIZES, _TOTAL = PREFIX + "lru", PREFIX + "sizes", PREFIX + "total"

# KEYS: lru, sizes, total, entry; ARGV: value, now, budget. Store, account, evict LRU.
_PUT = """
local old = redis.call('HGET', KEYS[2], KEYS[4])
if old then redis.call('DECRBY', KEYS[3], old) end
local size = string.len(ARGV[1]) + string.len(KEYS[4])
redis.call('SET', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], KEYS[4])
redis.call('HSET', KEYS[2], KEYS[4], size)
local total = redis.call('INCRBY', KEYS[3], size)
local budget = tonumber(ARGV[3])
while total > budget do
  local victim = redis.call('ZPOPMIN', KEYS[1])
  if #victim == 0 then break end
  local k = victim[1]
  local s = redis.call('HGET', KEYS[2], k)
  redis.call('HDEL', KEYS[2], k)
  redis.call('DEL', k)
  if s then total = redis.call('DECRBY', KEYS[3], s) end
end
return total
"""

Compute = Callable[[int, int], tuple[Result, bool]]
"""``compute(start_ms, end_ms)`` -> (the range answer over those steps, whether it may be stored)."""


@dataclass
class CacheStats:
    hits: int = 0  # extents answered from the cache
    misses: int = 0  # finished extents computed (then stored)
    uncacheable: int = 0  # range queries answered without the cache (off, or not splittable)


class ResultsCache:
    """Range queries through the cache. ``budget_bytes`` 0 turns it off; ``clock`` gives now
    in ms (tests inject one)."""

    def __init__(self, client: redis.Redis, budget_bytes: int, margin_ms: int,
                 clock: Callable[[], int] | None = None) -> None:  # fmt: skip
        self.client = client
        self.budget = budget_bytes
        self.margin_ms = margin_ms
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.stats = CacheStats()
        # called with each count (hits, misses, uncacheable): the web tier's counters
        self.on_count: Callable[[int, int, int], None] | None = None
        self._lock = threading.Lock()
        self._put = client.register_script(_PUT)
        # queries whose extents are too big to store (over a budget's eighth): answered
        # without splitting, as with the cache off (splitting, cutting and merging 100 k
        # series for nothing made a refresh slower than no cache at all)
        self._too_big: BoundedCache[str, bool] = BoundedCache(4096)

    def invalidate(self, dataset: str) -> int:
        """:func:`invalidate` on this cache's Redis (``services().results_cache.invalidate(ds)``)."""
        return invalidate(self.client, dataset)

    def _count(self, hits: int = 0, misses: int = 0, uncacheable: int = 0) -> None:
        with self._lock:
            self.stats.hits += hits
            self.stats.misses += misses
            self.stats.uncacheable += uncacheable
        if self.on_count is not None:
            self.on_count(hits, misses, uncacheable)

    def range(self, dataset: str, expr: ast.Expr, start: int, end: int, step: int,
              lookback_ms: int, compute: Compute) -> Result:  # fmt: skip
        r = reach(expr) if self.budget > 0 else None
        if r is None:
            self._count(uncacheable=1)
            return compute(start, end)[0]
        width = EXTENT_STEPS * step
        phase = start % step
        first_e, last_e = (start - phase) // width, (end - phase) // width
        done_before = self._finished_before(r, width, phase)
        finished = [e for e in range(first_e, last_e + 1) if e < done_before]
        try:
            gen = self.client.get(generation_key(dataset))
        except redis.RedisError:  # the cache is an optimisation: answer without it
            log.warning("results cache: Redis unreachable", exc_info=True)
            self._count(uncacheable=1)
            return compute(start, end)[0]
        base = hashlib.blake2b(
            f"{to_string(expr)}\x00{step}\x00{phase}\x00{lookback_ms}".encode(), digest_size=16
        ).hexdigest()
        whole_key = f"{dataset}:{base}"
        if self._too_big.get(whole_key):
            self._count(uncacheable=1)
            return compute(start, end)[0]
        keys = {e: f"{PREFIX}x:{dataset}:{int(gen or 0)}:{base}:{e}" for e in finished}
        pieces = self._lookup(keys)
        missing = [e for e in finished if e not in pieces]
        self._count(hits=len(pieces), misses=len(missing))
        warnings: list[str] = []
        infos: list[str] = []
        todo = sorted([*missing, *range(max(first_e, done_before), last_e + 1)])
        for lo_e, hi_e in _runs(todo):
            lo = lo_e * width + phase
            if lo_e >= done_before:  # unfinished: only the steps asked for
                lo = max(lo, start)
            hi = end if hi_e >= done_before else (hi_e + 1) * width + phase - step
            res, storable = self._compute(compute, lo, hi, start, end)
            warnings += res.warnings
            infos += res.infos
            parts = _by_extent(res, width, phase)
            for e in range(lo_e, hi_e + 1):
                part = pieces[e] = parts.get(e, _EMPTY)
                if storable and e in keys and not self._store(keys[e], part):
                    self._too_big.put(whole_key, True)
                    storable = False
        out = _merge([pieces[e] for e in range(first_e, last_e + 1)], start, end)
        out.warnings, out.infos = list(dict.fromkeys(warnings)), list(dict.fromkeys(infos))
        return out

    @staticmethod
    def _compute(compute: Compute, lo: int, hi: int, start: int, end: int) -> tuple[Result, bool]:
        """``compute(lo, hi)``; when steps outside ``[start, end]`` fail (``topk(scalar(x), ..)``
        with ``x`` absent there: a NaN parameter is an error), the asked steps alone, unstored."""
        try:
            return compute(lo, hi)
        except ExecutionError:
            if start <= lo and hi <= end:
                raise
            return compute(max(lo, start), min(hi, end))[0], False

    def _finished_before(self, r: Reach, width: int, phase: int) -> int:
        """The first extent index that is not finished."""
        horizon = self.clock() - self.margin_ms
        if r.at_ms is not None and r.at_ms > horizon:
            return -(2**62)
        # extent e is finished when (e+1)*width + phase - step + ahead <= horizon; step < width
        return (horizon - r.ahead_ms - phase) // width

    def _lookup(self, keys: dict[int, str]) -> dict[int, Columns]:
        if not keys:
            return {}
        es = list(keys)
        pipe = self.client.pipeline(transaction=False)
        pipe.mget([keys[e] for e in es])
        now = time.time()
        pipe.zadd(_LRU, {keys[e]: now for e in es}, xx=True)
        try:
            raw = pipe.execute()[0]
        except redis.RedisError:
            log.warning("results cache: Redis unreachable", exc_info=True)
            return {}
        out = {}
        for e, data in zip(es, raw, strict=True):
            if data is not None:
                try:
                    out[e] = _decode(data)
                except BadInputError:
                    continue  # a damaged entry is a miss (it is overwritten)
        return out

    def _store(self, key: str, part: Columns) -> bool:
        """Store one extent; False when it is too big to (one huge answer would flush
        everything else), checked on the arrays' size before encoding anything."""
        limit = self.budget // 8
        if part.ts.nbytes + part.vals.nbytes + part.lens.nbytes > limit:
            return False
        value = _encode(part)
        if len(value) > limit:
            return False
        try:
            self._put(keys=[_LRU, _SIZES, _TOTAL, key], args=[value, time.time(), self.budget])
        except redis.RedisError:
            log.warning("results cache: entry not stored", exc_info=True)
        return True


def _runs(todo: list[int]) -> list[tuple[int, int]]:
    """Sorted extent indexes as contiguous runs ``(first, last)``."""
    runs: list[tuple[int, int]] = []
    for e in todo:
        if runs and runs[-1][1] == e - 1:
            runs[-1] = (runs[-1][0], e)
        else:
            runs.append((e, e))
    return runs


@dataclass
class Columns:
    """Series of a piece as columns: ``labels[i]`` has ``lens[i]`` points, all points
    concatenated in ``ts``/``vals`` (series by series, each in time order)."""

    labels: list[Labels]
    lens: np.ndarray
    ts: np.ndarray
    vals: np.ndarray


_EMPTY = Columns([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


def _by_extent(res: Result, width: int, phase: int) -> dict[int, Columns]:
    """A computed range answer cut into extents, with numpy over all points at once."""
    if not res.series:
        return {}
    lens = np.array([len(ts) for _, ts, _ in res.series], np.int64)
    ts = np.concatenate([s[1] for s in res.series]).astype(np.int64, copy=False)
    vals = np.concatenate([s[2] for s in res.series]).astype(np.float64, copy=False)
    row = np.repeat(np.arange(len(lens)), lens)
    ext = (ts - phase) // width
    order = np.argsort(ext, kind="stable")  # by extent, then series, then time (as given)
    ext, row, ts, vals = ext[order], row[order], ts[order], vals[order]
    cuts = np.flatnonzero(np.diff(ext)) + 1
    out = {}
    for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(ext)].tolist(), strict=True):
        rows, counts = np.unique(row[a:b], return_counts=True)
        out[int(ext[a])] = Columns(
            [res.series[r][0] for r in rows.tolist()], counts, ts[a:b], vals[a:b]
        )
    return out


def _merge(parts: list[Columns], start: int, end: int) -> Result:
    """The pieces joined per series (pieces are in time order), cut to ``[start, end]`` and
    sorted by labels as the engine sorts them; Python steps per series only."""
    parts = [p for p in parts if p.labels]
    if not parts:
        return Result("matrix", [])
    lists = {id(p.labels): p.labels for p in parts}  # usually one: see _LABEL_LISTS
    names = (
        sorted({lb for lbs in lists.values() for lb in lbs})
        if len(lists) > 1
        else sorted(parts[0].labels)
    )
    index = {lb: i for i, lb in enumerate(names)}
    rows = {k: np.array([index[lb] for lb in lbs], np.int64) for k, lbs in lists.items()}
    row = np.concatenate([np.repeat(rows[id(p.labels)], p.lens) for p in parts])
    ts = np.concatenate([p.ts for p in parts])
    vals = np.concatenate([p.vals for p in parts])
    keep = (ts >= start) & (ts <= end)
    row, ts, vals = row[keep], ts[keep], vals[keep]
    order = np.argsort(row, kind="stable")
    row, ts, vals = row[order], ts[order], vals[order]
    counts = np.bincount(row, minlength=len(names))
    bounds = np.r_[0, np.cumsum(counts)].tolist()
    return Result("matrix", [(names[i], ts[bounds[i] : bounds[i + 1]], vals[bounds[i] : bounds[i + 1]])
                             for i in np.flatnonzero(counts).tolist()])  # fmt: skip


def _encode(part: Columns) -> bytes:
    blob = msgpack.packb(flat_labels(part.labels))
    return pack({"v": 2, "labels": blob},
                [part.lens.astype(np.int64), part.ts.astype(np.int64), part.vals.astype(np.float64)])  # fmt: skip


# The label lists of recent entries by their packed bytes: the extents of one query mostly
# hold the same series, so a refresh decodes them once and _merge sees one list object.
_LABEL_LISTS: BoundedCache[bytes, list[Labels]] = BoundedCache(256)


def _decode(data: bytes) -> Columns:
    header, arrays = unpack(data)
    try:
        lens, ts, vs = arrays
        blob = header["labels"]
        labels = _LABEL_LISTS.get(blob)
        if labels is None:
            labels = unflat_labels(msgpack.unpackb(blob, raw=False))
            _LABEL_LISTS.put(blob, labels)
        if (
            header.get("v") != 2
            or len(labels) != len(lens)
            or int(lens.sum()) != len(ts)
            or len(ts) != len(vs)
        ):
            raise BadInputError("malformed cache entry")
    except (KeyError, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as e:
        raise BadInputError(f"malformed cache entry: {e}") from e
    return Columns(labels, lens, ts, vs)
