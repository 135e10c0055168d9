"""Vectorised first pass of the Influx line-protocol parser, for the lines of the common shape.

A body without backslashes, double quotes, CR or TAB cannot hold escapes or string fields, so
its structure is found by one numba pass over the raw bytes (:func:`_structure`) instead of a
Python step per line: the newlines cut lines, the spaces cut each line into series key, field
set and timestamp, the commas of the field set cut fields, the first ``=`` of a field cuts
name from value (before: a dozen numpy passes and searches over the body, 0.96 -> 1.68 M
lines/s in ``bench/parsers.py``). Numba kernels read the values and timestamps; the series are named by byte ranges of the body, which
:class:`~filodb.model.identity.SeriesKeyCache` resolves without a Python step per line.

A line takes the fast path when it has one or two spaces, no leading or trailing space, a
non-empty field set of numeric fields (floats, ``i`` and ``u`` integers), no ``+Inf`` field
(histogram lines keep their own rules) and, when present, a timestamp in range. Every other
non-blank, non-comment line goes back to the per-line parser, which gives it exactly the
answer or the error it always did; :mod:`filodb.gateway.influx` merges both by line number.
``tests/gateway/test_influx_fast.py`` checks that both paths agree on generated bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from filodb.gateway.numparse import parse_ints, parse_values

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
def _structure(buf: np.ndarray) -> tuple[np.ndarray, ...]:  # pragma: no cover - numba
    """One pass over the body: per line its start, end, first and second space and state
    (0 blank or comment, 1 fast, 2 for the per-line parser), and whether a fast line is bad
    (empty field set, a field that is not ``name=<number>``, a ``+Inf`` field); per field of a
    fast line (its index among the fast lines ``fl``) its start, ``=`` and end and whether its
    value is an integer (``i``/``u`` suffix)."""
    n = len(buf)
    nl = 1
    commas = 0
    for i in range(n):
        c = buf[i]
        if c == _NL:
            nl += 1
        elif c == _COMMA:
            commas += 1
    lstart = np.empty(nl, np.int64)
    lend = np.empty(nl, np.int64)
    ls1 = np.empty(nl, np.int64)
    ls2 = np.empty(nl, np.int64)
    lstate = np.zeros(nl, np.int8)
    lnsp = np.zeros(nl, np.int64)
    cap = commas + nl
    fstart = np.empty(cap, np.int64)
    feq = np.empty(cap, np.int64)
    fend = np.empty(cap, np.int64)
    fl = np.empty(cap, np.int64)
    fint = np.empty(cap, np.bool_)
    fgood = np.empty(cap, np.bool_)
    fname = np.zeros(cap, np.uint8)  # the field's name is value (VALUE) or counter (COUNTER)
    nf = 0
    nfast = 0
    p = 0
    for li in range(nl):
        e = p
        while e < n and buf[e] != _NL:
            e += 1
        lstart[li], lend[li] = p, e
        nxt = e + 1
        if e == p or buf[p] == _HASH:
            p = nxt
            continue
        nsp = 0
        s1 = s2 = e
        for i in range(p, e):
            if buf[i] == _SP:
                nsp += 1
                if nsp == 1:
                    s1 = i
                elif nsp == 2:
                    s2 = i
        if buf[p] == _SP or buf[e - 1] == _SP or nsp < 1 or nsp > 2:
            lstate[li] = 2
            p = nxt
            continue
        lstate[li], ls1[li], ls2[li], lnsp[li] = 1, s1, s2, nsp
        a = s1 + 1
        for i in range(s1 + 1, s2 + 1):
            if i < s2 and buf[i] != _COMMA:
                continue
            eq = -1
            for j in range(a, i):
                if buf[j] == _EQ:
                    eq = j
                    break
            good = eq > a and eq + 1 < i
            integer = False
            if good:
                for j in range(eq + 1, i):
                    if buf[j] == _US:
                        good = False
                        break
            if good:
                vf, vl = buf[eq + 1], buf[i - 1]
                fe = (48 <= vl <= 57) or vl == 46  # the last byte: a digit or "."
                fs = (48 <= vf <= 57) or vf == 46 or vf == 43 or vf == 45
                integer = vl == 105 or vl == 117  # i u
                if integer:
                    good = ((48 <= vf <= 57) or vf == 43 or vf == 45) and i - eq - 1 > 1
                    good = good and not (vl == 117 and vf == 45)
                else:
                    good = fe and fs
                # a +Inf field: histogram rules, the per-line parser's
                if eq - a == 4 and buf[a] == 43 and buf[a + 1] == 73 and buf[a + 2] == 110:
                    good = good and buf[a + 3] != 102
            fstart[nf], feq[nf], fend[nf], fl[nf] = a, eq, i, nfast
            fint[nf], fgood[nf] = integer, good
            if eq - a == 5 and _is(buf, a, _VALUE):
                fname[nf] = VALUE
            elif eq - a == 7 and _is(buf, a, _COUNTER):
                fname[nf] = COUNTER
            nf += 1
            a = i + 1
        nfast += 1
        p = nxt
    return (lstart, lend, ls1, ls2, lstate, lnsp, fstart[:nf], feq[:nf], fend[:nf], fl[:nf],
            fint[:nf], fgood[:nf], fname[:nf])  # fmt: skip


def scan(body: bytes, div: int, mul: int, limit: int) -> FastLines | None:
    """The fast pass over an :func:`eligible` body; ``None`` when it gives up on the body."""
    buf = np.frombuffer(body, np.uint8)
    n = len(buf)
    if n == 0:
        return None
    starts, ends, s1, s2, state, nsp, fstart, eq, fend, fl, is_int, good, named = _structure(buf)
    lines = np.flatnonzero(state == 1)
    slow_mask = state == 2
    s1, s2 = s1[lines], s2[lines]
    bad_line = np.zeros(len(lines), bool)
    np.logical_or.at(bad_line, fl, ~good)
    bad_line |= s2 <= s1 + 1  # an empty field set
    nf = np.bincount(fl, minlength=len(lines))
    vstart, vend = eq + 1, fend
    # --- timestamps --------------------------------------------------------------------------
    has_ts_l = nsp[lines] == 2
    t_ms = np.zeros(len(lines), np.int64)
    tl = np.flatnonzero(has_ts_l & ~bad_line)
    if len(tl):
        ta, tb = s2[tl] + 1, ends[lines[tl]]
        tv, tok = parse_ints(buf, ta, tb, limit)
        # the rest ("+", 20 digits, out of range, "1-2") is the per-line parser's to judge
        bad_line[tl[~tok]] = True
        t_ms[tl] = tv // div * mul if div > 1 else tv * mul
    # --- values of the fields of good lines --------------------------------------------------
    keep = ~bad_line[fl]
    fidx = np.flatnonzero(keep)
    va, vb, vi = vstart[fidx], vend[fidx], is_int[fidx]
    vals, vok = parse_values(buf, va, np.where(vi, vb - 1, vb), vi)
    for r in np.flatnonzero(~vok).tolist():  # what the kernel leaves to Python: exact or error
        a, b = int(va[r]), int(vb[r])
        try:
            vals[r] = float(int(body[a : b - 1])) if vi[r] else float(body[a:b])
        except ValueError:
            bad_line[fl[fidx[r]]] = True
    if not vok.all():
        keep = ~bad_line[fl]
        vals = vals[keep[fidx]]
        fidx = np.flatnonzero(keep)
    slow_mask[lines[bad_line]] = True
    kl = fl[fidx]
    fs, fe = fstart[fidx], eq[fidx]
    kind = np.where((nf == 1)[kl], named[fidx], FIELD).astype(np.uint8)
    return FastLines(
        line=lines[kl], key_a=starts[lines[kl]], key_b=s1[kl], name_a=fs, name_b=fe, kind=kind,
        value=vals, ts=t_ms[kl], has_ts=has_ts_l[kl], slow=np.flatnonzero(slow_mask),
    )  # fmt: skip
