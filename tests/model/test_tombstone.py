"""The tombstone log record: round trip, never mistaken for a sample batch (nor the reverse),
malformed ones refused with BadInputError."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from filodb.errors import BadInputError
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels
from filodb.model.tombstone import MAGIC, Tombstone, is_tombstone


def test_round_trip_and_kinds() -> None:
    t = Tombstone((Matcher("__name__", "=", "up"), Matcher("job", "=~", "a|b.*")), -(2**63),
                  2**63 - 1)  # fmt: skip
    data = t.to_bytes()
    assert is_tombstone(data) and Tombstone.from_bytes(memoryview(data)) == t
    batch = SampleBatch([make_labels({"__name__": "up"})], np.zeros(1), [1], [1.0]).to_bytes()
    assert not is_tombstone(batch)
    with pytest.raises(BadInputError):
        SampleBatch.from_bytes(data)
    with pytest.raises(BadInputError):
        Tombstone.from_bytes(batch)


@pytest.mark.parametrize("body", [
    b"", b"\x00", msgpack.packb({"v": 2, "m": [], "s": 0, "e": 1}),
    msgpack.packb({"v": 1, "m": [["a", "~~", "b"]], "s": 0, "e": 1}),
    msgpack.packb({"v": 1, "m": [["a", "=~", "(("]], "s": 0, "e": 1}),
    msgpack.packb({"v": 1, "m": [], "s": 5, "e": 1}), msgpack.packb([1, 2]),
])  # fmt: skip
def test_malformed(body: bytes) -> None:
    with pytest.raises(BadInputError):
        Tombstone.from_bytes(MAGIC + body)
