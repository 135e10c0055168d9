"""CRC-32C (Castagnoli), the checksum of Prometheus's remote-read frames.

Table driven (the reflected polynomial ``0x82F63B78``), one numba kernel per call; equal to Go's
``crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))``.
"""

from __future__ import annotations

import numba as nb
import numpy as np


def _crc_table() -> np.ndarray:
    poly = 0x82F63B78  # reflected Castagnoli polynomial
    tab = np.zeros(256, np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        tab[i] = c
    return tab


_CRC_TABLE = _crc_table()


@nb.njit(cache=True, nogil=True)
def _crc32c(buf: np.ndarray, table: np.ndarray) -> np.uint32:
    c = np.uint32(0xFFFFFFFF)
    for b in buf:
        c = table[(c ^ np.uint32(b)) & np.uint32(0xFF)] ^ (c >> np.uint32(8))
    return c ^ np.uint32(0xFFFFFFFF)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as Go's ``crc32.Checksum(b, castagnoliTable)``."""
    return int(_crc32c(np.frombuffer(data, np.uint8), _CRC_TABLE))
