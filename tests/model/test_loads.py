"""The word-at-a-time helpers of the text kernels against byte-by-byte Python: a load reads the
bytes it should at any offset, the special-byte test finds the first space, control, DEL or
non-ASCII byte of eight, and the line scanner built on them answers as a byte loop would."""

from __future__ import annotations

import numba as nb
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.gateway.numparse import line_at
from filodb.model.loads import first_flagged, special8, u32_le, u64_le


@nb.njit
def _words(buf: np.ndarray) -> np.ndarray:
    out = np.empty(max(0, len(buf) - 7), np.uint64)
    for i in range(len(out)):
        out[i] = u64_le(buf, i)
    return out


@nb.njit
def _words32(buf: np.ndarray) -> np.ndarray:
    out = np.empty(max(0, len(buf) - 3), np.uint32)
    for i in range(len(out)):
        out[i] = u32_le(buf, i)
    return out


@nb.njit
def _first(buf: np.ndarray, i: int) -> int:
    m = special8(u64_le(buf, i))
    return 8 if m == 0 else first_flagged(m)


@nb.njit
def _lines(buf: np.ndarray) -> np.ndarray:
    out = []
    p, n = 0, len(buf)
    while p <= n:
        e, nsp, s1, s2, odd = line_at(buf, p, n)
        out.append((e, nsp, s1, s2, int(odd)))
        p = e + 1
    return np.array(out, np.int64).reshape(-1, 5)


def _lines_py(data: bytes) -> list[tuple[int, ...]]:
    out = []
    p, n = 0, len(data)
    while p <= n:
        e, nsp, s1, s2, odd = p, 0, p, p, 0
        while e < n and data[e] != 10:
            c = data[e]
            if c == 32:
                nsp += 1
                s1, s2 = (e, s2) if nsp == 1 else (s1, e) if nsp == 2 else (s1, s2)
            elif c < 32 or c >= 127:
                odd = 1
            e += 1
        out.append((e, nsp, s1, s2, odd))
        p = e + 1
    return out


_TEXT = st.binary(max_size=200) | st.lists(
    st.sampled_from(
        [
            b"a",
            b"Z",
            b"=",
            b",",
            b" ",
            b"\n",
            b"\t",
            b"\x7f",
            b"\x80",
            b"\xff",
            b"!",
            b"~",
            b"\x00",
            b"0.5",
        ]
    ),  # fmt: skip
    max_size=120,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_a_load_is_the_eight_bytes_little_endian_at_any_offset(data: bytes) -> None:
    buf = np.frombuffer(data, np.uint8)
    want = [int.from_bytes(data[i : i + 8], "little") for i in range(len(data) - 7)]
    assert _words(buf).tolist() == want
    want32 = [int.from_bytes(data[i : i + 4], "little") for i in range(len(data) - 3)]
    assert _words32(buf).tolist() == want32


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_special8_finds_the_first_byte_a_line_scanner_stops_at(word: bytes) -> None:
    first = next((k for k, c in enumerate(word) if c <= 32 or c >= 127), 8)
    assert _first(np.frombuffer(word, np.uint8), 0) == first


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_line_at_answers_as_a_byte_loop(data: bytes) -> None:
    got = _lines(np.frombuffer(data, np.uint8)).tolist()
    assert [tuple(r) for r in got] == _lines_py(data)
