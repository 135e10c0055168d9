"""The shard's part-key table answers as a dict of bytes would: exact whatever the hashes
(equal hashes of different part keys are different entries), through growth and purges."""

from __future__ import annotations

import numpy as np
import pytest

from filodb.memstore.keytable import PartKeyTable
from filodb.model.xxh64 import arena, xxh64_many


def _keys(rng: np.random.Generator, n: int) -> list[bytes]:
    return list(dict.fromkeys(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8)
                              .tobytes() for _ in range(n)))  # fmt: skip


@pytest.mark.parametrize("weak", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_table_equals_a_dict(weak: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)

    def hashes(parts: list[bytes]) -> np.ndarray:
        h = xxh64_many(*arena(parts))
        return h & np.uint64(3) if weak else h  # weak: most entries share a hash

    table = PartKeyTable()
    ref: dict[bytes, int] = {}
    for _ in range(12):
        new = [k for k in _keys(rng, int(rng.integers(0, 300))) if k not in ref]
        first = table.add(*arena(new), hashes(new))
        assert first == len(ref)
        ref.update((k, first + i) for i, k in enumerate(new))
        assert len(table) == len(ref)
        # a batch of known and unknown part keys, with repeats
        probe = [*rng.choice(list(ref), size=min(len(ref), 200)).tolist(), *_keys(rng, 20)] * 2
        got = table.find(*arena(probe), hashes(probe))
        assert got.tolist() == [ref.get(k, -1) for k in probe]
        if rng.random() < 0.3:  # a purge: ids renumbered densely in their order
            keep = rng.random(len(ref)) < 0.6
            table.keep(keep)
            kept = [k for k, i in ref.items() if keep[i]]
            ref = {k: i for i, k in enumerate(kept)}
        assert [table.part_key(i) for i in range(len(table))] == list(ref)
    everything = list(ref)
    assert table.find(*arena(everything), hashes(everything)).tolist() == list(range(len(ref)))
