"""Eight bytes of a byte array as one load, for numba kernels that read text a word at a time.

A kernel composing a word from ``buf[i] .. buf[i + 7]`` pays eight loads, each behind numba's
negative-index wraparound check (a compare and a conditional move), which keeps LLVM from
merging them: summing a 160 KB buffer's words that way took 62 us against 3.5 us with one
load (measured). :func:`u64_le` is that one load (and :func:`u32_le` for 4 bytes; unaligned; byte-swapped on a big-endian
host, so the answer is the same everywhere), and :func:`special8` tests eight bytes of text
at once for the bytes the line scanners stop at (:func:`first_flagged`: the first of them).

The caller guarantees ``0 <= i`` and ``i + 8 <= len(buf)``: nothing is checked.
"""

from __future__ import annotations

import sys
from typing import Any

import numba as nb
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic


def _load_le(bits: int) -> Any:
    """The typing of an intrinsic loading ``bits`` (32 or 64) little-endian bits at
    ``buf[i]`` (a C-contiguous 1-d ``uint8`` array): one unaligned load."""
    out = types.uint64 if bits == 64 else types.uint32

    def typing(typingctx: Any, buf: Any, i: Any) -> Any:
        if not (isinstance(buf, types.Array) and buf.dtype == types.uint8 and buf.ndim == 1
                and buf.layout == "C" and isinstance(i, types.Integer)):  # fmt: skip
            return None
        sig = out(buf, i)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            at = context.cast(builder, args[1], signature.args[1], types.intp)
            ptr = builder.bitcast(builder.gep(ary.data, [at]), ir.IntType(bits).as_pointer())
            word = builder.load(ptr, align=1)
            return builder.bswap(word) if sys.byteorder == "big" else word

        return sig, codegen

    typing.__name__ = typing.__qualname__ = f"u{bits}_le"  # one name an intrinsic
    return typing


u64_le: Any = intrinsic(_load_le(64))  # kernels call u64_le(buf, i): the uint64 at buf[i]
u32_le: Any = intrinsic(_load_le(32))  # and u32_le(buf, i): the uint32 (i + 4 <= len(buf))


_LO = np.uint64(0x0101010101010101)
_HI = np.uint64(0x8080808080808080)
_BELOW_BANG = np.uint64(0x2121212121212121)  # "!" (33) in every byte


@nb.njit(cache=True, nogil=True, inline="always")
def special8(w: Any) -> Any:  # pragma: no cover - numba
    """Nonzero when one of the 8 bytes of ``w`` is a control byte, a space, DEL or not
    ASCII (``<= 32`` or ``>= 127``); its lowest set bit is then the top bit of the first such
    byte (little endian: the lowest address). Bytes above the first may be flagged wrongly
    (a borrow), never the first."""
    below = (w - _BELOW_BANG) & ~w  # top bit where a byte is < 33 (exact for the lowest)
    above = (w + _LO) | w  # top bit where a byte is >= 127
    return (below | above) & _HI


_TZ: Any = trailing_zeros  # a numba intrinsic (typed for mypy)


@nb.njit(cache=True, nogil=True, inline="always")
def first_flagged(m: Any) -> Any:  # pragma: no cover - numba
    """The index (0-7) of the lowest byte flagged in a nonzero :func:`special8` answer."""
    return _TZ(m) >> 3
