"""The doors' series-key cache: raw key bytes → label set, resolved for a whole body at once.

A line protocol names a series by bytes (Influx's series key and field name, Graphite's path
with its tags). Senders repeat the same series body after body, so a door looks those bytes
up before building anything per line. :class:`SeriesKeyCache` keeps the bytes of every key it
has seen in numpy arrays (an arena, an open-addressing hash table, per-entry offsets) and one
numba kernel (``nogil``) hashes and finds all the keys of a body, comparing the bytes, so a
hit is exact (no hash collision can give a series another's samples) and costs no Python
step. Only misses reach Python, which builds the label set (``make``) once per new key.

A key is up to two byte ranges of one buffer plus a ``kind`` byte (the caller's tag, e.g. a
line's only field named ``value``): ``buf[a0:a1]``, ``buf[b0:b1]``, ``kind``. Entries map to
interned label sets, so two keys that sanitise to the same labels are one series.
:meth:`SeriesKeyCache.resolve` answers per key the index of its series in a list of distinct
label sets, in order of first appearance (a :class:`~filodb.model.batch.SampleBatch`'s
``series``, ``sidx`` and ``part_keys``, kept per label set), and -1 where ``make`` refused the key (not cached: the caller's
slow path reports it).

Bounded: once more than ``max_entries`` keys are held, the next call starts from empty (the
bound is exceeded by at most one body's new keys). Thread-safe (one lock per cache).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from operator import itemgetter

import numba as nb
import numpy as np

from filodb.model.batch import series_identity
from filodb.model.labels import Labels


@nb.njit(cache=True, nogil=True, inline="always")
def _hash(buf, a0, a1, b0, b1, kind):
    h = np.uint64(14695981039346656037) ^ np.uint64(kind)
    p = np.uint64(1099511628211)
    for i in range(a0, a1):
        h = (h ^ np.uint64(buf[i])) * p
    h = (h ^ np.uint64(0x1FF)) * p  # between the ranges: no byte value
    for i in range(b0, b1):
        h = (h ^ np.uint64(buf[i])) * p
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@nb.njit(cache=True, nogil=True, inline="always")
def _find(buf, a0, a1, b0, b1, kind, h, table, ehash, eoff, ela, elb, ekind, arena):
    """(entry or -1, the free slot where it would go)."""
    mask = np.uint64(len(table) - 1)
    slot = h & mask
    la, lb = a1 - a0, b1 - b0
    while True:
        e = table[slot] - 1
        if e < 0:
            return -1, slot
        if ehash[e] == h and ekind[e] == kind and ela[e] == la and elb[e] == lb:
            o = eoff[e]
            same = True
            for i in range(la):
                if arena[o + i] != buf[a0 + i]:
                    same = False
                    break
            if same:
                o += la
                for i in range(lb):
                    if arena[o + i] != buf[b0 + i]:
                        same = False
                        break
            if same:
                return e, slot
        slot = (slot + np.uint64(1)) & mask


@nb.njit(cache=True, nogil=True)
def _lookup(buf, a0, a1, b0, b1, kind, table, ehash, eoff, ela, elb, ekind, arena):
    n = len(a0)
    out = np.empty(n, np.int64)
    for r in range(n):
        h = _hash(buf, a0[r], a1[r], b0[r], b1[r], kind[r])
        e, _ = _find(buf, a0[r], a1[r], b0[r], b1[r], kind[r], h, table, ehash, eoff, ela, elb,
                     ekind, arena)  # fmt: skip
        out[r] = e
    return out


@nb.njit(cache=True, nogil=True)
def _insert(buf, a0, a1, b0, b1, kind, table, ehash, eoff, ela, elb, ekind, arena, state):
    """Add the keys not held yet (state: [entries, arena bytes used]); their entries."""
    n = len(a0)
    out = np.empty(n, np.int64)
    for r in range(n):
        h = _hash(buf, a0[r], a1[r], b0[r], b1[r], kind[r])
        e, slot = _find(buf, a0[r], a1[r], b0[r], b1[r], kind[r], h, table, ehash, eoff, ela,
                        elb, ekind, arena)  # fmt: skip
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


# make(a bytes, b bytes, kind) -> (label set, extra) or None when the key is refused; ``extra``
# is the caller's (Influx: the metric types a key implies), kept per entry when not None.
Make = Callable[[bytes, bytes, int], "tuple[Labels, Hashable | None] | None"]


@dataclass
class Resolved:
    """One body's keys: ``series`` (distinct label sets, first appearance first), ``sidx``
    (int32 per key, -1 where refused) and the extras of the keys' entries that have one."""

    series: list[Labels]
    sidx: np.ndarray
    part_keys: list[bytes]  # per series (filodb.model.partkey.part_key)
    routes: np.ndarray  # uint64 per series, as SampleBatch.routes (the router shards by them)
    extras: list = field(default_factory=list)


