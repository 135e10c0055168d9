"""Log records as a memstore reads them: the samples in columns and the series as part keys
back to back (an arena), as version 2 records carry them, so applying a record of series the
shard knows touches no label set (no Python step per series: the shard finds the part keys
with one numba call, :mod:`filodb.memstore.keytable`). Label sets are decoded (and checked)
only for part keys the shard does not hold.

:func:`read_record` reads versions 1 to 4, :func:`read_records` many at once (docs/architecture.md, "Log record format";
:meth:`SampleBatch.to_bytes <filodb.model.batch.SampleBatch.to_bytes>` writes them);
:meth:`RecordBatch.concat` joins the records of one read with numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cramjam
import msgpack
import numpy as np

from filodb.errors import BadInputError
from filodb.model.exemplars import Exemplars
from filodb.model.labels import Labels
from filodb.model.libc import MEMCPY
from filodb.model.partkey import labels_of, part_key
from filodb.model.recordpack import (
    HEAD,
    LZ4_LIBRARY_MIN,
    check_deferred,
    decode_records,
    read_payloads,
    scan_records,
)
from filodb.model.xxh64 import arena, xxh64_many

# Records of this many bytes together may hold a large LZ4 payload: :func:`_read_large`
# (three kernel calls) instead of one call that decompresses everything itself
_LIBRARY_FROM = 4096
MAX_PAYLOAD = 256 << 20  # a record's uncompressed payload (records hold <= 200 000 samples)
_NO_BYTES = np.zeros(0, np.uint8)


@dataclass
class RecordBatch:
    """Samples of one or more log records. Series ``i`` is the part key
    ``pk_data[pk_ends[i - 1]:pk_ends[i]]``; ``sidx``, ``ts``, ``vals`` as in
    :class:`~filodb.model.batch.SampleBatch`. The same series may appear more than once
    (records joined by :meth:`concat`). ``series``: the label sets, when known (version 1
    records, batches made from label sets); ``keys``: the part keys' xxh64, when known."""

    pk_data: np.ndarray  # uint8
    pk_ends: np.ndarray  # int64, one per series
    sidx: np.ndarray
    ts: np.ndarray
    vals: np.ndarray
    types: dict[str, str] = field(default_factory=dict)
    exemplars: Exemplars | None = None
    series: Sequence[Labels] | None = None
    keys: np.ndarray | None = None

    @classmethod
    def empty(cls) -> RecordBatch:
        z = np.zeros(0, np.int64)
        return cls(_NO_BYTES, z, np.zeros(0, np.int32), z, np.zeros(0, np.float64))

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def num_series(self) -> int:
        return len(self.pk_ends)

    def part_key(self, i: int) -> bytes:
        a = int(self.pk_ends[i - 1]) if i else 0
        return self.pk_data[a : int(self.pk_ends[i])].tobytes()

    def labels(self, i: int) -> Labels:
        """Series ``i``'s label set (decoded from its part key: BadInputError if it is not
        one)."""
        if self.series is not None:
            return self.series[i]
        return labels_of(self.part_key(i))

    def series_keys(self) -> np.ndarray:
        """``keys``, computed (one numba call) and kept when the batch has none."""
        if self.keys is None:
            self.keys = xxh64_many(self.pk_data, self.pk_ends)
        return self.keys

    @classmethod
    def concat(cls, batches: Sequence[RecordBatch]) -> RecordBatch:
        """The batches as one (series are not merged: the memstore maps each to its id)."""
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return cls.empty()
        sizes = [int(b.pk_ends[-1]) if b.num_series else 0 for b in batches]
        counts = [b.num_series for b in batches]
        byte_base = np.cumsum([0, *sizes[:-1]])
        series_base = np.cumsum([0, *counts[:-1]]).tolist()
        types: dict[str, str] = {}
        for b in batches:
            types.update(b.types)
        ex_parts = [(b.exemplars, np.arange(base, base + n, dtype=np.int32))
                    for b, base, n in zip(batches, series_base, counts, strict=True)
                    if b.exemplars is not None]  # fmt: skip
        series = None
        if all(b.series is not None for b in batches):
            series = [lb for b in batches for lb in b.series]  # type: ignore[union-attr]
        keys = None
        if all(b.keys is not None for b in batches):
            keys = np.concatenate([b.keys for b in batches])
        return cls(
            np.concatenate([b.pk_data[:n] for b, n in zip(batches, sizes, strict=True)]),
            np.concatenate(
                [b.pk_ends + o for b, o in zip(batches, byte_base.tolist(), strict=True)]
            ),
            np.concatenate([b.sidx + o for b, o in zip(batches, series_base, strict=True)]),
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.vals for b in batches]),
            types,
            Exemplars.concat(ex_parts),
            series,
            keys,
        )


