"""Series identity resolved once at a door: raw key bytes → series, for whole bodies at once.

A protocol names a series by bytes (remote write's Label fields, Influx's series key and field
name). Senders repeat the same series body after body, so a door looks those bytes up before
building anything per series. :class:`SeriesKeyCache` keeps the bytes of every key it has seen
in numpy arrays (an arena, an open-addressing hash table, per-entry offsets) and one numba
kernel (``nogil``) hashes and finds all the keys of a body, comparing the bytes, so a hit is
exact (no hash collision can give a series another's samples) and costs no Python step. The
misses of a body are built together by the door's ``fast`` function when it has one (one
numba call reads, checks and hashes them all: :mod:`filodb.model.fastkeys`); the keys it
leaves (unusual bytes, refusals) reach Python, which builds the label set (``make``) once
per new key.

A key is up to two byte ranges of one buffer plus a ``kind`` byte (the caller's tag, e.g. an
Influx line's only field named ``value``): ``buf[a0:a1]``, ``buf[b0:b1]``, ``kind``. Entries
map to interned label sets, so two keys that give the same labels are one series: interned
by their canonical part key (a second open-addressing table, by the part key's xxh64 and its
bytes), with no Python object a series (a batch's label sets are its part keys decoded when
something asks: :class:`~filodb.model.partkeys.PartKeyLabels`). Per label set the cache
keeps what the rest of the write path needs (:func:`series_identity`): the part key (in a
byte arena, handed down as :class:`~filodb.model.partkeys.PartKeys`), the key (xxh64 of the
part key) and the route (shard-key hash << 32 | part-key hash,
:func:`~filodb.model.shardkey.shards_of_routes`). :meth:`SeriesKeyCache.resolve` answers per
key the index of its series among the body's distinct label sets, in order of first
appearance (a :class:`~filodb.model.batch.SampleBatch`'s ``series`` and ``sidx``), with their
part keys, keys and routes gathered by numpy, and -1 where ``make`` refused the key (not
cached: the caller reports it).

Bounded: once more than ``max_entries`` keys are held, the next call starts from empty (the
bound is exceeded by at most one body's new keys). Thread-safe (one lock per cache).

Newest routed timestamp: per label set id and per *scope* (a door's dataset, with a token
that changes when what the workers hold of it may go back: created again, series deleted) the
cache keeps the newest timestamp a door wrote to the log (an int64 column,
:meth:`SeriesKeyCache.routed`), so the door can refuse a later body's samples that the workers
would drop as out of order (:meth:`SeriesKeyCache.late`; a body that reaches its series'
newest is taken as a resend and left to the workers). A batch carries where its series are
in the cache (:class:`Routed`: the label set ids and the cache's generation, which a
start-from-empty bumps, so ids of an earlier generation are never read against new ones). Both
calls are one numba pass over the body's samples under the cache's lock; the newest only
grows (a maximum), and is set after the log took the samples, so a race between two bodies can
miss a refusal, never refuse a sample the log holds nothing newer than.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba as nb
import numpy as np

from filodb.model.batch import pick, series_identity
from filodb.model.borrow import borrowed
from filodb.model.fastkeys import Made
from filodb.model.labels import Labels
from filodb.model.libc import MEMCMP
from filodb.model.loads import u64_le
from filodb.model.partkeys import PartKeyLabels, PartKeys


@nb.njit(cache=True, nogil=True, inline="always")
def _mix(h: np.uint64, buf: np.ndarray, a: int, b: int) -> np.uint64:  # pragma: no cover - numba
    """``h`` mixed with the bytes ``buf[a:b]``, 8 at a time (one load each,
    :func:`~filodb.model.loads.u64_le`), and their count."""
    m = np.uint64(0x9E3779B97F4A7C15)
    i = a
    while i + 8 <= b:
        h = (h ^ u64_le(buf, i)) * m
        h ^= h >> np.uint64(29)
        i += 8
    t = np.uint64(b - a) << np.uint64(56)  # the count: "ab" + "c" is not "a" + "bc"
    if i < b:
        if i + 8 <= len(buf):  # the tail in one load, the bytes past b masked off
            t ^= u64_le(buf, i) & ((np.uint64(1) << np.uint64(8 * (b - i))) - np.uint64(1))
        else:
            s = np.uint64(0)
            while i < b:
                t ^= np.uint64(buf[i]) << s
                s += np.uint64(8)
                i += 1
    h = (h ^ t) * m
    return h ^ (h >> np.uint64(29))


@nb.njit(cache=True, nogil=True, inline="always")
def _hash(
    buf: np.ndarray, a0: int, a1: int, b0: int, b1: int, kind: int
) -> np.uint64:  # pragma: no cover - numba
    h = _mix(np.uint64(14695981039346656037) ^ np.uint64(kind), buf, a0, a1)
    h = _mix(h, buf, b0, b1)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@nb.njit(cache=True, nogil=True, inline="always")
def _find(buf: np.ndarray, a0: int, a1: int, b0: int, b1: int, kind: int, h: np.uint64,
          table: np.ndarray, ehash: np.ndarray, eoff: np.ndarray, ela: np.ndarray,
          elb: np.ndarray, ekind: np.ndarray, arena: np.ndarray, cmp: Any
          ) -> tuple[int, np.uint64]:  # fmt: skip  # pragma: no cover - numba
    """(entry or -1, the free slot where it would go)."""
    mask = np.uint64(len(table) - 1)
    slot = h & mask
    la, lb = a1 - a0, b1 - b0
    pa, pb = arena.ctypes.data, buf.ctypes.data
    while True:
        e = table[slot] - 1
        if e < 0:
            return -1, slot
        if ehash[e] == h and ekind[e] == kind and ela[e] == la and elb[e] == lb:
            o = eoff[e]
            if cmp(pa + o, pb + a0, la) == 0 and cmp(pa + o + la, pb + b0, lb) == 0:
                return e, slot
        slot = (slot + np.uint64(1)) & mask


@nb.njit(cache=True, nogil=True)
def _lookup(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray,
            kind: np.ndarray, table: np.ndarray, ehash: np.ndarray, eoff: np.ndarray,
            ela: np.ndarray, elb: np.ndarray, ekind: np.ndarray, arena: np.ndarray, cmp: Any
            ) -> np.ndarray:  # fmt: skip  # pragma: no cover - numba
    """The entry of each key, -1 where none. In passes, each a loop of independent loads: the
    hashes, then each key's first slot, then that slot's entry, then the bytes of the entries
    that match so far. A series is met once a scrape, so its slot and entry are rarely in the
    CPU's caches: one key at a time, each miss waited for the one before (~480 ns a key with
    the cache's arrays evicted, measured); in passes the CPU has many in flight (~250 ns)."""
    buf = borrowed(buf)  # handed to the inlined hash a key (model/borrow.py)
    n = len(a0)
    mask = np.uint64(len(table) - 1)
    hs = np.empty(n, np.uint64)
    for r in range(n):
        hs[r] = _hash(buf, a0[r], a1[r], b0[r], b1[r], kind[r])
    out = np.empty(n, np.int64)
    for r in range(n):
        out[r] = table[hs[r] & mask] - 1
    for r in range(n):
        e = out[r]
        if e >= 0 and not (ehash[e] == hs[r] and ekind[e] == kind[r]
                           and ela[e] == a1[r] - a0[r] and elb[e] == b1[r] - b0[r]):  # fmt: skip
            out[r] = -2  # another key in the first slot: probe on
    pa, pb = arena.ctypes.data, buf.ctypes.data
    for r in range(n):
        e = out[r]
        if e >= 0:
            la = a1[r] - a0[r]
            o = eoff[e]
            if (
                cmp(pa + o, pb + a0[r], la) == 0
                and cmp(pa + o + la, pb + b0[r], b1[r] - b0[r]) == 0
            ):
                continue
        if e != -1:  # not the key, or another one first: the whole probe
            out[r], _ = _find(buf, a0[r], a1[r], b0[r], b1[r], kind[r], hs[r], table, ehash,
                              eoff, ela, elb, ekind, arena, cmp)  # fmt: skip
    return out