class SeriesKeyCache:
    """Raw key bytes → label set, for whole bodies at once; see the module docstring."""

    def __init__(self, make: Make, max_entries: int = 500_000) -> None:
        self.make = make
        self.max_entries = max_entries
        self._lock = threading.Lock()
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
        self._ehasx = np.zeros(capacity, np.bool_)  # entry has an extra
        self._extra: dict[int, Hashable] = {}  # entry -> its extra, where one
        self._arena = np.zeros(64 * capacity, np.uint8)
        self._state = np.zeros(2, np.int64)
        self._label_id: dict[Labels, int] = {}
        self._labels: list[Labels] = []
        self._pks: list[bytes] = []  # part key of each label set
        self._routes: list[int] = []  # and its route (filodb.model.batch.series_identity)

    def __len__(self) -> int:
        return int(self._state[0])

    def resolve(self, buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray,
                b1: np.ndarray, kind: np.ndarray) -> Resolved:  # fmt: skip
        """The series of each key ``(buf[a0:a1], buf[b0:b1], kind)`` of one body."""
        a0, a1, b0, b1 = (np.asarray(x, np.int64) for x in (a0, a1, b0, b1))
        kind = np.asarray(kind, np.uint8)
        with self._lock:
            if len(self) > self.max_entries:
                self._clear(1024)
            ent = self._call(_lookup, buf, a0, a1, b0, b1, kind)
            miss = np.flatnonzero(ent < 0)
            if len(miss):
                ent[miss] = self._add(buf, a0[miss], a1[miss], b0[miss], b1[miss], kind[miss])
            return self._series_of(ent)

    def _call(self, fn, *args):
        return fn(*args, self._table, self._ehash, self._eoff, self._ela, self._elb, self._ekind,
                  self._arena)  # fmt: skip

    def _add(self, buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray,
             b1: np.ndarray, kind: np.ndarray) -> np.ndarray:  # fmt: skip
        """Entries of missed keys: built by ``make`` once per distinct key, -1 if refused."""
        raw = bytes(buf.data) if isinstance(buf, np.ndarray) else bytes(buf)
        made: dict[tuple[bytes, bytes, int], int] = {}  # distinct key -> position in `take`
        pos = np.full(len(a0), -1, np.int64)
        take: list[int] = []
        labels: list[int] = []
        extras: list[Hashable | None] = []
        for r, (x0, x1, y0, y1, k) in enumerate(zip(a0.tolist(), a1.tolist(), b0.tolist(),
                                                    b1.tolist(), kind.tolist(), strict=True)):  # fmt: skip
            key = (raw[x0:x1], raw[y0:y1], k)
            j = made.get(key)
            if j is None:
                hit = self.make(*key)
                if hit is None:
                    continue  # refused: not cached
                j = made[key] = len(take)
                take.append(r)
                labels.append(self._intern(hit[0]))
                extras.append(hit[1])
            pos[r] = j
        if not take:
            return pos
        t = np.array(take, np.int64)
        self._reserve(len(t), int((a1[t] - a0[t] + b1[t] - b0[t]).sum()))
        first = len(self)
        ent = _insert(buf, a0[t], a1[t], b0[t], b1[t], kind[t], self._table, self._ehash,
                      self._eoff, self._ela, self._elb, self._ekind, self._arena, self._state)  # fmt: skip
        self._elabel[ent] = labels
        for e, x in zip(ent.tolist(), extras, strict=True):
            if x is not None and e >= first:
                self._extra[e] = x
                self._ehasx[e] = True
        out = np.full(len(a0), -1, np.int64)
        ok = pos >= 0
        out[ok] = ent[pos[ok]]
        return out

    def _intern(self, labels: Labels) -> int:
        i = self._label_id.get(labels)
        if i is None:
            i = self._label_id[labels] = len(self._labels)
            self._labels.append(labels)
            pk, _key, route = series_identity(labels)
            self._pks.append(pk)
            self._routes.append(route)
        return i

    def _reserve(self, entries: int, nbytes: int) -> None:
        """Room for ``entries`` more entries and ``nbytes`` more key bytes (arrays double)."""
        need = len(self) + entries
        if need > len(self._ehash):
            cap = max(need, 2 * len(self._ehash))
            for name in ("_ehash", "_eoff", "_ela", "_elb", "_ekind", "_elabel", "_ehasx"):
                old = getattr(self, name)
                new = np.zeros(cap, old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
            if 2 * cap > len(self._table):
                self._rehash(1 << (2 * cap - 1).bit_length())
        used = int(self._state[1])
        if used + nbytes > len(self._arena):
            new = np.zeros(max(used + nbytes, 2 * len(self._arena)), np.uint8)
            new[:used] = self._arena[:used]
            self._arena = new

    def _rehash(self, slots: int) -> None:
        self._table = _rehash(self._ehash[: len(self)], slots)

    def _series_of(self, ent: np.ndarray) -> Resolved:
        ok = ent >= 0
        lid = np.where(ok, self._elabel[np.maximum(ent, 0)], -1)
        good = lid[ok]
        if not len(good):
            return Resolved([], np.full(len(ent), -1, np.int32), [], np.zeros(0, np.uint64))
        uniq, first, inv = np.unique(good, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(uniq), np.int32)
        rank[order] = np.arange(len(uniq), dtype=np.int32)
        sidx = np.full(len(ent), -1, np.int32)
        sidx[ok] = rank[inv]
        ids = uniq[order].tolist()
        take = itemgetter(*ids)  # C-level gathers: no Python step per series
        series = list(take(self._labels)) if len(ids) > 1 else [self._labels[ids[0]]]
        pks = list(take(self._pks)) if len(ids) > 1 else [self._pks[ids[0]]]
        routes = np.array(take(self._routes) if len(ids) > 1 else [self._routes[ids[0]]], np.uint64)
        extras = []
        if self._extra:
            held = ent[ok]
            extras = [self._extra[e] for e in np.unique(held[self._ehasx[held]]).tolist()]
        return Resolved(series, sidx, pks, routes, extras)


@nb.njit(cache=True, nogil=True)
def _rehash(ehash, slots):
    table = np.zeros(slots, np.int32)
    mask = np.uint64(slots - 1)
    for e in range(len(ehash)):
        slot = ehash[e] & mask
        while table[slot] != 0:
            slot = (slot + np.uint64(1)) & mask
        table[slot] = e + 1
    return table
