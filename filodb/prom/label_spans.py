"""Remote write's new series in one numba call: a TimeSeries' Label fields → label spans.

:data:`~filodb.prom.remote_write.SERIES` meets a series' Label fields (``0a <len> 0a <len>
<name> [12 <len> <value>]``, repeated) as raw bytes; :func:`spans` reads every missed key
of a body at once into :mod:`filodb.model.fastkeys`'s label spans, which builds the label
sets, part keys, keys and routes. A key is taken (``ok``) only when it reads exactly as
:func:`~filodb.prom.remote_write._parse_label_fields` would and would be accepted: each
Label a name field (non-empty) then an optional value field, lengths as varints of up to 4
bytes, names and values ASCII without NUL, a non-empty ``__name__`` (duplicate names are
refused by :func:`~filodb.model.fastkeys.finish`). Everything else (other field orders,
repeated fields, unicode, a refusal) is left to that Python path, which answers as before.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from filodb.model.fastkeys import Made, finish, label_rows

_NAME = np.frombuffer(b"__name__", np.uint8)


@nb.njit(cache=True, nogil=True, inline="always")
def _len_at(buf: np.ndarray, p: int, end: int) -> tuple[int, int]:  # pragma: no cover
    """(length, where its bytes start) of the varint at ``p``; (-1, p) when it runs past
    ``end`` or over 4 bytes."""
    v = 0
    for k in range(4):
        if p >= end:
            return -1, p
        c = buf[p]
        p += 1
        v |= int(c & 0x7F) << (7 * k)
        if c < 0x80:
            return v, p
    return -1, p


@nb.njit(cache=True, nogil=True, inline="always")
def _text(buf: np.ndarray, a: int, n: int, txt: np.ndarray, t: int) -> bool:  # pragma: no cover
    """Copy ``buf[a:a + n]`` to ``txt[t]``; False when a byte is NUL or not ASCII."""
    good = True
    for k in range(n):
        c = buf[a + k]
        good &= (c != 0) & (c < 0x80)
        txt[t + k] = c
    return good


@nb.njit(cache=True, nogil=True)
def _spans(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray,
           name: np.ndarray) -> tuple[Any, ...]:  # fmt: skip  # pragma: no cover - numba
    n = len(a0)
    size = 0
    for i in range(n):
        size += a1[i] - a0[i]
    cap = size // 4 + 1  # a label takes 4 bytes at least (0a L 0a l, one name byte)
    txt = np.empty(size + 1, np.uint8)
    no, nl, vo, vl, ok, ls, lc = label_rows(cap, n)
    r = t = 0
    for i in range(n):
        p, e = a0[i], a1[i]
        ls[i] = r
        good = True
        named = False
        while p < e and good:
            good = False
            if buf[p] != 0x0A:
                break
            ln, body = _len_at(buf, p + 1, e)
            end = body + ln
            if ln < 0 or end > e or body >= end or buf[body] != 0x0A:
                break
            ln, q = _len_at(buf, body + 1, end)
            if ln <= 0 or q + ln > end or r >= cap:
                break
            no[r], nl[r] = t, ln
            if not _text(buf, q, ln, txt, t):
                break
            t += ln
            q += ln
            vo[r], vl[r] = t, 0
            if q < end:
                if buf[q] != 0x12:
                    break
                ln, q = _len_at(buf, q + 1, end)
                if ln < 0 or q + ln != end:
                    break
                vl[r] = ln
                if not _text(buf, q, ln, txt, t):
                    break
                t += ln
            if vl[r] > 0 and nl[r] == len(name):
                same = True
                for k in range(len(name)):
                    same &= txt[no[r] + k] == name[k]
                named |= same
            r += 1
            p = end
            good = True
        if not (good and named):
            r = ls[i]  # its rows are taken back
            continue
        ok[i] = True
        lc[i] = r - ls[i]
    return txt, ok, ls, lc, no[:r], nl[:r], vo[:r], vl[:r]


def spans(buf: np.ndarray, a0: np.ndarray, a1: np.ndarray) -> Made:
    """The label sets of the Label fields ``buf[a0[i]:a1[i]]`` the fast path takes."""
    return finish(*_spans(buf, a0, a1, _NAME))
