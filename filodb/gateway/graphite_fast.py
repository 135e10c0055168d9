"""Vectorised first pass of the Graphite plaintext parser, for the lines of the common shape.

One numba pass over the raw bytes (:func:`_lines`) reads every line of the shape
``path value`` or ``path value timestamp``: printable ASCII, fields cut by single spaces, no
leading or trailing whitespace. The value and timestamp are read as they are met
(:mod:`filodb.gateway.numparse`: exactly Python's ``float``, or flagged); the path is named by
its byte range, which :class:`~filodb.model.identity.SeriesKeyCache` resolves without a
Python step per line. A value the kernel leaves to Python is read by ``float`` afterwards. A
line of any other shape (tabs, repeated spaces, non-ASCII bytes that may be Unicode
whitespace, a timestamp the kernel cannot read exactly or out of range, a value Python
rejects) goes to the per-line parser in :mod:`filodb.gateway.graphite`, which gives it exactly
the answer or the error it always did. ``tests/gateway/test_graphite_fast.py`` checks that
both paths agree on generated bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from filodb.gateway.numparse import POW10, line_at, value_at

_NL, _HASH = 10, 35
_MAX_MS = 9.2e18  # below 2**63: what rounds near the edge is the per-line parser's to judge


@dataclass
class FastLines:
    """One row per line the fast pass read: its 0-based ``line``, its path ``[key_a, key_b)``,
    ``value`` and timestamp ``secs`` (-1.0: none, or carbon's -1: now); ``slow``: the 0-based
    indices of the lines the per-line parser must read."""

    line: np.ndarray  # int64
    key_a: np.ndarray  # int64
    key_b: np.ndarray  # int64
    value: np.ndarray  # float64
    secs: np.ndarray  # float64
    slow: np.ndarray  # int64
    blank: int = 0  # lines left as blank or comments (the per-line parser may find more)


@nb.njit(cache=True, nogil=True)
def _lines(buf: np.ndarray, pow10: np.ndarray) -> tuple[Any, ...]:  # pragma: no cover
    """Per fast line: line, path range, value (``ok`` False where Python must read it, with
    where it ends), timestamp in seconds; and the other non-blank, non-comment lines."""
    n = len(buf)
    nl = 1
    for i in range(n):  # no early exit: vectorised
        nl += buf[i] == _NL
    line = np.empty(nl, np.int64)
    key_a = np.empty(nl, np.int64)
    key_b = np.empty(nl, np.int64)
    value = np.empty(nl, np.float64)
    ok = np.empty(nl, np.bool_)
    vend = np.empty(nl, np.int64)
    secs = np.empty(nl, np.float64)
    slow = np.empty(nl, np.int64)
    nf = ns = blank = 0
    p = 0
    for li in range(nl):
        e, nsp, s1, s2, odd = line_at(buf, p, n)
        start, p = p, e + 1
        if e == start or buf[start] == _HASH:
            blank += 1
            continue
        vb = s2 if nsp == 2 else e
        good = not odd and 1 <= nsp <= 2 and s1 > start and vb > s1 + 1 and (nsp == 1 or e > s2 + 1)
        t = -1.0
        if good and nsp == 2:
            t, good = value_at(buf, s2 + 1, e, False, pow10)
            good = good and abs(t * 1000.0) < _MAX_MS
        if not good:
            slow[ns] = li
            ns += 1
            continue
        line[nf], key_a[nf], key_b[nf], secs[nf], vend[nf] = li, start, s1, t, vb
        value[nf], ok[nf] = value_at(buf, s1 + 1, vb, False, pow10)
        nf += 1
    return (line[:nf], key_a[:nf], key_b[:nf], value[:nf], ok[:nf], vend[:nf], secs[:nf],
            slow[:ns], blank)  # fmt: skip


def scan(body: bytes) -> FastLines:
    """The fast pass over a UTF-8 body."""
    buf = np.frombuffer(body, np.uint8)
    line, key_a, key_b, value, ok, vend, secs, slow, blank = _lines(buf, POW10)
    if not ok.all():  # what the kernel leaves to Python ("nan", 17 digits): exact, or an error
        bad = []
        for r in np.flatnonzero(~ok).tolist():
            raw = body[int(key_b[r]) + 1 : int(vend[r])]
            try:
                if b"_" in raw:
                    raise ValueError(raw)
                value[r] = float(raw)
            except ValueError:
                bad.append(r)
        if bad:
            keep = np.ones(len(line), np.bool_)
            keep[bad] = False
            slow = np.union1d(slow, line[bad])
            line, key_a, key_b, value, secs = (x[keep] for x in (line, key_a, key_b, value, secs))
    return FastLines(line, key_a, key_b, value, secs, slow, int(blank))
