"""Part keys of many series held in one byte arena: what a door hands down with a batch.

A door that caches series identity (:class:`~filodb.model.identity.SeriesKeyCache`) keeps the
part key of every series it knows back to back in one ``uint8`` array. A batch's
:class:`PartKeys` is a view of that arena: per series, where its part key starts and ends.
Taking the series of a shard is a numpy gather of the bounds, and the bytes a log record
needs (the part keys back to back and their ends) are one numba copy: no Python step and no
``bytes`` object per series. It reads as a sequence of ``bytes`` too, for code that wants one
part key at a time. The arena is never written where a view points (the cache only appends,
and grows or starts over into new arrays), so a view stays valid after the cache moved on.

A batch's label sets are its part keys decoded (:class:`PartKeyLabels`), when something asks
for them: the cache keeps no Python object per series (a label set's tuple, a dict entry and
an int each cost ~200 bytes a series: 22 MB of the web process at 110 k series).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, overload

import numpy as np

if TYPE_CHECKING:
    from filodb.model.labels import Labels


class PartKeys(Sequence[bytes]):
    """Per series ``arena[start[i]:end[i]]``; see the module docstring."""

    __slots__ = ("arena", "start", "end")

    def __init__(self, arena: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        self.arena = arena
        self.start = start
        self.end = end

    def __len__(self) -> int:
        return len(self.start)

    @overload
    def __getitem__(self, i: int) -> bytes: ...

    @overload
    def __getitem__(self, i: slice) -> PartKeys: ...

    def __getitem__(self, i: int | slice) -> bytes | PartKeys:
        if isinstance(i, slice):
            return PartKeys(self.arena, self.start[i], self.end[i])
        return self.arena[self.start[i] : self.end[i]].tobytes()

    def __iter__(self) -> Iterator[bytes]:
        arena = self.arena
        for a, b in zip(self.start.tolist(), self.end.tolist(), strict=True):
            yield arena[a:b].tobytes()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PartKeys({list(self)!r})"

    def take(self, at: np.ndarray) -> PartKeys:
        """The part keys of series ``at`` (an index array or a boolean mask)."""
        return PartKeys(self.arena, self.start[at], self.end[at])

    def joined(self) -> tuple[bytes, np.ndarray]:
        """The part keys back to back, and where each ends (``uint32``): a log record's tail."""
        return self.blob(), np.cumsum(self.end - self.start).astype(np.uint32)

    def blob(self) -> bytes:
        """The part keys back to back (one numba copy)."""
        from filodb.model.libc import MEMCPY, gather  # numba: loaded by the doors only

        return gather(self.arena, self.start, self.end, MEMCPY).tobytes()


class PartKeyLabels(Sequence["Labels"]):
    """The label sets of a :class:`PartKeys`, decoded on first use (all at once: one numba
    scan, :func:`~filodb.model.partkeyscan.decode_part_keys`). A door's fast path needs only
    how many series a body has; the label sets are for its slower paths (limits' new series,
    a per-line parser's merge, an exemplar's check). Taking series or slicing keeps it lazy."""

    __slots__ = ("pks", "_list")

    def __init__(self, pks: PartKeys) -> None:
        self.pks = pks
        self._list: list[Labels] | None = None

    def items(self) -> list[Labels]:
        """The label sets, as a list (decoded once)."""
        got = self._list
        if got is None:
            got = self._list = _decode(self.pks)
        return got

    def __len__(self) -> int:
        return len(self.pks)

    @overload
    def __getitem__(self, i: int) -> Labels: ...

    @overload
    def __getitem__(self, i: slice) -> PartKeyLabels: ...

    def __getitem__(self, i: int | slice) -> Labels | PartKeyLabels:
        if isinstance(i, slice):
            return PartKeyLabels(self.pks[i])
        return self.items()[i]

    def __iter__(self) -> Iterator[Labels]:
        return iter(self.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return self.items() == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PartKeyLabels({self.items()!r})"

    def take(self, at: np.ndarray) -> PartKeyLabels:
        """The label sets of series ``at`` (an index array or a boolean mask), still lazy."""
        return PartKeyLabels(self.pks.take(at))


def _decode(pks: PartKeys) -> list[Labels]:
    from filodb.model.libc import MEMCPY, gather
    from filodb.model.partkey import labels_of
    from filodb.model.partkeyscan import decode_part_keys

    if not len(pks):
        return []
    ends = np.cumsum(pks.end - pks.start)
    # the part keys back to back, in a writable array as the worker's registration hands
    # them (a read-only one would be another signature for numba to compile)
    data = gather(pks.arena, pks.start, pks.end, MEMCPY)
    dec = decode_part_keys(data, ends - (pks.end - pks.start), ends)
    return list(dec.labels) if dec is not None else [labels_of(pk) for pk in pks]
