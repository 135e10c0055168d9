"""Process memory: give freed memory back to the system.

glibc's malloc serves allocations above ``M_MMAP_THRESHOLD`` with their own ``mmap``, unmapped
when freed, and smaller ones from its heaps, which keep what is freed for reuse. By default
the threshold moves up (to 32 MB) each time a large block is freed, so after a first query the
numpy temporaries of later ones (hundreds of MB across a shard's series) come from the heaps
and stay resident after the query: measured with 110 k series, a worker held 792 MB after a
few queries over every series instead of 484 MB. A fixed threshold keeps each large array in
its own mapping (one ``mmap``/``munmap`` each, negligible against the work that fills them).
"""

from __future__ import annotations

import ctypes
import ctypes.util

MMAP_THRESHOLD = 256 << 10  # bytes: larger blocks get their own mapping
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` (no dynamic raise); False where there is no
    glibc (the call does nothing then)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