@nb.njit(cache=True, nogil=True)
def _insert(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray,
            kind: np.ndarray, table: np.ndarray, ehash: np.ndarray, eoff: np.ndarray,
            ela: np.ndarray, elb: np.ndarray, ekind: np.ndarray, arena: np.ndarray,
            cmp: Any, state: np.ndarray) -> np.ndarray:  # fmt: skip  # pragma: no cover - numba
    """Add the keys not held yet (state: [entries, arena bytes used]); their entries."""
    buf, table, ehash, eoff = borrowed(buf), borrowed(table), borrowed(ehash), borrowed(eoff)
    ela, elb, ekind, arena = borrowed(ela), borrowed(elb), borrowed(ekind), borrowed(arena)
    n = len(a0)
    out = np.empty(n, np.int64)
    for r in range(n):
        h = _hash(buf, a0[r], a1[r], b0[r], b1[r], kind[r])
        e, slot = _find(buf, a0[r], a1[r], b0[r], b1[r], kind[r], h, table, ehash, eoff, ela,
                        elb, ekind, arena, cmp)  # fmt: skip
        if e < 0:
            e = state[0]
            o = state[1]
            la, lb = a1[r] - a0[r], b1[r] - b0[r]
            arena[o : o + la] = buf[a0[r] : a1[r]]
            arena[o + la : o + la + lb] = buf[b0[r] : b1[r]]
            ehash[e], eoff[e], ela[e], elb[e], ekind[e] = h, o, la, lb, kind[r]
            table[slot] = e + 1
            state[0] = e + 1
            state[1] = o + la + lb
        out[r] = e
    return out