def read_records(records: Sequence[bytes]) -> tuple[RecordBatch, list[int]]:
    """Log records as one :class:`RecordBatch` (as :meth:`RecordBatch.concat` of their
    :func:`read_record`), and the indexes of the malformed ones (left out). Version 4 records
    with no header entry past the fixed ones (what a door writes but for metadata types and
    exemplars) are read by one numba call over all of them
    (:func:`~filodb.model.recordpack.decode_records`; large LZ4 payloads by the LZ4 library
    between kernel calls: :func:`_read_large`); the others one at a time."""
    if not records:
        return RecordBatch.empty(), []
    cols = _decode(records)
    ok = cols[0]
    if ok.all():
        return _run(cols, 0, len(records)), []
    parts: list[RecordBatch] = []
    bad: list[int] = []
    # runs of records the kernel read, and the others one by one, in log order
    edges = np.flatnonzero(np.diff(ok.astype(np.int8), prepend=2, append=2)).tolist()
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if ok[a]:
            parts.append(_run(cols, a, b))
            continue
        for i in range(a, b):
            try:
                parts.append(read_record(records[i]))
            except BadInputError:
                bad.append(i)
    return RecordBatch.concat(parts), bad


def read_record_groups(groups: Sequence[Sequence[bytes]]) -> list[RecordBatch | None]:
    """Groups of log records (a read's records of each shard) read by one kernel call over
    all of them: per group, its records as one :class:`RecordBatch` (as :func:`read_records`)
    when the kernel read every one of them (none malformed, a tombstone or with header
    entries past the fixed ones), else None (the caller reads that group its own way). With
    hundreds of shards a read brings one or two small records a shard: the kernel call's
    fixed costs (~20 us) are paid once a read instead of once a shard."""
    flat = [r for g in groups for r in g]
    if not flat:
        return [None] * len(groups)
    cols = _decode(flat)
    ok, n_ends, s_ends, sidx, ts, vals, pk_data, pk_ends = cols
    # each group's first and last record, its samples, series and part-key bytes: numpy once
    last = np.cumsum(np.fromiter(map(len, groups), np.int64, len(groups))) - 1
    first = np.concatenate([[0], last[:-1] + 1])
    n_hi, s_hi = n_ends[last], s_ends[last]
    n_lo = np.where(first > 0, n_ends[first - 1], 0)
    s_lo = np.where(first > 0, s_ends[first - 1], 0)
    p_all = np.concatenate([[0], pk_ends])
    p_lo, p_hi = p_all[s_lo], p_all[s_hi]
    bad = np.concatenate([[0], np.cumsum(~ok)])
    usable = (bad[last + 1] == bad[first]) & (last >= first)
    out: list[RecordBatch | None] = []
    rows = zip(usable.tolist(), n_lo.tolist(), n_hi.tolist(), s_lo.tolist(), s_hi.tolist(),
               p_lo.tolist(), p_hi.tolist(), strict=True)  # fmt: skip
    for use, n0, n1, s0, s1, p0, p1 in rows:
        if not use:
            out.append(None)
            continue
        out.append(RecordBatch(pk_data[p0:p1], pk_ends[s0:s1] - p0, sidx[n0:n1] - s0,
                               ts[n0:n1], vals[n0:n1]))  # fmt: skip
    return out


Columns = tuple[np.ndarray, ...]


