"""The numba LZ4 block codec against cramjam's (the reference C library): blocks either one
writes the other reads; damaged blocks are refused, never read or written past."""

from __future__ import annotations

import cramjam
import numpy as np
import pytest

from filodb.model import lz4
from filodb.model.libc import MEMCPY


def _inputs(rng: np.random.Generator) -> list[bytes]:
    return [b"", b"a", b"abcdabcdabcd", b"hello world " * 50, b"x" * 70_000, b"ab" * 40_000,
            bytes(rng.integers(0, 256, 1000, np.uint8)), bytes(rng.integers(0, 4, 5000, np.uint8)),
            bytes(rng.integers(0, 3, 200_000, np.uint8))]  # fmt: skip


def _compress(data: bytes) -> bytes:
    src = np.frombuffer(data, np.uint8)
    dst = np.empty(lz4.bound(len(data)), np.uint8)
    return dst[: lz4.compress(src, 0, len(data), dst, 0, lz4.new_table())].tobytes()


def _decompress(block: bytes, n: int) -> bytes | None:
    out = np.zeros(n, np.uint8)
    ok = lz4.decompress(np.frombuffer(block, np.uint8), 0, len(block), out, 0, n, MEMCPY)
    return out.tobytes() if ok else None


def test_blocks_read_both_ways_and_are_as_small_as_the_reference() -> None:
    for data in _inputs(np.random.default_rng(0)):
        block = _compress(data)
        assert len(block) <= lz4.bound(len(data))
        if data:
            assert bytes(cramjam.lz4.decompress_block(block, output_len=len(data))) == data
        ref = bytes(cramjam.lz4.compress_block(data, store_size=False))
        assert _decompress(ref, len(data)) == data
        if len(data) < 1 << 16:  # past 64 KiB the library hashes 5 bytes, not 4
            assert len(block) <= 1.05 * len(ref) + 8


@pytest.mark.parametrize("seed", range(10))
def test_damaged_blocks_are_refused_or_read_as_the_reference_reads_them(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = b"".join(rng.choice([b"abc", b"defg", b"\x00" * 20, b"xyz" * 9], 300).tolist())
    block = bytearray(_compress(data))
    for _ in range(200):
        bad = bytearray(block)
        for _ in range(int(rng.integers(1, 4))):
            bad[int(rng.integers(len(bad)))] = int(rng.integers(256))
        bad = bad[: int(rng.integers(len(bad) // 2, len(bad) + 1))]
        got = _decompress(bytes(bad), len(data))
        if got is not None:  # well formed: the reference reads the same bytes
            assert bytes(cramjam.lz4.decompress_block(bytes(bad), output_len=len(data))) == got