@nb.njit(cache=True, nogil=True)
def _distinct(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray,
              kind: np.ndarray, cmp: Any) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip  # pragma: no cover - numba
    """The distinct keys among ``n`` (bytes compared, as the cache does): the row of each one's
    first appearance, and per row the index of its key among them. A body of new series
    repeats each key once a sample (an Influx body of 60 scrapes: 60 times), so the misses
    are built once per key, not once per line."""
    buf = borrowed(buf)
    n = len(a0)
    size = 16
    while size < 2 * n:
        size <<= 1
    mask = np.uint64(size - 1)
    held = np.full(size, -1, np.int64)  # the index of a distinct key
    hs = np.empty(n, np.uint64)
    first = np.empty(n, np.int64)
    inv = np.empty(n, np.int64)
    pb = buf.ctypes.data
    m = 0
    for r in range(n):
        h = _hash(buf, a0[r], a1[r], b0[r], b1[r], kind[r])
        la, lb = a1[r] - a0[r], b1[r] - b0[r]
        slot = h & mask
        while True:
            j = held[slot]
            if j < 0:
                held[slot] = m
                hs[m] = h
                first[m] = r
                inv[r] = m
                m += 1
                break
            f = first[j]
            if (hs[j] == h and kind[f] == kind[r] and a1[f] - a0[f] == la
                    and b1[f] - b0[f] == lb and cmp(pb + a0[f], pb + a0[r], la) == 0
                    and cmp(pb + b0[f], pb + b0[r], lb) == 0):  # fmt: skip
                inv[r] = j
                break
            slot = (slot + np.uint64(1)) & mask
    return first[:m], inv


@nb.njit(cache=True, nogil=True)
def _rehash(ehash: np.ndarray, slots: int) -> np.ndarray:  # pragma: no cover - numba
    table = np.zeros(slots, np.int32)
    mask = np.uint64(slots - 1)
    for e in range(len(ehash)):
        slot = ehash[e] & mask
        while table[slot] != 0:
            slot = (slot + np.uint64(1)) & mask
        table[slot] = e + 1
    return table


