"""The leaf server's queue: exact order of pieces by estimated cost, aging and the heavy lane."""

from __future__ import annotations

from filodb.tasks.scheduler import CostModel, FairQueue, cost_key, cost_units


def _drain(q: FairQueue[str]) -> list[str]:
    out = []
    while (got := q.pop()) is not None:
        out.append(got[0])
        q.done(got[1])
    return out


def test_cheap_pieces_overtake_heavy_ones_queued_before_them() -> None:
    q: FairQueue[str] = FairQueue(slots=4, aging=4.0, heavy_s=0.02)
    q.push("heavy-1", 0.5, now=0.0)
    q.push("heavy-2", 0.5, now=0.0)
    q.push("cheap-1", 0.001, now=0.1)
    q.push("cheap-2", 0.002, now=0.1)
    assert _drain(q) == ["cheap-1", "cheap-2", "heavy-1", "heavy-2"]


def test_aging_a_heavy_piece_is_not_overtaken_by_work_arriving_long_after_it() -> None:
    q: FairQueue[str] = FairQueue(slots=4, aging=4.0, heavy_s=0.02)
    q.push("heavy", 0.5, now=0.0)  # virtual deadline 2.0
    q.push("cheap-early", 0.01, now=1.0)  # 1.04: overtakes
    q.push("cheap-late", 0.01, now=1.99)  # 2.03: after the heavy piece
    q.push("heavier", 1.0, now=0.0)  # 4.0
    assert _drain(q) == ["cheap-early", "heavy", "cheap-late", "heavier"]


def test_one_runner_is_kept_for_cheap_work() -> None:
    q: FairQueue[str] = FairQueue(slots=3, aging=4.0, heavy_s=0.02)
    for i in range(4):
        q.push(f"heavy-{i}", 0.5, now=0.0)
    a, b = q.pop(), q.pop()
    assert [a, b] == [("heavy-0", True), ("heavy-1", True)]
    assert q.pop() is None  # two of three runners busy with heavy work: the third waits
    q.push("cheap", 0.001, now=0.5)
    assert q.pop() == ("cheap", False)
    assert (q.running_cheap, q.running_heavy, q.queued(True), q.queued(False)) == (1, 2, 2, 0)
    q.done(False)
    q.done(True)  # a heavy piece finished: the next may run
    assert q.pop() == ("heavy-2", True)
    assert q.pop() is None and len(q) == 1


def test_a_single_runner_runs_heavy_work_too() -> None:
    q: FairQueue[str] = FairQueue(slots=1)
    q.push("heavy", 1.0, now=0.0)
    assert q.pop() == ("heavy", True)


def test_costs_are_learned_per_query_shape_and_scale_with_steps_and_shards() -> None:
    p = {"query": "sum(rate(x[5m]))", "start": 0, "end": 3_600_000, "step": 60_000}
    k = cost_key("ds", "eval", p)
    assert cost_units("eval", p, 1) == 61 and cost_units("eval", p, 4) == 244
    assert cost_units("eval", {**p, "end": 0}, 2) == 2  # an instant eval: one step
    assert cost_units("select", {"start": 0, "end": 600_000}, 1) == 11  # minutes of range
    # the times move with a dashboard's refresh; the shape stays
    assert cost_key("ds", "eval", {**p, "start": 15_000, "end": 3_615_000}) == k
    assert cost_key("ds", "eval", {**p, "query": "x"}) != k
    m = CostModel(prior_s_per_unit=1e-5)
    assert m.estimate(k, 100) == 1e-5 * 100
    m.observe(k, 61, 0.061)
    assert m.estimate(k, 122) == 0.122
    m.observe(k, 61, 0.0)  # a moving average: one fast run does not reset it
    assert abs(m.estimate(k, 1) - 0.7e-3) < 1e-12
