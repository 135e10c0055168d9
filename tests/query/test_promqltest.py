"""The conformance runner itself: how it loads scripts, in both modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from filodb.query.promqltest import MemoryBackend, run_file
from filodb.testing.promql_sharded import ShardedBackend

SCRIPT = """
load 1m
  m{a="x"} 1 2 3
  m{a="y"} 7
  m{a="x"} _ 5

eval instant at 0m m
  m{a="y"} 7

eval instant at 2m m
  m{a="x"} 5
  m{a="y"} 7

eval instant at 2m sum(m)
  {} 12
"""


@pytest.mark.parametrize("backend", [MemoryBackend, ShardedBackend])
def test_a_label_set_named_twice_in_a_block_keeps_its_last_line(tmp_path: Path, backend) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "dup.test"
    path.write_text(SCRIPT)
    outcomes = run_file(path, backend)
    assert [(o.line, o.status, o.reason) for o in outcomes] == [(7, "passed", ""), (10, "passed", ""),
                                                                (14, "passed", "")]  # fmt: skip


def test_sharded_backend_spreads_one_metric_over_several_shards() -> None:
    b = ShardedBackend()
    b.load(
        [
            ((("__name__", "m"), ("i", str(i))), np.array([0]), np.array([float(i)]))
            for i in range(32)
        ]
    )
    held = [s.num_series for s in b.shards]
    assert sum(held) == 32
    assert sum(n > 0 for n in held) == 4  # spread 2: the metric's group of four shards
    assert b.engine().instant("count(m)", 0).series[0][2][0] == 32
