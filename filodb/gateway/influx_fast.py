"""Vectorised first pass of the Influx line-protocol parser, for the lines of the common shape.

A body without backslashes, double quotes, CR or TAB cannot hold escapes or string fields, so
one numba pass over its raw bytes (:func:`_lines`) reads it instead of a Python step per line:
the newlines cut lines, the spaces cut each line into series key, field set and timestamp, the
commas of the field set cut fields, the first ``=`` of a field cuts name from value, and the
values and timestamps are read as they are met (:mod:`filodb.gateway.numparse`'s per-number
helpers). Before: a structure kernel, then a dozen numpy passes and two more kernels over the
fields (0.35 ms a 2000-line body of ``bench/ingest.py``'s live shape; now 0.14). The series
are named by byte ranges of the body, which :class:`~filodb.model.identity.SeriesKeyCache`
resolves without a Python step per line.

A line takes the fast path when it has one or two spaces, no leading or trailing space, a
non-empty field set of numeric fields (floats, ``i`` and ``u`` integers), no ``+Inf`` field
(histogram lines keep their own rules) and, when present, a timestamp in range. Every other
non-blank, non-comment line goes back to the per-line parser, which gives it exactly the
answer or the error it always did; :mod:`filodb.gateway.influx` merges both by line number.
``tests/gateway/test_influx_fast.py`` checks that both paths agree on generated bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from filodb.gateway.numparse import POW10, int_at, line_at, value_at
from filodb.model.borrow import borrowed
from filodb.model.libc import MEMCMP

_SP, _NL, _COMMA, _EQ, _US, _HASH = 32, 10, 44, 61, 95, 35


@dataclass
class FastLines:
    """What the fast pass read: one row per sample (``line`` is the 0-based line index), and
    the 0-based indices of the lines the per-line parser must read. A sample's series is named
    by byte ranges of the body: its line's series key ``[key_a, key_b)``, its field's name
    ``[name_a, name_b)`` and ``kind`` (:data:`FIELD`, or :data:`VALUE` / :data:`COUNTER` for a
    line's only field of that name, whose series is the measurement)."""

    line: np.ndarray  # int64, per field
    key_a: np.ndarray  # int64, per field
    key_b: np.ndarray
    name_a: np.ndarray
    name_b: np.ndarray
    kind: np.ndarray  # uint8
    value: np.ndarray  # float64
    ts: np.ndarray  # int64 ms, per field; meaningless where has_ts is False
    has_ts: np.ndarray  # bool, per field
    slow: np.ndarray  # int64 line indices
    blank: int = 0  # lines left as blank or comments (the per-line parser may find more)
    lines: int = 0  # lines of the body (newlines + 1)


# kinds of a field: any, or a line's only field named value or counter (series: the measurement)
FIELD, VALUE, COUNTER = 0, 1, 2


_VALUE = np.frombuffer(b"value", np.uint8)
_COUNTER = np.frombuffer(b"counter", np.uint8)


@nb.njit(cache=True, nogil=True, inline="always")
def _is(buf: np.ndarray, a: int, word: np.ndarray) -> bool:  # pragma: no cover - numba
    """``buf[a:a + len(word)]`` is ``word``."""
    for k in range(len(word)):
        if buf[a + k] != word[k]:
            return False
    return True


def eligible(body: bytes) -> bool:
    """True when no line of the body can hold an escape or a string field."""
    return b"\\" not in body and b'"' not in body and b"\r" not in body and b"\t" not in body


@nb.njit(cache=True, nogil=True)
def _lines(buf: np.ndarray, div: int, mul: int, limit: int, pow10: np.ndarray,
           cmp: Any) -> tuple[Any, ...]:  # fmt: skip  # pragma: no cover - numba
    """One pass over the body. Per line: its end, its spaces (one or two), then its fields
    (``name=<number>``: first ``=``, no ``_`` in the value, a float's first and last bytes
    those of a number, an integer's ``i``/``u`` suffix) with their values, then its timestamp.
    A line of another shape, with a ``+Inf`` field, a value the kernel rejects or a timestamp
    out of range is listed in ``slow`` and leaves no field. Per field of the other lines: its
    line, series key, name, kind, value (``ok`` False where Python must read it), timestamp
    (ms) and whether the line had one."""
    n = len(buf)
    nl = 1
    cap = 0  # fields: each has an "="
    for i in range(n):  # no early exit: vectorised
        c = buf[i]
        nl += c == _NL
        cap += c == _EQ
    fline = np.empty(cap, np.int64)
    key_a = np.empty(cap, np.int64)
    key_b = np.empty(cap, np.int64)
    name_a = np.empty(cap, np.int64)
    name_b = np.empty(cap, np.int64)
    kind = np.empty(cap, np.uint8)
    value = np.empty(cap, np.float64)
    ok = np.empty(cap, np.bool_)
    vend = np.empty(cap, np.int64)  # where the value ends (its suffix included)
    ts = np.empty(cap, np.int64)
    has_ts = np.empty(cap, np.bool_)
    slow = np.empty(nl, np.int64)
    nf = ns = blank = 0
    p = 0
    last_a = last_n = 0  # the last timestamp read: its text (space first) and its value
    last_t = np.int64(0)
    at = buf.ctypes.data  # cmp (libc's memcmp) compares by address
    buf = borrowed(buf)  # handed to inlined helpers a line and a field: not counted
    pow10 = borrowed(pow10)
    for li in range(nl):
        e, nsp, s1, s2, _ = line_at(buf, p, n)
        start, p = p, e + 1
        if e == start or buf[start] == _HASH:
            blank += 1
            continue
        fset_end = s2 if nsp == 2 else e
        if (buf[start] == _SP or buf[e - 1] == _SP or nsp < 1 or nsp > 2
                or fset_end <= s1 + 1):  # fmt: skip
            slow[ns] = li
            ns += 1
            continue
        t = np.int64(0)
        good = True
        if nsp == 2:
            if e - s2 == last_n and cmp(at + s2, at + last_a, last_n) == 0:
                t = last_t  # the line before's timestamp text (a gather's lines share it)
            else:
                mag, neg, tok = int_at(buf, s2 + 1, e)
                if tok and mag <= np.uint64(limit):
                    t = -np.int64(mag) if neg else np.int64(mag)
                    t = t // div * mul if div > 1 else t * mul
                    last_a, last_n, last_t = s2, e - s2, t
                else:
                    good = False  # "+", 20 digits, out of range, "1-2": the per-line parser's
        f0 = nf
        a = s1 + 1
        while good:
            eq = -1
            under = False
            j = a
            while j < fset_end:
                c = buf[j]
                if c == _COMMA:
                    break
                if c == _EQ:
                    if eq < 0:
                        eq = j
                elif c == _US and eq >= 0:
                    under = True
                j += 1
            if eq <= a or eq + 1 >= j or under:
                good = False
                break
            vf, vl = buf[eq + 1], buf[j - 1]
            if vl == 105 or vl == 117:  # i u
                integer = True
                good = ((48 <= vf <= 57) or vf == 43 or vf == 45) and j - eq - 1 > 1
                good = good and not (vl == 117 and vf == 45)
            else:
                integer = False
                good = ((48 <= vl <= 57) or vl == 46) and (
                    (48 <= vf <= 57) or vf == 46 or vf == 43 or vf == 45
                )
            # a +Inf field: histogram rules, the per-line parser's
            if eq - a == 4 and buf[a] == 43 and buf[a + 1] == 73 and buf[a + 2] == 110:
                good = good and buf[a + 3] != 102
            if not good:
                break
            vend[nf] = j
            value[nf], ok[nf] = value_at(buf, eq + 1, j - 1 if integer else j, integer, pow10)
            fline[nf], key_a[nf], key_b[nf], name_a[nf], name_b[nf] = li, start, s1, a, eq
            ts[nf], has_ts[nf], kind[nf] = t, nsp == 2, FIELD
            nf += 1
            if j >= fset_end:
                break
            a = j + 1
        if not good:
            nf = f0
            slow[ns] = li
            ns += 1
        elif nf == f0 + 1:  # a line's only field named value or counter: the measurement's
            a, b = name_a[f0], name_b[f0]
            if b - a == 5 and _is(buf, a, _VALUE):
                kind[f0] = VALUE
            elif b - a == 7 and _is(buf, a, _COUNTER):
                kind[f0] = COUNTER
    return (fline[:nf], key_a[:nf], key_b[:nf], name_a[:nf], name_b[:nf], kind[:nf],
            value[:nf], ok[:nf], vend[:nf], ts[:nf], has_ts[:nf], slow[:ns], blank, nl)  # fmt: skip


def scan(body: bytes, div: int, mul: int, limit: int) -> FastLines | None:
    """The fast pass over an :func:`eligible` body; ``None`` when it gives up on the body."""
    buf = np.frombuffer(body, np.uint8)
    if len(buf) == 0:
        return None
    line, key_a, key_b, name_a, name_b, kind, value, ok, vend, ts, has_ts, slow, blank, nl = _lines(
        buf, div, mul, limit, POW10, MEMCMP
    )
    if not ok.all():  # what the kernel leaves to Python: exact, or the line is the parser's
        bad = []
        for r in np.flatnonzero(~ok).tolist():
            a, b = int(name_b[r]) + 1, int(vend[r])
            try:
                integer = body[b - 1] in b"iu"
                value[r] = float(int(body[a : b - 1])) if integer else float(body[a:b])
            except ValueError:
                bad.append(int(line[r]))
        if bad:
            drop = np.isin(line, bad)
            keep = ~drop
            slow = np.union1d(slow, bad)
            line, key_a, key_b, name_a, name_b, kind, value, ts, has_ts = (
                x[keep] for x in (line, key_a, key_b, name_a, name_b, kind, value, ts, has_ts)
            )
    return FastLines(line, key_a, key_b, name_a, name_b, kind, value, ts, has_ts, slow, int(blank),
                     int(nl))  # fmt: skip
