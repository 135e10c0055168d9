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
:func:`invalidate` (deletes, late samples): older entries are never read again and age out.

Bounded size: every entry is in a sorted set by last use and a hash of sizes; a Lua script
stores an entry, adds its size to the total and evicts the least recently used until the total
fits ``query_cache_mb``. A hit refreshes the entry's last use. Values are
:func:`filodb.tasks.wire.pack` messages (msgpack header, raw arrays: never pickle). A piece
answered with warnings (a missing shard) is never stored.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import redis

from filodb.errors import BadInputError, ExecutionError
from filodb.model.labels import Labels
from filodb.query import ast
from filodb.query.printer import to_string
from filodb.query.result import Result
from filodb.query.stepwise import Reach, reach
from filodb.tasks.wire import flat_labels, pack, unflat_labels, unpack

EXTENT_STEPS = 16
PREFIX = "filodb:{qc}:"
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


def generation_key(dataset: str) -> str:
    return f"{PREFIX}gen:{dataset}"


def invalidate(client: redis.Redis, dataset: str) -> int:
    """Forget every cached extent of ``dataset`` (after a delete, or samples arriving late):
    bumps its generation; returns the new one."""
    return int(client.incr(generation_key(dataset)))


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
        self._lock = threading.Lock()
        self._put = client.register_script(_PUT)

    def invalidate(self, dataset: str) -> int:
        """:func:`invalidate` on this cache's Redis (``services().results_cache.invalidate(ds)``)."""
        return invalidate(self.client, dataset)

    def _count(self, hits: int = 0, misses: int = 0, uncacheable: int = 0) -> None:
        with self._lock:
            self.stats.hits += hits
            self.stats.misses += misses
            self.stats.uncacheable += uncacheable

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
        gen = self.client.get(generation_key(dataset))
        base = hashlib.blake2b(
            f"{to_string(expr)}\x00{step}\x00{phase}\x00{lookback_ms}".encode(), digest_size=16
        ).hexdigest()
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
            for e in range(lo_e, hi_e + 1):
                part = _slice(res, e * width + phase, (e + 1) * width + phase)
                pieces[e] = part
                if storable and e in keys:
                    self._store(keys[e], part)
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

    def _lookup(self, keys: dict[int, str]) -> dict[int, Result]:
        if not keys:
            return {}
        es = list(keys)
        pipe = self.client.pipeline(transaction=False)
        pipe.mget([keys[e] for e in es])
        now = time.time()
        pipe.zadd(_LRU, {keys[e]: now for e in es}, xx=True)
        raw = pipe.execute()[0]
        out = {}
        for e, data in zip(es, raw, strict=True):
            if data is not None:
                try:
                    out[e] = _decode(data)
                except BadInputError:
                    continue  # a damaged entry is a miss (it is overwritten)
        return out

    def _store(self, key: str, part: Result) -> None:
        self._put(keys=[_LRU, _SIZES, _TOTAL, key], args=[_encode(part), time.time(), self.budget])


def _runs(todo: list[int]) -> list[tuple[int, int]]:
    """Sorted extent indexes as contiguous runs ``(first, last)``."""
    runs: list[tuple[int, int]] = []
    for e in todo:
        if runs and runs[-1][1] == e - 1:
            runs[-1] = (runs[-1][0], e)
        else:
            runs.append((e, e))
    return runs


def _slice(res: Result, lo: int, hi: int) -> Result:
    """The points of ``res`` with ``lo <= t < hi`` (series without any dropped)."""
    out = []
    for lb, ts, vs in res.series:
        a, b = np.searchsorted(ts, [lo, hi])
        if b > a:
            out.append((lb, ts[a:b], vs[a:b]))
    return Result("matrix", out)


def _merge(parts: list[Result], start: int, end: int) -> Result:
    """Concatenate the pieces per series (in time order), keep ``[start, end]``, sort by labels
    as the engine does."""
    by: dict[Labels, list[tuple[np.ndarray, np.ndarray]]] = {}
    for p in parts:
        for lb, ts, vs in p.series:
            by.setdefault(lb, []).append((ts, vs))
    series = []
    for lb in sorted(by):
        segs = by[lb]
        ts = np.concatenate([s[0] for s in segs]) if len(segs) > 1 else segs[0][0]
        vs = np.concatenate([s[1] for s in segs]) if len(segs) > 1 else segs[0][1]
        a, b = np.searchsorted(ts, [start, end + 1])
        if b > a:
            series.append((lb, ts[a:b], vs[a:b]))
    return Result("matrix", series)


def _encode(part: Result) -> bytes:
    lens = np.array([len(ts) for _, ts, _ in part.series], np.int64)
    ts = np.concatenate([s[1] for s in part.series]) if part.series else np.zeros(0, np.int64)
    vs = np.concatenate([s[2] for s in part.series]) if part.series else np.zeros(0)
    return pack({"v": 1, "labels": flat_labels([s[0] for s in part.series])},
                [lens, ts.astype(np.int64), vs.astype(np.float64)])  # fmt: skip


def _decode(data: bytes) -> Result:
    header, arrays = unpack(data)
    try:
        lens, ts, vs = arrays
        labels = unflat_labels(header["labels"])
        if header.get("v") != 1 or len(labels) != len(lens) or int(lens.sum()) != len(ts):
            raise BadInputError("malformed cache entry")
    except (KeyError, ValueError, TypeError) as e:
        raise BadInputError(f"malformed cache entry: {e}") from e
    if not len(lens):
        return Result("matrix", [])
    cut = np.cumsum(lens)[:-1]
    return Result("matrix", list(zip(labels, np.split(ts, cut), np.split(vs, cut), strict=True)))
