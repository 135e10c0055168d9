"""A node's start-up log names its shards as runs (one line a dataset, not one a shard)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from filodb.node.runtime import shard_ranges


def _expand(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def test_runs() -> None:
    assert shard_ranges([7, 0, 1, 2, 5, 8, 2]) == "0-2,5,7-8"
    assert shard_ranges([3]) == "3"
    assert shard_ranges(range(1024)) == "0-1023"


@given(st.sets(st.integers(0, 2000), min_size=1, max_size=300))
def test_the_runs_name_every_shard_once(shards: set[int]) -> None:
    text = shard_ranges(shards)
    assert _expand(text) == sorted(shards)
    assert text.count(",") < len(shards)
