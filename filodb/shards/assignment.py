"""Shard assignment strategy (pure): spread shards evenly over live nodes.

FiloDB's default strategy: each node may hold ``ceil(shards / nodes)`` shards of a dataset;
shards without a live owner go to the nodes with room, most recently started first; a shard
never has two owners. Shards owned by a live node stay where they are (no churn).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def assign_shards(
    num_shards: int,
    owners: Mapping[int, str],
    live_nodes: Sequence[str],
    stopped: frozenset[int] = frozenset(),
) -> dict[int, str]:
    """New owners for shards whose owner is missing or dead.

    ``owners`` maps shard → current node ("" when none); ``live_nodes`` is ordered oldest
    first; ``stopped`` shards are left alone. Returns only the shards that change owner.
    """
    if not live_nodes:
        return {}
    live = set(live_nodes)
    load = {n: 0 for n in live_nodes}
    for s, n in owners.items():
        if n in live and s not in stopped:
            load[n] += 1
    cap = math.ceil(num_shards / len(live_nodes))
    changes: dict[int, str] = {}
    newest_first = list(reversed(live_nodes))
    for s in range(num_shards):
        if s in stopped or owners.get(s, "") in live:
            continue
        candidates = [n for n in newest_first if load[n] < cap] or newest_first
        node = min(candidates, key=lambda n: (load[n], newest_first.index(n)))
        load[node] += 1
        changes[s] = node
    return changes
