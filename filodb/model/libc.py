"""libc's ``memcmp`` and ``memcpy`` for numba kernels, and :func:`gather`, the part-key copy
built on ``memcpy`` (both vectorised; a numba byte loop is
5-20x slower on part-key sized ranges). A kernel takes them as an argument and calls them on
``array.ctypes.data`` addresses: a ctypes function held as a global would keep numba from
caching the kernel, so every process would compile it at start.

Each function comes from its own ``CDLL`` handle: the functions of one handle share a Python
class, and numba's dispatcher remembers one numba type per class, so a second function of
another signature would take its slow typing path at every call (~70 us, measured).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numba as nb
import numpy as np


def _libc_fn(name: str, restype: type) -> Any:
    fn = getattr(ctypes.CDLL(None), name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = restype
    return fn


MEMCMP = _libc_fn("memcmp", ctypes.c_int)
MEMCPY = _libc_fn("memcpy", ctypes.c_void_p)


@nb.njit(cache=True, nogil=True)
def gather(arena: np.ndarray, start: np.ndarray, end: np.ndarray, cpy: Any
            ) -> np.ndarray:  # fmt: skip  # pragma: no cover - numba
    """``arena[start[i]:end[i]]`` back to back (``cpy``: libc's memcpy; the arena is a
    contiguous ``uint8`` array, as the series cache makes it)."""
    total = 0
    for i in range(len(start)):
        total += end[i] - start[i]
    out = np.empty(total, np.uint8)
    o = 0
    po, pa = out.ctypes.data, arena.ctypes.data
    for i in range(len(start)):
        n = end[i] - start[i]
        cpy(po + o, pa + start[i], n)
        o += n
    return out
