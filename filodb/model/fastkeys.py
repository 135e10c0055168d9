"""New series at a door without a Python step per series: label spans → label sets and identity.

A door's series-key cache (:class:`~filodb.model.identity.SeriesKeyCache`) builds a series
the first time it meets its key bytes. The per-key Python path (parse, check, sort, intern,
``msgpack`` part key, three xxh64) cost ~18 us a series; this module does the same for all
the missed keys of a body in one numba call, bit for bit, and leaves Python only the strings
and tuples of the label sets, built in bulk.

A door's own kernel (remote write's Label fields, Influx's series keys) reads each key into
*label spans*: its names and values written back to back into one ASCII text arena ``txt``
(sanitised as the door's rules say), per key its first label row ``ls`` and label count
``lc``, per label row the offsets and lengths of its name and value (``no``, ``nl``, ``vo``,
``vl``). A key it cannot read exactly as its Python path would (non-ASCII or NUL bytes,
escapes, an odd layout, a refusal) is left ``ok`` False: the cache sends it to the door's
Python path, which gives it the label set or the error it always did.

:func:`finish` then, per ``ok`` key and in one kernel (:func:`_finish`):

1. sorts its labels by name (bytes compared; ASCII bytes order is ``str`` order) and refuses
   duplicate names (``ok`` False: Python reports them);
2. drops empty values (:func:`~filodb.model.labels.make_labels`'s rule);
3. writes the part key, byte for byte ``msgpack.packb([n0, v0, n1, v1, ...],
   use_bin_type=True)`` (:func:`~filodb.model.partkey.part_key`): a fixarray (``0x90 | n``)
   or array16 (``0xdc`` + 2 bytes big-endian) header, then per string a fixstr
   (``0xa0 | len``), str8 (``0xd9`` + 1 byte), str16 (``0xda`` + 2) or str32 (``0xdb`` + 4);
4. hashes it: the key (xxh64 of the part key, :mod:`filodb.model.xxh64`) and the route
   (:func:`~filodb.model.shardkey.shard_key_hash` of the ``__name__``/``_ws_``/``_ns_``
   values joined by ``0xff`` << 32 | :func:`~filodb.model.shardkey.part_key_hash`, the low
   32 bits of xxh64 of ``name=value`` joined by ``0xff``), as
   :func:`~filodb.model.batch.series_identity`;
5. numbers the distinct (name, value) pairs of the body and writes them once, ``name \\0
   value \\0``, so Python decodes one string and splits it (C loops), interns the pairs in
   bulk (:func:`~filodb.model.labels.intern_pairs`) and zips them into the label-set tuples,
   one label-count group at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from filodb.model.batch import pick
from filodb.model.labels import Labels, intern_pairs
from filodb.model.xxh64 import _xxh64

MAX_LABELS = 128  # more labels in one key: the Python path (the kernel sorts by insertion)
_NAME = np.frombuffer(b"__name__", np.uint8)
_WS = np.frombuffer(b"_ws_", np.uint8)
_NS = np.frombuffer(b"_ns_", np.uint8)


@nb.njit(cache=True, nogil=True, inline="always")
def label_rows(cap: int, n: int) -> Any:  # pragma: no cover - numba
    """A door's label spans, empty: per label row (``cap`` of them) ``no``, ``nl``, ``vo``,
    ``vl``; per key (``n``) ``ok``, ``ls``, ``lc`` (see the module docstring)."""
    return (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64),
            np.empty(cap, np.int64), np.zeros(n, np.bool_), np.zeros(n, np.int64),
            np.zeros(n, np.int64))  # fmt: skip


@nb.njit(cache=True, nogil=True, inline="always")
def span_arena(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, sep: int, size: int,
               per_key: int, name: np.ndarray) -> Any:  # fmt: skip  # pragma: no cover - numba
    """A door kernel's label spans, empty, for the keys ``buf[a0[i]:a1[i]]`` whose labels are
    cut at ``sep`` bytes: the text arena (``2 * size + per_key`` bytes a key after ``name``,
    the ``__name__`` every key's metric label names, written first) and :func:`label_rows`
    with a row per ``sep`` and one per key; ``(txt, no, nl, vo, vl, ok, ls, lc)``."""
    n = len(a0)
    cap = n
    for i in range(n):
        for k in range(a0[i], a1[i]):
            cap += buf[k] == sep
    txt = np.empty(len(name) + 2 * size + per_key * n + 1, np.uint8)
    txt[: len(name)] = name
    no, nl, vo, vl, ok, ls, lc = label_rows(cap, n)
    return txt, no, nl, vo, vl, ok, ls, lc


@nb.njit(cache=True, nogil=True, inline="always")
def values_after_names(buf: np.ndarray, txt: np.ndarray, t: int, vo: np.ndarray, vl: np.ndarray,
                       lo: int, hi: int) -> int:  # fmt: skip  # pragma: no cover - numba
    """Label rows ``lo:hi``'s values, still ``buf`` offsets in ``vo``, copied into ``txt`` at
    ``t`` (``vo`` then points there); where they end."""
    for j in range(lo, hi):
        a = vo[j]
        txt[t : t + vl[j]] = buf[a : a + vl[j]]
        vo[j] = t
        t += vl[j]
    return t


@nb.njit(cache=True, nogil=True, inline="always")
def name_byte(c: int, colon: bool) -> bool:  # pragma: no cover - numba
    """``c`` is kept by the sanitiser (``[a-zA-Z0-9_]``, and ``:`` in a metric name)."""
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95 or (colon and c == 58)


@nb.njit(cache=True, nogil=True, inline="always")
def sanitised(buf: np.ndarray, a: int, b: int, txt: np.ndarray, t: int, colon: bool,
               lead: bool) -> int:  # fmt: skip  # pragma: no cover - numba
    """``buf[a:b]`` sanitised into ``txt[t]`` as ``sanitize_label_name`` (``colon``: or
    ``sanitize_metric_name``) does, byte for byte on ASCII (``lead``: these are the name's
    first bytes, a leading digit gets a ``_``); where it ends. The doors' span kernels use it."""
    if lead and a < b and 48 <= buf[a] <= 57:
        txt[t] = 95
        t += 1
    for k in range(a, b):
        c = buf[k]
        txt[t] = c if name_byte(c, colon) else 95
        t += 1
    return t


@nb.njit(cache=True, nogil=True, inline="always")
def _cmp(txt: np.ndarray, a: int, la: int, b: int, lb: int) -> int:  # pragma: no cover - numba
    """-1, 0 or 1 as ``txt[a:a + la]`` sorts before, with or after ``txt[b:b + lb]``."""
    for k in range(min(la, lb)):
        x, y = txt[a + k], txt[b + k]
        if x != y:
            return -1 if x < y else 1
    if la == lb:
        return 0
    return -1 if la < lb else 1


@nb.njit(cache=True, nogil=True, inline="always")
def _is(txt: np.ndarray, a: int, la: int, word: np.ndarray) -> bool:  # pragma: no cover
    if la != len(word):
        return False
    for k in range(la):
        if txt[a + k] != word[k]:
            return False
    return True


@nb.njit(cache=True, nogil=True, inline="always")
def _str_head(out: np.ndarray, p: int, n: int) -> int:  # pragma: no cover - numba
    """msgpack's header of a str of ``n`` bytes at ``out[p]``; where its bytes go."""
    if n < 32:
        out[p] = 0xA0 | n
        return p + 1
    if n < 256:
        out[p] = 0xD9
        out[p + 1] = n
        return p + 2
    if n < 65536:
        out[p] = 0xDA
        out[p + 1] = n >> 8
        out[p + 2] = n & 0xFF
        return p + 3
    out[p] = 0xDB
    for k in range(4):
        out[p + 1 + k] = (n >> (24 - 8 * k)) & 0xFF
    return p + 5


@nb.njit(cache=True, nogil=True, inline="always")
def _put(out: np.ndarray, p: int, txt: np.ndarray, a: int, n: int) -> int:  # pragma: no cover
    for k in range(n):
        out[p + k] = txt[a + k]
    return p + n


@nb.njit(cache=True, nogil=True)
def _finish(txt: np.ndarray, ok: np.ndarray, ls: np.ndarray, lc: np.ndarray, no: np.ndarray,
            nl: np.ndarray, vo: np.ndarray, vl: np.ndarray, name: np.ndarray, ws: np.ndarray,
            ns: np.ndarray) -> tuple[Any, ...]:  # fmt: skip  # pragma: no cover - numba
    """See the module docstring: ``ok`` updated, ``ls``, per key its part key
    ``pk[ps[i]:pe[i]]``, key and route,
    its kept labels' pair ids ``pid[ls[i]:ls[i] + kc[i]]`` and the pair id of its
    ``__name__`` (``mp``, -1 when none); the distinct pairs' text."""
    n = len(ok)
    nlab = len(no)
    cap = 8 + 5 * n  # part keys: header + per label two strings, 5 + length each at most
    big = 16
    tot = 1  # the pairs' text: name \0 value \0 each at most
    for i in range(n):
        if not ok[i]:
            continue
        if lc[i] > 128:
            ok[i] = False
            continue
        s = 0
        for r in range(ls[i], ls[i] + lc[i]):
            s += nl[r] + vl[r] + 2
        cap += 5 * lc[i] * 2 + s
        tot += s
        big = max(big, s + 16)
    pkw = np.empty(cap // 8 + 2, np.uint64)  # bytes past a string never reach a hash
    pk = pkw.view(np.uint8)
    scw = np.empty(big // 8 + 2, np.uint64)  # name=value\xff... of one key, then its shard key
    sc = scw.view(np.uint8)
    ps = np.empty(n, np.int64)  # these are read for ok keys only
    pe = np.empty(n, np.int64)
    keys = np.empty(n, np.uint64)
    routes = np.empty(n, np.uint64)
    kc = np.empty(n, np.int64)
    mp = np.full(n, -1, np.int64)
    pid = np.empty(max(nlab, 1), np.int64)
    size = 16
    while size < 2 * nlab:
        size <<= 1
    mask = np.uint64(size - 1)
    table = np.zeros(size, np.int64)  # pair id + 1
    phash = np.empty(max(nlab, 1), np.uint64)
    prow = np.empty(max(nlab, 1), np.int64)  # a label row holding the pair
    ptxt = np.empty(tot, np.uint8)
    plen = 0
    npairs = 0
    order = np.zeros(MAX_LABELS, np.int64)
    p = 0
    for i in range(n):
        if not ok[i]:
            continue
        m = lc[i]
        for k in range(m):  # insertion sort by name
            r = ls[i] + k
            j = k
            while j > 0 and _cmp(txt, no[order[j - 1]], nl[order[j - 1]], no[r], nl[r]) > 0:
                order[j] = order[j - 1]
                j -= 1
            order[j] = r
        dup = False
        for k in range(1, m):
            a, b = order[k - 1], order[k]
            if _cmp(txt, no[a], nl[a], no[b], nl[b]) == 0:
                dup = True
                break
        if dup:
            ok[i] = False
            continue
        kept = 0
        for k in range(m):
            if vl[order[k]] > 0:
                order[kept] = order[k]
                kept += 1
        # the part key
        ps[i] = p
        f = 2 * kept
        if f < 16:
            pk[p] = 0x90 | f
            p += 1
        else:
            pk[p] = 0xDC
            pk[p + 1] = f >> 8
            pk[p + 2] = f & 0xFF
            p += 3
        q = 0  # name=value\xff... in the scratch
        sk_m = sk_w = sk_n = -1
        for k in range(kept):
            r = order[k]
            p = _put(pk, _str_head(pk, p, nl[r]), txt, no[r], nl[r])
            p = _put(pk, _str_head(pk, p, vl[r]), txt, vo[r], vl[r])
            if k:
                sc[q] = 0xFF
                q += 1
            q0 = q
            q = _put(sc, q, txt, no[r], nl[r])
            sc[q] = 61  # "="
            q = _put(sc, q + 1, txt, vo[r], vl[r])
            if _is(txt, no[r], nl[r], name):
                sk_m = r
            elif _is(txt, no[r], nl[r], ws):
                sk_w = r
            elif _is(txt, no[r], nl[r], ns):
                sk_n = r
            # the pair's id in the body
            h = _xxh64(scw, q0, q, np.uint64(0))  # of name=value (bytes compared below)
            slot = h & mask
            while True:
                e = table[slot] - 1
                if e < 0:
                    e = npairs
                    npairs += 1
                    table[slot] = e + 1
                    phash[e] = h
                    prow[e] = r
                    plen = _put(ptxt, plen, txt, no[r], nl[r])
                    ptxt[plen] = 0
                    plen = _put(ptxt, plen + 1, txt, vo[r], vl[r])
                    ptxt[plen] = 0
                    plen += 1
                    break
                x = prow[e]
                if (phash[e] == h and _cmp(txt, no[x], nl[x], no[r], nl[r]) == 0
                        and _cmp(txt, vo[x], vl[x], vo[r], vl[r]) == 0):  # fmt: skip
                    break
                slot = (slot + np.uint64(1)) & mask
            pid[ls[i] + k] = e
            if r == sk_m:
                mp[i] = e
        pe[i] = p
        kc[i] = kept
        keys[i] = _xxh64(pkw, ps[i], p, np.uint64(0))
        pkh = _xxh64(scw, 0, q, np.uint64(0)) & np.uint64(0xFFFFFFFF)
        q = 0
        if sk_m >= 0:
            q = _put(sc, q, txt, vo[sk_m], vl[sk_m])
        sc[q] = 0xFF
        q += 1
        if sk_w >= 0:
            q = _put(sc, q, txt, vo[sk_w], vl[sk_w])
        sc[q] = 0xFF
        q += 1
        if sk_n >= 0:
            q = _put(sc, q, txt, vo[sk_n], vl[sk_n])
        skh = _xxh64(scw, 0, q, np.uint64(0)) & np.uint64(0xFFFFFFFF)
        routes[i] = (skh << np.uint64(32)) | pkh
    return ok, ls, pk, ps, pe, keys, routes, kc, mp, pid, ptxt[:plen]


@dataclass
class Made:
    """The keys :func:`finish` built (``rows``: their positions among the keys given, grouped
    by label count), per row its label set (``series``), part key (``arena[start:end]``),
    ``keys`` and ``routes``, and the pair (``pairs``) holding its ``__name__`` (``metric``,
    -1 for none); ``ok`` per key given."""

    ok: np.ndarray
    rows: np.ndarray
    series: list[Labels]
    arena: np.ndarray
    start: np.ndarray
    end: np.ndarray
    keys: np.ndarray
    routes: np.ndarray
    pairs: list[tuple[str, str]]
    metric: np.ndarray


def finish(txt: np.ndarray, ok: np.ndarray, ls: np.ndarray, lc: np.ndarray, no: np.ndarray,
           nl: np.ndarray, vo: np.ndarray, vl: np.ndarray) -> Made:  # fmt: skip
    """The label sets and identities of a door kernel's label spans; see the module
    docstring."""
    return assemble(*_finish(txt, ok, ls, lc, no, nl, vo, vl, _NAME, _WS, _NS))


def assemble(ok: np.ndarray, ls: np.ndarray, pk: np.ndarray, ps: np.ndarray, pe: np.ndarray,
             keys: np.ndarray, routes: np.ndarray, kc: np.ndarray, mp: np.ndarray,
             pid: np.ndarray, ptxt: np.ndarray) -> Made:  # fmt: skip
    """:func:`_finish`'s answer with its label sets: the Python objects, built in bulk."""
    rows = np.flatnonzero(ok)
    if not len(rows):
        return Made(ok, rows, [], pk, ps, pe, keys, routes, [], mp)
    rows = rows[np.argsort(kc[rows], kind="stable")]
    parts = ptxt.tobytes().decode("ascii").split("\0")  # name, value, ..., "" (the last \0)
    pairs = intern_pairs(list(zip(parts[0:-1:2], parts[1::2], strict=True)))
    series: list[Labels] = []
    counts = kc[rows]
    bounds = np.flatnonzero(np.diff(counts)) + 1
    for grp in np.split(np.arange(len(rows)), bounds):  # one step per label count
        k = int(counts[grp[0]])
        first = ls[rows[grp]]
        if k == 0:
            series.extend([()] * len(grp))
            continue
        cols = [pick(pairs, pid[first + j].tolist()) for j in range(k)]
        series.extend(zip(*cols, strict=True))
    return Made(ok, rows, series, pk, ps[rows], pe[rows], keys[rows], routes[rows], pairs,
                mp[rows])  # fmt: skip
