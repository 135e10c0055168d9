"""libc's ``memcmp`` and ``memcpy`` for numba kernels (both vectorised; a numba byte loop is
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


def _libc_fn(name: str, restype: type) -> Any:
    fn = getattr(ctypes.CDLL(None), name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = restype
    return fn


MEMCMP = _libc_fn("memcmp", ctypes.c_int)
MEMCPY = _libc_fn("memcpy", ctypes.c_void_p)