@nb.njit(cache=True, nogil=True)
def _intern(src: np.ndarray, start: np.ndarray, end: np.ndarray, keys: np.ndarray,
            table: np.ndarray, lkeys: np.ndarray, pk_arena: np.ndarray, pk_start: np.ndarray,
            pk_end: np.ndarray, state: np.ndarray, cmp: Any
            ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip  # pragma: no cover - numba
    """The label set id of each part key ``src[start[r]:end[r]]`` (xxh64 ``keys[r]``): found
    by its key and bytes among the cache's part keys, else added (``state``: [label sets,
    part-key bytes used]; room made before the call); and whether it was added. A label set
    has one canonical part key, so two spellings of one series get one id."""
    n = len(start)
    mask = np.uint64(len(table) - 1)
    out = np.empty(n, np.int64)
    new = np.zeros(n, np.bool_)
    ps, pa = src.ctypes.data, pk_arena.ctypes.data
    for r in range(n):
        k = keys[r]
        a, ln = start[r], end[r] - start[r]
        slot = k & mask
        while True:
            i = table[slot] - 1
            if i < 0:
                i = state[0]
                o = state[1]
                pk_arena[o : o + ln] = src[a : a + ln]
                pk_start[i], pk_end[i], lkeys[i] = o, o + ln, k
                table[slot] = i + 1
                state[0], state[1] = i + 1, o + ln
                new[r] = True
                break
            if (lkeys[i] == k and pk_end[i] - pk_start[i] == ln
                    and cmp(pa + pk_start[i], ps + a, ln) == 0):  # fmt: skip
                break
            slot = (slot + np.uint64(1)) & mask
        out[r] = i
    return out, new


@nb.njit(cache=True, nogil=True)
def _first_seen(
    ent: np.ndarray, elabel: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """Per key the rank of its label set among the distinct ones in order of first
    appearance (-1 where ``ent`` is), and those label set ids: a small hash set, no sort."""
    n = len(ent)
    size = 2
    while size < 2 * n:
        size <<= 1
    mask = np.uint64(size - 1)
    held = np.full(size, -1, np.int64)
    rank = np.empty(size, np.int32)
    sidx = np.empty(n, np.int32)
    ids = np.empty(n, np.int64)
    m = 0
    for r in range(n):
        if ent[r] < 0:
            sidx[r] = -1
            continue
        x = elabel[ent[r]]
        slot = (np.uint64(x) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(17) & mask
        while held[slot] != -1 and held[slot] != x:
            slot = (slot + np.uint64(1)) & mask
        if held[slot] == -1:
            held[slot] = x
            rank[slot] = m
            ids[m] = x
            m += 1
        sidx[r] = rank[slot]
    return sidx, ids[:m]


@nb.njit(cache=True, nogil=True)
def _late(newest: np.ndarray, ids: np.ndarray, sidx: np.ndarray, ts: np.ndarray,
          window: int) -> tuple[np.ndarray, int]:  # fmt: skip  # pragma: no cover - numba
    """Per sample whether it is more than ``window`` ms older than its series' ``newest``
    while none of its series' samples in the body reaches that newest (a body that does is
    a resend, or overlaps it: left to the worker), and how many are. ids < 0, or past the
    column: not known, never late."""
    n = len(ts)
    out = np.zeros(n, np.bool_)
    reach = np.full(len(ids), np.iinfo(np.int64).min, np.int64)  # per series: the body's max
    for i in range(n):
        j = sidx[i]
        if ts[i] > reach[j]:
            reach[j] = ts[i]
    k = 0
    w = np.uint64(window)
    for i in range(n):
        j = sidx[i]
        e = ids[j]
        if e < 0 or e >= len(newest):
            continue
        top = newest[e]
        # top - ts[i] in uint64: exact for any two int64 with top > ts[i] (no overflow)
        if reach[j] < top and np.uint64(top) - np.uint64(ts[i]) > w:
            out[i] = True
            k += 1
    return out, k


@nb.njit(cache=True, nogil=True)
def _note_newest(newest: np.ndarray, ids: np.ndarray, sidx: np.ndarray,
                 ts: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - numba
    for i in range(len(ts)):
        e = ids[sidx[i]]
        if 0 <= e < len(newest) and ts[i] > newest[e]:
            newest[e] = ts[i]


NO_TS = np.iinfo(np.int64).min
MAX_SCOPES = 1000  # newest columns kept (datasets); past it, they start again


# make(a bytes, b bytes, kind) -> (label set, extra) or None when the key is refused; ``extra``
# is the caller's (Influx, Graphite: the metric types a key implies), kept per entry when not
# None (interned: equal extras are held once).
Make = Callable[[bytes, bytes, int], "tuple[Labels, Hashable | None] | None"]
# fast(buf, a0, a1, b0, b1, kind) -> (the keys it builds at once, and per row of those its
# extra or None, or None when none has one): the label sets and identities of many missed keys in one numba call
# (:mod:`filodb.model.fastkeys`); the keys it leaves (``ok`` False) go to ``make``.
Fast = Callable[..., "tuple[Made, list[Any] | None]"]


@dataclass(frozen=True)
class Routed:
    """Where a batch's series are in the :class:`SeriesKeyCache` that resolved them: the
    cache, its generation then, and per series its label set id (-1: not from the cache)."""

    cache: SeriesKeyCache
    generation: int
    ids: np.ndarray

    def take(self, keep: np.ndarray) -> Routed:
        """The series where ``keep`` (a boolean mask or indices, one per series) says."""
        return Routed(self.cache, self.generation, self.ids[keep])


@dataclass
class Resolved:
    """One body's keys: ``series`` (distinct label sets, first appearance first), ``sidx``
    (int32 per key, -1 where refused), per series its ``part_keys``, ``keys`` (uint64, as
    ``SampleBatch.keys``) and ``routes`` (uint64, as ``SampleBatch.routes``: the router shards
    by them), their label set ids (``routed``, as ``SampleBatch.routed``), and the distinct
    extras of the keys' entries that have one."""

    series: Sequence[Labels]
    sidx: np.ndarray
    part_keys: PartKeys
    keys: np.ndarray
    routes: np.ndarray
    routed: Routed
    extras: list[Any] = field(default_factory=list)


class SeriesKeyCache:
    """Raw key bytes → series, for whole bodies at once; see the module docstring."""

    def __init__(self, make: Make, max_entries: int = 500_000, fast: Fast | None = None) -> None:
        self.make = make
        self.fast = fast
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._generation = 0
        self._clear(1024)

    def _clear(self, capacity: int) -> None:
        slots = 1 << max(10, (2 * capacity - 1).bit_length())
        self._table = np.zeros(slots, np.int32)
        self._ehash = np.zeros(capacity, np.uint64)
        self._eoff = np.zeros(capacity, np.int64)
        self._ela = np.zeros(capacity, np.int64)
        self._elb = np.zeros(capacity, np.int64)
        self._ekind = np.zeros(capacity, np.uint8)
        self._elabel = np.zeros(capacity, np.int64)  # entry -> label set id
        self._exid = np.zeros(capacity, np.int32)  # entry -> 1 + id of its extra, 0: none
        self._extra_id: dict[Hashable, int] = {}  # distinct extras, interned
        self._extras: list[Hashable] = []
        self._arena = np.zeros(64 * capacity, np.uint8)
        self._state = np.zeros(2, np.int64)
        # label sets, interned by part key (no Python object a series): an open-addressing
        # table of ids by key (xxh64 of the part key), and per label set id its part key (in
        # the part-key arena), key and route; _lstate: [label sets, part-key bytes used]
        self._ltable = np.zeros(slots, np.int32)
        self._lstate = np.zeros(2, np.int64)
        self._pk_arena = np.zeros(64 * capacity, np.uint8)
        self._pk_start = np.zeros(capacity, np.int64)
        self._pk_end = np.zeros(capacity, np.int64)
        self._keys = np.zeros(capacity, np.uint64)
        self._routes = np.zeros(capacity, np.uint64)
        # per scope: its token and per label set id the newest timestamp routed (NO_TS: none)
        self._newest: dict[str, tuple[Hashable, np.ndarray]] = {}
        self._generation += 1  # label set ids start again

    def __len__(self) -> int:
        return int(self._state[0])

    def forget(self) -> None:
        """Start from empty (benchmarks measure cold paths with it)."""
        with self._lock:
            self._clear(1024)

    def resolve(self, buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray,
                b1: np.ndarray, kind: np.ndarray) -> Resolved:  # fmt: skip
        """The series of each key ``(buf[a0:a1], buf[b0:b1], kind)`` of one body."""
        buf = np.ascontiguousarray(buf, np.uint8)  # the kernels compare through pointers
        a0, a1, b0, b1 = (np.asarray(x, np.int64) for x in (a0, a1, b0, b1))
        kind = np.asarray(kind, np.uint8)
        with self._lock:
            if len(self) > self.max_entries:
                self._clear(1024)
            ent = self._call(_lookup, buf, a0, a1, b0, b1, kind)
            miss = np.flatnonzero(ent < 0)
            if len(miss):  # each new key built once, however often the body repeats it
                first, inv = _distinct(buf, a0[miss], a1[miss], b0[miss], b1[miss], kind[miss],
                                       MEMCMP)  # fmt: skip
                u = miss[first]
                ent[miss] = self._add(buf, a0[u], a1[u], b0[u], b1[u], kind[u])[inv]
            return self._series_of(ent)

    def _call(self, fn: Callable[..., np.ndarray], *args: np.ndarray) -> np.ndarray:
        return fn(*args, self._table, self._ehash, self._eoff, self._ela, self._elb, self._ekind,
                  self._arena, MEMCMP)  # fmt: skip

    def _add(self, buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray,
             b1: np.ndarray, kind: np.ndarray) -> np.ndarray:  # fmt: skip
        """Entries of missed keys, -1 where refused: the keys ``fast`` takes in bulk, the
        others built by ``make`` once per distinct key."""
        if self.fast is None:
            return self._add_each(buf, a0, a1, b0, b1, kind)
        made, extras = self.fast(buf, a0, a1, b0, b1, kind)
        out = np.full(len(a0), -1, np.int64)
        t = made.rows
        if len(t):
            labels = self._label_ids_of(made)
            out[t] = self._enter(buf, a0[t], a1[t], b0[t], b1[t], kind[t], labels, extras)
        rest = np.flatnonzero(~made.ok)
        if len(rest):
            out[rest] = self._add_each(buf, a0[rest], a1[rest], b0[rest], b1[rest], kind[rest])
        return out

    def _add_each(self, buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray,
                  b1: np.ndarray, kind: np.ndarray) -> np.ndarray:  # fmt: skip
        """Entries of missed keys: built by ``make`` once per distinct key, -1 if refused."""
        raw = buf.data
        made: dict[tuple[bytes, bytes, int], int] = {}  # distinct key -> position in `take`
        pos = np.full(len(a0), -1, np.int64)
        take: list[int] = []
        labels: list[int] = []
        extras: list[Hashable | None] = []
        for r, (x0, x1, y0, y1, k) in enumerate(zip(a0.tolist(), a1.tolist(), b0.tolist(),
                                                    b1.tolist(), kind.tolist(), strict=True)):  # fmt: skip
            key = (bytes(raw[x0:x1]), bytes(raw[y0:y1]), k)
            j = made.get(key)
            if j is None:
                hit = self.make(*key)
                if hit is None:
                    continue  # refused: not cached
                j = made[key] = len(take)
                take.append(r)
                labels.append(self._label_id_of(hit[0]))
                extras.append(hit[1])
            pos[r] = j
        if not take:
            return pos
        t = np.array(take, np.int64)
        ent = self._enter(buf, a0[t], a1[t], b0[t], b1[t], kind[t], labels, extras)
        out = np.full(len(a0), -1, np.int64)
        ok = pos >= 0
        out[ok] = ent[pos[ok]]
        return out

    def _enter(self, buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray,
               b1: np.ndarray, kind: np.ndarray, labels: Any,
               extras: list[Hashable | None] | None) -> np.ndarray:  # fmt: skip
        """Add keys (a key met twice is one entry) with their label set ids and extras
        (None: none has one); their entries."""
        self._reserve(len(a0), int((a1 - a0 + b1 - b0).sum()))
        first = len(self)
        ent = _insert(buf, a0, a1, b0, b1, kind, self._table, self._ehash, self._eoff,
                      self._ela, self._elb, self._ekind, self._arena, MEMCMP,
                      self._state)  # fmt: skip
        self._elabel[ent] = labels
        if extras:  # few distinct ones (a body's metric types or names): no step per key
            code = dict.fromkeys(extras, 0)
            for x in code:
                if x is not None:
                    if x not in self._extra_id:
                        self._extra_id[x] = len(self._extras)
                        self._extras.append(x)
                    code[x] = 1 + self._extra_id[x]
            xid = np.fromiter(map(code.__getitem__, extras), np.int64, len(extras))
            sel = (ent >= first) & (xid > 0)
            self._exid[ent[sel]] = xid[sel]
        return ent

    def _label_ids_of(self, made: Made) -> np.ndarray:
        """The label set ids of ``made``'s label sets (one numba call), each kept on first
        sight with its part key, key and route."""
        return self._intern(made.arena, made.start, made.end, made.keys, made.routes)

    def _intern(self, arena: np.ndarray, start: np.ndarray, end: np.ndarray, keys: np.ndarray,
                routes: np.ndarray) -> np.ndarray:  # fmt: skip
        """The ids of the label sets whose part keys are ``arena[start:end]`` (``keys``: their
        xxh64, ``routes``: their routes), those not held yet added."""
        n = int(self._lstate[0])
        self._room_for_labels(n + len(start))
        self._room_for_pks(int((end - start).sum()))
        ids, new = _intern(np.ascontiguousarray(arena, np.uint8), np.asarray(start, np.int64),
                           np.asarray(end, np.int64), np.asarray(keys, np.uint64), self._ltable,
                           self._keys, self._pk_arena, self._pk_start, self._pk_end,
                           self._lstate, MEMCMP)  # fmt: skip
        if new.any():
            self._routes[ids[new]] = np.asarray(routes, np.uint64)[new]
        return ids

    @property
    def _pk_used(self) -> int:
        return int(self._lstate[1])

    def _room_for_pks(self, nbytes: int) -> None:
        """Room for ``nbytes`` more part-key bytes (a new array: views keep the old one)."""
        used = self._pk_used
        if used + nbytes > len(self._pk_arena):
            self._pk_arena = _grown(self._pk_arena, max(used + nbytes, 2 * used))

    def _room_for_labels(self, n: int) -> None:
        """Per label set arrays of ``n`` rows at least (doubling), and a table of ids at least
        twice that."""
        if n > len(self._keys):
            cap = max(n, 2 * len(self._keys))
            for name in ("_pk_start", "_pk_end", "_keys", "_routes"):
                setattr(self, name, _grown(getattr(self, name), cap))
        if 2 * n > len(self._ltable):
            held = int(self._lstate[0])
            self._ltable = _rehash(self._keys[:held], 1 << (2 * n - 1).bit_length())

    def _label_id_of(self, labels: Labels) -> int:
        """The id of a label set, its identity kept on first sight."""
        pk, key, route = series_identity(labels)
        one = np.zeros(1, np.int64)
        return int(self._intern(np.frombuffer(pk, np.uint8), one, one + len(pk),
                                np.array([key], np.uint64), np.array([route], np.uint64))[0])  # fmt: skip

    def _reserve(self, entries: int, nbytes: int) -> None:
        """Room for ``entries`` more entries and ``nbytes`` more key bytes (arrays double)."""
        need = len(self) + entries
        if need > len(self._ehash):
            cap = max(need, 2 * len(self._ehash))
            for name in ("_ehash", "_eoff", "_ela", "_elb", "_ekind", "_elabel", "_exid"):
                setattr(self, name, _grown(getattr(self, name), cap))
            if 2 * cap > len(self._table):
                self._table = _rehash(self._ehash[: len(self)], 1 << (2 * cap - 1).bit_length())
        used = int(self._state[1])
        if used + nbytes > len(self._arena):
            self._arena = _grown(self._arena, max(used + nbytes, 2 * len(self._arena)))

    def _series_of(self, ent: np.ndarray) -> Resolved:
        sidx, ids = _first_seen(ent, self._elabel)
        pks = PartKeys(self._pk_arena, self._pk_start[ids], self._pk_end[ids])
        series = PartKeyLabels(pks)  # label sets decoded if asked for
        extras = []
        if self._extras:  # the distinct extras of the keys: a Python step per distinct extra
            seen = np.zeros(len(self._extras) + 1, np.bool_)
            seen[self._exid[ent[ent >= 0]]] = True
            extras = pick(self._extras, (np.flatnonzero(seen[1:])).tolist())
        routed = Routed(self, self._generation, ids)
        return Resolved(series, sidx, pks, self._keys[ids], self._routes[ids], routed, extras)

    def routed_for(self, series: Sequence[Labels]) -> Routed:
        """The label set ids of ``series`` (a label set's identity kept on first sight, as a
        key's is), for a batch decoded without this cache's keys (a door's per-line or
        reference decoder), so that its samples are checked against and noted in the newest
        routed as the fast paths' are. A Python step per series: those decoders take one per
        series already. Past ``max_entries`` label sets the cache starts from empty."""
        with self._lock:
            if int(self._lstate[0]) + len(series) > self.max_entries:
                self._clear(1024)
            ids = np.fromiter(map(self._label_id_of, series), np.int64, len(series))
            return Routed(self, self._generation, ids)

    def late(self, scope: str, token: Hashable, routed: Routed, sidx: np.ndarray,
             ts: np.ndarray, window_ms: int) -> tuple[np.ndarray, int] | None:  # fmt: skip
        """Per sample (``sidx``: index into ``routed.ids``; ``ts``) whether it is more than
        ``window_ms`` older than the newest timestamp routed for its series in ``scope`` (a
        dataset) under ``token`` (what must not change for the newest to hold: the dataset's
        creation, deletions), unless a sample of its series in the body reaches that newest
        (a resend: left to the worker), and how many are; None when none can be (nothing
        routed under that token, or ``routed`` is of an earlier generation)."""
        with self._lock:
            held = self._newest.get(scope)
            if held is None or held[0] != token or routed.generation != self._generation:
                return None
            return _late(held[1], routed.ids, sidx, ts, window_ms)

    def routed(self, scope: str, token: Hashable, routed: Routed, sidx: np.ndarray,
               ts: np.ndarray) -> None:  # fmt: skip
        """Note samples written to the log in ``scope`` under ``token`` (see :meth:`late`;
        another token starts the scope's column again); nothing when ``routed`` is of an
        earlier generation."""
        if not len(ts):
            return
        with self._lock:
            if routed.generation != self._generation:
                return
            held = self._newest.get(scope)
            cap = len(self._keys)  # label set ids are below it
            if held is None or held[0] != token:
                if held is None and len(self._newest) >= MAX_SCOPES:
                    self._newest.clear()
                newest = np.full(cap, NO_TS, np.int64)
            elif len(held[1]) < cap:
                newest = np.full(cap, NO_TS, np.int64)
                newest[: len(held[1])] = held[1]
            else:
                newest = held[1]
            self._newest[scope] = (token, newest)
            _note_newest(newest, routed.ids, sidx, ts)


def _grown(a: np.ndarray, n: int) -> np.ndarray:
    """A new array of ``n`` items beginning with ``a``."""
    out = np.zeros(n, a.dtype)
    out[: len(a)] = a
    return out
