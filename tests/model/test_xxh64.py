"""The numba xxh64 of an arena is xxhash's, whatever the lengths (every tail path of the
algorithm: under and over 32 bytes, 8/4/1-byte remainders) and alignment in the arena."""

from __future__ import annotations

import numpy as np
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.model.xxh64 import arena, xxh64_many


@settings(deadline=None)  # the first call may compile the kernel
@given(st.lists(st.binary(max_size=200), max_size=40), st.integers(0, 2**64 - 1))
def test_xxh64_many_is_xxhash(parts: list[bytes], seed: int) -> None:
    data, ends = arena(parts)
    got = xxh64_many(data, ends, seed)
    assert got.dtype == np.uint64
    assert got.tolist() == [xxhash.xxh64_intdigest(p, seed=seed) for p in parts]


def test_every_length_and_offset() -> None:
    rng = np.random.default_rng(5)
    parts = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in range(130)]
    for shift in range(8):  # the same strings at every alignment in the arena
        data, ends = arena([b"x" * shift, *parts])
        assert xxh64_many(data, ends)[1:].tolist() == [xxhash.xxh64_intdigest(p) for p in parts]
