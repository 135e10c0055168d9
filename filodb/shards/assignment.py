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


def rebalance_move(
    num_shards: int,
    owners: Mapping[int, str],
    live_nodes: Sequence[str],
    stopped: frozenset[int] = frozenset(),
) -> tuple[int, str] | None:
    """One shard to move so that a node that joined takes its fair share back, or None.

    Moves happen while every shard is owned by a live node, one at a time (the caller asks
    again once the move finished), from the most loaded node to the least loaded (newest first
    on ties), and only while loads differ by two or more: ``8`` shards on ``3`` nodes settle at
    3/3/2 and never churn.
    """
    if len(live_nodes) < 2:
        return None
    live = set(live_nodes)
    load: dict[str, list[int]] = {n: [] for n in live_nodes}
    for s in range(num_shards):
        if s in stopped:
            continue
        n = owners.get(s, "")
        if n not in live:
            return None  # orphans first (assign_shards)
        load[n].append(s)
    newest_first = list(reversed(live_nodes))
    src = max(newest_first[::-1], key=lambda n: len(load[n]))  # oldest first on ties
    dst = min(newest_first, key=lambda n: len(load[n]))
    if len(load[src]) - len(load[dst]) < 2:
        return None
    return max(load[src]), dst
