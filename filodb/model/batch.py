"""Column batches: how samples travel from a parser to the log and into a memstore.

A :class:`SampleBatch` holds many samples of many series in columns. Each distinct label set
appears once in ``series``; ``sidx[i]`` says which series sample ``i`` belongs to. Parsers
(remote write, Influx, Graphite) produce batches; the router splits them per shard; the log
carries them as msgpack metadata plus raw array bytes (never pickle); the memstore ingests
them with numpy, so no per-sample Python loop runs anywhere on the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import msgpack
import numpy as np

from filodb.errors import BadInputError
from filodb.model.cache import BoundedCache
from filodb.model.labels import Labels

BATCH_FORMAT_VERSION = 1


@dataclass
class SampleBatch:
    """Samples in columns.

    ``series``: distinct label sets. ``sidx``: int32 index into ``series`` per sample.
    ``ts``: int64 milliseconds since the epoch. ``vals``: float64, bit patterns kept (the stale
    marker NaN survives). ``types``: optional metric type per series name from metadata
    ("counter", "gauge", "histogram", ...), keyed by metric family name.
    """

    series: list[Labels]
    sidx: np.ndarray
    ts: np.ndarray
    vals: np.ndarray
    types: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sidx = np.ascontiguousarray(self.sidx, dtype=np.int32)
        self.ts = np.ascontiguousarray(self.ts, dtype=np.int64)
        self.vals = np.ascontiguousarray(self.vals, dtype=np.float64)
        if not (len(self.sidx) == len(self.ts) == len(self.vals)):
            raise ValueError("sidx, ts and vals must have the same length")

    @classmethod
    def empty(cls) -> SampleBatch:
        return cls([], np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64))

    def __len__(self) -> int:
        return len(self.ts)

    def take_series(self, keep: np.ndarray) -> SampleBatch:
        """The sub-batch of the series where boolean ``keep`` (one per series) is True."""
        keep = np.asarray(keep, bool)
        new_index = np.cumsum(keep) - 1
        mask = keep[self.sidx]
        series = [self.series[i] for i in np.flatnonzero(keep).tolist()]
        return SampleBatch(
            series,
            new_index[self.sidx[mask]].astype(np.int32),
            self.ts[mask],
            self.vals[mask],
            self.types,
        )

    def split(self, shard_of_series: np.ndarray, num_shards: int) -> dict[int, SampleBatch]:
        """Split into one batch per shard, given the shard of each series."""
        out: dict[int, SampleBatch] = {}
        for shard in np.unique(shard_of_series):
            out[int(shard)] = self.take_series(shard_of_series == shard)
        return out

    # --- wire format -------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """msgpack header followed by the raw little-endian arrays (see docs/architecture.md)."""
        header = {
            "v": BATCH_FORMAT_VERSION,
            "n": len(self.ts),
            "series": [[*chain.from_iterable(lb)] for lb in self.series],
            "types": self.types,
        }
        h = msgpack.packb(header)
        return b"".join(
            [
                len(h).to_bytes(4, "little"),
                h,
                self.sidx.astype("<i4").tobytes(),
                self.ts.astype("<i8").tobytes(),
                self.vals.astype("<f8").tobytes(),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> SampleBatch:
        """Inverse of :meth:`to_bytes`; raises :class:`BadInputError` on a malformed record."""
        mv = memoryview(data)
        try:
            hlen = int.from_bytes(mv[:4], "little")
            header = msgpack.unpackb(mv[4 : 4 + hlen], raw=False, use_list=False)
            if header.get("v") != BATCH_FORMAT_VERSION:
                raise BadInputError(f"unknown batch format version {header.get('v')!r}")
            n = int(header["n"])
            pos = 4 + hlen
            sidx = np.frombuffer(mv, "<i4", n, pos)
            pos += 4 * n
            ts = np.frombuffer(mv, "<i8", n, pos)
            pos += 8 * n
            vals = np.frombuffer(mv, "<f8", n, pos)
            cache = _LABELS
            series = []
            for flat in header["series"]:
                lb = cache.get(flat)
                if lb is None:
                    lb = _pairs(flat)
                    cache.put(flat, lb)
                series.append(lb)
        except (ValueError, KeyError, TypeError, msgpack.ExtraData, msgpack.FormatError) as e:
            raise BadInputError(f"malformed sample batch: {e}") from e
        if n and (sidx.min() < 0 or sidx.max() >= len(series)):
            raise BadInputError("malformed sample batch: series index out of range")
        return cls(series, sidx, ts, vals, header.get("types") or {})


# Label sets by their flat wire form: a worker reads the same series in record after record.
_LABELS: BoundedCache[tuple[str, ...], Labels] = BoundedCache(1_000_000)


def _pairs(flat: Sequence[str]) -> Labels:
    if len(flat) % 2 or not all(type(x) is str for x in flat):
        raise ValueError("a label set must be name, value, ... strings")
    return tuple(zip(flat[0::2], flat[1::2], strict=True))


def concat_batches(batches: Sequence[SampleBatch]) -> SampleBatch:
    """Concatenate batches, re-interning label sets so each appears once."""
    batches = [b for b in batches if len(b.series)]
    if not batches:
        return SampleBatch.empty()
    if len(batches) == 1:
        return batches[0]
    index: dict[Labels, int] = {}
    series: list[Labels] = []
    parts = []
    types: dict[str, str] = {}
    for b in batches:
        remap = np.empty(len(b.series), np.int32)
        for i, lb in enumerate(b.series):
            j = index.get(lb)
            if j is None:
                j = index[lb] = len(series)
                series.append(lb)
            remap[i] = j
        parts.append(remap[b.sidx])
        types.update(b.types)
    return SampleBatch(
        series,
        np.concatenate(parts),
        np.concatenate([b.ts for b in batches]),
        np.concatenate([b.vals for b in batches]),
        types,
    )
