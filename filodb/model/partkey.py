"""Part keys: a series' label set as canonical bytes (the column store's row key).

``msgpack`` of the flat ``[name, value, name, value, ...]`` list of the sorted label set: the
same labels give the same bytes in every process, and the bytes decode back to the labels.
The flush group of a series hashes its part key, so it is the same after a restart whatever
order series are registered in.
"""

from __future__ import annotations

import msgpack
import xxhash

from filodb.errors import BadInputError
from filodb.model.labels import Labels, intern_labels


def part_key(labels: Labels) -> bytes:
    """The canonical bytes of a (sorted) label set."""
    out: bytes = msgpack.packb([x for pair in labels for x in pair], use_bin_type=True)
    return out


def labels_of(pk: bytes) -> Labels:
    """The label set a part key was made from (BadInputError for bytes that are not one); its
    pairs are interned (:func:`~filodb.model.labels.intern_labels`)."""
    try:
        flat = msgpack.unpackb(pk, raw=False)
    except (ValueError, msgpack.UnpackException) as e:
        raise BadInputError(f"not a part key: {e}") from e
    if not isinstance(flat, list) or len(flat) % 2 or not all(isinstance(x, str) for x in flat):
        raise BadInputError("not a part key: expected a flat list of label names and values")
    return intern_labels(zip(flat[::2], flat[1::2], strict=True))


def group_of(pk: bytes, num_groups: int) -> int:
    """The flush group of a series: stable across processes and restarts."""
    return xxhash.xxh32_intdigest(pk) % num_groups
