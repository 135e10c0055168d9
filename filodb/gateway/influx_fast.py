"""Vectorised first pass of the Influx line-protocol parser, for the lines of the common shape.

A body without backslashes, double quotes, CR or TAB cannot hold escapes or string fields, so
its structure is found with numpy over the raw bytes instead of a Python step per line: the
newlines cut lines, the spaces cut each line into series key, field set and timestamp, the
commas of the field set cut fields, the first ``=`` of a field cuts name from value. A numba
kernel reads the values and timestamps; the series are named by byte ranges of the body, which
:class:`~filodb.gateway.keycache.SeriesKeyCache` resolves without a Python step per line.

A line takes the fast path when it has one or two spaces, no leading or trailing space, a
non-empty field set of numeric fields (floats, ``i`` and ``u`` integers), no ``+Inf`` field
(histogram lines keep their own rules) and, when present, a timestamp in range. Every other
non-blank, non-comment line goes back to the per-line parser, which gives it exactly the
answer or the error it always did; :mod:`filodb.gateway.influx` merges both by line number.
``tests/gateway/test_influx_fast.py`` checks that both paths agree on generated bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from filodb.gateway.numparse import parse_ints, parse_values

_SP, _NL, _COMMA, _EQ, _US, _HASH = 32, 10, 44, 61, 95, 35
_DIGIT = np.zeros(256, bool)
_DIGIT[48:58] = True
_FLOAT_END = _DIGIT.copy()
_FLOAT_END[ord(".")] = True
_FLOAT_START = _FLOAT_END.copy()
_FLOAT_START[[ord("+"), ord("-")]] = True
_INT_START = _DIGIT.copy()
_INT_START[[ord("+"), ord("-")]] = True


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


def _named(buf: np.ndarray, start: np.ndarray, end: np.ndarray, name: bytes) -> np.ndarray:
    """Per range: the bytes ``[start, end)`` equal ``name``."""
    hit = (end - start) == len(name)
    for i, c in enumerate(name):
        hit &= buf[np.minimum(start + i, len(buf) - 1)] == c
    return hit


def eligible(body: bytes) -> bool:
    """True when no line of the body can hold an escape or a string field."""
    return b"\\" not in body and b'"' not in body and b"\r" not in body and b"\t" not in body


def _count_in(pos: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How many of the sorted positions ``pos`` fall in ``[lo, hi)``, per range."""
    return np.searchsorted(pos, hi) - np.searchsorted(pos, lo)


def scan(body: bytes, div: int, mul: int, limit: int) -> FastLines | None:
    """The fast pass over an :func:`eligible` body; ``None`` when it gives up on the body."""
    buf = np.frombuffer(body, np.uint8)
    n = len(buf)
    if n == 0:
        return None
    nl = np.flatnonzero(buf == _NL)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [n]))
    nonblank = ends > starts
    first = np.where(nonblank, buf[np.minimum(starts, n - 1)], _SP)
    last = np.where(nonblank, buf[np.maximum(ends - 1, 0)], _SP)
    comment = nonblank & (first == _HASH)
    sp = np.flatnonzero(buf == _SP)
    isp = np.searchsorted(sp, starts)
    nsp = np.searchsorted(sp, ends) - isp
    fast = nonblank & ~comment & (first != _SP) & (last != _SP) & ((nsp == 1) | (nsp == 2))
    # lines the per-line parser reads: non-blank ones that are not comments, not fast
    slow_mask = nonblank & ~comment & ~fast
    # a line of spaces only is blank to the per-line parser, which strips it
    lines = np.flatnonzero(fast)
    if len(sp):
        s1 = sp[np.minimum(isp[lines], len(sp) - 1)]
        s2 = np.where(nsp[lines] == 2, sp[np.minimum(isp[lines] + 1, len(sp) - 1)], ends[lines])
    else:
        s1 = s2 = np.zeros(0, np.int64)
    ok = s2 > s1 + 1  # a field set
    # --- fields: cut at the commas inside each field set ------------------------------------
    cm = np.flatnonzero(buf == _COMMA)
    cl = np.searchsorted(starts, cm, "right") - 1  # line of each comma
    pos_in = np.full(len(starts), -1, np.int64)
    pos_in[lines] = np.arange(len(lines))
    li = pos_in[cl] if len(cm) else np.zeros(0, np.int64)
    inside = li >= 0
    inside[inside] = (cm[inside] > s1[li[inside]]) & (cm[inside] < s2[li[inside]])
    cm_in = cm[inside]
    fstart = np.sort(np.concatenate((s1 + 1, cm_in + 1)))
    fend = np.sort(np.concatenate((cm_in, s2)))
    fl = np.searchsorted(s1, fstart - 1, "right") - 1  # index into `lines` of each field
    eqs = np.flatnonzero(buf == _EQ)
    k = np.searchsorted(eqs, fstart)
    eq = eqs[np.minimum(k, len(eqs) - 1)] if len(eqs) else np.full(len(fstart), n)
    good = (k < len(eqs)) & (eq < fend) & (eq > fstart) & (eq + 1 < fend)
    vstart, vend = eq + 1, fend
    vlast = buf[np.clip(vend - 1, 0, n - 1)]
    vfirst = buf[np.clip(vstart, 0, n - 1)]
    us = np.flatnonzero(buf == _US)
    good &= _count_in(us, vstart, vend) == 0
    is_float = _FLOAT_END[vlast] & _FLOAT_START[vfirst]
    is_int = (vlast == ord("i")) | (vlast == ord("u"))
    is_int &= (
        _INT_START[vfirst] & (vend - vstart > 1) & ~((vlast == ord("u")) & (vfirst == ord("-")))
    )
    good &= is_float | is_int
    bad_line = np.zeros(len(lines), bool)
    np.logical_or.at(bad_line, fl, ~good)
    bad_line |= ~ok
    # --- names (a +Inf field: histogram rules, per-line parser) ------------------------------
    np.logical_or.at(bad_line, fl, _named(buf, fstart, eq, b"+Inf"))
    nf = np.bincount(fl, minlength=len(lines))
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
    only = (nf == 1)[kl]
    kind = np.where(only & _named(buf, fs, fe, b"value"), VALUE, FIELD).astype(np.uint8)
    kind[only & _named(buf, fs, fe, b"counter")] = COUNTER
    return FastLines(
        line=lines[kl], key_a=starts[lines[kl]], key_b=s1[kl], name_a=fs, name_b=fe, kind=kind,
        value=vals, ts=t_ms[kl], has_ts=has_ts_l[kl], slow=np.flatnonzero(slow_mask),
    )  # fmt: skip
