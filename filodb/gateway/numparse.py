"""Numbers of line protocols parsed in bulk (numba), exactly as Python's ``float``/``int`` would.

:func:`parse_values` reads field values (decimal floats, and integers when the caller strips
the ``i``/``u`` suffix) and :func:`parse_ints` reads integer timestamps, each from ``[start,
end)`` ranges of one byte buffer, with no Python step per number. A float is taken only where
the answer is provably Python's: at most 15 significant digits and a power of ten within
10^22, so ``mantissa * 10^k`` or ``mantissa / 10^k`` is one correctly rounded IEEE operation
(Clinger's fast path). Anything else (more digits, big exponents, text the kernel does not
know) is flagged for the caller to hand to Python, which gives the exact answer or the error.
:func:`line_at` finds a line's end and the spaces that cut it into fields, for both fast passes.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from filodb.model.loads import first_flagged, special8, u64_le

POW10 = np.array([10.0**i for i in range(23)])
_SP, _NL = 32, 10


@nb.njit(cache=True, nogil=True, inline="always")
def line_at(buf, p, n):  # pragma: no cover - numba
    """The line starting at ``p`` (of ``buf[:n]``, ``n <= len(buf)``): where it ends (its
    newline, or ``n``), how many spaces it holds, where the first two are (``p`` when absent),
    and whether it holds a byte outside printable ASCII other than the space (tab, CR, UTF-8,
    ...). Eight bytes are tested at once (:func:`~filodb.model.loads.special8`) and skipped
    when none is one of those: most of a line's bytes."""
    e = p
    nsp = 0
    s1 = s2 = p
    odd = False
    while e < n:
        if e + 8 <= n:
            m = special8(u64_le(buf, e))
            if m == 0:
                e += 8
                continue
            e += first_flagged(m)
        c = buf[e]
        if c <= _SP or c >= 127:
            if c == _NL:
                break
            if c == _SP:
                nsp += 1
                if nsp == 1:
                    s1 = e
                elif nsp == 2:
                    s2 = e
            else:
                odd = True
        e += 1
    return e, nsp, s1, s2, odd


@nb.njit(cache=True, nogil=True, inline="always")
def value_at(buf, i, e, integer, pow10):  # pragma: no cover - numba
    """``(value, ok)`` of ``buf[i:e]`` read as a float (``integer``: digits with a sign only);
    ``ok`` False where the caller must ask Python."""
    if i >= e:
        return 0.0, False
    neg = False
    c = buf[i]
    if c == 43 or c == 45:  # + -
        neg = c == 45
        i += 1
    m = 0
    digits = 0  # significant digits kept in m
    seen = 0  # digits seen at all
    frac = 0  # digits after the point
    point = False
    while i < e:
        c = buf[i]
        if 48 <= c <= 57:
            seen += 1
            if m == 0 and c == 48:
                if point:
                    frac += 1
            else:
                m = m * 10 + (c - 48)
                digits += 1
                if point:
                    frac += 1
                if digits > 15:
                    return 0.0, False
        elif c == 46 and not point and not integer:  # .
            point = True
        else:
            break
        i += 1
    if seen == 0:
        return 0.0, False
    exp = 0
    if i < e:
        c = buf[i]
        if integer or not (c == 101 or c == 69):  # e E
            return 0.0, False
        i += 1
        eneg = False
        if i < e and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        if i >= e:
            return 0.0, False
        while i < e and 48 <= buf[i] <= 57 and exp < 1000:
            exp = exp * 10 + (buf[i] - 48)
            i += 1
        if i < e:
            return 0.0, False
        if eneg:
            exp = -exp
    k = exp - frac
    if m == 0:
        v = 0.0
    elif 0 <= k <= 22:
        v = m * pow10[k]
    elif -22 <= k < 0:
        v = m / pow10[-k]
    else:
        return 0.0, False
    if neg and not (integer and m == 0):  # float("-0") is -0.0, int("-0") is 0
        v = -v
    return v, True


@nb.njit(cache=True, nogil=True, inline="always")
def int_at(buf, i, e):  # pragma: no cover - numba
    """``(magnitude uint64, negative, ok)`` of ``buf[i:e]`` read as a signed decimal integer
    of at most 19 digits."""
    neg = False
    if i < e and (buf[i] == 43 or buf[i] == 45):
        neg = buf[i] == 45
        i += 1
    if i >= e or e - i > 19:
        return np.uint64(0), neg, False
    m = np.uint64(0)
    while i < e:
        c = buf[i]
        if not 48 <= c <= 57:
            return np.uint64(0), neg, False
        m = m * np.uint64(10) + np.uint64(c - 48)
        i += 1
    return m, neg, True


@nb.njit(cache=True, nogil=True)
def _values(buf, starts, ends, integer, pow10):  # pragma: no cover - numba
    n = len(starts)
    out = np.zeros(n, np.float64)
    ok = np.zeros(n, np.bool_)
    for r in range(n):
        out[r], ok[r] = value_at(buf, starts[r], ends[r], integer[r], pow10)
    return out, ok


@nb.njit(cache=True, nogil=True)
def _ints(buf, starts, ends):  # pragma: no cover - numba
    n = len(starts)
    out = np.zeros(n, np.uint64)
    neg = np.zeros(n, np.bool_)
    ok = np.zeros(n, np.bool_)
    for r in range(n):
        out[r], neg[r], ok[r] = int_at(buf, starts[r], ends[r])
    return out, neg, ok


def parse_values(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 integer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(values, ok)``: each range as a float (``integer``: digits with a sign only); where
    ``ok`` is False the caller must ask Python."""
    return _values(
        buf, starts.astype(np.int64), ends.astype(np.int64), integer.astype(np.bool_), POW10
    )


def parse_ints(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               limit: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(values int64, ok)`` of signed decimal integers with at most 19 digits whose magnitude
    is at most ``limit``; where ``ok`` is False the caller must ask Python."""
    mag, neg, ok = _ints(buf, starts.astype(np.int64), ends.astype(np.int64))
    ok &= mag <= np.uint64(limit)
    vals = np.where(ok, mag, 0).astype(np.int64)
    return np.where(neg, -vals, vals), ok