def _decode(records: Sequence[bytes]) -> Columns:
    """:func:`~filodb.model.recordpack.decode_records` of the records (large ones through
    :func:`_read_large`): which were read, the end of each one's samples and series, the
    columns."""
    lens = np.fromiter(map(len, records), np.int64, len(records))
    data = b"".join(records)
    if len(data) < _LIBRARY_FROM:
        return decode_records(np.frombuffer(data, np.uint8), lens, MEMCPY)
    return _read_large(data, lens)


def _run(cols: Columns, a: int, b: int) -> RecordBatch:
    """Records ``a`` to ``b`` (all read by the kernel) of :func:`_decode`'s columns, their
    series numbered from 0."""
    _, n_ends, s_ends, sidx, ts, vals, pk_data, pk_ends = cols
    if a == 0 and b == len(n_ends):
        return RecordBatch(pk_data, pk_ends, sidx, ts, vals)
    n0, n1 = (int(n_ends[a - 1]) if a else 0), int(n_ends[b - 1])
    s0, s1 = (int(s_ends[a - 1]) if a else 0), int(s_ends[b - 1])
    p0 = int(pk_ends[s0 - 1]) if s0 else 0
    return RecordBatch(pk_data[p0 : int(pk_ends[s1 - 1]) if s1 else 0], pk_ends[s0:s1] - p0,
                       sidx[n0:n1] - s0, ts[n0:n1], vals[n0:n1])  # fmt: skip


