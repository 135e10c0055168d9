"""Shard key hashing and spread: which shard a series lives in (FiloDB's rule).

The *shard key* of a series is its metric name plus the ``_ws_`` and ``_ns_`` labels when
present. The *part key* is the whole label set. With ``num_shards = 2**n`` and a spread ``s``
(``0 <= s <= n``), a series goes to::

    shard = ((shard_key_hash & ~spread_mask) | (part_key_hash & spread_mask)) & (num_shards - 1)

where ``spread_mask = 2**s - 1``: the upper ``n - s`` shard bits come from the shard key, the
lower ``s`` bits from the part key. All series of one shard key therefore sit in a group of
``2**s`` shards, and a query that names the shard key asks only that group.
Hashes are the low 32 bits of xxh64 over a canonical byte encoding (stable across processes).

*Spread overrides* (FiloDB's per shard-key spread): a dataset may give some ``(_ws_, _ns_)``
pairs a spread of their own (a big namespace spread over more shards); every function that
takes ``spread`` also takes a :class:`SpreadRule`. Overrides are fixed when the dataset is
created, since series already ingested stay where the rule of their time put them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import xxhash

from filodb.errors import BadInputError
from filodb.model.labels import METRIC_NAME, Labels, Matcher

if TYPE_CHECKING:  # numpy is imported where used: filodb up's supervisor reads a Dataset only
    import numpy as np

SHARD_KEY_LABELS = (METRIC_NAME, "_ws_", "_ns_")
_SEP = b"\xff"


def part_key_bytes(labels: Labels) -> bytes:
    """Canonical bytes of a label set (also the part key stored by the memstore)."""
    return _SEP.join(k.encode() + b"=" + v.encode() for k, v in labels)


def _hash32(data: bytes) -> int:
    return xxhash.xxh64_intdigest(data) & 0xFFFFFFFF


def shard_key_hash(values: Sequence[str]) -> int:
    """Hash of the shard-key values (metric name, _ws_, _ns_; "" for a missing one)."""
    return _hash32(_SEP.join(v.encode() for v in values))


def shard_key_of(labels: Labels) -> tuple[str, str, str]:
    d = dict(labels)
    return tuple(d.get(k, "") for k in SHARD_KEY_LABELS)  # type: ignore[return-value]


def part_key_hash(labels: Labels) -> int:
    return _hash32(part_key_bytes(labels))


def check_shards(num_shards: int, spread: int) -> None:
    """Raise :class:`BadInputError` unless ``num_shards`` is a power of two and spread fits."""
    if num_shards < 1 or num_shards & (num_shards - 1):
        raise BadInputError(f"shard count must be a power of two, got {num_shards}")
    if spread < 0 or (1 << spread) > num_shards:
        raise BadInputError(f"spread {spread} too large for {num_shards} shards")


@dataclass(frozen=True)
class SpreadRule:
    """The dataset's spread plus overrides keyed by ``(_ws_, _ns_)`` values ("" when absent)."""

    default: int
    overrides: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def for_key(self, ws: str, ns: str) -> int:
        return self.overrides.get((ws, ns), self.default)


def check_spread_overrides(overrides: object, num_shards: int) -> list[dict[str, Any]]:
    """Validated overrides: a list of ``{"_ws_": str, "_ns_": str, "spread": int}``."""
    if overrides is None:
        return []
    if not isinstance(overrides, list):
        raise BadInputError("spread_overrides must be a list of {_ws_, _ns_, spread} objects")
    out = []
    for o in overrides:
        if not isinstance(o, dict) or "spread" not in o or not set(o) <= {"_ws_", "_ns_", "spread"}:
            raise BadInputError(
                f'bad spread override {o!r}: use {{"_ws_": ..., "_ns_": ..., "spread": n}}'
            )
        ws, ns, sp = o.get("_ws_", ""), o.get("_ns_", ""), o["spread"]
        if (
            not isinstance(ws, str)
            or not isinstance(ns, str)
            or not isinstance(sp, int)
            or isinstance(sp, bool)
        ):
            raise BadInputError(
                f"bad spread override {o!r}: _ws_/_ns_ are strings, spread an integer"
            )
        check_shards(num_shards, sp)
        out.append({"_ws_": ws, "_ns_": ns, "spread": sp})
    return out


def ingestion_shard(skh: int, pkh: int, num_shards: int, spread: int) -> int:
    spread_mask = (1 << spread) - 1
    return ((skh & ~spread_mask) | (pkh & spread_mask)) & (num_shards - 1)


def shards_of_routes(routes: np.ndarray, num_shards: int, spread: int) -> np.ndarray:
    """:func:`ingestion_shard` of many series at once, from their routes (uint64:
    ``shard_key_hash << 32 | part_key_hash``, :func:`~filodb.model.batch.series_identity`)."""
    import numpy as np

    r = np.asarray(routes, np.uint64)
    low = np.uint64((1 << spread) - 1)
    skh = r >> np.uint64(32)
    out = ((skh & ~low & np.uint64(0xFFFFFFFF)) | (r & low)) & np.uint64(num_shards - 1)
    return out.astype(np.int32)


def shards_for_series(
    series: Iterable[Labels], num_shards: int, spread: int | SpreadRule
) -> np.ndarray:
    """Shard of each label set (one Python step per *series*, none per sample)."""
    import numpy as np

    if isinstance(spread, SpreadRule):
        out = []
        for lb in series:
            key = shard_key_of(lb)
            sp = spread.for_key(key[1], key[2])
            out.append(ingestion_shard(shard_key_hash(key), part_key_hash(lb), num_shards, sp))
        return np.array(out, dtype=np.int32)
    out = [
        ingestion_shard(shard_key_hash(shard_key_of(lb)), part_key_hash(lb), num_shards, spread)
        for lb in series
    ]
    return np.array(out, dtype=np.int32)


def query_shards(
    matchers: Sequence[Matcher], num_shards: int, spread: int | SpreadRule
) -> list[int]:
    """Shards that can hold series matching ``matchers``.

    When every shard-key label is pinned by an ``=`` matcher (``_ws_=""`` pins a label to
    absent), only the ``2**spread`` shards of that key are returned; otherwise every shard,
    since a series may carry a ``_ws_``/``_ns_`` that the query does not name.
    """
    eq = {m.name: m.value for m in matchers if m.op == "="}
    if METRIC_NAME not in eq:
        return list(range(num_shards))
    for name in SHARD_KEY_LABELS[1:]:
        if name not in eq:
            return list(range(num_shards))
    skh = shard_key_hash([eq.get(k, "") for k in SHARD_KEY_LABELS])
    if isinstance(spread, SpreadRule):
        spread = spread.for_key(eq.get("_ws_", ""), eq.get("_ns_", ""))
    spread_mask = (1 << spread) - 1
    base = skh & ~spread_mask & (num_shards - 1)
    return sorted({base | i for i in range(1 << spread)})
