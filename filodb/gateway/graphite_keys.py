"""Graphite's new series in one numba call: paths → label spans.

The fast pass (:mod:`filodb.gateway.graphite_fast`) names each line's series by the byte range
of its path; :data:`~filodb.gateway.graphite._SERIES` builds a series the first time it meets
one. :func:`spans` reads every missed path of a body at once into :mod:`filodb.model.fastkeys`'s
label spans, following :func:`~filodb.gateway.graphite._labels_of` rule for rule:
``path[;tag=value...]`` split at semicolons and each tag at its first ``=`` (name and value
non-empty; the value may hold more ``=``), tag names sanitised to ``[a-zA-Z0-9_]`` (a leading
digit gets a ``_`` before it), tags then named ``name`` or starting with ``__`` dropped, the
metric name the path sanitised to ``[a-zA-Z0-9_:]``. A path with a NUL or a non-ASCII byte, an
empty path or a malformed tag goes to that Python path, which answers or refuses as before;
so does a tag named twice (Python keeps the last value: :func:`~filodb.model.fastkeys.finish`
leaves keys with duplicate names).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from filodb.model.fastkeys import Made, finish, sanitised, span_arena, values_after_names

_NAME = np.frombuffer(b"__name__", np.uint8)
_SEMI, _EQ, _US = 59, 61, 95


@nb.njit(cache=True, nogil=True)
def _spans(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray,
           name: np.ndarray) -> tuple[Any, ...]:  # fmt: skip  # pragma: no cover - numba
    n = len(a0)
    size = (a1 - a0).sum()
    txt, no, nl, vo, vl, ok, ls, lc = span_arena(buf, a0, a1, _SEMI, size, 2, name)
    t = len(name)
    r = 0
    for i in range(n):
        p, e = a0[i], a1[i]
        ls[i] = r
        good = True
        for k in range(p, e):
            good &= buf[k] != 0 and buf[k] < 0x80
        m = p  # the path: up to the first semicolon
        while m < e and buf[m] != _SEMI:
            m += 1
        if not good or m == p:
            continue
        q = m
        while q < e:  # tags: ";" name "=" value
            s = q + 1
            eq = -1
            c = s
            while c < e and buf[c] != _SEMI:
                if buf[c] == _EQ and eq < 0:
                    eq = c
                c += 1
            if eq <= s or eq + 1 >= c:
                good = False
                break
            t0 = t
            t = sanitised(buf, s, eq, txt, t, False, True)
            ln = t - t0
            dropped = (ln == 4 and txt[t0] == 110 and txt[t0 + 1] == 97 and txt[t0 + 2] == 109
                       and txt[t0 + 3] == 101) or (ln >= 2 and txt[t0] == _US
                                                    and txt[t0 + 1] == _US)  # fmt: skip
            if dropped:  # "name" (the path's alias) or "__..."
                t = t0
            else:
                no[r], nl[r] = t0, ln
                vo[r], vl[r] = eq + 1, c - eq - 1  # offsets in buf for now: copied below
                r += 1
            q = c
        if not good:
            r = ls[i]
            continue
        t = values_after_names(buf, txt, t, vo, vl, ls[i], r)  # the tag values
        no[r], nl[r], vo[r] = 0, len(name), t
        t = sanitised(buf, p, m, txt, t, True, True)
        vl[r] = t - vo[r]
        r += 1
        ok[i] = True
        lc[i] = r - ls[i]
    return txt, ok, ls, lc, no[:r], nl[:r], vo[:r], vl[:r]


def spans(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, _b0: np.ndarray, _b1: np.ndarray,
          _kind: np.ndarray) -> tuple[Made, list[Any]]:  # fmt: skip
    """The label sets of the paths the fast path takes, and per taken row (``Made.rows``) its
    metric name, as :func:`~filodb.gateway.graphite._fast_labels` gives it (Graphite's metrics
    are typed gauge by name)."""
    made = finish(*_spans(buf, a0, a1, _NAME))
    if not len(made.rows):
        return made, []
    return made, [(made.pairs[m][1],) for m in made.metric.tolist()]