def _read_large(data: bytes, lens: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`~filodb.model.recordpack.decode_records` for records whose LZ4 payloads may be
    large: those of ``LZ4_LIBRARY_MIN`` bytes or more are decompressed by the LZ4 library
    (cramjam, ~10x the numba kernel's speed on large blocks) into the kernel's buffer."""
    ok, ns, ss, zs, pay, pstarts, defer, n_defer = scan_records(
        np.frombuffer(data, np.uint8), lens, MEMCPY, LZ4_LIBRARY_MIN
    )
    if n_defer:
        mv = memoryview(data)
        ends = np.cumsum(lens)
        for r in np.flatnonzero(defer).tolist():
            a, z, p = int(ends[r] - lens[r]) + 4 + HEAD, int(zs[r]), int(pstarts[r])
            try:
                out = memoryview(pay[p : p + z])
                ok[r] = cramjam.lz4.decompress_block_into(mv[a : int(ends[r])], out) == z
            except cramjam.DecompressionError:
                ok[r] = False
        check_deferred(pay, pstarts, ns, ss, zs, ok, defer)
    sidx, ts, vals, pk_data, pk_ends = read_payloads(pay, pstarts, ns, ss, MEMCPY)
    return ok, np.cumsum(ns), np.cumsum(ss), sidx, ts, vals, pk_data, pk_ends


def read_record(data: bytes | memoryview) -> RecordBatch:
    """A log record (version 1 to 4) as a :class:`RecordBatch`; :class:`BadInputError` on a
    malformed one (part keys are checked when decoded: :meth:`RecordBatch.labels`)."""
    mv = memoryview(data)
    series = None
    try:
        hlen = int.from_bytes(mv[:4], "little")
        header = msgpack.unpackb(mv[4 : 4 + hlen], raw=False, use_list=False)
        version = header.get("v")
        if version not in (1, 2, 3, 4):
            raise BadInputError(f"unknown batch format version {version!r}")
        n = int(header["n"])
        pos = 4 + hlen
        if version >= 3:
            z = int(header["z"])
            if version == 3 or header["c"]:
                payload = _payload_lz4(mv[pos:], z)
            elif mv.nbytes - pos != z:
                raise BadInputError("malformed sample batch: payload size does not match")
            else:
                payload = mv[pos:]
            sidx, ts, vals, pk_data, pk_ends = _columns_v3(payload, n, int(header["s"]))
        else:
            if version == 2:
                mv, pos = _payload(mv[pos:], int(header["z"])), 0
            sidx = np.frombuffer(mv, "<i4", n, pos).astype(np.int32, copy=False)
            pos += 4 * n
            ts = np.frombuffer(mv, "<i8", n, pos).astype(np.int64, copy=False)
            pos += 8 * n
            vals = np.frombuffer(mv, "<f8", n, pos).astype(np.float64, copy=False)
            pos += 8 * n
            if version == 1:
                series = [_pairs(flat) for flat in header["series"]]
                pk_data, pk_ends = arena([part_key(lb) for lb in series])
            else:
                ns = int(header["s"])
                pk_ends = np.frombuffer(mv, "<u4", ns, pos).astype(np.int64)
                pos += 4 * ns
                pk_data = _part_keys(mv, pos, pk_ends)
        ex = Exemplars.from_wire(header["x"], len(pk_ends)) if "x" in header else None
        types = header.get("types") or {}
        if not isinstance(types, dict) or not all(
            type(k) is str and type(v) is str for k, v in types.items()
        ):
            raise BadInputError("malformed sample batch: types must map names to strings")
    except (ValueError, KeyError, TypeError, AttributeError, msgpack.ExtraData,
            msgpack.FormatError) as e:  # fmt: skip
        raise BadInputError(f"malformed sample batch: {e}") from e
    if n and (sidx.min() < 0 or sidx.max() >= len(pk_ends)):
        raise BadInputError("malformed sample batch: series index out of range")
    return RecordBatch(pk_data, pk_ends, sidx, ts, vals, types, ex, series)


def _part_keys(mv: memoryview, pos: int, pk_ends: np.ndarray, ascending: bool = False
               ) -> np.ndarray:  # fmt: skip
    """The part keys' arena (the rest of the payload from ``pos``), checked against their
    ends (``ascending``: known not to decrease, as sums of lengths)."""
    if (len(pk_ends) and int(pk_ends[-1]) != mv.nbytes - pos) or (
        not ascending and (np.diff(pk_ends) < 0).any()
    ):
        raise BadInputError("malformed sample batch: part key offsets do not match the record")
    return np.frombuffer(mv, np.uint8, mv.nbytes - pos, pos)


def _columns_v3(
    mv: memoryview, n: int, ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A version 3 payload's columns (see :mod:`~filodb.model.recordpack`)."""
    if n < 0 or ns < 0 or 20 * n + 4 * ns > mv.nbytes:
        raise BadInputError("malformed sample batch: columns larger than the record")
    sidx = np.cumsum(np.frombuffer(mv, "<i4", n, 0), dtype=np.int32)
    ts = np.cumsum(np.frombuffer(mv, "<i8", n, 4 * n), dtype=np.int64)
    planes = np.frombuffer(mv, np.uint8, 8 * n, 12 * n).reshape(8, n)
    vals = planes.T.copy().view("<f8").reshape(n).astype(np.float64, copy=False)
    pos = 20 * n + 4 * ns
    pk_ends = np.cumsum(np.frombuffer(mv, "<u4", ns, 20 * n), dtype=np.int64)
    return sidx, ts, vals, _part_keys(mv, pos, pk_ends, True), pk_ends


def _payload(frame: memoryview, size: int) -> memoryview:
    """A version 2 payload: one zstd frame."""
    _check_size(size)
    try:
        out = memoryview(cramjam.zstd.decompress(frame, output_len=size))
    except cramjam.DecompressionError as e:
        raise BadInputError(f"malformed sample batch: {e}") from e
    if out.nbytes != size:
        raise BadInputError("malformed sample batch: payload size does not match its header")
    return out


def _payload_lz4(frame: memoryview, size: int) -> memoryview:
    """A version 3 payload: one LZ4 block, its size before it (u32 LE, as the header's)."""
    _check_size(size)
    if frame.nbytes < 4 or int.from_bytes(frame[:4], "little") != size:
        raise BadInputError("malformed sample batch: payload size does not match its header")
    try:
        out = memoryview(cramjam.lz4.decompress_block(frame))
    except cramjam.DecompressionError as e:
        raise BadInputError(f"malformed sample batch: {e}") from e
    if out.nbytes != size:
        raise BadInputError("malformed sample batch: payload size does not match its header")
    return out


def _check_size(size: int) -> None:
    if not 0 <= size <= MAX_PAYLOAD:
        raise BadInputError(f"malformed sample batch: payload of {size} bytes")


def _pairs(flat: Sequence[str]) -> Labels:
    if len(flat) % 2 or not all(type(x) is str for x in flat):
        raise ValueError("a label set must be name, value, ... strings")
    return tuple(zip(flat[0::2], flat[1::2], strict=True))
