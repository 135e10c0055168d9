from __future__ import annotations

import types

import numba as nb
import numpy as np

from filodb.gateway import influx_fast
from filodb.model.borrow import borrowed
from filodb.testing.nrt import counted


@nb.njit(inline="always")
def _bump(a, i):  # pragma: no cover - numba
    """A helper with an early exit: LLVM's pass cannot prune its argument's count in a loop."""
    if a[i] < 0:
        return 0
    a[i] += 1
    return 1


def _loop(a):  # pragma: no cover - numba
    n = 0
    for i in range(len(a)):
        n += _bump(a, i)
    return n


def _loop_borrowed(a):  # pragma: no cover - numba
    b = borrowed(a)
    n = 0
    for i in range(len(b)):
        n += _bump(b, i)
    return n


def test_a_borrowed_array_is_the_same_memory_read_and_written() -> None:
    a = np.array([1, 2, -3, 4], np.int64)
    assert nb.njit(_loop_borrowed)(a) == 3
    np.testing.assert_array_equal(a, [2, 3, -3, 5])  # written through the borrowed view
    assert nb.njit(_loop)(a) == 3  # the counted and the borrowed loops agree
    np.testing.assert_array_equal(a, [3, 4, -3, 6])


@nb.njit(inline="always")
def _as_is(a):  # pragma: no cover - numba
    return a


def test_the_line_protocol_kernel_counts_no_references_a_line() -> None:
    """The Influx kernel hands the body to inlined helpers a line and a field; borrowed, its
    compiled code counts only its arguments, once a call (the same kernel with the body as it
    is counts the helpers' too: what borrowing removes)."""
    body = b"\n".join(b"m,host=h%d value=%d.5 1700000000000000000" % (i, i) for i in range(50))
    args = (
        np.frombuffer(body, np.uint8),
        1_000_000,
        1,
        2**62,
        influx_fast.POW10,
        influx_fast.MEMCMP,
    )
    fn = influx_fast._lines.py_func
    # the arguments' own, once a call: an increment and a decrement of buf and pow10
    assert sorted(counted(fn, *args)) == sorted(["arg.buf.0", "arg.pow10.0"] * 2)
    unborrowed = types.FunctionType(fn.__code__, {**fn.__globals__, "borrowed": _as_is},
                                 "_lines_counted")  # fmt: skip
    assert any(not v.startswith("arg.") for v in counted(unborrowed, *args))


def test_the_remote_write_sample_readers_count_no_references_a_sample() -> None:
    """The remote-write decoder's two passes over a body's samples hand the body to the
    sample reader a sample; they count only their arguments, once a call."""
    from filodb.model.varint import varint_bytes
    from filodb.prom import remote_write as rw

    region = b"".join(
        b"\x12" + bytes([len(body)]) + body
        for body in (b"\x09" + np.float64(i / 3).tobytes() + b"\x10"
                     + varint_bytes(1_700_000_000_000 + 15_000 * i) for i in range(6))
    )  # fmt: skip
    buf = np.frombuffer(region, np.uint8)
    starts, ends = np.array([0], np.int64), np.array([len(region)], np.int64)
    assert all(v.startswith("arg.") for v in counted(rw._count_samples.py_func, buf, starts, ends))
    counts, slow = rw._count_samples(buf, starts, ends)
    assert counts.tolist() == [6] and not slow.any()
    ts, bits = np.empty(6, np.int64), np.empty(6, np.uint64)
    at = np.array([0], np.int64)
    assert all(v.startswith("arg.") for v in counted(rw._read_samples.py_func, buf, starts, ends,
                                                          slow, at, ts, bits))  # fmt: skip
    assert ts.tolist() == [1_700_000_000_000 + 15_000 * i for i in range(6)]
    np.testing.assert_array_equal(bits.view(np.float64), np.arange(6) / 3)
