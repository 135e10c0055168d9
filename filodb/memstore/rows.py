"""Per-series arrays that grow at their end with room to spare.

Registering a batch of new series appends a row to each per-series array of the shard and of
its head. ``np.concatenate`` copies the whole array each time: with a few hundred new series
a batch and 100 k series in the shard that is 1.3 ms of copying a batch, more than the
registering itself. :func:`extend_rows` hands out a longer view of a buffer instead, and
copies into a new buffer (half as large again as needed) only when the buffer is full.

The rows of a buffer past the end of its view belong to nobody: an array given to
:func:`extend_rows` must be the only one that views its buffer (arrays made by it, or any
fresh array: a purge's ``a[keep]`` starts a new buffer at the next growth).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _buffer(a: np.ndarray) -> np.ndarray | None:
    """The buffer whose start ``a`` views (``a`` made by :func:`extend_rows`), else None."""
    b = a.base
    if (
        type(b) is np.ndarray
        and b.base is None
        and b.dtype == a.dtype
        and b.shape[1:] == a.shape[1:]
    ):
        return b
    return None


def extend_rows(a: np.ndarray, k: int, fill: Any) -> np.ndarray:
    """``a`` followed by ``k`` rows of ``fill``: a longer view of ``a``'s buffer when it has
    room, else a copy into a buffer with room for half as many rows again."""
    n = len(a)
    buf = _buffer(a)
    if buf is None or len(buf) < n + k:
        buf = np.empty((max(n + k, n + n // 2, 16), *a.shape[1:]), a.dtype)
        buf[:n] = a
    buf[n : n + k] = fill
    return buf[: n + k]


def held_nbytes(a: np.ndarray) -> int:
    """The bytes ``a`` holds: its buffer's, room to spare included."""
    buf = _buffer(a)
    return int(buf.nbytes if buf is not None else a.nbytes)
