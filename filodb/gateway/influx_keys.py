"""Influx's new series in one numba call: (series key, field name, kind) → label spans.

The fast pass (:mod:`filodb.gateway.influx_fast`) names each sample's series by byte ranges
of the body; :data:`~filodb.gateway.influx._SERIES` builds a series the first time it meets
them. :func:`spans` reads every missed key of a body at once into
:mod:`filodb.model.fastkeys`'s label spans, following
:func:`~filodb.gateway.influx._labels_of` rule for rule: ``measurement[,tag=value...]``
split at commas and each tag at its one ``=`` (both sides non-empty), tag names sanitised to
``[a-zA-Z0-9_]`` and the metric name (the measurement, or ``<measurement>_<field>`` for a
field of kind :data:`~filodb.gateway.influx_fast.FIELD`) to ``[a-zA-Z0-9_:]`` (other bytes
become ``_``, a leading digit gets a ``_`` before it), a tag named ``__name__`` dropped (two:
refused). A key with a backslash, a NUL or a non-ASCII byte, an empty measurement, a bad tag
or duplicate names is left to that Python path, which answers or refuses as before.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from filodb.gateway.influx_fast import COUNTER, FIELD
from filodb.model.fastkeys import Made, finish, sanitised, span_arena, values_after_names

_NAME = np.frombuffer(b"__name__", np.uint8)


@nb.njit(cache=True, nogil=True, inline="always")
def _ok_byte(c: int) -> bool:  # pragma: no cover - numba
    return c != 0 and c < 0x80 and c != 92  # no NUL, ASCII, no backslash


@nb.njit(cache=True, nogil=True)
def _spans(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray,
           kind: np.ndarray, name: np.ndarray) -> tuple[Any, ...]:  # fmt: skip  # pragma: no cover - numba
    n = len(a0)
    size = (a1 - a0).sum() + (b1 - b0).sum()
    txt, no, nl, vo, vl, ok, ls, lc = span_arena(buf, a0, a1, 44, size, 4, name)
    t = len(name)
    r = 0
    for i in range(n):
        p, e = a0[i], a1[i]
        ls[i] = r
        good = True
        for k in range(p, e):
            good &= _ok_byte(buf[k])
        if kind[i] == FIELD:
            for k in range(b0[i], b1[i]):
                good &= _ok_byte(buf[k])
        m = p  # the measurement: up to the first comma
        while m < e and buf[m] != 44:
            m += 1
        if not good or m == p:
            continue
        named = 0  # tags named __name__ (once sanitised)
        q = m
        while q < e and good:  # tags: "," name "=" value
            s = q + 1
            eq = -1
            c = s
            while c < e and buf[c] != 44:
                if buf[c] == 61:
                    if eq >= 0:
                        good = False
                    eq = c
                c += 1
            if eq <= s or eq + 1 >= c:
                good = False
                break
            no[r] = t
            t = sanitised(buf, s, eq, txt, t, False, True)
            nl[r] = t - no[r]
            vo[r], vl[r] = eq + 1, c - eq - 1  # offsets in buf for now: copied below
            same = nl[r] == len(name)
            if same:
                for k in range(len(name)):
                    same &= txt[no[r] + k] == name[k]
            if same:
                named += 1
            else:
                r += 1
            q = c
        if not good or named > 1:
            r = ls[i]
            continue
        t = values_after_names(buf, txt, t, vo, vl, ls[i], r)  # the tag values
        no[r], nl[r], vo[r] = 0, len(name), t
        t = sanitised(buf, p, m, txt, t, True, True)
        if kind[i] == FIELD:
            txt[t] = 95
            t = sanitised(buf, b0[i], b1[i], txt, t + 1, True, False)
        vl[r] = t - vo[r]
        r += 1
        ok[i] = True
        lc[i] = r - ls[i]
    return txt, ok, ls, lc, no[:r], nl[:r], vo[:r], vl[:r]


def spans(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray,
          kind: np.ndarray) -> tuple[Made, list[Any]]:  # fmt: skip
    """The label sets of the keys the fast path takes, and per taken row (``Made.rows``) the
    metric types it implies (a ``counter`` field: its metric is a counter), as
    :func:`~filodb.gateway.influx._fast_labels` gives them."""
    made = finish(*_spans(buf, a0, a1, b0, b1, kind, _NAME))
    extras: list[Any] = [None] * len(made.rows)
    for j in np.flatnonzero(kind[made.rows] == COUNTER).tolist():
        extras[j] = ((made.pairs[made.metric[j]][1], "counter"),)
    return made, extras
